"""``neuronshapley data``: value the training points of a bundled dataset with a named method.

A random subset of the dataset's train split (``n_train`` points, optionally with a share of
their labels flipped) is valued against a random subset of its test split (``n_test``) for an
L2 logistic regression (scikit-learn's, C = 1: liblinear for two classes, as it is ~10x
faster there; lbfgs, multinomial, for digits). The
directory gets ``values.csv`` (one row per training point, lowest value first), ``data.json``
(the settings, the cost and, with ``noise``, the detection scores) and ``manifest.json``, each
written atomically, only after every check passed and the values are computed.

Methods: ``tmc`` (TMC-Shapley), ``beta`` (Beta(16, 1) Shapley), ``banzhaf`` (Data Banzhaf,
maximum sample reuse), ``loo`` (leave-one-out), ``knn`` (KNN-Shapley, closed form),
``influence`` (the predicted change of the summed test loss when a point is removed, from
exact influence functions of softmax regression on the same objective) and ``oob`` (Data-OOB:
the logistic regression bagged, each point's accuracy over the models it was out of bag for;
the test split is not used).
"""

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuronshapley._internal.files import atomic_write, json_text
from neuronshapley.results.result import ShapleyResult
from neuronshapley.workflows.manifest import record_files
from neuronshapley.workflows.runs import RunError, check_output_directory

DATASETS = ("adult", "digits")
METHODS = ("tmc", "beta", "banzhaf", "loo", "knn", "influence", "oob")
RECORD_FILE = "data.json"
# result.json + result.npz: the values as a ShapleyResult (``neuronshapley show DIR`` reads them).
FILES = ("values.csv", RECORD_FILE, "result.json", "result.npz")
C = 1.0


@dataclass(frozen=True)
class DataOptions:
    """What ``neuronshapley data`` does.

    Attributes:
        dataset: ``"adult"`` or ``"digits"``.
        method: One of ``METHODS``.
        out: The directory written.
        n_train: Training points valued (drawn from the train split).
        n_test: Test points the learner is scored on (drawn from the test split).
        noise: Share of the training labels flipped before valuing, in [0, 0.5].
        seed: Seed of the subsets, the flips and the method's sampling.
        permutations: Permutations of ``tmc`` and ``beta``.
        samples: Coalitions of ``banzhaf``.
        k: Neighbours of ``knn``.
        models: Bootstrap models of ``oob``.
        overwrite: Replace a valuation already in ``out``.
    """

    dataset: str
    method: str
    out: Path
    n_train: int = 200
    n_test: int = 500
    noise: float = 0.0
    seed: int = 0
    permutations: int = 100
    samples: int = 2000
    k: int = 10
    models: int = 1000
    overwrite: bool = False


@dataclass(frozen=True)
class DataValuation:
    """What ``value_training_data`` computed and wrote.

    Attributes:
        out: The directory.
        files: The files written (relative to ``out``).
        indices: Each valued point's row in the dataset's train split.
        labels: The labels the points were valued with (after the flips).
        flipped: Whether each point's label was flipped.
        values: Each point's value (higher: more useful to the learner).
        scores: With ``noise``: ``f1`` (flagging as many points as were flipped),
            ``f1_two_means`` (OpenDataVal's rule) and ``auc``; else empty.
        fits: Models fitted.
        seconds: Wall time of the valuation.
        result: The values as a ``ShapleyResult`` (with each method's intervals, where it has
            them; ``influence`` has none), saved as ``result.json`` + ``result.npz``.
    """

    out: Path
    files: list[str]
    indices: np.ndarray
    labels: np.ndarray
    flipped: np.ndarray
    values: np.ndarray
    scores: dict[str, float] = field(default_factory=dict)
    fits: int = 0
    seconds: float = 0.0
    result: ShapleyResult | None = None


def value_training_data(
    options: DataOptions, log: Callable[[str], None] = lambda line: None
) -> DataValuation:
    """Check everything, value the training points with ``options.method``, write ``out``."""
    from neuronshapley.zoo import datasets

    if options.dataset not in DATASETS:
        raise RunError(
            f"--dataset must be one of {', '.join(DATASETS)}. Got {options.dataset!r} instead."
        )
    if options.method not in METHODS:
        raise RunError(
            f"--method must be one of {', '.join(METHODS)}. Got {options.method!r} instead."
        )
    if not 0.0 <= options.noise <= 0.5:
        raise RunError(f"--noise must be a share in [0, 0.5]. Got {options.noise} instead.")
    out = Path(options.out)
    _check_directory(out, options.overwrite)
    bundle = datasets.DATASETS[options.dataset]()
    n_available, n_test_available = len(bundle.train.x), len(bundle.test.x)
    for flag, wanted, available in (
        ("--n-train", options.n_train, n_available),
        ("--n-test", options.n_test, n_test_available),
    ):
        if not 2 <= wanted <= available:
            raise RunError(
                f"{flag} must be in [2, {available}] for {options.dataset}. Got {wanted} instead."
            )
    if options.method == "knn" and options.k > options.n_train:
        raise RunError(f"--k must be at most --n-train ({options.n_train}). Got {options.k}.")

    started = time.perf_counter()
    rng = np.random.default_rng(options.seed)
    rows = np.sort(rng.choice(n_available, size=options.n_train, replace=False))
    test_rows = np.sort(rng.choice(n_test_available, size=options.n_test, replace=False))
    x = bundle.train.x.numpy()[rows].reshape(options.n_train, -1).astype(np.float64)
    x_test = bundle.test.x.numpy()[test_rows].reshape(options.n_test, -1).astype(np.float64)
    clean, y_test = bundle.train.y.numpy()[rows], bundle.test.y.numpy()[test_rows]
    flipped = np.zeros(options.n_train, dtype=bool)
    labels = clean
    if options.noise > 0:
        from neuronshapley.data.detection import flip_labels

        labels, where = flip_labels(
            clean, options.noise, seed=options.seed, n_classes=len(bundle.classes)
        )
        flipped[where] = True
        log(f"flipped {len(where)} of {options.n_train} training labels")
    log(f"valuing {options.n_train} {options.dataset} points by {options.method}")
    result, fits, params = _value(options, x, labels, x_test, y_test, len(bundle.classes))
    values = result.values
    seconds = time.perf_counter() - started
    scores: dict[str, float] = {}
    if flipped.any():
        from neuronshapley.data.detection import detection_auc, f1_at_count, two_means_f1

        noisy = np.flatnonzero(flipped)
        scores = {
            "f1": f1_at_count(values, noisy),
            "f1_two_means": two_means_f1(values, noisy),
            "auc": detection_auc(values, noisy),
        }
    done = DataValuation(
        out=out,
        files=list(FILES),
        indices=rows,
        labels=labels,
        flipped=flipped,
        values=values,
        scores=scores,
        fits=fits,
        seconds=seconds,
        result=result,
    )
    _write(out, options, done, params)
    return done


