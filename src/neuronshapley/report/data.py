"""Figures of training-data valuation: point-removal curves per valuation method (drawn on a
``matplotlib.figure.Figure``; matplotlib, the ``plot`` extra, imported when a figure is drawn).
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from neuronshapley._internal.optional import require

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def removal_curves(
    fractions: Any,
    lowest_first: Mapping[str, Any],
    highest_first: Mapping[str, Any],
    *,
    metric: str = "test accuracy",
) -> "Figure":
    """Two panels: the metric after removing the lowest-valued points first (left) and the
    highest-valued first (right), one line per method; a band of one standard deviation
    where a method's curves are given for several seeds.

    Args:
        fractions: Share of the training points removed at each step, shape ``(n_steps,)``.
        lowest_first: Method -> metric per step, shape ``(n_steps,)`` or ``(n_seeds,
            n_steps)``.
        highest_first: The same for removing the highest-valued points first.
        metric: The y-axis label. Default ``"test accuracy"``.

    Returns:
        A figure with two axes sharing the y axis.
    """
    figure = require("matplotlib.figure", "plot", "removal_curves")
    x = np.asarray(fractions, dtype=np.float64)
    for name, curves in (("lowest_first", lowest_first), ("highest_first", highest_first)):
        for method, curve in curves.items():
            if np.asarray(curve).shape[-1] != len(x):
                raise ValueError(
                    f"The {name!r} curve of {method!r} has {np.asarray(curve).shape[-1]} steps "
                    f"for {len(x)} fractions."
                )
    fig = figure.Figure(figsize=(11.0, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    titles = ("removing the lowest-valued first", "removing the highest-valued first")
    for ax, curves, title in zip(axes, (lowest_first, highest_first), titles, strict=True):
        for method, curve in curves.items():
            runs = np.atleast_2d(np.asarray(curve, dtype=np.float64))
            mean = runs.mean(axis=0)
            style = {"linestyle": "--", "color": "0.4"} if method == "random" else {}
            (line,) = ax.plot(x, mean, marker="o", markersize=3, label=method, **style)
            if len(runs) > 1:
                spread = runs.std(axis=0, ddof=1)
                ax.fill_between(x, mean - spread, mean + spread, color=line.get_color(), alpha=0.12)
        ax.set_title(title)
        ax.set_xlabel("fraction of training points removed")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    axes[1].legend(fontsize="small", loc="lower left")
    return fig


def data_value_histogram(
    values: Any, *, flipped: Any = None, method: str = "", bins: int = 30
) -> "Figure":
    """Histogram of the values of training points; with ``flipped``, the points whose label was
    flipped stacked apart, so that how far they sit in the low tail (what detection scores
    measure) is seen at a glance.

    Args:
        values: One value per training point, shape ``(n_points,)``.
        flipped: Whether each point's label was flipped, shape ``(n_points,)``, or ``None``
            (one histogram). Default ``None``.
        method: The valuation method, for the title. Default ``""``.
        bins: Number of bins. Default 30.

    Returns:
        A figure with one axes.
    """
    figure = require("matplotlib.figure", "plot", "data_value_histogram")
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or not np.isfinite(array).all():
        raise ValueError(
            "The 'values' parameter of data_value_histogram must be a 1-d array of finite "
            f"numbers. Got shape {array.shape} instead."
        )
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(
            f"The 'bins' parameter of data_value_histogram must be an int >= 1. Got {bins!r}."
        )
    mask = np.zeros(len(array), dtype=bool) if flipped is None else np.asarray(flipped, bool)
    if mask.shape != array.shape:
        raise ValueError(
            "The 'flipped' parameter of data_value_histogram must hold one flag per value, "
            f"shape {array.shape}. Got shape {mask.shape} instead."
        )
    fig = figure.Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    edges = np.histogram_bin_edges(array, bins=bins)
    if mask.any():
        ax.hist(
            [array[~mask], array[mask]],
            bins=edges,
            stacked=True,
            color=["tab:blue", "tab:red"],
            label=[f"label kept ({int((~mask).sum())})", f"label flipped ({int(mask.sum())})"],
        )
        ax.legend(fontsize="small")
    else:
        # An edge keeps the bins holding a single point (the interesting tails) visible.
        ax.hist(array, bins=edges, color="tab:blue", edgecolor="tab:blue", linewidth=0.6)
    suffix = f" by {method}" if method else ""
    ax.set_title(f"Values of {len(array)} training points{suffix}")
    ax.set_xlabel("value (higher: more useful to the learner)")
    ax.set_ylabel("training points")
    return fig
