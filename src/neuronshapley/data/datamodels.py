"""Datamodels: a sparse linear model of each test output in the training subset (Ilyas et al. 2022).

Train many models on random subsets of a fixed fraction of the training points, record each
subset's mask and each test example's output (by default the correct-class margin), and fit
``output_z(S) ~ w_z . 1_S + b_z`` with a lasso per test example. The linear datamodeling score
(LDS) checks the fit where it matters: the Spearman correlation, over fresh held-out subsets,
between the outputs the linear model predicts and the outputs of models actually trained on
them, averaged over test examples (Park et al. 2023, TRAK, §2). ``lds`` scores any per-point
attribution (influence estimates, Data Shapley values) by the same rule.

Subset ``j`` is drawn from ``np.random.SeedSequence(seed, spawn_key=(j,))`` and held-out subset
``j`` from ``spawn_key=(HELDOUT_KEY, j)``, so any range of models can be trained anywhere (another
process, another machine) and merged: with ``directory`` given, every block of models is saved
as it completes and a later call trains only the models that are missing.
"""

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.files import atomic_write
from neuronshapley._internal.fingerprint import digest
from neuronshapley._internal.validation import check_float, check_int
from neuronshapley.data.splits import labelled_arrays

OWNER = "datamodels"
# The first spawn key of the held-out subsets ("LDS" in ASCII); training subsets use (j,).
HELDOUT_KEY = 0x4C4453
Output = Callable[[Any, Any, Any], Any]
_BLOCK = re.compile(r"^(train|heldout)_(\d+)_(\d+)\.npz$")


def correct_class_margin(model: Any, x: Any, y: Any) -> NDArray[np.float64]:
    """Score of the true class minus the largest other score, per example.

    Uses ``model.decision_function`` (the logits of a logistic regression); a binary
    classifier's single score ``s`` (for ``classes_[1]``) gives ``s`` for class 1 and ``-s`` for
    class 0.

    Raises:
        ValueError: A true class the model never saw (its subset held none of that class).
    """
    scores = np.asarray(model.decision_function(x), dtype=np.float64)
    classes = np.asarray(model.classes_)
    if scores.ndim == 1:
        scores = np.stack([np.zeros_like(scores), scores], axis=1)
    y = np.asarray(y)
    column = np.searchsorted(classes, y)
    column = np.minimum(column, len(classes) - 1)
    missing = classes[column] != y
    if missing.any():
        raise ValueError(
            f"correct_class_margin: the model was fitted without class {y[missing][0]} "
            f"(classes {classes.tolist()}); raise 'fraction' so every subset holds every class."
        )
    rows = np.arange(len(y))
    true = scores[rows, column]
    others = scores.copy()
    others[rows, column] = -np.inf
    return true - others.max(axis=1)


def subset_mask(seed: int, index: int, n_train: int, size: int, *, heldout: bool = False) -> Any:
    """Mask of subset ``index``: ``size`` of ``n_train`` points drawn uniformly at random."""
    key = (HELDOUT_KEY, index) if heldout else (index,)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))
    mask = np.zeros(n_train, dtype=bool)
    mask[rng.permutation(n_train)[:size]] = True
    return mask


@dataclass(frozen=True)
class DatamodelResult:
    """Datamodels fitted on trained subsets, and how well they predict held-out ones.

    Attributes:
        weights: ``(n_test, n_train)``; ``weights[z, i]`` is the change of test output ``z``
            the linear model attributes to training point ``i`` being in the subset.
        intercepts: ``(n_test,)``.
        alphas: ``(n_test,)``, the lasso penalty chosen per test example (scikit-learn's
            ``alpha``: objective ``(1/2m) ||y - Xw||^2 + alpha ||w||_1`` over ``m`` models).
        lds: The linear datamodeling score, the mean of ``lds_per_example``.
        lds_per_example: ``(n_test,)``, Spearman between predicted and actual outputs over the
            held-out subsets (0 where the prediction is constant: it ranks nothing).
        masks: ``(n_models, n_train)`` bool, the training subsets.
        outputs: ``(n_models, n_test)``, the outputs of the models trained on them.
        heldout_masks: ``(n_heldout, n_train)`` bool.
        heldout_outputs: ``(n_heldout, n_test)``.
        fraction: Fraction of the training points in each subset.
        seed: The seed of the subsets.
        validation_fraction: Share of the models held back to choose each alpha.
        n_lasso_unconverged: Lasso fits (of all paths) that stopped at their iteration limit.
    """

    weights: NDArray[np.float64]
    intercepts: NDArray[np.float64]
    alphas: NDArray[np.float64]
    lds: float
    lds_per_example: NDArray[np.float64]
    masks: NDArray[np.bool_]
    outputs: NDArray[np.float64]
    heldout_masks: NDArray[np.bool_]
    heldout_outputs: NDArray[np.float64]
    fraction: float
    seed: int
    validation_fraction: float
    n_lasso_unconverged: int

    def predict(self, masks: Any) -> NDArray[np.float64]:
        """Predicted outputs ``(n_subsets, n_test)`` for subset masks ``(n_subsets, n_train)``."""
        return np.asarray(masks, dtype=np.float64) @ self.weights.T + self.intercepts


