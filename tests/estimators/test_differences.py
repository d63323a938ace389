"""The difference estimator (Theorem 10.2.8, Problem 10.2.7) against enumeration.

Stochastic checks use fixed seeds and a tolerance from the estimator's own standard error: each
estimate is a mean of thousands of bounded samples, so (CLT) its error over its standard error
is close to standard normal, and a check of m estimates at once uses the two-sided normal
quantile at ALPHA / m (Bonferroni), so that a correct implementation fails one such check with
probability at most about ALPHA. The coverage check counts failures of the finite-sample
intervals against a binomial bound, as tests/estimators/test_guarantees.py does.
"""

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley.estimators.difference_race import difference_race
from neuronshapley.estimators.differences import (
    DifferenceResult,
    anchored_shapley,
    difference_shapley,
    size_distribution,
    theorem_weights,
)
from tests.estimators.test_guarantees import binomial_upper

ALPHA = 1e-3


def soum() -> ns.games.SOUM:
    return ns.games.SOUM(7, n_basis=12, seed=3, max_order=3)


def airport() -> ns.games.AirportGame:
    return ns.games.AirportGame([1.0, 2.0, 2.5, 4.0, 5.0, 7.0, 8.0, 9.5])


def voting() -> ns.games.WeightedVotingGame:
    return ns.games.WeightedVotingGame([1, 2, 2, 3, 4, 5, 6], quota=12)


def glove() -> ns.games.GloveGame:
    return ns.games.GloveGame(3, 4)


# Each game and the range R of its marginal contributions (a valid bound, for the intervals).
GAMES: dict[str, tuple[Callable[[], Any], Callable[[Any], float]]] = {
    "soum": (soum, lambda game: game.marginal_range()),
    "airport": (airport, lambda game: float(game.costs.max())),
    "voting": (voting, lambda game: 1.0),
    "glove": (glove, lambda game: 1.0),
}


def exact_differences(game: Any, pairs: np.ndarray) -> np.ndarray:
    phi = ns.exact_shapley(game).values
    return np.asarray(phi[pairs[:, 0]] - phi[pairs[:, 1]])


def z_limit(n_checks: int) -> float:
    return NormalDist().inv_cdf(1.0 - ALPHA / (2.0 * n_checks))


def assert_unbiased(result: DifferenceResult, exact: np.ndarray) -> None:
    """Every estimate within the Bonferroni normal quantile of its own standard errors; a pair
    whose samples were all equal (zero variance) must be exact."""
    assert np.all(result.n_samples > 30), "every pair needs enough samples for the CLT"
    error = result.differences - exact
    constant = result.variance < 1e-18
    np.testing.assert_allclose(error[constant], 0.0, atol=1e-9)
    z = np.abs(error[~constant]) / result.stderr[~constant]
    assert z.max() < z_limit(len(exact)), (result.pairs[~constant][z.argmax()], z.max())


# -- the weights ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 7, 12])
def test_theorem_weights_are_a_distribution(n: int) -> None:
    """sum over S of w(S) = sum_s C(N-2, s) w(s) = 1: |S| uniform on 0..N-2, S uniform given it."""
    weights = theorem_weights(n)
    by_size = np.array([math.comb(n - 2, s) for s in range(n - 1)]) * weights
    np.testing.assert_allclose(by_size, np.full(n - 1, 1.0 / (n - 1)), rtol=1e-12)
    assert by_size.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("n_forced", [0, 1, 2])
def test_a_pair_outside_the_sampled_set_sees_the_theorems_law(n_forced: int) -> None:
    """Enumerate every S the scheme can draw (avoiding the forced players) with its
    probability pi_f(|S|) / C(N - f, |S|); conditioned on a served pair being outside S, it is
    exactly Theorem 10.2.8's weight w(S), for every pair the scheme serves."""
    n = 6
    forced = list(range(n_forced))
    pi = size_distribution(n, n_forced)
    assert pi.sum() == pytest.approx(1.0, abs=1e-12) and np.all(pi > 0)
    w = theorem_weights(n)
    free = [p for p in range(n) if p not in forced]
    for pair in itertools.combinations(range(n), 2):
        if not set(forced) <= set(pair):
            continue  # not a pair this scheme serves
        probabilities: dict[frozenset[int], float] = {}
        for size in range(n - 1):
            for members in itertools.combinations(free, size):
                if set(members) & set(pair):
                    continue
                probabilities[frozenset(members)] = pi[size] / math.comb(n - n_forced, size)
        outside = sum(probabilities.values())
        for members, probability in probabilities.items():
            assert probability / outside == pytest.approx(w[len(members)], rel=1e-12)


