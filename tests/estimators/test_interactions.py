"""Pairwise Shapley interactions: exact against closed forms, sampled against exact, shapiq."""

import math

import numpy as np
import pytest

from neuronshapley.estimators.interactions import (
    exact_interactions,
    permutation_interactions,
    shapiq_interactions,
)
from neuronshapley.games import SOUM, CallableGame, UnanimityGame
from neuronshapley.results.interactions import InteractionResult


def soum_interactions(game: SOUM, players: list[int]) -> np.ndarray:
    """Closed form: the SII of i and j in a SOUM is sum_{T ⊇ {i, j}} c_T / (|T| - 1)."""
    m = len(players)
    out = np.zeros((m, m))
    for term, coefficient in zip(game.basis, game.coefficients, strict=True):
        members = set(term.tolist())
        for a in range(m):
            for b in range(m):
                if a != b and {players[a], players[b]} <= members:
                    out[a, b] += coefficient / (len(members) - 1)
    return out


def derivative_range(game: SOUM, players: list[int]) -> np.ndarray:
    """Width of an interval holding every Δ_ij(S): Δ sums some coefficients of the terms that
    contain both i and j, so it lies between their negative and their positive sum."""
    m = len(players)
    width = np.zeros((m, m))
    for term, coefficient in zip(game.basis, game.coefficients, strict=True):
        members = set(term.tolist())
        for a in range(m):
            for b in range(m):
                if a != b and {players[a], players[b]} <= members:
                    width[a, b] += abs(coefficient)
    return width


def test_exact_matches_the_closed_form_of_a_soum() -> None:
    game = SOUM(9, n_basis=25, seed=3, max_order=4)
    result = exact_interactions(game)
    np.testing.assert_allclose(result.values, soum_interactions(game, list(range(9))), atol=1e-12)
    np.testing.assert_array_equal(result.values, result.values.T)
    assert result.n_evaluations == 2**9
    assert result.interval == "exact values: no sampling error"


