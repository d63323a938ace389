"""Data-OOB: a training point's value is how often the bagged models that never saw it get it
right (Kwon & Zou, "Data-OOB: Out-of-bag Estimate as a Simple and Efficient Data Value",
ICML 2023, eq. 3).

For ``B`` bootstrap samples of the ``n`` training points (``n`` draws with replacement each)
and the model ``f_b`` fitted on sample ``b``, with ``w_bi`` the number of times point i was
drawn into sample ``b``:

    psi_i = sum_b 1[w_bi = 0] T(y_i, f_b(x_i)) / sum_b 1[w_bi = 0],   T(y, y') = 1[y = y'],

the mean correctness of point i over the models it was out of bag for. A mislabelled point is
predicted by its neighbours' labels, so it scores low. No test set is used.

Why our own loop rather than scikit-learn's ``BaggingClassifier``: the learner may be a
``fit(x, y) -> predict`` callable as in ``DataGame``, a bootstrap sample holding one class
must not crash a learner that refuses one class (it predicts that class, ``DataGame``'s rule),
and the draws follow a documented rule (``bootstrap_sample``) so a result can be checked by
hand. Each sample's out-of-bag set is one ``bincount`` and its scoring one array operation;
the ``B`` fits are a loop, and the memory is O(n), not O(B n).
"""

import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import check_float, check_int
from neuronshapley.results import ShapleyResult, confidence_halfwidth

OWNER = "data_oob"
# OpenDataVal's DataOob default (num_models=1000); the paper's random forests are this size.
DEFAULT_MODELS = 1000


def bootstrap_sample(n_points: int, seed: int, model: int) -> tuple[NDArray[np.int64], int]:
    """Model ``model``'s bootstrap sample in ``data_oob`` and its learner seed, both from
    ``rng = numpy.random.default_rng([seed, model])``: ``rng.integers(0, n_points, n_points)``
    (the indices drawn, with replacement), then ``rng.integers(0, 2**31 - 1)``.

    One generator per model: the first B samples do not depend on how many models are drawn
    (a run with more models extends one with fewer), and nothing of size B x n is held.
    """
    rng = np.random.default_rng([seed, model])
    return rng.integers(0, n_points, size=n_points), int(rng.integers(0, 2**31 - 1))


def data_oob(
    x_train: Any,
    y_train: Any,
    *,
    fit: Any = None,
    n_models: int = DEFAULT_MODELS,
    seed: int = 0,
    delta: float = 0.05,
) -> ShapleyResult:
    """Data-OOB values of the training points of a classifier (Kwon & Zou 2023, eq. 3).

    Model ``b`` is fitted on ``bootstrap_sample(n, seed, b)``; point i's value is the share of
    the models it was out of bag for that predict ``y_i``.
    A sample whose points all have one label is the constant predictor of that label (no fit).

    Args:
        x_train: Training inputs, first axis the points.
        y_train: Class labels, one per point (not floats: regression is not built).
        fit: A scikit-learn-style classifier (cloned per model; a ``random_state`` left at
            ``None`` is set per model from ``seed``, so runs repeat) or a callable
            ``fit(x, y) -> predict`` with ``predict(x) -> labels``. Default ``None``: a
            decision tree with ``max_features="sqrt"`` per model, i.e. the random forest of the
            paper.
        n_models: Bootstrap models B. Default 1000 (OpenDataVal's default). Each point is out
            of bag for about 0.37 B of them; with small B some point may be out of bag for
            none, which is an error.
        seed: Seed of the bootstrap draws and the per-model learner seeds. Default 0.
        delta: Failure probability of each point's interval. Default 0.05.

    Returns:
        A ``ShapleyResult`` (``estimator="data_oob"``): values in [0, 1]; ``n_samples`` the
        number of models each point was out of bag for; ``stderr`` and an empirical Bernstein
        interval (range 1) for the expectation over bootstrap draws, for which the
        out-of-bag correctness values of one point are i.i.d. given that it is out of bag;
        ``n_evaluations`` the models fitted; ``diagnostics["constant_bags"]`` the samples of
        one class.

    Raises:
        ValueError: Bad input, or a point out of bag for none of the models (its count and
            the first indices are named; raise ``n_models``).
    """
    n_models = int(check_int(n_models, "n_models", OWNER, min_value=1))  # type: ignore[arg-type]
    seed = int(check_int(seed, "seed", OWNER, min_value=0))  # type: ignore[arg-type]
    delta = float(
        check_float(delta, "delta", OWNER, low=0.0, high=1.0, include_low=False, include_high=False)  # type: ignore[arg-type]
    )
    x, y = _check_data(x_train, y_train)
    learner = _learner(fit)
    n = len(x)
    started = time.perf_counter()
    # Count each point's out-of-bag models before any fit (a point never out of bag is an
    # error that should not cost the fits); the samples are drawn again below rather than
    # held, which costs microseconds per model against a fit.
    oob_count = np.zeros(n, dtype=np.int64)
    for b in range(n_models):
        oob_count += np.bincount(bootstrap_sample(n, seed, b)[0], minlength=n) == 0
    never = np.flatnonzero(oob_count == 0)
    if len(never):
        shown = ", ".join(str(i) for i in never[:5]) + (", ..." if len(never) > 5 else "")
        raise ValueError(
            f"The 'n_models' parameter of {OWNER} is too small: {len(never)} of the {n} points "
            f"were out of bag for none of the {n_models} models (indices {shown}), so they have "
            f"no value. Each point misses a bootstrap sample with probability about 0.37; "
            f"raise n_models (or change seed)."
        )
    hits = np.zeros(n)
    fits = constant_bags = 0
    for b in range(n_models):
        bag, model_seed = bootstrap_sample(n, seed, b)
        rows = np.bincount(bag, minlength=n) == 0
        if not rows.any():
            continue  # nothing to score: no fit needed
        predictions, fitted = _fit_predict(learner, x[bag], y[bag], x[rows], model_seed)
        fits += fitted
        constant_bags += not fitted
        hits[rows] += np.asarray(predictions).reshape(-1) == y[rows]
    counts = oob_count
    values = hits / counts
    # Unbiased variance of 0/1 samples with mean p: p (1 - p) m / (m - 1).
    variance = np.where(counts > 1, values * (1.0 - values) * counts / np.maximum(counts - 1, 1), 0)
    half = confidence_halfwidth(counts, variance, delta=delta, bound="bernstein", value_range=1.0)
    half = np.minimum(half, 1.0)  # the values lie in [0, 1]
    return ShapleyResult(
        values=values,
        stderr=np.sqrt(variance / counts),
        ci_low=np.maximum(values - half, 0.0),
        ci_high=np.minimum(values + half, 1.0),
        n_samples=counts,
        variance=variance,
        player_names=[f"train:{i}" for i in range(n)],
        n_evaluations=fits,
        estimator=OWNER,
        params={
            "n_models": n_models,
            "learner": _describe(learner),
            # The interval rule (results.bounds): empirical Bernstein, range 1, per point.
            "bound": "bernstein",
            "delta": delta,
            "value_range": 1.0,
            "union_bound": False,
        },
        seed=seed,
        stop_reason="complete",
        elapsed_seconds=time.perf_counter() - started,
        sample_range=(0.0, 1.0),
        diagnostics={"constant_bags": constant_bags},
    )