def test_theorem_10_2_8_holds_by_enumeration() -> None:
    game = soum()
    n = game.n_players
    w = theorem_weights(n)
    phi = ns.exact_shapley(game).values
    for i, j in [(0, 1), (2, 6), (5, 3)]:
        others = [p for p in range(n) if p not in (i, j)]
        total = 0.0
        for size in range(n - 1):
            for members in itertools.combinations(others, size):
                base = np.zeros((2, n), dtype=bool)
                base[:, list(members)] = True
                base[0, i] = base[1, j] = True
                with_i, with_j = game.value(base)
                total += w[size] * (with_i - with_j)
        assert total == pytest.approx(phi[i] - phi[j], abs=1e-12)


# -- the estimator against exact differences -------------------------------------------------


@pytest.mark.parametrize("name", sorted(GAMES))
@pytest.mark.parametrize("scheme", ["pairs", "anchor", "all"])
def test_mean_over_seeds_matches_exact_differences(name: str, scheme: str) -> None:
    """The mean of 8 seeds' estimates; its standard error from theirs (independent runs)."""
    make, _ = GAMES[name]
    game = make()
    n = game.n_players
    kwargs: dict[str, Any] = {
        "pairs": {"pairs": [(0, 1), (n - 1, 2), (3, n - 2)]},
        "anchor": {"anchor": 1},
        "all": {},
    }[scheme]
    n_samples = {"pairs": 1000, "anchor": 1500, "all": 3000}[scheme]
    runs = [difference_shapley(game, n_samples, seed=seed, **kwargs) for seed in range(8)]
    first = runs[0]
    assert first.scheme == scheme
    pooled = DifferenceResult(
        pairs=first.pairs,
        differences=np.mean([r.differences for r in runs], axis=0),
        stderr=np.sqrt(np.sum([r.stderr**2 for r in runs], axis=0)) / len(runs),
        ci_low=first.ci_low,
        ci_high=first.ci_high,
        n_samples=np.sum([r.n_samples for r in runs], axis=0),
        variance=np.max([r.variance for r in runs], axis=0),
        player_names=first.player_names,
        n_evaluations=sum(r.n_evaluations for r in runs),
        scheme=scheme,
        guarantee=first.guarantee,
    )
    assert_unbiased(pooled, exact_differences(game, first.pairs))


def test_finite_sample_intervals_cover_at_their_level() -> None:
    """Bernstein intervals with the true range 2R, 40 seeds x 3 pairs on the airport game:
    failures at most the binomial bound for a failure rate delta."""
    make, value_range = GAMES["airport"]
    game = make()
    pairs = [(0, 1), (5, 6), (2, 7)]
    exact = exact_differences(game, np.array(pairs))
    delta = 0.2
    failures = 0
    for seed in range(40):
        result = difference_shapley(
            game, 50, pairs=pairs, seed=seed, delta=delta, value_range=value_range(game)
        )
        failures += int(np.sum((exact < result.ci_low) | (exact > result.ci_high)))
    assert failures <= binomial_upper(40 * 3, delta)


def test_anchored_values_match_exact_shapley() -> None:
    game = soum()
    phi = ns.exact_shapley(game).values
    result = anchored_shapley(game, 2, 4000, seed=5, value_range=game.marginal_range())
    assert result.estimator == "anchored_shapley"
    z = np.abs(result.values - phi) / result.stderr
    assert z.max() < z_limit(game.n_players)
    assert np.all(result.ci_low <= phi) and np.all(phi <= result.ci_high)
    assert "s_anchor" in result.interval_guarantee
    assert "delta / 2" in result.interval_guarantee


