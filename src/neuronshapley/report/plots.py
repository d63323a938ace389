"""Plots of a Neuron Shapley run, drawn on ``matplotlib.figure.Figure`` objects.

matplotlib (the ``plot`` extra) is imported inside the functions, never at import time. The
figures are built with the object-oriented API, without pyplot: no global state, no backend to
choose, nothing to close; they work headless and are freed when the last reference goes. Save
one with ``fig.savefig(path, dpi=...)``.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import numpy as np

from neuronshapley._internal.optional import require
from neuronshapley._internal.validation import check_int
from neuronshapley.applications.removal import RemovalCurve
from neuronshapley.report.tables import check_layers
from neuronshapley.results.result import ShapleyResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGSIZE = (6.4, 4.0)
_JITTER_SEED = 0  # the strip plot's jitter is the same on every call


def value_histogram(
    result: ShapleyResult, *, bins: int = 50, highlight_top: int | None = None
) -> "Figure":
    """Histogram of the Shapley values of all units.

    A few large values and a mass near zero is the shape Ghorbani & Zou (2020) report: a small
    set of units is responsible for most of the performance.

    Args:
        result: The Shapley values of a run.
        bins: Number of histogram bins. Default 50.
        highlight_top: If an int ``k``, a vertical line marks the ``k``-th largest value (the
            threshold of the top ``k``). Default ``None`` (no line).

    Returns:
        A figure with one axes.
    """
    owner = "value_histogram"
    n_bins = cast(int, check_int(bins, "bins", owner, min_value=1))
    k = check_int(highlight_top, "highlight_top", owner, min_value=1, allow_none=True)
    fig, ax = _figure()
    # An edge keeps the bins holding a single unit (the interesting tail) visible.
    ax.hist(result.values, bins=n_bins, color="tab:blue", edgecolor="tab:blue", linewidth=0.6)
    if k is not None:
        threshold = float(result.values[result.top_indices(k)[-1]])
        ax.axvline(
            threshold, color="tab:red", linestyle="--", label=f"top {k} threshold ({threshold:.4g})"
        )
        ax.legend()
    ax.set_title(f"Distribution of Shapley values ({result.n_players} units)")
    ax.set_xlabel("Shapley value")
    ax.set_ylabel("Number of units")
    return fig


def values_by_layer(
    result: ShapleyResult, layers: Sequence[str] | None = None, *, top: int | None = 10
) -> "Figure":
    """Strip plot of the Shapley values of each layer's units.

    Args:
        result: The Shapley values of a run.
        layers: ``layers[i]`` is the layer of player ``i``; one per player. Default ``None``:
            the groups the result carries. Layers are shown in
            order of first appearance.
        top: Mark the ``top`` units with the largest values. Default 10; ``None`` or 0 marks
            none.

    Returns:
        A figure with one axes: ``collections[0]`` holds every unit, ``collections[1]`` (if
        ``top``) the marked ones.
    """
    owner = "values_by_layer"
    layers = check_layers(layers, result, owner)
    k = check_int(top, "top", owner, min_value=0, allow_none=True)
    names = list(dict.fromkeys(layers))
    position = {name: index for index, name in enumerate(names)}
    rng = np.random.default_rng(_JITTER_SEED)
    x = np.array([position[layer] for layer in layers], dtype=np.float64)
    x += rng.uniform(-0.3, 0.3, size=x.size)
    fig, ax = _figure(_width_for(len(names)))
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    ax.scatter(x, result.values, s=12, color="tab:blue", alpha=0.6, label="unit")
    if k:
        best = result.top_indices(k)
        ax.scatter(
            x[best],
            result.values[best],
            s=36,
            marker="*",
            color="tab:red",
            zorder=3,
            label=f"top {len(best)}",
        )
        ax.legend()
    _layer_ticks(ax, names)
    ax.set_title("Shapley values by layer")
    ax.set_xlabel("Layer")
    ax.set_ylabel("Shapley value")
    return fig


def removal_plot(curve: RemovalCurve) -> "Figure":
    """The metric as units are removed: ranked units against random ones (paper, figure 2).

    Args:
        curve: The removal curve to draw.

    Returns:
        A figure with one axes: ``lines[0]`` the ranked curve, ``lines[1]`` the random mean, a
        band of one standard deviation around it if ``curve.n_random > 1``, and a dotted line at
        the metric with ``counts[0]`` units removed.
    """
    counts = np.asarray(curve.counts)
    for name in ("ranked", "random_mean", "random_std"):
        if np.shape(getattr(curve, name)) != counts.shape:
            raise ValueError(
                f"The curve passed to removal_plot must have one {name!r} value per count: "
                f"expected shape {counts.shape}, got {np.shape(getattr(curve, name))}."
            )
    mean = np.asarray(curve.random_mean)
    std = np.asarray(curve.random_std)
    fig, ax = _figure()
    ax.plot(counts, curve.ranked, marker="o", color="tab:red", label=curve.ranking)
    ax.plot(
        counts,
        mean,
        marker="s",
        markersize=4,
        color="tab:gray",
        label=f"random ({curve.n_random} draws)",
    )
    if curve.n_random > 1:
        ax.fill_between(counts, mean - std, mean + std, color="tab:gray", alpha=0.25, linewidth=0)
    if counts.size:
        ax.axhline(float(curve.ranked[0]), color="black", linestyle=":", linewidth=1.0)
    ax.set_title(f"{curve.metric} as units are removed")
    ax.set_xlabel("Number of units removed")
    ax.set_ylabel(curve.metric)
    ax.legend()
    return fig


def layer_counts(
    result: ShapleyResult, layers: Sequence[str] | None = None, k: int = 10
) -> "Figure":
    """Bar chart of how many of the top ``k`` units each layer holds (paper, figure 1 bottom).

    Args:
        result: The Shapley values of a run.
        layers: ``layers[i]`` is the layer of player ``i``; one per player. Default ``None``:
            the groups the result carries. Every layer gets a
            bar (possibly empty), in order of first appearance.
        k: Size of the top set (at most the number of players is used).

    Returns:
        A figure with one axes holding one bar per layer.
    """
    owner = "layer_counts"
    layers = check_layers(layers, result, owner)
    k = cast(int, check_int(k, "k", owner, min_value=1))
    names = list(dict.fromkeys(layers))
    best = result.top_indices(k)
    counts = [0] * len(names)
    index = {name: i for i, name in enumerate(names)}
    for i in best:
        counts[index[layers[i]]] += 1
    fig, ax = _figure(_width_for(len(names)))
    bars = ax.bar(range(len(names)), counts, color="tab:blue")
    ax.bar_label(bars)
    ticker = require("matplotlib.ticker", "plot", "plots")
    ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    _layer_ticks(ax, names)
    ax.set_title(f"Top {len(best)} units by layer")
    ax.set_xlabel("Layer")
    ax.set_ylabel(f"Units in the top {len(best)}")
    return fig


def _figure(size: tuple[float, float] = FIGSIZE) -> tuple["Figure", "Axes"]:
    figure = require("matplotlib.figure", "plot", "plots")
    # Constrained layout instead of tight_layout: it never warns (pytest treats warnings as
    # errors) and keeps long tick labels inside the figure.
    fig = figure.Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _width_for(n_layers: int) -> tuple[float, float]:
    """Figure size with room for ``n_layers`` tick labels (capped at 16 inches wide)."""
    return (min(max(FIGSIZE[0], 0.45 * n_layers), 16.0), FIGSIZE[1])


def _layer_ticks(ax: "Axes", names: list[str]) -> None:
    crowded = len(names) > 4 or max((len(name) for name in names), default=0) > 10
    if crowded:
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    else:
        ax.set_xticks(range(len(names)), names)
