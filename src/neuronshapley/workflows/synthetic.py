"""``neuronshapley synthetic``: TMAB-Shapley on a game with known values, checked against them."""

from dataclasses import dataclass

import numpy as np

from neuronshapley.estimators import ShapleyResult, tmab_shapley
from neuronshapley.games import sparse_soum


@dataclass(frozen=True)
class SyntheticCheck:
    """TMAB on ``sparse_soum`` against the exact values (and plain Monte Carlo).

    Attributes:
        result: TMAB's result.
        truth: The exact Shapley values.
        true_top: Indices of the true top ``k``.
        value_range: The range of marginal contributions given to the estimator.
        plain: Plain Monte Carlo with the same stopping rule, or ``None``.
    """

    result: ShapleyResult
    truth: np.ndarray
    true_top: frozenset[int]
    value_range: float
    plain: ShapleyResult | None

    @property
    def hits(self) -> int:
        """How many of TMAB's top ``k`` are in the true top ``k``."""
        return sum(row.player_index in self.true_top for row in self.result.top(len(self.true_top)))

    @property
    def plain_hits(self) -> int:
        """How many of plain Monte Carlo's top ``k`` are in the true top ``k``."""
        if self.plain is None:
            return 0
        k = len(self.true_top)
        return len(self.true_top.intersection(self.plain.top_indices(k).tolist()))


def synthetic_check(
    players: int, k: int, seed: int, *, compare: bool, delta: float = 0.05, tol: float = 1e-3
) -> SyntheticCheck:
    """Run TMAB (and, with ``compare``, plain Monte Carlo) on ``sparse_soum(players, k, seed)``."""
    game = sparse_soum(n_players=players, n_large=k, seed=seed)
    truth = game.shapley_values()
    value_range = game.marginal_range()

    def run(adaptive: bool) -> ShapleyResult:
        return tmab_shapley(
            game,
            k=k,
            delta=delta,
            tol=tol,
            value_range=value_range,
            seed=seed,
            adaptive=adaptive,
        )

    result = run(adaptive=True)
    true_top = frozenset(np.argsort(-truth, kind="stable")[:k].tolist())
    return SyntheticCheck(
        result, truth, true_top, value_range, run(adaptive=False) if compare else None
    )
