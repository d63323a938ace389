"""What a unit sees, drawn: its most and least activating examples, an input that maximises it.

The figure 1 of Ghorbani & Zou (2020), from what :mod:`neuronshapley.applications.visualize`
computes: :func:`plot_extremes` draws the examples of
:func:`~neuronshapley.applications.visualize.extreme_examples`, :func:`plot_maximized` an input
from :func:`~neuronshapley.applications.visualize.maximize_activation`, and
:func:`plot_layer_distribution` how many of the top-k units each layer holds. Figures are built
with the object API (no pyplot); matplotlib, the ``plot`` extra, is imported when one is drawn.
"""

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from neuronshapley._internal.optional import require
from neuronshapley.pytorch.data import as_split
from neuronshapley.report.plots import layer_counts

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from neuronshapley.applications.visualize import Extremes
    from neuronshapley.results.result import ShapleyResult

_MAX_FEATURES = 12  # columns of a tabular example shown in plot_extremes


def plot_extremes(
    extremes: "Extremes",
    data: Any,
    *,
    feature_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> "Figure":
    """The most and least activating examples of a unit (paper, figure 1 top).

    Images ``(n, C, H, W)`` are drawn as images and signals ``(n, C, L)`` as line plots, in a
    grid with the most activating examples on the top row and the least activating ones on the
    bottom row, each titled with its activation and label. Tabular rows ``(n, D)`` are drawn as
    two tables (most, then least activating) of their first 12 features.

    Args:
        extremes: The result of
            :func:`~neuronshapley.applications.visualize.extreme_examples`.
        data: The examples the indices refer to (the ``data`` given to ``extreme_examples``,
            or the game's ``game.data``): a Split or a tuple ``(x, y)``.
        feature_names: Column names of tabular data. Default ``x0, x1, ...``.
        class_names: Name of each class id, for the titles. Default: the ids.

    Returns:
        A figure: for images and signals ``2 * k`` axes (row-major, top row first), for tabular
        data 2 axes each holding a table.
    """
    owner = "plot_extremes"
    split = as_split(data, "data", owner)
    n = len(split)
    for name in ("indices_top", "indices_bottom"):
        indices = np.asarray(getattr(extremes, name))
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise ValueError(
                f"The extremes passed to {owner} index example {int(indices.max())}, but the "
                f"'data' parameter holds {n} examples: pass the data the extremes were found on."
            )
    x = split.x.detach().cpu()
    if x.dim() not in (2, 3, 4):
        raise ValueError(
            f"The 'data' parameter of {owner} must hold vectors (n, D), signals (n, C, L) or "
            f"images (n, C, H, W). Got inputs of shape {tuple(x.shape)}."
        )
    rows = [
        ("most active", extremes.indices_top, extremes.values_top),
        ("least active", extremes.indices_bottom, extremes.values_bottom),
    ]

    def label(i: int) -> str:
        y = int(split.y[i])
        return class_names[y] if class_names is not None and 0 <= y < len(class_names) else str(y)

    figure = require("matplotlib.figure", "plot", "plots")
    if x.dim() == 2:
        return _tables(figure, extremes.unit, x, rows, label, feature_names, owner)
    k = max(len(extremes.indices_top), len(extremes.indices_bottom), 1)
    fig = figure.Figure(figsize=(min(1.6 * k + 0.8, 16.0), 4.2), layout="constrained")
    grid = fig.subplots(2, k, squeeze=False)
    for row, (name, indices, values) in enumerate(rows):
        for column in range(k):
            ax = grid[row, column]
            if column >= len(indices):
                ax.set_axis_off()
                continue
            i = int(indices[column])
            if x.dim() == 4:
                _draw_image(ax, x[i])
            else:
                _draw_signal(ax, x[i])
            ax.set_title(f"{float(values[column]):.3g}\ny={label(i)}", fontsize=8)
            if column == 0:
                ax.set_ylabel(name)
    fig.suptitle(f"Examples that activate {extremes.unit} the most (top) and least (bottom)")
    return fig


def plot_maximized(x: torch.Tensor, *, title: str | None = None) -> "Figure":
    """An input that maximises a unit, drawn as an image, a line plot or a bar chart.

    The input comes from :func:`~neuronshapley.applications.visualize.maximize_activation`.

    Args:
        x: Shape ``(1, C, H, W)`` (drawn as an image), ``(1, C, L)`` (one line per channel) or
            ``(1, D)`` (one bar per feature).
        title: Title of the axes. Default ``"Input maximising the unit"``.

    Returns:
        A figure with one axes.
    """
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3, 4) or x.shape[0] != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"The 'x' parameter of plot_maximized must be a tensor of one example, shape "
            f"(1, C, H, W), (1, C, L) or (1, D), as maximize_activation returns. Got {shape}."
        )
    example = x[0].detach().cpu()
    figure = require("matplotlib.figure", "plot", "plots")
    fig = figure.Figure(figsize=(4.0, 4.0) if example.dim() == 3 else (6.4, 3.2))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    if example.dim() == 3:
        _draw_image(ax, example)
    elif example.dim() == 2:
        _draw_signal(ax, example, ticks=True)
        ax.set_xlabel("position")
    else:
        ax.bar(range(len(example)), example.double().numpy())
        ax.set_xlabel("feature")
    ax.set_title(title if title is not None else "Input maximising the unit")
    return fig


