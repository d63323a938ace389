"""Removal curves: the metric after removing the top-ranked units versus random ones."""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


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
