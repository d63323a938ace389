"""Sampling estimators converge to the known values; their intervals cover at the nominal level.

Tolerances come from Hoeffding's inequality: the mean of t samples in an interval of width R is
within R sqrt(ln(2 n / p) / (2 t)) of its expectation for all n players at once, except with
probability p. With p = 1e-6 a failure at a fixed seed would be a real bug, not bad luck.
"""

import math

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley import games
from neuronshapley.estimators.walks import MIN_SHARE

FAILURE = 1e-6


def hoeffding_tolerance(width: float, samples: int, n_players: int) -> float:
    return width * math.sqrt(math.log(2 * n_players / FAILURE) / (2 * samples))


def test_permutation_converges_on_soum() -> None:
    game = games.SOUM(12, n_basis=40, seed=5)
    result = ns.permutation_shapley(game, 2000, seed=0)
    tolerance = hoeffding_tolerance(game.marginal_range(), 2000, 12)
    assert np.all(result.n_samples == 2000)
    np.testing.assert_allclose(result.values, game.shapley_values(), atol=tolerance, rtol=0)


def test_antithetic_converges_on_airport() -> None:
    costs = np.array([1.0, 2.0, 2.0, 5.0, 8.0, 13.0, 0.5, 3.0])
    game = games.AirportGame(costs)
    result = ns.permutation_shapley(game, 1000, antithetic=True, seed=1)
    assert np.all(result.n_samples == 500)  # a pair is one sample
    # A pair's mean marginal lies in [0, max cost]: width 13.
    tolerance = hoeffding_tolerance(13.0, 500, 8)
    np.testing.assert_allclose(result.values, game.shapley_values(), atol=tolerance, rtol=0)


def test_truncation_is_exact_where_the_network_is_dead() -> None:
    # Below min_players the game is dead and every marginal there is 0, so truncation loses
    # nothing: the estimate converges to the true values, with fewer evaluations.
    game = games.DeadNetworkGame(np.linspace(0.1, 1.0, 40), min_players=25)
    truncated = ns.truncated_shapley(game, 600, truncation=0.05, patience=3, seed=2)
    plain = ns.permutation_shapley(game, 600, seed=2)
    width = float(np.linspace(0.1, 1.0, 40).sum())  # the jump at min_players is the widest
    tolerance = hoeffding_tolerance(width, 600, 40)
    np.testing.assert_allclose(truncated.values, game.shapley_values(), atol=tolerance, rtol=0)
    assert truncated.diagnostics["n_walks_truncated"] == 600
    # Dead after 16 removals and 3 dead evaluations: 18 of 39 coalitions per walk, plus an
    # overshoot of less than one share of a batch per walk.
    share = max(32 // 8, MIN_SHARE)
    assert truncated.n_evaluations <= 2 + 600 * (18 + share - 1)
    assert plain.n_evaluations == 2 + 600 * 39


def test_truncated_without_truncation_equals_permutation() -> None:
    game = games.SOUM(15, n_basis=30, seed=6)
    plain = ns.permutation_shapley(game, 50, seed=9)
    same = ns.truncated_shapley(game, 50, truncation=None, seed=9)
    for name in ("values", "stderr", "ci_low", "ci_high", "n_samples"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(same, name))
    assert plain.n_evaluations == same.n_evaluations


def test_values_do_not_depend_on_batch_size() -> None:
    game = games.DeadNetworkGame(np.linspace(0.1, 1.0, 30), min_players=10)
    runs = [
        ns.truncated_shapley(game, 40, truncation=0.1, patience=2, seed=3, batch_size=size)
        for size in (1, 5, 32, 1000)
    ]
    for run in runs[1:]:
        # Equal up to the game's own rounding: its matrix product is not bitwise batch-invariant.
        np.testing.assert_allclose(run.values, runs[0].values, rtol=1e-12, atol=1e-14)
    # Larger batches overshoot the truncation point: they may only spend more.
    assert runs[0].n_evaluations <= runs[-1].n_evaluations


def coverage(intervals: list[ns.ShapleyResult], truth: np.ndarray) -> float:
    low = np.array([r.ci_low for r in intervals])
    high = np.array([r.ci_high for r in intervals])
    return float(np.mean((low <= truth) & (truth <= high)))


@pytest.mark.slow
@pytest.mark.parametrize(
    "game",
    [games.SOUM(6, n_basis=12, seed=7), games.GloveGame(3, 4)],
    ids=["soum", "glove"],
)
def test_bernstein_intervals_cover_at_least_nominal(game: games.BaseGame) -> None:
    width = game.marginal_range() if isinstance(game, games.SOUM) else 1.0
    runs = [
        ns.permutation_shapley(game, 40, delta=0.1, value_range=width, seed=seed)
        for seed in range(300)
    ]
    assert coverage(runs, game.shapley_values()) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize(
    "game",
    [games.SOUM(6, n_basis=12, seed=7), games.AirportGame([1.0, 2.0, 4.0, 4.0, 6.0])],
    ids=["soum", "airport"],
)
def test_normal_intervals_cover_nominal_within_sampling_error(game: games.BaseGame) -> None:
    # The CLT interval is nominal only asymptotically; over 300 runs x n players the measured
    # coverage has a binomial standard error, and we allow three of them below 0.9.
    runs = [
        ns.permutation_shapley(game, 200, delta=0.1, bound="normal", seed=seed)
        for seed in range(300)
    ]
    trials = 300 * game.n_players
    slack = 3 * math.sqrt(0.9 * 0.1 / trials)
    assert coverage(runs, game.shapley_values()) >= 0.9 - slack
