"""Removal orders and the pairwise account of a removal's cost, on 2-additive games where the
pairwise model is exact."""

import numpy as np
import pytest

from neuronshapley.applications.interactions import (
    greedy_removal_order,
    leave_one_out_costs,
    pairwise_removal_order,
    total_interactions,
    values_after_removal,
)
from neuronshapley.estimators.interactions import exact_interactions
from neuronshapley.games import SOUM, CallableGame


def two_additive() -> SOUM:
    # Singletons and pairs only: the Shapley interaction of a pair is its Möbius coefficient.
    return SOUM(9, n_basis=30, seed=11, max_order=2)


def test_removal_cost_is_leave_one_out_minus_pairs_inside_on_a_two_additive_game() -> None:
    game = two_additive()
    names = game.player_names
    costs = leave_one_out_costs(game, names)
    interactions = exact_interactions(game).values
    rng = np.random.default_rng(0)
    for size in (2, 4, 6):
        removed = rng.choice(9, size=size, replace=False)
        after = values_after_removal(game, [names[i] for i in removed], "random")
        cost = after.values[0] - after.values[-1]
        inside = interactions[np.ix_(removed, removed)].sum() / 2.0
        assert cost == pytest.approx(costs[removed].sum() - inside, abs=1e-12)
        assert after.n_evaluations == size + 1


def test_pairwise_order_with_exact_interactions_is_the_greedy_order() -> None:
    game = two_additive()
    greedy = greedy_removal_order(game, 5)
    order = pairwise_removal_order(
        leave_one_out_costs(game, game.player_names), exact_interactions(game), 5
    )
    assert order == greedy.order
    assert greedy.n_evaluations == 1 + 9 + 8 + 7 + 6 + 5
    again = values_after_removal(game, greedy.order, "again")
    np.testing.assert_allclose(again.values, greedy.values, atol=1e-12)


def test_greedy_among_candidates_removes_only_candidates() -> None:
    game = two_additive()
    greedy = greedy_removal_order(game, 2, candidates=["p3", "p5", "p7"])
    assert set(greedy.order) <= {"p3", "p5", "p7"} and len(greedy.order) == 2


def test_bad_input_is_refused() -> None:
    game = two_additive()
    with pytest.raises(ValueError, match="not players of the game, first 'x'"):
        greedy_removal_order(game, 1, candidates=["p1", "x"])
    with pytest.raises(ValueError, match="repeated unit names"):
        values_after_removal(game, ["p1", "p1"], "twice")
    with pytest.raises(ValueError, match=r"'k' parameter of greedy_removal_order"):
        greedy_removal_order(game, 10)
    with pytest.raises(ValueError, match="one cost per player"):
        pairwise_removal_order([1.0, 2.0], exact_interactions(game), 1)


def test_total_interactions_are_the_row_sums_of_the_exact_matrix() -> None:
    # Any game: a SOUM of order up to 5 and a non-polynomial one.
    soum = SOUM(8, n_basis=30, seed=4, max_order=5)
    weights = np.linspace(0.5, 2.0, 7)
    smooth = CallableGame(lambda c: np.sqrt(c @ weights) + c[:, 0] * c[:, 3], 7)
    for game in (soum, smooth):
        exact = exact_interactions(game).values
        totals = total_interactions(game, game.player_names)
        np.testing.assert_allclose(totals, exact.sum(axis=1), atol=1e-12)
    assert total_interactions(soum, ["p2", "p5"]).shape == (2,)
