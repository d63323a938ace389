"""Training and test points as every method of this package takes them, checked once."""

from typing import Any

import numpy as np
from numpy.typing import NDArray


def labelled_arrays(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any, owner: str
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """The four arrays, if each split has one label per point (at least one point) and the test
    inputs have the training inputs' shape past the first axis; else a ``ValueError`` naming
    the parameter of ``owner``."""
    x_train, y_train = np.asarray(x_train), np.asarray(y_train)
    x_test, y_test = np.asarray(x_test), np.asarray(y_test)
    for name, what, x, y in (
        ("y_train", "training", x_train, y_train),
        ("y_test", "test", x_test, y_test),
    ):
        n_points, n_labels = _count(x), _count(y)
        if n_points == 0 or n_labels != n_points:
            raise ValueError(
                f"The {name!r} parameter of {owner} must hold one label per {what} point "
                f"({n_points}), at least one. Got {n_labels} instead."
            )
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"The 'x_test' parameter of {owner} must have the training inputs' shape "
            f"{x_train.shape[1:]} past the first axis. Got {x_test.shape[1:]} instead."
        )
    return x_train, y_train, x_test, y_test


def _count(array: NDArray[Any]) -> int:
    return len(array) if array.ndim else 0
