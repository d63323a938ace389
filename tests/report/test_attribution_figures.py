"""The figures of input-feature attribution: heat maps and error against cost."""

import numpy as np

from neuronshapley.report.attribution import convergence_plot, heatmap_grid


def test_convergence_plot_draws_curves_and_single_points_per_model() -> None:
    curves = {
        "digits-cnn": {
            "DASP": [(512.0, 0.2, 0.9), (16384.0, 0.08, 0.99)],
            "IG": [(52.0, 0.25, 0.95)],
        },
        "mnist1d-cnn": {"DASP": [(320.0, 0.15, 0.89)]},
    }
    fig = convergence_plot(curves, reference="exact")
    assert len(fig.axes) == 4
    rmse, rho = fig.axes[0], fig.axes[1]
    assert rmse.get_xscale() == "log" and rmse.get_yscale() == "log"
    assert rho.get_xscale() == "log" and rho.get_ylabel() == "Spearman vs exact"
    dasp, ig = rho.lines
    assert dasp.get_label() == "DASP" and dasp.get_linestyle() == "-"
    assert np.allclose(dasp.get_xdata(), [512, 16384]) and np.allclose(
        dasp.get_ydata(), [0.9, 0.99]
    )
    assert ig.get_linestyle() == "None" and np.allclose(ig.get_ydata(), [0.95])
    assert fig.axes[2].get_title() == "mnist1d-cnn"


def test_heatmap_grid_has_a_column_per_method_and_a_row_per_example() -> None:
    inputs = np.zeros((2, 1, 8, 8))
    maps = {"reference": np.ones((2, 1, 8, 8)), "DASP": -np.ones((2, 1, 8, 8))}
    fig = heatmap_grid(inputs, maps, row_titles=["#0", "#1"])
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[:3]] == ["input", "reference", "DASP"]
