"""KNN-Shapley's closed form (Jia et al. 2019, Theorem 1) against enumeration of its utility."""

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley.data import DataGame, knn_shapley
from neuronshapley.data.knn import knn_utility


@pytest.mark.parametrize(("k", "n_classes"), [(1, 2), (3, 3), (5, 2)])
def test_the_closed_form_equals_exact_shapley_of_the_knn_utility(k, n_classes) -> None:
    rng = np.random.default_rng(k)
    x, y = rng.normal(size=(9, 4)), rng.integers(0, n_classes, 9)
    x_test, y_test = rng.normal(size=(7, 4)), rng.integers(0, n_classes, 7)
    fit, metric = knn_utility(k)
    game = DataGame(x, y, x_test, y_test, fit=fit, metric=metric, degenerate="fit", empty_value=0.0)
    enumerated = ns.exact_shapley(game)  # 2^9 fits
    closed = knn_shapley(x, y, x_test, y_test, k=k)
    # Both are sums of the same rationals in float64: agreement to rounding.
    np.testing.assert_allclose(closed.values, enumerated.values, rtol=0, atol=1e-12)


def test_knn_shapley_is_efficient() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(300, 5)), rng.integers(0, 3, 300)
    x_test, y_test = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
    fit, metric = knn_utility(5)
    utility = metric(y_test, fit(x, y)(x_test))
    assert knn_shapley(x, y, x_test, y_test, k=5).values.sum() == pytest.approx(utility, abs=1e-12)


def test_bad_input_is_named() -> None:
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="'k' parameter of knn_shapley"):
        knn_shapley(x, [0, 1, 0, 1], x, [0, 1, 0, 1], k=0)
    with pytest.raises(ValueError, match=r"'x_test' parameter of knn_shapley .*\(2,\).*\(3,\)"):
        knn_shapley(x, [0, 1, 0, 1], np.zeros((2, 3)), [0, 1], k=1)
    with pytest.raises(ValueError, match="'y_train' parameter of knn_shapley"):
        knn_shapley(x, [0, 1], x, [0, 1, 0, 1], k=1)
