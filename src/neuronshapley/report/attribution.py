"""Figures of input-feature attributions (drawn on a ``matplotlib.figure.Figure``; matplotlib
imported lazily): heat maps with the examples in rows and the input and each method's
attributions in columns, and each method's error against its cost in network evaluations.
"""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from neuronshapley._internal.optional import require

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _as_image(array: np.ndarray) -> np.ndarray:
    """A 2-d picture of one example's features: images (summed over channels) stay images,
    sequences and tabular rows become one row."""
    if array.ndim >= 2:
        return array.reshape(-1, *array.shape[-2:]).sum(axis=0)
    return array.reshape(1, -1)


def heatmap_grid(
    inputs: np.ndarray,
    maps: Mapping[str, np.ndarray],
    row_titles: Sequence[str] | None = None,
) -> "Figure":
    """The inputs (grey) and each method's attributions (red positive, blue negative).

    Each attribution map has its own symmetric colour scale (its largest magnitude), so methods
    on different scales (gradients, Shapley values) compare by pattern, not by size.

    Args:
        inputs: The examples, ``(n, *x.shape)``.
        maps: Method name -> attributions per feature, ``(n, *x.shape)`` each.
        row_titles: A label per example (e.g. "#3, class 7"). Default ``None``.

    Returns:
        A figure with ``n`` rows and ``1 + len(maps)`` columns.
    """
    figure_module: Any = require("matplotlib.figure", "plot", "heat maps")
    n, columns = len(inputs), 1 + len(maps)
    fig = figure_module.Figure(figsize=(1.6 * columns, 1.6 * n + 0.4), layout="constrained")
    axes = np.asarray(fig.subplots(n, columns, squeeze=False))
    for i in range(n):
        axes[i, 0].imshow(_as_image(np.asarray(inputs[i])), cmap="gray", aspect="auto")
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=8)
        for j, (name, values) in enumerate(maps.items(), start=1):
            picture = _as_image(np.asarray(values[i], dtype=np.float64))
            limit = float(np.abs(picture).max()) or 1.0
            axes[i, j].imshow(picture, cmap="bwr", vmin=-limit, vmax=limit, aspect="auto")
            if i == 0:
                axes[i, j].set_title(name, fontsize=9)
    axes[0, 0].set_title("input", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def convergence_plot(
    curves: Mapping[str, Mapping[str, Sequence[tuple[float, float, float]]]],
    reference: str = "reference",
) -> "Figure":
    """Error of each attribution method against its cost, one row of panels per model.

    Left: RMSE against the reference (log-log); right: Spearman rank correlation (log x).
    Methods with several settings (DASP's sizes, sampling budgets) are lines with markers;
    single-setting methods (the gradient family) are lone markers.

    Args:
        curves: Model name -> method name -> ``(evaluations, rmse, spearman)`` per setting,
            sorted by evaluations.
        reference: What the errors are measured against, for the axis labels.

    Returns:
        A figure with ``len(curves)`` rows and two columns.
    """
    figure_module: Any = require("matplotlib.figure", "plot", "convergence plots")
    fig = figure_module.Figure(figsize=(11, 4 * len(curves) + 0.4), layout="constrained")
    axes = np.asarray(fig.subplots(len(curves), 2, squeeze=False))
    for row, (model, methods) in enumerate(curves.items()):
        rmse_axis, rho_axis = axes[row]
        for i, (method, points) in enumerate(methods.items()):
            array = np.asarray(points, dtype=np.float64).reshape(-1, 3)
            style = {
                "color": f"C{i % 10}",
                "marker": "os^vD<>ph*"[i % 10],
                "markersize": 4 if len(array) > 1 else 7,
                "linestyle": "-" if len(array) > 1 else "none",
                "label": method,
            }
            rmse_axis.plot(array[:, 0], array[:, 1], **style)
            rho_axis.plot(array[:, 0], array[:, 2], **style)
        rmse_axis.set_yscale("log")
        rmse_axis.set_ylabel(f"RMSE vs {reference}")
        rho_axis.set_ylabel(f"Spearman vs {reference}")
        for axis in (rmse_axis, rho_axis):
            axis.set_xscale("log")
            axis.set_xlabel("network evaluations")
            axis.set_title(model, fontsize=10)
            axis.grid(alpha=0.3)
        rho_axis.legend(fontsize=7, loc="lower right")
    return fig