@dataclass(frozen=True)
class TrainedSubsets:
    """Masks and outputs of models trained on subsets (training and held-out)."""

    masks: NDArray[np.bool_]
    outputs: NDArray[np.float64]
    heldout_masks: NDArray[np.bool_]
    heldout_outputs: NDArray[np.float64]
    n_trained: int  # models trained by this call (the rest were read from the directory)


def _check_inputs(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any, fraction: Any, seed: Any
) -> tuple[Any, Any, Any, Any, float, int]:
    x_train, y_train, x_test, y_test = labelled_arrays(x_train, y_train, x_test, y_test, OWNER)
    if len(x_train) < 2:
        raise ValueError(
            f"The 'x_train' parameter of {OWNER} must hold at least 2 points. "
            f"Got {len(x_train)} instead."
        )
    check_float(
        fraction, "fraction", OWNER, low=0.0, high=1.0, include_low=False, include_high=False
    )
    seed = int(check_int(seed, "seed", OWNER, min_value=0))  # type: ignore[arg-type]
    return x_train, y_train, x_test, y_test, float(fraction), seed


def _fit_one(fit: Any, x: Any, y: Any, index: int, size: int) -> Any:
    try:
        if hasattr(fit, "fit") and hasattr(fit, "get_params"):
            from sklearn.base import clone

            return clone(fit).fit(x, y)
        return fit(x, y)
    except Exception as error:
        raise RuntimeError(
            f"{OWNER}: fitting model {index} on a subset of {size} points raised "
            f"{type(error).__name__}: {error}"
        ) from error


def _learner_key(fit: Any) -> Any:
    if hasattr(fit, "get_params"):
        return (type(fit).__qualname__, fit.get_params(deep=True))
    return fit


def train_subsets(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    fit: Any,
    output: Output = correct_class_margin,
    fraction: float = 0.5,
    n_models: int = 1000,
    n_heldout: int = 100,
    seed: int = 0,
    directory: str | Path | None = None,
    block_size: int = 50,
) -> TrainedSubsets:
    """Train models on subsets ``0 .. n_models - 1`` and held-out subsets ``0 .. n_heldout - 1``.

    See :func:`datamodels` for the arguments. With ``directory``, blocks already there (from any
    earlier call or another process, with the same data, learner, output, fraction and seed) are
    read, and only the missing models are trained; each new block of ``block_size`` models is
    written with :func:`~neuronshapley._internal.files.atomic_write` as soon as it completes.
    """
    x_train, y_train, x_test, y_test, fraction, seed = _check_inputs(
        x_train, y_train, x_test, y_test, fraction, seed
    )
    n_models = int(check_int(n_models, "n_models", OWNER, min_value=2))  # type: ignore[arg-type]
    n_heldout = int(check_int(n_heldout, "n_heldout", OWNER, min_value=2))  # type: ignore[arg-type]
    block_size = int(check_int(block_size, "block_size", OWNER, min_value=1))  # type: ignore[arg-type]
    n_train = len(x_train)
    size = min(n_train - 1, max(1, round(fraction * n_train)))
    fingerprint = digest(
        "datamodels/1", x_train, y_train, x_test, y_test, fraction, seed, _learner_key(fit), output
    )
    folder = None if directory is None else Path(directory)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    n_trained = 0
    parts: dict[str, tuple[NDArray[np.bool_], NDArray[np.float64]]] = {}
    for kind, count in (("train", n_models), ("heldout", n_heldout)):
        heldout = kind == "heldout"
        masks = np.zeros((count, n_train), dtype=bool)
        outputs = np.full((count, len(x_test)), np.nan)
        done = np.zeros(count, dtype=bool)
        if folder is not None:
            _read_blocks(folder, kind, fingerprint, masks, outputs, done)
        missing = np.flatnonzero(~done)
        for start in range(0, len(missing), block_size):
            indices = missing[start : start + block_size]
            for j in indices:
                mask = subset_mask(seed, int(j), n_train, size, heldout=heldout)
                model = _fit_one(fit, x_train[mask], y_train[mask], int(j), size)
                values = np.asarray(output(model, x_test, y_test), dtype=np.float64)
                if values.shape != (len(x_test),):
                    raise ValueError(
                        f"The 'output' parameter of {OWNER} must return one number per test "
                        f"example, shape ({len(x_test)},). Got shape {values.shape} instead."
                    )
                masks[j], outputs[j] = mask, values
            n_trained += len(indices)
            if folder is not None:
                _write_block(folder, kind, indices, masks[indices], outputs[indices], fingerprint)
        parts[kind] = (masks, outputs)
    return TrainedSubsets(*parts["train"], *parts["heldout"], n_trained=n_trained)


