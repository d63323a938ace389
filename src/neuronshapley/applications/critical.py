"""Critical units: removing the highest-valued units against removing the baselines' picks.

Section 4.1 of Ghorbani & Zou (2020): removing a handful of the units with the highest Neuron
Shapley values destroys a network's accuracy, much faster than removing as many units ranked by
weight norm, response norm or leave-one-out, or random ones; and most units (those with the
lowest values) can be removed with little loss. :func:`critical_units_study` measures both on
one game.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import check_float, check_int
from neuronshapley.applications.baselines import BASELINES
from neuronshapley.applications.removal import (
    RemovalCurve,
    rank_by_score,
    removal_curve,
    units_before_drop,
)
from neuronshapley.results.result import ShapleyResult
from neuronshapley.typing import Seed
from neuronshapley.units.game import NeuronGame

_OWNER = "critical_units_study"
DEFAULT_BASELINES = (
    "weight_norm",
    "response_norm",
    "mean_activation",
    "leave_one_out",
    "conductance",
)
_TABLE_COUNTS = (1, 5, 10)


@dataclass(frozen=True)
class CriticalStudy:
    """Removal curves of the Shapley ranking and of the baselines, and the reverse curve.

    Attributes:
        curves: Ranking name (``"shapley"`` first, then each baseline) -> the curve of removing
            its top ``0, 1, ..., k`` units. Every curve holds the same random draws
            (``random_mean``/``random_std``), evaluated once.
        reverse: The curve of removing the lowest-valued units first (``ranked``), against as
            many random units.
        units_before_drop: The most lowest-valued units removed (among ``reverse.counts``)
            with the metric, at that count and every smaller one, at most ``drop`` below the
            full model's.
        drop: The tolerated drop of the metric (absolute).
        full_value: The metric of the full model, V(N).
        scores: Ranking name -> the score of every unit it ranked by (aligned with
            ``game.player_names``).
        k: Units removed by the top curves.
    """

    curves: dict[str, RemovalCurve]
    reverse: RemovalCurve
    units_before_drop: int
    drop: float
    full_value: float
    scores: dict[str, NDArray[np.float64]]
    k: int

    def table(self) -> list[dict[str, Any]]:
        """The metric after removing the top 1, 5, 10 and ``k`` units, one row per ranking.

        Returns:
            Rows ``{"ranking": name, "full": V(N), "top 1": ..., "top 5": ..., ...}``, one per
            ranking, then ``"random (mean)"`` and ``"random (sd)"`` rows (whose ``"full"`` is
            0 units removed: V(N) and 0); counts above ``k`` are left out.
        """
        counts = sorted({count for count in (*_TABLE_COUNTS, self.k) if 1 <= count <= self.k})
        first = next(iter(self.curves.values()))
        position = {int(count): i for i, count in enumerate(first.counts)}

        def row(name: str, values: NDArray[np.float64]) -> dict[str, Any]:
            cells = {f"top {count}": float(values[position[count]]) for count in counts}
            return {"ranking": name, "full": float(values[0]), **cells}

        rows = [row(name, curve.ranked) for name, curve in self.curves.items()]
        rows.append(row("random (mean)", first.random_mean))
        rows.append(row("random (sd)", first.random_std))
        return rows


def critical_units_study(
    game: NeuronGame,
    result: ShapleyResult,
    *,
    k: int = 20,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    n_random: int = 10,
    seed: Seed = 0,
    reverse_max: int | None = None,
    reverse_step: int | None = None,
    drop: float = 0.01,
) -> CriticalStudy:
    """Remove the top units of the Shapley ranking and of each baseline; then the bottom ones.

    The experiment of Ghorbani & Zou (2020), section 4.1 and figure 2a: the metric after
    removing the ``1..k`` units with the highest Shapley values, against the same number of
    units ranked by each baseline of :mod:`~neuronshapley.applications.baselines`, and random
    units (mean and sd over ``n_random`` draws). The reverse curve removes the lowest-valued
    units first and says how many can go before the metric drops. Evaluations: one batched
    game call for the Shapley curve with the random draws, one for all baseline curves, one
    for the reverse curve (plus the baselines' own: leave-one-out is one call).

    Args:
        game: The game the values were computed on.
        result: Shapley values of ``game``'s players (same names, same order).
        k: Most units removed by the top curves. Default 20.
        baselines: Names of the baselines to compare with, keys of
            :data:`~neuronshapley.applications.baselines.BASELINES`. Default all five.
        n_random: Random draws per count. Default 10.
        seed: Seed of the random draws. Default 0.
        reverse_max: Most units the reverse curve removes. Default ``None`` (all units).
        reverse_step: Units between points of the reverse curve. Default ``None``
            (``ceil(reverse_max / 50)``: about 50 points).
        drop: Tolerated absolute drop of the metric below V(N) for ``units_before_drop``.
            Default 0.01.

    Returns:
        The curves, the reverse curve and ``units_before_drop``.
    """
    n = game.n_players
    if list(result.player_names) != list(game.player_names):
        raise ValueError(
            f"The 'result' parameter of {_OWNER} must hold the values of the game's players, in "
            f"the game's order (game.player_names). Got a result over {result.n_players} players "
            f"({result.player_names[:3]}...) for a game of {n} ({game.player_names[:3]}...)."
        )
    k = int(check_int(k, "k", _OWNER, min_value=1, max_value=n))  # type: ignore[arg-type]
    check_int(n_random, "n_random", _OWNER, min_value=1)
    if isinstance(baselines, str):
        baselines = (baselines,)
    unknown = [name for name in baselines if name not in BASELINES]
    if unknown:
        raise ValueError(
            f"The 'baselines' parameter of {_OWNER} names an unknown baseline {unknown[0]!r}. "
            f"Known: {', '.join(BASELINES)}."
        )
    last = n if reverse_max is None else reverse_max
    last = int(check_int(last, "reverse_max", _OWNER, min_value=1, max_value=n))  # type: ignore[arg-type]
    step = -(-last // 50) if reverse_step is None else reverse_step
    step = int(check_int(step, "reverse_step", _OWNER, min_value=1))  # type: ignore[arg-type]
    drop = float(check_float(drop, "drop", _OWNER, low=0.0))  # type: ignore[arg-type]

    names = list(game.player_names)
    scores: dict[str, NDArray[np.float64]] = {"shapley": np.asarray(result.values, np.float64)}
    shapley = removal_curve(
        game,
        rank_by_score(names, scores["shapley"])[:k],
        k,
        n_random=n_random,
        seed=seed,
        ranking="Shapley value, highest first",
    )
    curves = {"shapley": shapley}
    for name in baselines:
        scores[name] = np.asarray(BASELINES[name](game), dtype=np.float64)
    curves.update(_ranked_curves(game, shapley, {name: scores[name] for name in baselines}))

    counts = sorted({*range(0, last + 1, step), last})
    reverse = removal_curve(
        game,
        rank_by_score(names, -scores["shapley"])[:last],
        counts,
        n_random=n_random,
        seed=seed,
        ranking="Shapley value, lowest first",
    )
    full_value = float(shapley.ranked[0])
    return CriticalStudy(
        curves=curves,
        reverse=reverse,
        units_before_drop=units_before_drop(reverse, full_value, drop),
        drop=drop,
        full_value=full_value,
        scores=scores,
        k=k,
    )


def _ranked_curves(
    game: NeuronGame, template: RemovalCurve, scores: dict[str, NDArray[np.float64]]
) -> dict[str, RemovalCurve]:
    """The removal curve of every ranking, in one batched call, sharing ``template``'s draws."""
    if not scores:
        return {}
    names = list(game.player_names)
    counts = template.counts
    k = int(counts[-1])
    orders = {name: rank_by_score(names, values)[:k] for name, values in scores.items()}
    index = {name: i for i, name in enumerate(names)}
    rows = []
    for order in orders.values():
        removed = np.array([index[name] for name in order], dtype=np.intp)
        for count in counts:
            coalition = np.ones(game.n_players, dtype=bool)
            coalition[removed[:count]] = False
            rows.append(coalition)
    values = np.asarray(game.value(np.stack(rows)), dtype=np.float64).reshape(len(orders), -1)
    return {
        name: replace(template, ranked=values[i], order=order, ranking=f"{name}, highest first")
        for i, (name, order) in enumerate(orders.items())
    }
