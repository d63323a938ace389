"""Shapley values of a real network's game against the definition.

A trained MLP with hidden layers of 6 and 5 neurons (11 players), metric neg_cross_entropy
(continuous, where accuracy would be flat over most coalitions). All 2^11 coalitions are
evaluated in one batched call, and the values computed here with the textbook subset formula,
independently of the estimators.
"""

import math
from typing import Any

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley.units import NeuronGame
from tests.units._models import BUDGET, fitted, vectors

N_PLAYERS = 11
# Interval failure probability, split over the players (union_bound=True): all 11 intervals
# hold at once with probability >= 1 - DELTA. With the true range of the marginals passed as
# value_range, the empirical Bernstein bound is a finite-sample guarantee, so the fixed seed
# below had at most a 1% chance of being one where an interval legitimately misses.
DELTA = 0.01


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    model = fitted("mlp")
    data, reference = vectors(32, seed=1), vectors(32, seed=2)[0]
    game = NeuronGame(
        model, data=data, metric="neg_cross_entropy", reference=reference, memory_budget=BUDGET
    )
    assert game.n_players == N_PLAYERS
    # Row m is the coalition whose players are the set bits of m.
    masks = np.arange(2**N_PLAYERS)
    coalitions = (masks[:, None] >> np.arange(N_PLAYERS)) & 1 == 1
    values = game.value(coalitions)
    table = {
        frozenset(np.flatnonzero(row).tolist()): float(v)
        for row, v in zip(coalitions, values, strict=True)
    }
    return {"game": game, "table": table, "values": values}


def textbook_shapley(table: dict[frozenset[int], float], n: int) -> np.ndarray:
    """phi_i = sum over S in N minus i of |S|! (n - |S| - 1)! / n! (V(S + i) - V(S))."""
    phi = np.zeros(n)
    for i in range(n):
        for coalition, value in table.items():
            if i in coalition:
                continue
            size = len(coalition)
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            phi[i] += weight * (table[coalition | {i}] - value)
    return phi


def marginal_range(table: dict[frozenset[int], float], n: int) -> float:
    """The width of the interval every marginal contribution V(S + i) - V(S) lies in."""
    marginals = [
        table[coalition | {i}] - value
        for coalition, value in table.items()
        for i in range(n)
        if i not in coalition
    ]
    return max(marginals) - min(marginals)


@pytest.fixture(scope="module")
def exact(setup: dict[str, Any]) -> np.ndarray:
    return textbook_shapley(setup["table"], N_PLAYERS)


def test_exact_shapley_matches_the_definition(setup: dict[str, Any], exact: np.ndarray) -> None:
    result = ns.exact_shapley(setup["game"])
    np.testing.assert_allclose(result.values, exact, rtol=0, atol=1e-10)
    assert result.player_names == setup["game"].player_names
    assert result.n_evaluations == 2**N_PLAYERS


def test_efficiency(setup: dict[str, Any], exact: np.ndarray) -> None:
    table = setup["table"]
    full, empty = table[frozenset(range(N_PLAYERS))], table[frozenset()]
    assert exact.sum() == pytest.approx(full - empty, abs=1e-10)
    assert ns.exact_shapley(setup["game"]).values.sum() == pytest.approx(full - empty, abs=1e-10)


def test_permutation_intervals_cover_the_exact_values(
    setup: dict[str, Any], exact: np.ndarray
) -> None:
    game = setup["game"]
    value_range = marginal_range(setup["table"], N_PLAYERS)
    before = game.n_evaluations
    result = ns.permutation_shapley(
        game, n_permutations=300, seed=0, delta=DELTA, union_bound=True, value_range=value_range
    )
    assert game.n_evaluations - before == result.n_evaluations
    assert (result.n_samples == 300).all()
    covered = (result.ci_low <= exact) & (exact <= result.ci_high)
    assert covered.all(), f"missed {np.flatnonzero(~covered)}"
    # The intervals are informative, not the trivial [-R, R] around every estimate.
    assert (result.ci_high - result.ci_low).max() < value_range


def test_tmab_intervals_cover_and_find_the_top_three(
    setup: dict[str, Any], exact: np.ndarray
) -> None:
    game = setup["game"]
    value_range = marginal_range(setup["table"], N_PLAYERS)
    tol = 0.01
    result = ns.tmab_shapley(
        game,
        k=3,
        seed=0,
        delta=DELTA,
        union_bound=True,
        value_range=value_range,
        tol=tol,
        max_evaluations=100_000,
    )
    assert result.stop_reason == "separated"
    reported = result.n_samples > 0
    covered = (result.ci_low <= exact) & (exact <= result.ci_high)
    assert covered[reported].all(), f"missed {np.flatnonzero(reported & ~covered)}"
    # When every interval holds and the run has separated, a player it ranks in the top 3 has
    # phi >= cut - tol and one it leaves out phi <= cut + tol: so with a true gap between the
    # 3rd and 4th values wider than 2 tol, its top 3 is the true top 3.
    ranked = np.sort(exact)[::-1]
    assert ranked[2] - ranked[3] > 2 * tol
    assert set(result.top_indices(3)) == set(np.argsort(-exact)[:3])