def _learner(n_classes: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    if n_classes == 2:
        return LogisticRegression(C=C, solver="liblinear")
    return LogisticRegression(C=C, max_iter=1000)


def _value(
    options: DataOptions,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
) -> tuple[ShapleyResult, int, dict[str, Any]]:
    """The values, the models fitted, and the method's parameters.

    Every method but ``influence`` returns a ``ShapleyResult``; influence's predicted changes
    become one through ``ShapleyResult.from_values`` (no intervals), named like the game's
    players (``train:i``, ``i`` the point's row in ``values.csv``).
    """
    from neuronshapley import data

    seed, method = options.seed, options.method
    if method == "knn":
        result = data.knn_shapley(x, y, x_test, y_test, k=options.k)
        return result, 0, {"k": options.k}
    if method == "influence":
        values = _influence(x, y, x_test, y_test, n_classes)
        made = {"model": "softmax regression", "weight_decay": 1.0 / (C * len(x))}
        names = [f"train:{i}" for i in range(len(x))]
        return ShapleyResult.from_values(values, names, estimator="influence", params=made), 1, made
    learner = _learner(n_classes)
    if method == "oob":
        try:
            result = data.data_oob(x, y, fit=learner, n_models=options.models, seed=seed)
        except ValueError as error:  # too few models: some point never out of bag
            raise RunError(f"--models: {error}") from None
        made = {"learner": repr(learner), "n_models": options.models}
        return result, result.n_evaluations, made
    game = data.DataGame(x, y, x_test, y_test, fit=learner)
    if method == "tmc":
        result = data.tmc_shapley(
            game, tolerance=0.01, n_permutations=options.permutations, seed=seed, value_range=2.0
        )
        params = {"tolerance": 0.01, "n_permutations": options.permutations}
    elif method == "beta":
        result = data.beta_shapley(
            game, alpha=16.0, beta=1.0, n_permutations=options.permutations, seed=seed, tail=1e-3
        )
        params = {"alpha": 16.0, "beta": 1.0, "n_permutations": options.permutations}
    elif method == "banzhaf":
        result = data.data_banzhaf(game, n_samples=options.samples, seed=seed)
        params = {"n_samples": options.samples}
    else:
        result = data.leave_one_out_values(game)
        params = {}
    return result, game.n_fits, {"learner": repr(learner), **params}


def _influence(
    x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, n_classes: int
) -> Any:
    import torch

    from neuronshapley.data.influence import influence
    from neuronshapley.data.loo import fit_lbfgs

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        model = torch.nn.Linear(x.shape[1], n_classes).double()
    finally:
        torch.random.set_rng_state(generator_state)
    weight_decay = 1.0 / (C * len(x))
    train = (torch.tensor(x), torch.tensor(y))
    fit_lbfgs(model, train, weight_decay=weight_decay, max_iter=2000)
    result = influence(
        model,
        train,
        (torch.tensor(x_test), torch.tensor(y_test)),
        weight_decay=weight_decay,
        self_influence=False,
    )
    # Removing a helpful point raises the test loss: the predicted change is its value.
    return result.loo_estimate().sum(axis=1)


def _check_directory(out: Path, overwrite: bool) -> None:
    check_output_directory(
        out,
        overwrite,
        record=RECORD_FILE,
        files=FILES,
        noun="valuation",
        command="neuronshapley data",
    )


def _write(out: Path, options: DataOptions, done: DataValuation, params: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["rank", "point", "train_index", "label", "flipped", "value"])
    order = np.argsort(done.values, kind="stable")
    for rank, point in enumerate(order, start=1):
        writer.writerow(
            [
                rank,
                int(point),
                int(done.indices[point]),
                int(done.labels[point]),
                int(done.flipped[point]),
                repr(float(done.values[point])),
            ]
        )
    atomic_write(out / "values.csv", buffer.getvalue().encode())
    if done.result is not None:
        done.result.save(out)
    record = {
        "dataset": options.dataset,
        "method": options.method,
        "method_params": params,
        "n_train": options.n_train,
        "n_test": options.n_test,
        "noise": options.noise,
        "seed": options.seed,
        "scores": done.scores,
        "fits": done.fits,
        "seconds": done.seconds,
    }
    atomic_write(out / RECORD_FILE, json_text(record).encode())
    record_files(out, FILES)