def test_anchored_with_a_known_anchor_value() -> None:
    """Player 0 of the airport game with the smallest cost: its value is known in closed form;
    the anchor's value and interval are then that point."""
    game = airport()
    phi = game.shapley_values()
    result = anchored_shapley(game, 0, 2000, anchor_value=float(phi[0]), seed=1)
    assert result.values[0] == phi[0] and result.ci_low[0] == result.ci_high[0] == phi[0]
    assert result.stderr[0] == 0.0
    z = np.abs(result.values[1:] - phi[1:]) / result.stderr[1:]
    assert z.max() < z_limit(game.n_players - 1)
    assert "given" in result.interval_guarantee


def test_anchored_result_saves_and_refuses_to_merge(tmp_path: Path) -> None:
    result = anchored_shapley(soum(), 0, 100, seed=0)
    result.save(tmp_path / "r")
    loaded = ns.ShapleyResult.load(tmp_path / "r")
    np.testing.assert_array_equal(loaded.values, result.values)
    assert loaded.interval_guarantee == result.interval_guarantee
    with pytest.raises(ValueError, match="Cannot merge anchored_shapley results"):
        result.merge(result)


def test_difference_result_saves_and_loads_to_the_bit(tmp_path: Path) -> None:
    result = difference_shapley(voting(), 100, seed=3, pairs=[(0, 3), (4, 1)])
    result.save(tmp_path / "d")
    loaded = DifferenceResult.load(tmp_path / "d")
    for name in ("pairs", "differences", "stderr", "ci_low", "ci_high", "n_samples", "variance"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name))
    assert (loaded.player_names, loaded.scheme, loaded.guarantee, loaded.seed) == (
        result.player_names, result.scheme, result.guarantee, result.seed,
    )  # fmt: skip
    assert loaded.difference(3, 0) == -result.difference(0, 3)
    # A damaged save is refused in one line naming the file, never loaded half.
    (tmp_path / "d" / "differences.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"differences\.npz"):
        DifferenceResult.load(tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="not a saved DifferenceResult"):
        DifferenceResult.load(tmp_path / "nothing")


# -- the engine's properties ------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{"pairs": [(0, 3), (4, 1)]}, {"anchor": 2}, {}])
def test_same_seed_same_result_whatever_the_batch(kwargs: dict[str, Any]) -> None:
    game = voting()
    one = difference_shapley(game, 100, seed=3, batch_size=7, **kwargs)
    two = difference_shapley(game, 100, seed=3, batch_size=1000, **kwargs)
    np.testing.assert_array_equal(one.differences, two.differences)
    assert one.n_evaluations == two.n_evaluations
    other = difference_shapley(game, 100, seed=4, **kwargs)
    assert not np.array_equal(one.differences, other.differences)


def test_evaluations_counted_and_game_batched() -> None:
    calls: list[int] = []

    def value(coalitions: np.ndarray) -> np.ndarray:
        calls.append(len(coalitions))
        return coalitions.sum(axis=1).astype(np.float64) ** 2

    result = difference_shapley(
        value, 100, pairs=[(0, 1), (2, 3)], n_players=6, batch_size=64, seed=0
    )
    assert result.n_evaluations == sum(calls) == 2 * 2 * 100
    assert max(calls) <= 64
    # V(S) = |S|^2 is symmetric: every difference sample is 0.
    np.testing.assert_array_equal(result.differences, 0.0)


def test_matrix_is_antisymmetric() -> None:
    result = difference_shapley(glove(), 200, seed=0)
    matrix = result.matrix()
    np.testing.assert_allclose(matrix, -matrix.T)
    assert result.difference(1, 4) == pytest.approx(matrix[1, 4])
    assert result.difference(4, 1) == pytest.approx(matrix[4, 1])


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_samples": 1}, ValueError, r"'n_samples' parameter of difference_shapley"),
        ({"anchor": 9}, ValueError, r"'anchor' parameter of difference_shapley.*Got 9"),
        ({"pairs": [(0, 0)]}, ValueError, r"'pairs'.*distinct.*Got \(0, 0\) at position 0"),
        ({"pairs": [(0, 1), (1, 7)]}, ValueError, r"'pairs'.*Got \(1, 7\) at position 1"),
        ({"pairs": [0, 1]}, ValueError, r"'pairs' parameter of difference_shapley"),
        ({"pairs": []}, ValueError, r"'pairs' parameter of difference_shapley"),
        ({"pairs": [(0, 1)], "anchor": 2}, ValueError, r"either 'anchor'.*or 'pairs'"),
        ({"delta": 1.5}, ValueError, r"'delta' parameter of difference_shapley"),
        ({"value_range": -1.0}, ValueError, r"'value_range' parameter of difference_shapley"),
        ({"batch_size": 0}, ValueError, r"'batch_size' parameter of difference_shapley"),
        ({"seed": -1}, ValueError, r"'seed' parameter of difference_shapley"),
    ],
)
def test_difference_shapley_bad_input(kwargs: dict[str, Any], error: type, match: str) -> None:
    arguments: dict[str, Any] = {"n_samples": 10, **kwargs}
    with pytest.raises(error, match=match):
        difference_shapley(voting(), **arguments)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"anchor": -1}, ValueError, r"'anchor' parameter of anchored_shapley"),
        ({"anchor_samples": 1}, ValueError, r"'anchor_samples' parameter of anchored_shapley"),
        ({"anchor_value": float("nan")}, ValueError, r"'anchor_value' parameter"),
        (
            {"anchor_value": 0.1, "anchor_samples": 5},
            ValueError,
            r"either 'anchor_value'.*or 'anchor_samples'",
        ),
        ({"bound": "hoeffding"}, ValueError, r"'bound' parameter of anchored_shapley"),
    ],
)
def test_anchored_shapley_bad_input(kwargs: dict[str, Any], error: type, match: str) -> None:
    arguments: dict[str, Any] = {"anchor": 0, "n_samples": 10, **kwargs}
    with pytest.raises(error, match=match):
        anchored_shapley(voting(), **arguments)


