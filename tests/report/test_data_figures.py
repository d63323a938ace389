"""The point-removal figure of training-data valuation."""

import numpy as np
import pytest

from neuronshapley.report.data import removal_curves


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
