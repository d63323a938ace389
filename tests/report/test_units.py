"""What a unit sees, drawn: extreme examples, a maximising input and the top units per layer."""

import io

import numpy as np
import pytest
import torch

import neuronshapley as ns
from neuronshapley.applications.visualize import Extremes
from neuronshapley.pytorch.data import Split
from neuronshapley.report.units import plot_extremes, plot_layer_distribution, plot_maximized


def _extremes(n: int, k: int) -> Extremes:
    values = np.linspace(1.0, -1.0, n)
    return Extremes("layer:0", np.arange(k), values[:k], np.arange(n)[::-1][:k], values[::-1][:k])


@pytest.mark.parametrize(
    ("shape", "n_axes", "n_images", "n_tables"),
    [
        ((10, 1, 6, 6), 6, 6, 0),
        ((10, 3, 6, 6), 6, 6, 0),
        ((10, 2, 16), 6, 0, 0),
        ((10, 15), 2, 0, 2),
    ],
)
def test_plot_extremes_draws_each_kind_of_data(
    shape: tuple[int, ...], n_axes: int, n_images: int, n_tables: int
) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    split = Split(x, torch.arange(10) % 3)
    fig = plot_extremes(_extremes(10, 3), split, class_names=["a", "b", "c"])
    assert type(fig).__name__ == "Figure"
    assert len(fig.axes) == n_axes
    assert sum(len(ax.images) for ax in fig.axes) == n_images
    assert sum(len(ax.tables) for ax in fig.axes) == n_tables
    if len(shape) == 3:
        assert all(len(ax.lines) == shape[1] for ax in fig.axes)
    if len(shape) == 2:  # example, activation, label and the first 12 features
        assert fig.axes[0].tables[0].get_celld()[(0, 14)].get_text().get_text() == "x11"
    fig.savefig(io.BytesIO(), format="png", dpi=30)  # lays out without a warning


def test_plot_extremes_checks_its_data() -> None:
    split = Split(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="index example 9, but the 'data' parameter holds 4"):
        plot_extremes(_extremes(10, 2), split)
    with pytest.raises(ValueError, match="'feature_names' parameter of plot_extremes"):
        plot_extremes(_extremes(4, 2), split, feature_names=["a"])


@pytest.mark.parametrize(
    ("shape", "n_images", "n_lines"), [((1, 1, 6, 6), 1, 0), ((1, 2, 9), 0, 2), ((1, 5), 0, 0)]
)
def test_plot_maximized(shape: tuple[int, ...], n_images: int, n_lines: int) -> None:
    fig = plot_maximized(torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    (ax,) = fig.axes
    assert len(ax.images) == n_images and len(ax.lines) == n_lines
    if len(shape) == 2:
        assert len(ax.patches) == shape[1]
    with pytest.raises(ValueError, match="'x' parameter of plot_maximized"):
        plot_maximized(torch.zeros(2, 1, 6, 6))


def test_plot_layer_distribution_counts_the_top_units() -> None:
    game = ns.games.sparse_soum(8, n_large=2, n_basis=10, seed=0)
    result = ns.exact_shapley(game)
    layers = ["a", "a", "a", "b", "b", "b", "c", "c"]
    fig = plot_layer_distribution(result, layers, k=3)
    (ax,) = fig.axes
    heights = [int(height) for height in ax.containers[0].datavalues]  # type: ignore[attr-defined]
    expected = [sum(layers[i] == name for i in result.top_indices(3)) for name in "abc"]
    assert heights == expected