def plot_layer_distribution(result: "ShapleyResult", layers: Sequence[str], k: int) -> "Figure":
    """How many of the ``k`` units with the largest values each layer holds (figure 1 bottom).

    The same bar chart as :func:`neuronshapley.report.plots.layer_counts`.

    Args:
        result: The Shapley values of a run.
        layers: The layer of every player, e.g. ``game.unit_layers``.
        k: Size of the top set.
    """
    return layer_counts(result, layers, k)


# -- drawing helpers ---------------------------------------------------------------------------


def _draw_image(ax: "Axes", image: torch.Tensor) -> None:
    """``(C, H, W)``: grey for one channel, RGB for three, the channel mean otherwise."""
    values = image.double()
    if values.shape[0] == 3:
        low, high = values.min(), values.max()
        rgb = (values - low) / (high - low) if high > low else torch.zeros_like(values)
        ax.imshow(rgb.permute(1, 2, 0).numpy())
    else:
        ax.imshow(values.mean(dim=0).numpy(), cmap="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_signal(ax: "Axes", signal: torch.Tensor, *, ticks: bool = False) -> None:
    """``(C, L)``: one line per channel."""
    for channel in signal.double():
        ax.plot(channel.numpy(), linewidth=1.0)
    if not ticks:
        ax.set_xticks([])
        ax.tick_params(labelsize=6)


def _tables(
    figure: Any,
    unit: str,
    x: torch.Tensor,
    rows: list[tuple[str, NDArray[np.intp], NDArray[np.float64]]],
    label: Callable[[int], str],
    feature_names: Sequence[str] | None,
    owner: str,
) -> "Figure":
    n_features = x.shape[1]
    if feature_names is not None and (
        isinstance(feature_names, str) or len(feature_names) != n_features
    ):
        raise ValueError(
            f"The 'feature_names' parameter of {owner} must name each of the {n_features} "
            f"features. Got {feature_names!r} instead."
        )
    names = (
        list(feature_names) if feature_names is not None else [f"x{j}" for j in range(n_features)]
    )
    shown = min(n_features, _MAX_FEATURES)
    columns = ["example", "activation", "label", *names[:shown]]
    k = max(len(rows[0][1]), len(rows[1][1]), 1)
    fig = figure.Figure(
        figsize=(min(1.0 + 0.9 * len(columns), 16.0), 1.6 + 0.5 * k), layout="constrained"
    )
    for position, (name, indices, values) in enumerate(rows):
        ax = fig.add_subplot(2, 1, position + 1)
        ax.set_axis_off()
        ax.set_title(f"{name}", fontsize=9)
        cells = [
            [str(int(i)), f"{float(v):.3g}", label(int(i))]
            + [f"{float(x[int(i), j]):.3g}" for j in range(shown)]
            for i, v in zip(indices, values, strict=True)
        ]
        if cells:
            table = ax.table(cellText=cells, colLabels=columns, loc="center")
            table.auto_set_font_size(False)
            table.set_fontsize(7)
    fig.suptitle(f"Examples that activate {unit} the most and least")
    return fig
