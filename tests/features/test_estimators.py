"""Every engine estimator on a FeatureGame, unchanged; truncation refused with its reason."""

import numpy as np
import pytest
import torch
from torch import nn

import neuronshapley as ns
from neuronshapley.features import FeatureGame


@pytest.fixture(scope="module")
def game() -> FeatureGame:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 3))
    return FeatureGame(model, torch.randn(8), baseline=torch.randn(3, 8))


def test_exact_values_are_efficient(game: FeatureGame) -> None:
    result = ns.exact_shapley(game)
    full, empty = game.value(np.array([[True] * 8, [False] * 8]))
    assert result.values.sum() == pytest.approx(full - empty, abs=1e-5)
    assert result.game_fingerprint == game.fingerprint()


@pytest.mark.parametrize("antithetic", [False, True])
def test_permutation_sampling_lies_within_its_intervals_of_exact(game, antithetic) -> None:
    truth = ns.exact_shapley(game).values
    result = ns.permutation_shapley(
        game, n_permutations=200, antithetic=antithetic, seed=1, bound="normal", delta=1e-4
    )
    # Normal intervals at delta = 1e-4 per player: all 8 hold with probability > 0.999.
    assert np.all((truth >= result.ci_low) & (truth <= result.ci_high))


def test_tmab_finds_the_top_two_features(game: FeatureGame) -> None:
    truth = ns.exact_shapley(game).values
    result = ns.tmab_shapley(game, k=2, seed=0, max_evaluations=20_000)
    top = {row.player_index for row in result.top(2)}
    assert top == set(np.argsort(truth)[-2:].tolist())


def test_truncation_is_refused_with_the_reason(game: FeatureGame) -> None:
    with pytest.raises(
        ValueError, match=r"truncated_shapley cannot truncate walks on FeatureGame.*no dead level"
    ):
        ns.truncated_shapley(game, n_permutations=4, seed=0)
    result = ns.truncated_shapley(game, n_permutations=4, seed=0, truncation=None)
    assert result.n_players == 8
