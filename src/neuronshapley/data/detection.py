"""How well data values find bad training points: flipped labels and point removal.

The protocol of OpenDataVal (Jiang et al. 2023, ``opendataval/experiment/exper_methods.py``):
flip the labels of a share of the training points, value every point, and flag the
lowest-valued as noisy; score the flags with F1. Two ways to flag are given here:

- ``f1_at_count``: flag as many points as were flipped (precision = recall = F1 then);
- ``two_means_f1``: OpenDataVal's ``noisy_detection``: the lower cluster of the exact 1-d
  2-means clustering of the values (Gronlund et al. 2017), whatever its size.

``detection_auc`` is the probability that a flipped point is valued below a clean one (ties
count half). ``removal_curve`` values a ``DataGame`` after removing the points in a given order
(highest-valued first should lower the metric faster than random; lowest-valued first should
raise it when the lowest are the noisy ones).
"""

from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import check_float, check_int
from neuronshapley.games.base import Game


def flip_labels(
    labels: Any, fraction: float, *, seed: int = 0, n_classes: int | None = None
) -> tuple[NDArray[Any], NDArray[np.intp]]:
    """Flip ``round(fraction * n)`` labels, chosen without replacement, each to another class
    drawn uniformly (binary labels: the other class).

    Args:
        labels: Integer class labels, one per training point.
        fraction: Share of the points to flip, in [0, 1].
        seed: Seed of the choice of points and of the new classes. Default 0.
        n_classes: Number of classes. Default ``None``: ``labels.max() + 1``.

    Returns:
        The noisy labels (a copy) and the sorted indices of the flipped points.
    """
    owner = "flip_labels"
    y = np.asarray(labels)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(
            f"The 'labels' parameter of {owner} must be a 1-d array of integer class labels. "
            f"Got shape {y.shape} and dtype {y.dtype} instead."
        )
    fraction = float(check_float(fraction, "fraction", owner, low=0.0, high=1.0))  # type: ignore[arg-type]
    classes = int(y.max()) + 1 if n_classes is None else n_classes
    classes = int(check_int(classes, "n_classes", owner, min_value=2))  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(y), size=round(fraction * len(y)), replace=False))
    noisy = y.copy()
    # A shift by 1 .. classes - 1 (mod classes) lands on each other class with equal odds.
    noisy[flipped] = (y[flipped] + rng.integers(1, classes, size=len(flipped))) % classes
    return noisy, flipped


def _flags(n_points: int, indices: Any, name: str, owner: str) -> NDArray[np.bool_]:
    index = np.asarray(indices, dtype=np.intp)
    if index.ndim != 1 or (len(index) and (index.min() < 0 or index.max() >= n_points)):
        raise ValueError(
            f"The {name!r} parameter of {owner} must hold indices of the {n_points} valued points."
        )
    flags = np.zeros(n_points, dtype=bool)
    flags[index] = True
    return flags


def _values(values: Any, owner: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) < 2 or not np.isfinite(array).all():
        raise ValueError(
            f"The 'values' parameter of {owner} must be a 1-d array of at least 2 finite "
            f"numbers. Got shape {array.shape} instead."
        )
    return array


def f1_score(flagged: NDArray[np.bool_], truth: NDArray[np.bool_]) -> float:
    """F1 of boolean flags against the truth (0 when nothing is flagged or true)."""
    hits = float(np.sum(flagged & truth))
    total = float(flagged.sum() + truth.sum())
    return 2.0 * hits / total if total else 0.0


def f1_at_count(values: Any, noisy: Any) -> float:
    """F1 of flagging the ``len(noisy)`` lowest-valued points (ties broken by index)."""
    array = _values(values, "f1_at_count")
    truth = _flags(len(array), noisy, "noisy", "f1_at_count")
    flagged = np.zeros(len(array), dtype=bool)
    flagged[np.argsort(array, kind="stable")[: truth.sum()]] = True
    return f1_score(flagged, truth)


def two_means_lower(values: Any) -> NDArray[np.intp]:
    """Indices of the lower cluster of the exact 2-means clustering of 1-d ``values``.

    The optimal split of the sorted values minimises the within-cluster sum of squares; it is
    found over all ``n - 1`` splits with cumulative sums (O(n log n) for the sort).
    """
    array = _values(values, "two_means_lower")
    order = np.argsort(array, kind="stable")
    v = array[order] - array.mean()  # centred: sums of squares without cancellation
    n = len(v)
    sizes = np.arange(1, n)
    left = np.cumsum(v)[:-1]
    right = v.sum() - left
    # SSE = sum v^2 - left^2 / s - right^2 / (n - s); the first term does not depend on s.
    split = int(np.argmax(left**2 / sizes + right**2 / (n - sizes))) + 1
    return np.sort(order[:split])


def two_means_f1(values: Any, noisy: Any) -> float:
    """F1 of flagging the lower 2-means cluster of the values (OpenDataVal's ``kmeans_f1``)."""
    array = _values(values, "two_means_f1")
    truth = _flags(len(array), noisy, "noisy", "two_means_f1")
    flagged = _flags(len(array), two_means_lower(array), "values", "two_means_f1")
    return f1_score(flagged, truth)


def detection_auc(values: Any, noisy: Any) -> float:
    """Area under the ROC curve of ``-values`` as a score for being noisy (Mann-Whitney)."""
    array = _values(values, "detection_auc")
    truth = _flags(len(array), noisy, "noisy", "detection_auc")
    positives = int(truth.sum())
    if positives in (0, len(array)):
        raise ValueError(
            "The 'noisy' parameter of detection_auc must name some but not all points. "
            f"Got {positives} of {len(array)}."
        )
    # Average ranks of -values (ties share their mean rank).
    _, inverse, counts = np.unique(-array, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    negatives = len(array) - positives
    return float((ranks[truth].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def removal_curve(game: Game, order: Any, counts: Any) -> NDArray[np.float64]:
    """V after removing the first ``c`` players of ``order``, for each ``c`` in ``counts``.

    Args:
        game: A game whose players are the valued points (e.g. a ``DataGame``).
        order: Player indices, first removed first (e.g. ``np.argsort(-values)``).
        counts: Numbers of players removed (each in ``[0, n_players]``).

    Returns:
        One value per count, from one call to ``game.value``.
    """
    owner = "removal_curve"
    n = game.n_players
    ranking = np.asarray(order, dtype=np.intp)
    if ranking.shape != (n,) or not np.array_equal(np.sort(ranking), np.arange(n)):
        raise ValueError(
            f"The 'order' parameter of {owner} must be a permutation of the {n} players."
        )
    steps = np.asarray(counts, dtype=np.intp)
    if steps.ndim != 1 or (steps < 0).any() or (steps > n).any():
        raise ValueError(
            f"The 'counts' parameter of {owner} must be a 1-d array of numbers in [0, {n}]."
        )
    position = np.empty(n, dtype=np.intp)
    position[ranking] = np.arange(n)
    coalitions = position[None, :] >= steps[:, None]
    return np.asarray(game.value(coalitions), dtype=np.float64)
