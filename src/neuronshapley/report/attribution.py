"""Heat maps of input-feature attributions: the examples in rows, the input and each method's
attributions in columns (drawn on a ``matplotlib.figure.Figure``; matplotlib imported lazily).
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
