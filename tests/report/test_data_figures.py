"""The point-removal figure of training-data valuation."""

import numpy as np
import pytest

from neuronshapley.report.data import data_value_histogram, removal_curves


def test_removal_curves_draws_one_line_per_method_and_a_band_for_seeds() -> None:
    fractions = np.linspace(0, 0.5, 6)
    lowest = {
        "tmc": np.linspace(0.80, 0.84, 6) + np.array([[0.0], [0.01], [-0.01]]),
        "random": np.full(6, 0.8),
    }
    highest = {"tmc": np.linspace(0.80, 0.60, 6), "random": np.full(6, 0.8)}
    fig = removal_curves(fractions, lowest, highest)
    left, right = fig.axes
    assert [line.get_label() for line in left.lines] == ["tmc", "random"]
    assert np.allclose(left.lines[0].get_ydata(), np.linspace(0.80, 0.84, 6))
    assert len(left.collections) == 1 and len(right.collections) == 0  # band only with seeds
    assert right.get_title() == "removing the highest-valued first"


def test_removal_curves_refuses_a_curve_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match=r"'highest_first' curve of 'tmc' has 3 steps for 6"):
        removal_curves(np.linspace(0, 0.5, 6), {}, {"tmc": np.zeros(3)})


def test_value_histogram_stacks_the_flipped_points_apart() -> None:
    values = np.array([-0.2, -0.1, 0.0, 0.1, 0.2, 0.3])
    flipped = np.array([True, True, False, False, False, False])
    fig = data_value_histogram(values, flipped=flipped, method="knn", bins=3)
    (ax,) = fig.axes
    heights = [round(patch.get_height()) for patch in ax.patches]
    # Three bins of two values each; the stacked red bars hold the two flipped (lowest) ones.
    assert heights == [0, 2, 2, 2, 0, 0]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "label kept (4)",
        "label flipped (2)",
    ]
    assert ax.get_title() == "Values of 6 training points by knn"
    (plain,) = data_value_histogram(values).axes
    assert plain.get_legend() is None and sum(p.get_height() for p in plain.patches) == 6


def test_value_histogram_refuses_flags_of_another_length() -> None:
    with pytest.raises(ValueError, match=r"one flag per value, shape \(3,\). Got shape \(2,\)"):
        data_value_histogram(np.zeros(3), flipped=np.zeros(2, dtype=bool))
