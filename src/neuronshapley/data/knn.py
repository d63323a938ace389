"""KNN-Shapley: exact Data Shapley of the k-nearest-neighbour utility (Jia et al. 2019).

For one test point ``z`` with label ``y`` and the utility

    U(S) = (1/K) sum_{k=1}^{min(K, |S|)} 1[y_{alpha_k(S)} = y],

``alpha_k(S)`` the k-th nearest point of S to ``z`` (U of the empty set is 0), the Shapley
values follow from the training points sorted by distance, ``alpha_1`` nearest (Jia et al.
2019, Theorem 1):

    s_{alpha_N} = 1[y_{alpha_N} = y] / N,
    s_{alpha_i} = s_{alpha_{i+1}} + (1[y_{alpha_i} = y] - 1[y_{alpha_{i+1}} = y]) / K
                  * min(K, i) / i.

The values for several test points are the mean of each point's values (the utility is the
mean of theirs). O(N log N) per test point, all at once with array operations.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import check_int
from neuronshapley.data.splits import labelled_arrays
from neuronshapley.results import ShapleyResult

OWNER = "knn_shapley"


def _distances(x_test: NDArray[Any], x_train: NDArray[Any], chunk: int = 64) -> NDArray[np.float64]:
    """Squared Euclidean distances, entry by entry (no ``|a|^2 + |b|^2 - 2ab`` rounding), so a
    subset of the training points sees exactly the distances the full set does."""
    a = x_test.reshape(len(x_test), -1).astype(np.float64)
    b = x_train.reshape(len(x_train), -1).astype(np.float64)
    out = np.empty((len(a), len(b)))
    for start in range(0, len(a), chunk):
        block = a[start : start + chunk, None, :] - b[None, :, :]
        out[start : start + chunk] = np.einsum("ijk,ijk->ij", block, block)
    return out


def knn_shapley_matrix(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any, k: int
) -> NDArray[np.float64]:
    """Each test point's KNN-Shapley values, shape ``(n_test, n_train)`` (ties in distance go
    to the lower training index)."""
    x_train, y_train, x_test, y_test = labelled_arrays(x_train, y_train, x_test, y_test, OWNER)
    k = int(check_int(k, "k", OWNER, min_value=1))  # type: ignore[arg-type]
    n = len(x_train)
    order = np.argsort(_distances(x_test, x_train), axis=1, kind="stable")
    match = (y_train[order] == y_test[:, None]).astype(np.float64)  # nearest first
    rank = np.arange(1, n)  # i = 1 .. N-1 (1-based positions of alpha_i)
    steps = (match[:, :-1] - match[:, 1:]) / k * np.minimum(k, rank) / rank
    sorted_values = np.empty_like(match)
    sorted_values[:, -1] = match[:, -1] / n
    # s_i = s_N + sum_{j=i}^{N-1} steps_j: a cumulative sum from the far end.
    sorted_values[:, :-1] = sorted_values[:, -1:] + np.cumsum(steps[:, ::-1], axis=1)[:, ::-1]
    values = np.empty_like(sorted_values)
    np.put_along_axis(values, order, sorted_values, axis=1)
    return values


def knn_shapley(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any, *, k: int = 5
) -> ShapleyResult:
    """Exact KNN-Shapley values of the training points (Jia et al. 2019, Theorem 1).

    Args:
        x_train: Training inputs, first axis the points (flattened for distances).
        y_train: Training labels.
        x_test: Test inputs.
        y_test: Test labels.
        k: Neighbours K. Default 5.

    Returns:
        A ``ShapleyResult`` of exact values (no intervals), ``estimator="knn_shapley"``. They
        sum to ``U(N)`` (efficiency, ``U(empty) = 0``).
    """
    matrix = knn_shapley_matrix(x_train, y_train, x_test, y_test, k)
    names = [f"train:{i}" for i in range(matrix.shape[1])]
    return ShapleyResult.from_values(
        matrix.mean(axis=0), names, estimator="knn_shapley", params={"k": int(k)}
    )


def knn_utility(
    k: int,
) -> tuple[Callable[[Any, Any], Callable[[Any], Any]], Callable[[Any, Any], float]]:
    """The ``fit`` and ``metric`` that make a ``DataGame`` the KNN utility ``U`` above.

    Use with ``degenerate="fit"`` and ``empty_value=0.0`` (``U(empty) = 0``); the game's
    Shapley values are then ``knn_shapley``'s.
    """
    k = int(check_int(k, "k", "knn_utility", min_value=1))  # type: ignore[arg-type]

    def fit(x: Any, y: Any) -> Callable[[Any], Any]:
        x, y = np.asarray(x), np.asarray(y)

        def neighbour_labels(x_test: Any) -> Any:
            order = np.argsort(_distances(np.asarray(x_test), x), axis=1, kind="stable")
            return y[order[:, :k]]

        return neighbour_labels

    def metric(y_true: Any, neighbour_labels: Any) -> float:
        hits = np.asarray(neighbour_labels) == np.asarray(y_true)[:, None]
        return float(np.mean(hits.sum(axis=1) / k))

    return fit, metric
