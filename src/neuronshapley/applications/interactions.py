"""Removal orders that account for interactions, and the pairwise account of a removal's cost.

Removing a set ``T`` of units from the full network costs ``c(T) = V(N) - V(N \\ T)``. If the game
were 2-additive (Möbius coefficients ``m_i``, ``m_ij`` only, so that ``I_ij = m_ij``), then

    c(T) = sum_{i in T} c_i - sum_{i < j in T} I_ij,    c_i = V(N) - V(N - i) (leave-one-out),

because a pair inside ``T`` is counted in both of its leave-one-out costs but lost only once.
Redundant pairs (``I_ij < 0``) make removing both cost *more* than the sum of their
leave-one-out costs; removing one of them alone costs little because the other stands in. The
same model gives the marginal cost of removing ``i`` once ``R`` is gone, ``c_i - sum_{j in R}
I_ij``, which :func:`pairwise_removal_order` follows greedily; :func:`greedy_removal_order`
follows the game itself (one batched call per step).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import check_int
from neuronshapley.games.base import Game
from neuronshapley.results.interactions import InteractionResult


@dataclass(frozen=True)
class RemovalOrder:
    """Units in the order they were removed, and the game's value after each removal.

    Attributes:
        order: Names of the removed units, first removed first.
        values: ``values[k]``: the game's value with the first ``k`` units of ``order`` removed
            (``values[0]``: nothing removed), shape ``(len(order) + 1,)``.
        rule: How the order was made, for tables and plots.
        n_evaluations: Coalitions evaluated to make the order and its values.
    """

    order: list[str]
    values: NDArray[np.float64]
    rule: str
    n_evaluations: int


def values_after_removal(game: Game, order: Sequence[str], rule: str) -> RemovalOrder:
    """The game's value after removing the first 0, 1, ..., ``len(order)`` units of ``order``."""
    removed = _indices(game, order, "values_after_removal")
    rows = np.ones((len(removed) + 1, game.n_players), dtype=bool)
    for k in range(1, len(removed) + 1):
        rows[k:, removed[k - 1]] = False
    values = np.asarray(game.value(rows), dtype=np.float64)
    return RemovalOrder(list(order), values, rule, len(rows))


def greedy_removal_order(
    game: Game, k: int, *, candidates: Sequence[str] | None = None
) -> RemovalOrder:
    """Remove, ``k`` times, the candidate whose removal lowers the game's value most.

    Each step evaluates every remaining candidate's removal in one call to the game, so it sees
    every interaction among the removed units (at ``sum_{s < k} (|candidates| - s)``
    evaluations).

    Args:
        game: The game (every unit not removed stays active).
        k: Units to remove, in ``[1, len(candidates)]``.
        candidates: Names of the units to choose from. Default: every player.
    """
    owner = "greedy_removal_order"
    pool = list(game.player_names) if candidates is None else list(candidates)
    indices = _indices(game, pool, owner)
    steps = int(check_int(k, "k", owner, min_value=1, max_value=len(pool)))  # type: ignore[arg-type]
    kept = np.ones(game.n_players, dtype=bool)
    remaining = list(indices)
    values = [float(game.value(kept[None, :])[0])]
    order: list[str] = []
    n_evaluations = 1
    for _ in range(steps):
        rows = np.repeat(kept[None, :], len(remaining), axis=0)
        rows[np.arange(len(remaining)), remaining] = False
        after = np.asarray(game.value(rows), dtype=np.float64)
        n_evaluations += len(rows)
        best = int(np.argmin(after))  # ties: the earlier candidate
        kept[remaining[best]] = False
        order.append(game.player_names[remaining.pop(best)])
        values.append(float(after[best]))
    return RemovalOrder(order, np.asarray(values), "greedy on the game", n_evaluations)


def leave_one_out_costs(game: Game, names: Sequence[str]) -> NDArray[np.float64]:
    """``V(N) - V(N - i)`` for each unit ``i`` of ``names`` (one call to the game)."""
    indices = _indices(game, names, "leave_one_out_costs")
    rows = np.ones((len(indices) + 1, game.n_players), dtype=bool)
    rows[np.arange(1, len(indices) + 1), indices] = False
    values = np.asarray(game.value(rows), dtype=np.float64)
    return values[0] - values[1:]


def total_interactions(game: Game, names: Sequence[str]) -> NDArray[np.float64]:
    """Each unit's interactions with *all* other players, summed: ``sum_{j != i} I_ij``, exactly.

    Writing the game in its Möbius (Harsanyi) coefficients, ``I_ij = sum_{T ⊇ {i, j}} m_T /
    (|T| - 1)``, so summing over ``j`` counts every ``T ∋ i`` of two or more players once:

        sum_{j != i} I_ij = sum_{T ∋ i, |T| >= 2} m_T = [V(N) - V(N - i)] - [V({i}) - V(∅)],

    the leave-one-out cost less the unit's worth on its own. This holds for every game (no
    sampling, ``2 |names| + 2`` evaluations in one call), so it gives the interactions of chosen
    units with the thousands of others that no pairwise estimate covers.
    """
    indices = _indices(game, names, "total_interactions")
    k = len(indices)
    rows = np.zeros((2 * k + 2, game.n_players), dtype=bool)
    rows[0] = True  # N
    rows[1 : k + 1] = True
    rows[np.arange(1, k + 1), indices] = False  # N - i
    rows[np.arange(k + 1, 2 * k + 1), indices] = True  # {i}; the last row is the empty set
    values = np.asarray(game.value(rows), dtype=np.float64)
    return (values[0] - values[1 : k + 1]) - (values[k + 1 : 2 * k + 1] - values[-1])


def pairwise_removal_order(
    costs: Sequence[float] | NDArray[np.float64], interactions: InteractionResult, k: int
) -> list[str]:
    """Greedy removal under the pairwise (2-additive) model of the module docstring.

    Step by step, remove the unit with the largest ``c_i - sum_{j in R} I_ij`` (``R``: those
    already removed): a unit redundant with the removed ones (negative ``I_ij``) moves up.

    Args:
        costs: The leave-one-out cost of each of ``interactions``' players, in their order.
        interactions: Pairwise interactions of the candidate units.
        k: Units to order, in ``[1, interactions.n_players]``.
    """
    owner = "pairwise_removal_order"
    c = np.asarray(costs, dtype=np.float64)
    if c.shape != (interactions.n_players,):
        raise ValueError(
            f"The 'costs' parameter of {owner} must hold one cost per player of the interactions "
            f"({interactions.n_players}). Got shape {c.shape} instead."
        )
    steps = int(check_int(k, "k", owner, min_value=1, max_value=interactions.n_players))  # type: ignore[arg-type]
    marginal = c.copy()
    open_ = np.ones(len(c), dtype=bool)
    order = []
    for _ in range(steps):
        best = int(np.argmax(np.where(open_, marginal, -np.inf)))
        order.append(interactions.player_names[best])
        open_[best] = False
        marginal -= interactions.values[best]
    return order


def _indices(game: Game, names: Sequence[str], owner: str) -> list[int]:
    index = {name: i for i, name in enumerate(game.player_names)}
    unknown = [name for name in names if name not in index]
    if unknown:
        raise ValueError(
            f"{owner} got {len(unknown)} unit name(s) that are not players of the game, first "
            f"{unknown[0]!r}."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"{owner} got repeated unit names: {list(names)!r}.")
    return [index[name] for name in names]
