"""The permutation-walk engine: which coalitions it evaluates and what it records."""

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley import games
from neuronshapley.estimators.options import Sampling
from neuronshapley.estimators.walks import (
    Endpoints,
    Evaluator,
    Truncation,
    Walk,
    Walker,
    WalkRange,
    permutation,
)
from neuronshapley.results.stats import RunningStats


def coalition_after(order: np.ndarray, removed: int) -> np.ndarray:
    mask = np.ones(len(order), dtype=bool)
    mask[order[:removed]] = False
    return mask


def run_walk(walk: Walk, game: games.BaseGame, truncation: Truncation | None, chunk: int) -> None:
    full, empty = game.value(np.array([[True] * game.n_players, [False] * game.n_players]))
    while not walk.done:
        out = np.empty((chunk, game.n_players), dtype=bool)
        count = walk.fill(out, chunk)
        walk.receive(game.value(out[:count]), truncation, full, empty)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_walk_marginals_are_prefix_differences(chunk: int) -> None:
    game = games.SOUM(12, n_basis=30, seed=0)
    order = permutation(123, 0, 12)
    sampled = np.zeros(12, dtype=bool)
    sampled[[0, 4, 5, 11]] = True
    walk = Walk(order, sampled)
    positions = np.flatnonzero(sampled[order])
    expected_needed = sorted({*positions, *(positions + 1)} - {0, 12})
    np.testing.assert_array_equal(walk.needed, expected_needed)
    run_walk(walk, game, None, chunk)
    full, empty = game.value(np.array([[True] * 12, [False] * 12]))
    players, marginals = walk.marginals(sampled, full, empty)
    assert sorted(players.tolist()) == [0, 4, 5, 11]
    for player, marginal in zip(players, marginals, strict=True):
        q = int(np.flatnonzero(order == player)[0])
        before, after = game.value(
            np.stack([coalition_after(order, q), coalition_after(order, q + 1)])
        )
        assert marginal == pytest.approx(before - after, abs=1e-12)


def test_marginals_of_a_full_walk_sum_to_the_grand_coalition_gain() -> None:
    game = games.SOUM(20, n_basis=40, seed=1)
    walk = Walk(permutation(7, 3, 20), None)
    run_walk(walk, game, None, 8)
    full, empty = game.value(np.array([[True] * 20, [False] * 20]))
    players, marginals = walk.marginals(None, full, empty)
    assert sorted(players.tolist()) == list(range(20))
    assert marginals.sum() == pytest.approx(full - empty, abs=1e-12)


@pytest.mark.parametrize("patience", [1, 2, 4])
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 100])
def test_truncation_point_does_not_depend_on_chunking(patience: int, chunk: int) -> None:
    # Dead (value 0) once fewer than 14 of 30 players remain: after 17 removals.
    game = games.DeadNetworkGame(np.linspace(0.5, 1.5, 30), min_players=14)
    walk = Walk(permutation(5, 0, 30), None)
    run_walk(walk, game, Truncation(0.01, "relative", patience), chunk)
    assert walk.truncated_at == 17 + patience - 1
    full, empty = 30.0, 0.0
    players, marginals = walk.marginals(None, full, empty)
    # Everyone gets a marginal; those removed at or after the truncation point get zero.
    assert len(players) == 30
    ranks = np.argsort(walk.order)
    np.testing.assert_array_equal(marginals[ranks[players] >= walk.truncated_at], 0.0)


def test_dead_streak_is_reset_by_a_live_value() -> None:
    walk = Walk(np.arange(10), None)
    rule = Truncation(0.5, "absolute", 3)
    walk.receive(np.array([1.0, 0.0, 0.0]), rule, 1.0, 0.0)  # two dead
    walk.receive(np.array([1.0, 0.0]), rule, 1.0, 0.0)  # reset, one dead
    assert walk.truncated_at is None
    walk.receive(np.array([0.0, 0.0, 1.0]), rule, 1.0, 0.0)  # third dead in a row at prefix 7
    assert walk.truncated_at == 7


def test_relative_truncation_follows_the_metric_direction() -> None:
    rule = Truncation(0.1, "relative", 1)
    # A loss: lower is better, V(N) = 0.2, V(empty) = 2.3. Dead when near 2.3.
    dead = rule.dead(np.array([0.2, 1.0, 2.2, 2.3, 2.5]), 0.2, 2.3)
    np.testing.assert_array_equal(dead, [False, False, True, True, True])
    assert not rule.dead(np.array([5.0]), 1.0, 1.0).any()  # no gain: never dead


def test_antithetic_partner_is_the_reversed_permutation() -> None:
    first = permutation(11, 0, 50)
    assert sorted(first.tolist()) == list(range(50))
    assert not np.array_equal(first, permutation(11, 1, 50))
    np.testing.assert_array_equal(first, permutation(11, 0, 50))


def test_stats_of_two_halves_merge_into_the_whole() -> None:
    rng = np.random.default_rng(0)
    n = 40
    whole, first, second = (RunningStats.zeros(n) for _ in range(3))
    for step in range(200):
        players = rng.choice(n, size=rng.integers(1, n), replace=False)
        samples = rng.normal(3.0, 2.0, size=len(players))
        whole.add(players, samples)
        (first if step < 100 else second).add(players, samples)
    merged = first.merge(second)
    np.testing.assert_array_equal(merged.count, whole.count)
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-12)
    assert (merged.sample_min, merged.sample_max) == (whole.sample_min, whole.sample_max)
    empty = RunningStats.zeros(n)
    np.testing.assert_allclose(whole.merge(empty).mean, whole.mean, rtol=0)
    np.testing.assert_allclose(empty.merge(whole).m2, whole.m2, rtol=1e-15)


