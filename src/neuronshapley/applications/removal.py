"""Removal curves: the metric after removing the top-ranked units versus random ones."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import as_generator, check_int
from neuronshapley.games.base import Game
from neuronshapley.typing import Seed


@dataclass(frozen=True)
class RemovalCurve:
    """The metric as units are removed (ablated), ranked units against random ones.

    Attributes:
        counts: Numbers of units removed, increasing, starting at 0 (shape ``(n_points,)``).
        ranked: Metric after removing the first ``counts[i]`` units of ``order``.
        random_mean: Mean metric over ``n_random`` random draws of ``counts[i]`` units.
        random_std: Standard deviation over those draws (0 where ``n_random`` is 1).
        order: Names of the ranked units, in removal order (at least ``counts[-1]`` of them).
        metric: Name of the metric.
        ranking: How the units were ranked (e.g. ``"Shapley value, highest first"``).
        n_random: Number of random draws per point.
    """

    counts: NDArray[np.int64]
    ranked: NDArray[np.float64]
    random_mean: NDArray[np.float64]
    random_std: NDArray[np.float64]
    order: list[str]
    metric: str
    ranking: str
    n_random: int


def removal_curve(
    game: Game,
    order: Sequence[str],
    counts: int | Sequence[int] = 10,
    *,
    n_random: int = 10,
    seed: Seed = 0,
    ranking: str = "Shapley value, highest first",
    metric: str | None = None,
) -> RemovalCurve:
    """The game's value after removing the first units of ``order``, and as many random units.

    Section 4.1 of Ghorbani & Zou (2020): removing the few units with the highest values
    destroys the model, while removing as many random units barely moves it. All coalitions are
    evaluated in one batched call.

    Args:
        game: The game (e.g. a :class:`~neuronshapley.units.NeuronGame`); every unit not removed
            stays active.
        order: Unit names, most important first.
        counts: The numbers of units to remove: an int K for ``0, 1, ..., K``, or a list.
            Default 10.
        n_random: Random draws per count (each draw removes a uniformly random set). Default 10.
        seed: Seed of the random draws. Default 0.
        ranking: How ``order`` was made, for plots. Default ``"Shapley value, highest first"``.
        metric: Name of the game's metric, for plots. Default: the game's ``metric.name`` if it
            has one, else ``"value"``.
    """
    owner = "removal_curve"
    index = {name: i for i, name in enumerate(game.player_names)}
    unknown = [name for name in order if name not in index]
    if unknown:
        raise ValueError(
            f"The 'order' parameter of {owner} names {len(unknown)} unit(s) that are not "
            f"players of the game, first {unknown[0]!r}."
        )
    if isinstance(counts, Sequence):
        points = np.asarray(sorted(set(counts)), dtype=np.int64)
        if len(points) == 0 or points[0] < 0 or points[-1] > len(order):
            raise ValueError(
                f"The 'counts' parameter of {owner} must hold numbers of units in "
                f"[0, {len(order)}] (the length of 'order'). Got {list(counts)!r} instead."
            )
    else:
        last = check_int(counts, "counts", owner, min_value=0, max_value=len(order))
        points = np.arange(int(last) + 1)  # type: ignore[arg-type]
    check_int(n_random, "n_random", owner, min_value=1)
    rng = as_generator(seed, owner)
    n = game.n_players
    ranked_players = np.array([index[name] for name in order], dtype=np.intp)
    rows = []
    for count in points:
        coalition = np.ones(n, dtype=bool)
        coalition[ranked_players[:count]] = False
        rows.append(coalition)
    for _ in range(n_random):
        shuffled = rng.permutation(n)
        for count in points:
            coalition = np.ones(n, dtype=bool)
            coalition[shuffled[:count]] = False
            rows.append(coalition)
    values = np.asarray(game.value(np.stack(rows)), dtype=np.float64)
    ranked = values[: len(points)]
    random = values[len(points) :].reshape(n_random, len(points))
    name = metric or getattr(getattr(game, "metric", None), "name", None) or "value"
    return RemovalCurve(
        counts=points.astype(np.int64),
        ranked=ranked,
        random_mean=random.mean(axis=0),
        random_std=random.std(axis=0, ddof=1) if n_random > 1 else np.zeros(len(points)),
        order=list(order),
        metric=str(name),
        ranking=ranking,
        n_random=n_random,
    )


def rank_by_score(names: Sequence[str], scores: NDArray[np.float64]) -> list[str]:
    """``names`` by decreasing score; ties keep the players' order (a stable sort)."""
    return [names[i] for i in np.argsort(-np.asarray(scores), kind="stable")]


def units_before_drop(curve: RemovalCurve, full_value: float, drop: float) -> int:
    """The most units of ``curve.order`` removable with the metric at most ``drop`` below
    ``full_value`` at that count and at every smaller count on the curve."""
    below = np.flatnonzero(curve.ranked < full_value - drop)
    if below.size == 0:
        return int(curve.counts[-1])
    return int(curve.counts[below[0] - 1]) if below[0] > 0 else 0