def test_a_one_player_game_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 players"):
        difference_shapley(lambda c: c.sum(axis=1).astype(float), 10, n_players=1)


# -- the experimental race (estimators.difference_race) ---------------------------------------


def test_difference_race_separates_the_right_top_k() -> None:
    """Its guarantee is TMAB's (wrong top k with probability <= delta); at delta = 0.01 and
    three seeds every run must separate and be right (a failure has probability <= 0.03)."""
    game = ns.games.AirportGame([0.1, 0.2, 0.35, 0.5, 0.6, 0.7, 0.9, 1.0])
    truth = set(np.argsort(-game.shapley_values())[:3].tolist())
    used_pairs = 0
    for seed in range(3):
        result = difference_race(game, 3, value_range=1.0, delta=0.01, tol=1e-3, seed=seed)
        assert result.stop_reason == "separated"
        assert set(result.top_indices(3).tolist()) == truth
        used_pairs += result.diagnostics["pair_evaluations"]
    assert used_pairs > 0, "the boundary was decided by direct differences at least once"


def test_difference_race_respects_its_budget_and_validates() -> None:
    game = ns.games.AirportGame([0.1, 0.2, 0.35, 0.5, 0.6, 0.7, 0.9, 1.0])
    result = difference_race(game, 3, value_range=1.0, max_evaluations=500, seed=0)
    assert result.stop_reason == "max_evaluations" and result.n_evaluations <= 500
    with pytest.raises(ValueError, match=r"'k' parameter of difference_race"):
        difference_race(game, 8, value_range=1.0)
    with pytest.raises(ValueError, match=r"'value_range' parameter of difference_race"):
        difference_race(game, 3, value_range=0.0)
    with pytest.raises(TypeError, match=r"'value_range' parameter of difference_race"):
        difference_race(game, 3, value_range=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'max_pairs' parameter of difference_race"):
        difference_race(game, 3, value_range=1.0, max_pairs=-1)
