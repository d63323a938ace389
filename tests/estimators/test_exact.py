"""Exact Shapley values: the four axioms, and every closed-form game's known values."""

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley import games

TIGHT = {"rtol": 1e-12, "atol": 1e-12}


def closed_form_games() -> list[games.BaseGame]:
    return [
        games.UnanimityGame(7, [1, 3, 4]),
        games.SOUM(9, n_basis=25, seed=1),
        games.GloveGame(3, 5),
        games.AirportGame([1.0, 3.0, 3.0, 7.0, 2.5, 0.0]),
        games.WeightedVotingGame([4, 3, 2, 2, 1, 0], quota=7),
        games.AdditiveGame([0.5, -1.0, 2.0, 0.0]),
        games.DeadNetworkGame(np.linspace(-0.2, 1.0, 10), min_players=4, dead_value=0.1),
        games.dataset_pricing_game(),
        games.corner_detector_game(),
    ]


@pytest.mark.parametrize("game", closed_form_games(), ids=repr)
def test_exact_matches_closed_form(game: games.BaseGame) -> None:
    result = ns.exact_shapley(game)
    np.testing.assert_allclose(result.values, game.shapley_values(), **TIGHT)
    assert result.n_evaluations == 2**game.n_players
    assert result.player_names == game.player_names


def test_textbook_problems_exact_values() -> None:
    pricing = ns.exact_shapley(games.dataset_pricing_game())
    np.testing.assert_allclose(pricing.values, [115 / 3, 85 / 3, 100 / 3], **TIGHT)
    corner = ns.exact_shapley(games.corner_detector_game())
    np.testing.assert_allclose(corner.values, [1 / 3, 1 / 3, 1 / 3, 0.0], **TIGHT)


def full_and_empty(game: games.BaseGame) -> tuple[float, float]:
    coalitions = np.zeros((2, game.n_players), dtype=bool)
    coalitions[0] = True
    full, empty = game.value(coalitions)
    return float(full), float(empty)


@pytest.mark.parametrize("seed", range(5))
def test_efficiency(seed: int) -> None:
    game = games.SOUM(10, n_basis=30, seed=seed)
    full, empty = full_and_empty(game)
    assert ns.exact_shapley(game).values.sum() == pytest.approx(full - empty, abs=1e-12)


def test_symmetry() -> None:
    # Players 0 and 1 enter every term together or symmetrically: V(S+0) = V(S+1).
    game = games.SOUM.from_basis(
        6, [[0, 2], [1, 2], [0, 1, 3], [4], [5, 0], [5, 1]], [1.0, 1.0, -2.0, 0.5, 3.0, 3.0]
    )
    values = ns.exact_shapley(game).values
    assert values[0] == pytest.approx(values[1], abs=1e-12)
    assert values[0] != pytest.approx(values[2], abs=1e-3)


def test_null_player() -> None:
    game = games.SOUM.from_basis(6, [[0, 1], [1, 2, 3], [4]], [1.5, -2.0, 0.7])  # player 5 is null
    values = ns.exact_shapley(game).values
    assert values[5] == pytest.approx(0.0, abs=1e-15)
    assert np.all(np.abs(values[:5]) > 1e-3)


def test_linearity() -> None:
    first, second = games.SOUM(8, n_basis=20, seed=2), games.SOUM(8, n_basis=20, seed=3)

    def combined(coalitions: np.ndarray) -> np.ndarray:
        return 2.0 * first.value(coalitions) - 0.5 * second.value(coalitions)

    values = ns.exact_shapley(combined, n_players=8).values
    expected = 2.0 * ns.exact_shapley(first).values - 0.5 * ns.exact_shapley(second).values
    np.testing.assert_allclose(values, expected, **TIGHT)


def test_exact_is_batch_size_independent() -> None:
    game = games.SOUM(9, n_basis=20, seed=4)
    np.testing.assert_allclose(
        ns.exact_shapley(game, batch_size=7).values, ns.exact_shapley(game).values, **TIGHT
    )


def test_banzhaf_of_unanimity_and_additive_games() -> None:
    # Banzhaf of a unanimity game on T: 1 / 2^(|T|-1) for members; of an additive game: weights.
    unanimity = ns.exact_banzhaf(games.UnanimityGame(6, [0, 2, 5])).values
    np.testing.assert_allclose(unanimity, [0.25, 0, 0.25, 0, 0, 0.25], **TIGHT)
    additive = ns.exact_banzhaf(games.AdditiveGame([1.0, -2.0, 0.5])).values
    np.testing.assert_allclose(additive, [1.0, -2.0, 0.5], **TIGHT)
    assert ns.exact_banzhaf(games.UnanimityGame(6, [0])).estimator == "exact_banzhaf"