def test_exact_of_a_unanimity_game_is_one_over_size_minus_one() -> None:
    result = exact_interactions(UnanimityGame(7, [1, 4, 5, 6]), players=[1, 4, 0])
    expected = np.array([[0.0, 1 / 3, 0.0], [1 / 3, 0.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(result.values, expected, atol=1e-12)
    assert result.player_names == ["p1", "p4", "p0"]
    np.testing.assert_array_equal(result.player_indices, [1, 4, 0])


def test_exact_of_two_players_is_the_discrete_derivative() -> None:
    table = {(): 0.5, (0,): 2.0, (1,): 3.0, (0, 1): 4.0}

    def value(coalitions: np.ndarray) -> np.ndarray:
        return np.array([table[tuple(np.flatnonzero(row).tolist())] for row in coalitions])

    result = exact_interactions(value, n_players=2, players=["p1", "p0"])
    assert result.values[0, 1] == pytest.approx(4.0 - 2.0 - 3.0 + 0.5)


def test_sampled_mean_over_seeds_matches_exact_within_hoeffding() -> None:
    game = SOUM(10, n_basis=30, seed=5, max_order=4)
    players = list(range(10))
    exact = exact_interactions(game).values
    n_seeds, n_permutations = 5, 200
    runs = [
        permutation_interactions(game, n_permutations=n_permutations, seed=seed)
        for seed in range(n_seeds)
    ]
    mean = np.mean([run.values for run in runs], axis=0)
    # The seeds' permutations are i.i.d., so the mean is one of n_seeds * n_permutations
    # samples in an interval of known width; Hoeffding over all 45 pairs, failing w.p. 1e-6.
    total = n_seeds * n_permutations
    tolerance = derivative_range(game, players) * math.sqrt(math.log(2 * 45 / 1e-6) / (2 * total))
    assert np.all(np.abs(mean - exact) <= tolerance + 1e-12)
    assert runs[0].n_evaluations == 2 * 10**2 * n_permutations


def test_sampled_chosen_pairs_inside_a_large_game_match_the_closed_form() -> None:
    game = SOUM(60, n_basis=200, seed=2, max_order=3)
    players = [3, 17, 41, 59]
    result = permutation_interactions(game, players=players, n_permutations=2000, seed=1)
    total = 2000
    tolerance = derivative_range(game, players) * math.sqrt(math.log(2 * 6 / 1e-6) / (2 * total))
    assert np.all(np.abs(result.values - soum_interactions(game, players)) <= tolerance + 1e-12)
    assert result.n_evaluations == 2 * 4**2 * total
    assert result.n_game_players == 60


def test_bernstein_intervals_with_a_union_bound_cover_every_pair() -> None:
    game = SOUM(8, n_basis=20, seed=7, max_order=3)
    exact = exact_interactions(game)
    all_values = game.value(((np.arange(2**8)[:, None] >> np.arange(8)) & 1).astype(bool))
    result = permutation_interactions(
        game,
        n_permutations=300,
        seed=0,
        bound="bernstein",
        delta=1e-3,
        union_bound=True,
        value_range=float(all_values.max() - all_values.min()),
    )
    assert np.all(result.ci_low <= exact.values) and np.all(exact.values <= result.ci_high)
    assert "all 28 pairs at once" in result.interval and "Bernstein" in result.interval


def test_same_seed_same_result_and_batching_does_not_change_it() -> None:
    game = SOUM(12, n_basis=15, seed=1)
    first = permutation_interactions(game, players=[0, 5, 9], n_permutations=20, seed=4)
    again = permutation_interactions(
        game, players=[0, 5, 9], n_permutations=20, seed=4, batch_size=18
    )
    np.testing.assert_allclose(first.values, again.values, atol=1e-12)
    np.testing.assert_allclose(first.stderr, again.stderr, atol=1e-12)
    other = permutation_interactions(game, players=[0, 5, 9], n_permutations=20, seed=5)
    assert not np.allclose(first.values, other.values)


def test_save_load_round_trip_and_damage(tmp_path) -> None:
    game = SOUM(9, n_basis=12, seed=0)
    result = permutation_interactions(game, players=["p2", "p7", "p4"], n_permutations=10)
    loaded = InteractionResult.load(result.save(tmp_path / "pairs"))
    for name in ("values", "stderr", "ci_low", "ci_high", "n_samples", "player_indices"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name))
    assert loaded.player_names == ["p2", "p7", "p4"]
    assert loaded.interval == result.interval and loaded.params == result.params
    assert loaded.value("p7", "p2") == result.values[1, 0]
    assert [pair.value for pair in loaded.pairs()] == sorted(
        result.values[np.triu_indices(3, k=1)].tolist()
    )
    other = exact_interactions(game, players=[2, 7, 4]).save(tmp_path / "other")
    (tmp_path / "pairs" / "interactions.npz").write_bytes((other / "interactions.npz").read_bytes())
    with pytest.raises(ValueError, match="does not belong to"):
        InteractionResult.load(tmp_path / "pairs")
    (tmp_path / "pairs" / "interactions.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="is damaged and cannot be read"):
        InteractionResult.load(tmp_path / "pairs")
    with pytest.raises(FileNotFoundError, match="not a saved InteractionResult"):
        InteractionResult.load(tmp_path / "missing")


@pytest.mark.parametrize(
    ("players", "error", "message"),
    [
        ([1], ValueError, "at least two distinct"),
        ([1, 1], ValueError, "at least two distinct"),
        ([0, 9], ValueError, r"index 9, outside \[0, 6\)"),
        (["p0", "unit"], ValueError, "names 'unit', which is not a player"),
        ("p0", TypeError, "must be a sequence"),
        ([0, 1.5], TypeError, "Got the entry 1.5"),
    ],
)
def test_bad_players_are_refused(players, error, message) -> None:
    game = SOUM(6, n_basis=4)
    with pytest.raises(error, match=message):
        permutation_interactions(game, players=players)
    with pytest.raises(error, match=message):
        exact_interactions(game, players=players)


def test_bad_options_are_refused() -> None:
    game = SOUM(6, n_basis=4)
    with pytest.raises(ValueError, match="'n_permutations' parameter of permutation_inter"):
        permutation_interactions(game, n_permutations=1)
    with pytest.raises(ValueError, match="needs 'value_range'"):
        permutation_interactions(game, bound="bernstein")
    with pytest.raises(ValueError, match="'bound' parameter"):
        permutation_interactions(game, bound="anytime")
    with pytest.raises(ValueError, match="refuses n_players > 20"):
        exact_interactions(CallableGame(lambda c: c.sum(axis=1) * 1.0, 21))
    with pytest.raises(ValueError, match="at least 2 players"):
        exact_interactions(SOUM(1, n_basis=1))
    result = exact_interactions(game)
    with pytest.raises(ValueError, match="two different players"):
        result.value("p1", "p1")
    with pytest.raises(ValueError, match=r"'order' parameter of InteractionResult\.pairs"):
        result.pairs(order="size")


def test_shapiq_agrees_with_exact_and_our_sampler() -> None:
    pytest.importorskip("shapiq")
    game = SOUM(8, n_basis=20, seed=4, max_order=3)
    exact = exact_interactions(game, players=[6, 2, 3])
    # With a budget of all 2^n coalitions, shapiq's SHAPIQ computes the index exactly.
    theirs = shapiq_interactions(game, budget=2**8, approximator="SHAPIQ", players=[6, 2, 3])
    np.testing.assert_allclose(theirs.values, exact.values, atol=1e-10)
    assert np.isnan(theirs.ci_low[0, 1]) and "no uncertainty" in theirs.interval
    with pytest.raises(ValueError, match="'approximator' parameter"):
        shapiq_interactions(game, budget=100, approximator="KernelSHAP")


def test_merge_pools_seeds_exactly_and_refuses_what_it_cannot_pool() -> None:
    game = SOUM(10, n_basis=20, seed=8, max_order=3)
    runs = [
        permutation_interactions(game, players=[1, 4, 8], n_permutations=n, seed=seed)
        for seed, n in ((1, 6), (2, 9), (3, 5))
    ]
    a, b, c = runs
    left, right = a.merge(b).merge(c), a.merge(b.merge(c))
    np.testing.assert_allclose(left.values, right.values, atol=1e-14)
    np.testing.assert_allclose(left.stderr, right.stderr, atol=1e-14)
    weighted = (6 * a.values + 9 * b.values + 5 * c.values) / 20
    np.testing.assert_allclose(left.values, weighted, atol=1e-14)
    assert left.n_samples[0, 1] == 20 and left.params["seeds"] == [1, 2, 3]
    assert left.seed is None and left.n_evaluations == sum(run.n_evaluations for run in runs)
    np.testing.assert_allclose(
        left.ci_high - left.values, 1.959963984540054 * left.stderr, atol=1e-12
    )
    with pytest.raises(ValueError, match="same seed in both results"):
        a.merge(a)
    with pytest.raises(ValueError, match="pools permutation_interactions results"):
        a.merge(exact_interactions(game, players=[1, 4, 8]))
    other = permutation_interactions(game, players=[1, 4, 9], n_permutations=4, seed=7)
    with pytest.raises(ValueError, match="same players"):
        a.merge(other)
    wider = permutation_interactions(game, players=[1, 4, 8], n_permutations=4, seed=7, delta=0.1)
    with pytest.raises(ValueError, match=r"\['delta'\] differ"):
        a.merge(wider)
    with pytest.raises(ValueError, match="different games"):
        a.merge(permutation_interactions(SOUM(10, n_basis=20, seed=9), players=[1, 4, 8], seed=7))