def test_welford_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    samples = rng.exponential(size=(50, 3))
    stats = RunningStats.zeros(3)
    for row in samples:
        stats.add(np.arange(3), row)
    np.testing.assert_allclose(stats.mean, samples.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(stats.variance, samples.var(axis=0, ddof=1), rtol=1e-12)


# -- the engine seam: a range of permutations is an idempotent unit of work -------------------


def _walker(game: games.BaseGame, entropy: int, *, antithetic: bool = False) -> Walker:
    """A fresh walker, as a worker elsewhere would build one from the run's parameters."""
    # V(N) and V(empty) in one batch, as the run evaluates them (a game's arithmetic may
    # depend on the batch it is given, in the last bits).
    both = np.zeros((2, game.n_players), dtype=bool)
    both[0] = True
    v_full, v_empty = game.value(both)
    endpoints = Endpoints(float(v_full), float(v_empty))
    sampling = Sampling(antithetic=antithetic, batch_size=32, n_walks=8)
    return Walker(Evaluator(game), entropy, endpoints, sampling, truncation=None)


@pytest.mark.parametrize("antithetic", [False, True])
def test_ranges_walked_anywhere_and_merged_in_order_equal_the_run(antithetic: bool) -> None:
    game = games.sparse_soum(30, n_large=3, seed=0)
    run = ns.permutation_shapley(game, n_permutations=24, seed=7, antithetic=antithetic)
    # Three "workers", each with its own walker, take the ranges out of order.
    outcomes = {
        first: _walker(game, 7, antithetic=antithetic).walk(WalkRange(first, 8))
        for first in (16, 0, 8)
    }
    merged = RunningStats.zeros(30)
    for first in sorted(outcomes):
        merged = merged.merge(outcomes[first].stats)
    np.testing.assert_array_equal(merged.mean, run.values)
    np.testing.assert_array_equal(merged.count, run.n_samples)
    np.testing.assert_array_equal(merged.variance, run.variance)
    assert sum(o.n_evaluations for o in outcomes.values()) + 2 == run.n_evaluations


def test_walking_a_range_twice_gives_the_same_statistics() -> None:
    game = games.sparse_soum(30, n_large=3, seed=0)
    sampled = np.zeros(30, dtype=bool)
    sampled[[1, 5, 7]] = True
    first = _walker(game, 3).walk(WalkRange(40, 6, sampled))
    again = _walker(game, 3).walk(WalkRange(40, 6, sampled))
    assert first.complete and again.complete
    for name in ("count", "mean", "m2"):
        np.testing.assert_array_equal(getattr(first.stats, name), getattr(again.stats, name))
    assert set(np.flatnonzero(first.stats.count)) == {1, 5, 7}


def test_a_range_must_hold_whole_antithetic_pairs() -> None:
    walker = _walker(games.sparse_soum(30, seed=0), 3, antithetic=True)
    with pytest.raises(ValueError, match=r"start at an even permutation .* Got first=3, count=4"):
        walker.walk(WalkRange(3, 4))
    with pytest.raises(ValueError, match=r"even number of them\. Got first=2, count=3"):
        walker.walk(WalkRange(2, 3))


def test_ranges_merge_in_order_and_once() -> None:
    from neuronshapley.estimators.state import RunState

    game = games.sparse_soum(30, seed=0)
    state = RunState.fresh(30)
    walker = _walker(game, 3)
    state.endpoints = walker.endpoints
    first = walker.walk(WalkRange(0, 4))
    state = state.absorb(first)
    assert state.next_permutation == 4
    with pytest.raises(ValueError, match="continues at permutation 4, but the range starts at 0"):
        state.absorb(first)


@pytest.mark.parametrize("continue_probability", [None, 0.5])
def test_walk_marginals_are_the_rows_behind_walk(continue_probability: float | None) -> None:
    """``Walker.walk_marginals`` (control_variate_shapley's game walks) gives each walk's row of
    marginals and hidden tail totals: their means are what ``walk`` summarises for the same
    range, the tails' ends L and H included, and its evaluations are ``walk``'s."""
    game = games.SOUM.from_basis(8, [[0, 1], [2, 3, 4], [5], [1, 6, 7]], [1.0, 2.0, 0.5, 3.0])
    rule = Truncation(2.0, "absolute", 1, continue_probability)
    both = np.zeros((2, 8), dtype=bool)
    both[0] = True
    v_full, v_empty = (float(v) for v in game.value(both))
    sampling = Sampling(batch_size=32, n_walks=8)

    def walker() -> Walker:
        return Walker(Evaluator(game), 11, Endpoints(v_full, v_empty), sampling, rule)

    rows = walker()
    marginals, hidden, truncated = rows.walk_marginals(0, 40)
    summary = walker()
    stats = summary.walk(WalkRange(0, 40))
    assert truncated == stats.n_walks_truncated > 0
    assert rows.evaluator.n_evaluations == stats.n_evaluations
    # Means of 40 rows, against Welford's running means: equal but for rounding.
    np.testing.assert_allclose(marginals.mean(axis=0), stats.stats.mean, rtol=0, atol=1e-12)
    if continue_probability is not None:
        # Unbiased truncation has no tails' bound (a stopped walk's hidden total goes unused).
        assert stats.tails is None
        return
    assert stats.tails is not None and hidden.any()
    for ends, side in ((stats.tails.low, np.minimum), (stats.tails.high, np.maximum)):
        expected = (marginals + side(hidden, 0.0)).mean(axis=0)
        np.testing.assert_allclose(expected, ends.mean, rtol=0, atol=1e-12)