def _write_block(
    folder: Path, kind: str, indices: Any, masks: Any, outputs: Any, fingerprint: str
) -> None:
    name = f"{kind}_{int(indices[0]):07d}_{int(indices[-1]) + 1:07d}.npz"

    def write(file: Any) -> None:
        np.savez(
            file,
            indices=np.asarray(indices, dtype=np.int64),
            masks=masks,
            outputs=outputs,
            fingerprint=np.array(fingerprint),
        )

    atomic_write(folder / name, write)


def _read_blocks(
    folder: Path, kind: str, fingerprint: str, masks: Any, outputs: Any, done: Any
) -> None:
    for path in sorted(folder.iterdir()):
        match = _BLOCK.match(path.name)
        if match is None or match.group(1) != kind:
            continue
        try:
            with np.load(path) as block:
                found = str(block["fingerprint"])
                indices, block_masks = block["indices"], block["masks"]
                block_outputs = block["outputs"]
        except Exception as error:
            raise ValueError(
                f"{OWNER}: cannot read {path} ({error}); delete it to retrain."
            ) from error
        if found != fingerprint:
            raise ValueError(
                f"{OWNER}: {path} belongs to another run (other data, learner, output, fraction "
                "or seed); use another directory."
            )
        keep = indices < len(masks)
        masks[indices[keep]] = block_masks[keep]
        outputs[indices[keep]] = block_outputs[keep]
        done[indices[keep]] = True


def _spearman_columns(a: Any, b: Any) -> NDArray[np.float64]:
    from scipy.stats import rankdata

    ra, rb = rankdata(a, axis=0), rankdata(b, axis=0)
    ra, rb = ra - ra.mean(axis=0), rb - rb.mean(axis=0)
    denominator = np.sqrt((ra * ra).sum(axis=0) * (rb * rb).sum(axis=0))
    numerator = (ra * rb).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)