def _check_data(x_train: Any, y_train: Any) -> tuple[NDArray[Any], NDArray[Any]]:
    x, y = np.asarray(x_train), np.asarray(y_train)
    n = len(x) if x.ndim else 0
    if n < 2:
        raise ValueError(
            f"The 'x_train' parameter of {OWNER} must hold at least 2 points (first axis). "
            f"Got shape {x.shape} instead."
        )
    if y.shape != (n,):
        raise ValueError(
            f"The 'y_train' parameter of {OWNER} must hold one label per training point, shape "
            f"({n},). Got shape {y.shape} instead."
        )
    if y.dtype.kind in "fc":
        raise ValueError(
            f"The 'y_train' parameter of {OWNER} must hold class labels (ints, bools or "
            f"strings); Data-OOB for regression is not built. Got dtype {y.dtype} instead."
        )
    return x, y


def _learner(fit: Any) -> Any:
    if fit is None:
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(max_features="sqrt")
    if (hasattr(fit, "fit") and hasattr(fit, "predict")) or callable(fit):
        return fit
    raise TypeError(
        f"The 'fit' parameter of {OWNER} must be None, a scikit-learn-style classifier (with "
        f"fit and predict) or a callable fit(x, y) -> predict. Got {type(fit).__name__} instead."
    )


def _fit_predict(
    learner: Any, x: NDArray[Any], y: NDArray[Any], x_out: NDArray[Any], model_seed: int
) -> tuple[Any, bool]:
    """Predictions on ``x_out`` of the model fitted on ``(x, y)``, and whether a fit was made."""
    first = y[0]
    if np.all(y == first):
        return np.full(len(x_out), first, dtype=y.dtype), False
    try:
        if hasattr(learner, "fit") and hasattr(learner, "predict"):
            from sklearn.base import clone

            model = clone(learner)
            # Every unset random_state, nested ones included (a pipeline's steps), so that runs
            # repeat: scikit-learn's own rule for ensembles (_set_random_states).
            unset = {
                name: model_seed
                for name, value in model.get_params(deep=True).items()
                if (name == "random_state" or name.endswith("__random_state")) and value is None
            }
            if unset:
                model.set_params(**unset)
            predictions = model.fit(x, y).predict(x_out)
        else:
            predictions = learner(x, y)(x_out)
    except Exception as error:
        raise RuntimeError(
            f"The 'fit' of {OWNER} failed on a bootstrap sample of {len(x)} points with "
            f"{len(np.unique(y))} classes: {type(error).__name__}: {error}"
        ) from error
    predictions = np.asarray(predictions).reshape(-1)
    if len(predictions) != len(x_out):
        raise ValueError(
            f"The 'fit' parameter of {OWNER} must predict one label per point: its model "
            f"returned {len(predictions)} predictions for {len(x_out)} out-of-bag points."
        )
    numeric = "iubf"
    if predictions.dtype.kind != y.dtype.kind and not (
        predictions.dtype.kind in numeric and y.dtype.kind in numeric
    ):
        raise ValueError(
            f"The 'fit' parameter of {OWNER} must predict labels of the training labels' type "
            f"({y.dtype}): its model returned {predictions.dtype} (e.g. {predictions[0]!r}), "
            "which never equals a label."
        )
    return predictions, True


def _describe(learner: Any) -> str:
    if hasattr(learner, "get_params"):
        return repr(learner)
    return getattr(learner, "__qualname__", type(learner).__name__)
