"""Figures of pairwise interactions: the heat map of an ``InteractionResult`` and removal orders.

Object API, no pyplot; matplotlib (the ``plot`` extra) is imported when a figure is drawn.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from neuronshapley.applications.interactions import RemovalOrder
from neuronshapley.report.plots import FIGSIZE, _figure
from neuronshapley.results.interactions import InteractionResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_interaction_matrix(result: InteractionResult, *, title: str | None = None) -> "Figure":
    """Heat map of the pairwise interactions, blue for redundant pairs and red for synergistic.

    The colour scale is symmetric around 0; the diagonal (no index) is blank. A dot marks each
    pair whose interval (``result.interval`` says which) excludes 0.

    Args:
        result: The interactions to draw.
        title: The title. Default: the estimator and its budget.

    Returns:
        A square figure with one axes and a colour bar.
    """
    m = result.n_players
    side = min(max(FIGSIZE[1], 0.32 * m + 1.5), 14.0)
    fig, ax = _figure((side + 1.2, side))
    values = np.array(result.values, dtype=np.float64)
    np.fill_diagonal(values, np.nan)
    limit = float(np.nanmax(np.abs(values))) if m > 1 else 1.0
    limit = limit if limit > 0 else 1.0
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
    fig.colorbar(image, ax=ax, shrink=0.8, label="Shapley interaction index")
    low, high = np.asarray(result.ci_low), np.asarray(result.ci_high)
    with np.errstate(invalid="ignore"):
        significant = (low > 0) | (high < 0)
    np.fill_diagonal(significant, False)
    rows, cols = np.nonzero(significant)
    if len(rows):
        ax.scatter(cols, rows, s=6, color="black", label="interval excludes 0")
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.12), fontsize="small", frameon=False)
    ax.set_xticks(range(m), result.player_names, rotation=90, fontsize="small")
    ax.set_yticks(range(m), result.player_names, fontsize="small")
    budget = f"{result.n_evaluations:,} evaluations"
    ax.set_title(title or f"Pairwise interactions ({result.estimator}, {budget})")
    return fig


def plot_removal_orders(
    orders: Sequence[RemovalOrder], *, metric: str = "value", title: str | None = None
) -> "Figure":
    """The game's value as units are removed, one line per removal order.

    Args:
        orders: The removal orders (each with its values after 0, 1, ... removals).
        metric: The name of the game's value, for the axis. Default ``"value"``.
        title: The title. Default: ``"<metric> as units are removed"``.

    Returns:
        A figure with one axes.
    """
    fig, ax = _figure(FIGSIZE)
    for order in orders:
        ax.plot(np.arange(len(order.values)), order.values, marker=".", label=order.rule)
    ax.set_xlabel("Units removed")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} as units are removed")
    ax.legend(fontsize="small")
    return fig