def lds(attributions: Any, masks: Any, outputs: Any) -> NDArray[np.float64]:
    """Linear datamodeling score of any per-point attribution, per test example.

    Predicts the output of test example ``z`` for subset ``S`` as ``sum_{i in S}
    attributions[z, i]`` and returns, per test example, the Spearman correlation over the
    subsets between that prediction and the actual ``outputs[:, z]`` (Park et al. 2023, TRAK,
    §2); the LDS is their mean. An intercept or a positive scale per test example changes
    nothing (ranks), so datamodel weights, influence estimates and Data Shapley values are
    scored alike. A test example whose prediction or output is constant over the subsets
    scores 0 (it ranks nothing).

    Args:
        attributions: ``(n_test, n_train)``; row ``z`` the effect of each training point on
            test output ``z``.
        masks: ``(n_subsets, n_train)`` bool, the subsets (held out from whatever made the
            attributions).
        outputs: ``(n_subsets, n_test)``, the outputs of models trained on those subsets.

    Returns:
        ``(n_test,)`` rank correlations in [-1, 1].

    Raises:
        ValueError: Shapes that do not match, fewer than 2 subsets, or non-finite values.
    """
    name = "lds"
    weights = np.asarray(attributions, dtype=np.float64)
    x = np.asarray(masks)
    y = np.asarray(outputs, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(
            f"The 'masks' parameter of {name} must be (n_subsets, n_train) with n_subsets >= 2. "
            f"Got shape {x.shape} instead."
        )
    if weights.ndim != 2 or weights.shape[1] != x.shape[1]:
        raise ValueError(
            f"The 'attributions' parameter of {name} must be (n_test, n_train) with n_train = "
            f"{x.shape[1]} (the masks' columns). Got shape {weights.shape} instead."
        )
    if y.shape != (len(x), len(weights)):
        raise ValueError(
            f"The 'outputs' parameter of {name} must be (n_subsets, n_test) = "
            f"{(len(x), len(weights))}. Got shape {y.shape} instead."
        )
    for label, array in (("attributions", weights), ("outputs", y)):
        if not np.isfinite(array).all():
            raise ValueError(f"The {label!r} parameter of {name} holds non-finite values.")
    return _spearman_columns(x.astype(np.float64) @ weights.T, y)


def fit_datamodels(
    masks: Any,
    outputs: Any,
    heldout_masks: Any,
    heldout_outputs: Any,
    *,
    n_alphas: int = 30,
    alpha_ratio: float = 1e-3,
    validation_fraction: float = 0.2,
    fraction: float = float("nan"),
    seed: int = 0,
) -> DatamodelResult:
    """Fit a lasso per test example on subset masks, choosing alpha by validation error; LDS.

    For each test example the lasso path (``sklearn.linear_model.lasso_path``, on centred
    masks and outputs, the Gram matrix shared by all examples) runs over ``n_alphas``
    penalties from that example's ``alpha_max`` (all weights zero) down to ``alpha_ratio`` times
    it, on the first ``1 - validation_fraction`` of the models; the alpha with the smallest
    squared error on the rest is refitted on all models. The LDS is then measured on the
    held-out subsets, which played no part in the fit.

    Args:
        masks: ``(n_models, n_train)`` bool.
        outputs: ``(n_models, n_test)``.
        heldout_masks: ``(n_heldout, n_train)`` bool.
        heldout_outputs: ``(n_heldout, n_test)``.
        n_alphas: Penalties on each path. Default 30.
        alpha_ratio: Smallest penalty over the largest. Default 1e-3.
        validation_fraction: Share of the models that chooses alpha. Default 0.2.
        fraction: Recorded in the result. Default NaN (unknown).
        seed: Recorded in the result. Default 0.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import lasso_path

    name = "fit_datamodels"
    check_int(n_alphas, "n_alphas", name, min_value=1)
    check_float(alpha_ratio, "alpha_ratio", name, low=0.0)
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"The 'validation_fraction' parameter of {name} must be a float in (0, 1). "
            f"Got {validation_fraction!r} instead."
        )
    x = np.asarray(masks, dtype=np.float64)
    y = np.asarray(outputs, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise ValueError(
            f"The 'outputs' parameter of {name} must be (n_models, n_test) with n_models = "
            f"len(masks) >= 2. Got masks {x.shape} and outputs {y.shape} instead."
        )
    if not np.isfinite(y).all():
        raise ValueError(f"The 'outputs' parameter of {name} holds non-finite values.")
    n_fit = min(len(x) - 1, max(1, round((1 - validation_fraction) * len(x))))
    n_test = y.shape[1]

    def centred(rows: slice) -> tuple[Any, Any, Any, Any]:
        xm, ym = x[rows].mean(axis=0), y[rows].mean(axis=0)
        return x[rows] - xm, y[rows] - ym, xm, ym

    xf, yf, xf_mean, yf_mean = centred(slice(0, n_fit))
    xa, ya, xa_mean, ya_mean = centred(slice(None))
    gram_fit, gram_all = xf.T @ xf, xa.T @ xa
    xy_fit, xy_all = xf.T @ yf, xa.T @ ya
    alpha_max = np.abs(xy_fit).max(axis=0) / n_fit
    weights = np.zeros((n_test, x.shape[1]))
    intercepts = ya_mean.copy()
    chosen = np.zeros(n_test)
    unconverged = 0
    with warnings.catch_warnings():
        # Counted below from the iteration numbers instead.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for z in range(n_test):
            if alpha_max[z] == 0.0:
                chosen[z] = 0.0
                continue
            alphas = np.geomspace(alpha_max[z], alpha_max[z] * alpha_ratio, n_alphas)
            common = {"max_iter": 5000, "tol": 1e-6, "return_n_iter": True}
            _, coefs, _, iters = lasso_path(
                xf, yf[:, z], alphas=alphas, precompute=gram_fit, Xy=xy_fit[:, z], **common
            )
            unconverged += int(np.sum(np.asarray(iters) >= 5000))
            predicted = (x[n_fit:] - xf_mean) @ coefs + yf_mean[z]
            errors = ((predicted - y[n_fit:, z : z + 1]) ** 2).mean(axis=0)
            best = int(np.argmin(errors))
            chosen[z] = alphas[best]
            # The path down to the chosen alpha, warm-started, on all the models.
            _, coefs_all, _, iters = lasso_path(
                xa,
                ya[:, z],
                alphas=alphas[: best + 1],
                precompute=gram_all,
                Xy=xy_all[:, z],
                **common,
            )
            unconverged += int(np.sum(np.asarray(iters) >= 5000))
            weights[z] = coefs_all[:, -1]
            intercepts[z] = ya_mean[z] - xa_mean @ weights[z]
    heldout_x = np.asarray(heldout_masks, dtype=np.float64)
    heldout_y = np.asarray(heldout_outputs, dtype=np.float64)
    if heldout_x.shape[1:] != x.shape[1:] or heldout_y.shape != (len(heldout_x), n_test):
        raise ValueError(
            f"The 'heldout_outputs' parameter of {name} must match the held-out masks and the "
            f"test examples, ({len(heldout_x)}, {n_test}). Got {heldout_y.shape} instead."
        )
    # The intercepts shift each column of predictions and leave its ranks alone.
    per_example = lds(weights, heldout_x, heldout_y)
    return DatamodelResult(
        weights=weights,
        intercepts=intercepts,
        alphas=chosen,
        lds=float(per_example.mean()),
        lds_per_example=per_example,
        masks=np.asarray(masks, dtype=bool),
        outputs=y,
        heldout_masks=np.asarray(heldout_masks, dtype=bool),
        heldout_outputs=heldout_y,
        fraction=float(fraction),
        seed=seed,
        validation_fraction=float(validation_fraction),
        n_lasso_unconverged=unconverged,
    )


def datamodels(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    fit: Any,
    output: Output = correct_class_margin,
    fraction: float = 0.5,
    n_models: int = 1000,
    n_heldout: int = 100,
    seed: int = 0,
    directory: str | Path | None = None,
    block_size: int = 50,
    n_alphas: int = 30,
    validation_fraction: float = 0.2,
) -> DatamodelResult:
    """Datamodels (Ilyas et al. 2022; chapter §10) with their linear datamodeling score.

    Args:
        x_train: Training inputs, first axis the points.
        y_train: Training labels.
        x_test: Test inputs (the training inputs' shape past the first axis).
        y_test: Test labels.
        fit: A scikit-learn estimator (cloned and fitted per subset, the original untouched)
            or a callable ``fit(x, y) -> model``.
        output: ``output(model, x_test, y_test) -> (n_test,)``. Default:
            :func:`correct_class_margin` (true-class logit minus the largest other).
        fraction: Share of the training points in each subset, in (0, 1); each subset holds
            ``round(fraction * n_train)`` of them. Default 0.5.
        n_models: Models trained on random subsets to fit the datamodels, at least 2.
            Default 1000.
        n_heldout: Models trained on other random subsets to measure the LDS. Default 100.
        seed: Non-negative int; subset ``j`` comes from
            ``np.random.SeedSequence(seed, spawn_key=(j,))``. Default 0.
        directory: Where to save masks and outputs, one ``.npz`` per block of models, and to
            resume from. Default ``None``: nothing saved.
        block_size: Models per saved block. Default 50.
        n_alphas: Lasso penalties per path. Default 30.
        validation_fraction: Share of the models that chooses each lasso penalty. Default 0.2.

    Returns:
        A :class:`DatamodelResult` (weights, intercepts, chosen penalties, LDS, and the data).

    Raises:
        ValueError: ``fraction`` outside (0, 1), ``n_models`` or ``n_heldout`` below 2,
            mismatched shapes, an ``output`` of the wrong shape, or a ``directory`` holding
            another run's blocks.
        RuntimeError: ``fit`` raised (naming the model and its subset size).
    """
    trained = train_subsets(
        x_train,
        y_train,
        x_test,
        y_test,
        fit=fit,
        output=output,
        fraction=fraction,
        n_models=n_models,
        n_heldout=n_heldout,
        seed=seed,
        directory=directory,
        block_size=block_size,
    )
    return fit_datamodels(
        trained.masks,
        trained.outputs,
        trained.heldout_masks,
        trained.heldout_outputs,
        n_alphas=n_alphas,
        validation_fraction=validation_fraction,
        fraction=fraction,
        seed=seed,
    )
