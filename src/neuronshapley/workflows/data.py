"""``neuronshapley data``: value the training points of a dataset with a named method.

A random subset of the dataset's train split (``n_train`` points, optionally with a share of
their labels flipped) is valued against a random subset of its test split (``n_test``) for an
L2 logistic regression (scikit-learn's, C = 1: liblinear for two classes, as it is ~10x faster
there; lbfgs, multinomial, for more). The dataset is a bundled one (``adult``, ``digits``) or
the user's: ``data="path/to/file.py:function"``, a function returning ``(x_train, y_train,
x_test, y_test)`` or a dict with those keys (see ``DATA_CONTRACT``); the learner may be the
user's too: ``model="path/to/file.py:function"`` returning a scikit-learn classifier (cloned
per coalition) or a callable ``fit(x, y) -> predict``, as ``DataGame`` takes it. Loading a spec
runs its file's code; the record keeps each spec's absolute path and its file's SHA-256, and
``--resume`` refuses a file that changed since. The directory gets ``values.csv`` (one row per
training point, lowest value first), ``result.json`` + ``result.npz`` (the values as a
``ShapleyResult``, which ``neuronshapley show`` reads), ``report.html`` (the settings, the
value histogram, the lowest-valued points, the detection scores and the point-removal curves),
``data.json`` (the settings, the status, the cost, the curves and, with ``noise``, the
detection scores) and ``manifest.json``, each written atomically. Every check passes before
anything is written; the methods that save their work as they go (``tmc``'s checkpoint,
``datamodels``' trained subsets) first write ``data.json`` with status "running", so that
``--resume`` continues them after Ctrl-C, a kill or a budget.

Methods: ``tmc`` (TMC-Shapley; live progress, checkpoint and resume), ``beta`` (Beta(16, 1)
Shapley), ``banzhaf`` (Data Banzhaf, maximum sample reuse), ``loo`` (leave-one-out), ``knn``
(KNN-Shapley, closed form), ``influence`` (the predicted change of the summed test loss when a
point is removed, from exact influence functions of softmax regression on the same objective),
``oob`` (Data-OOB: the learner bagged, each point's accuracy over the models it was
out of bag for; the test split is not used) and ``datamodels`` (the mean over the test examples
of each point's datamodel weight for the correct-class margin, with the LDS; resumable).
``knn`` and ``influence`` value the points for a model of their own (a K-nearest-neighbour
classifier, a softmax regression), so they refuse a user's learner rather than present those
values as its; ``datamodels`` needs one with ``decision_function`` (a scikit-learn classifier).
"""

import csv
import dataclasses
import io
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuronshapley._internal.files import atomic_write, json_text
from neuronshapley._internal.specs import absolute_spec, file_digest, is_spec
from neuronshapley.data.semivalues import BANZHAF_CHECKPOINT
from neuronshapley.estimators.checkpoint import CHECKPOINT_FILE
from neuronshapley.estimators.progress import ProgressCallback
from neuronshapley.results.result import ShapleyResult
from neuronshapley.workflows.manifest import delete_ours, foreign, record_files, record_live
from neuronshapley.workflows.runs import RunError, check_output_directory, load_factory

DATASETS = ("adult", "digits")
# ``--model`` names (the spelling): the dataset and its learner, an alias of --dataset.
MODELS = {"adult-logreg": "adult", "digits-logreg": "digits"}
METHODS = ("tmc", "beta", "banzhaf", "loo", "knn", "influence", "oob", "datamodels")
# Training points valued and test points scored when not given: of a bundled dataset these
# many; of the user's data (``data``) all of them.
N_TRAIN, N_TEST = 200, 500
# What a ``data`` spec's function returns (its arrays numpy arrays, torch tensors or lists).
DATA_KEYS = ("x_train", "y_train", "x_test", "y_test")
DATA_CONTRACT = (
    "(x_train, y_train, x_test, y_test) or a dict with those keys: features of shape "
    "(points, features...) with finite numbers, labels 1-d integer classes 0, 1, ..."
)
# Methods that value the points for a model of their own, never the learner: refused with a
# user's ``model`` rather than reported as its values.
OWN_MODEL = {
    "knn": "is the closed form of a K-nearest-neighbour classifier's values",
    "influence": "computes exact influence functions of its own softmax regression",
}
RECORD_FILE = "data.json"
# result.json + result.npz: the values as a ShapleyResult (``neuronshapley show DIR`` reads them).
FILES = ("values.csv", RECORD_FILE, "result.json", "result.npz")
C = 1.0
REPORT_FILE = "report.html"
# The removal curves' steps: a few fits each, so the page costs little beside any method.
REMOVAL_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
REMOVAL_DRAWS = 3
LOWEST_SHOWN = 20
# Methods whose sampling checkpoints into --out, so --resume continues it; the others are
# recomputed from the start (they take seconds at the default sizes, or are closed forms).
RESUMABLE = ("tmc", "beta", "banzhaf", "datamodels")
# Sampling methods with progress, budgets and a checkpoint in --out: the file each keeps there
# (tmc and beta walk the engine's permutations; banzhaf keeps its coalitions' values).
CHECKPOINTS = {"tmc": CHECKPOINT_FILE, "beta": CHECKPOINT_FILE, "banzhaf": BANZHAF_CHECKPOINT}
SAMPLED = tuple(CHECKPOINTS)
CHECKPOINT_DIR = "checkpoint"
# datamodels saves each block of trained subsets here (data/datamodels.py), and reads them back.
DATAMODELS_DIR = "datamodels"
DATAMODELS_FRACTION = 0.5
DATAMODELS_HELDOUT = 100
# What a resumed valuation must share with the one it continues (budgets may grow).
# The specs are absolute and their files' SHA-256 part of it: a changed file is refused.
IDENTITY = (
    "dataset",
    "data",
    "data_sha256",
    "model",
    "model_sha256",
    "method",
    "n_train",
    "n_test",
    "noise",
    "seed",
)
# The identity settings that are the same file's bytes (checked with their own message).
DIGESTS = {"data": "data_sha256", "model": "model_sha256"}
STATUSES = ("running", "interrupted", "complete")
# Stops of a complete valuation that --resume with a larger budget continues.
BUDGET_STOPS = ("max_evaluations", "max_seconds")


@dataclass(frozen=True, kw_only=True)
class DataOptions:
    """What ``neuronshapley data`` does.

    Attributes:
        method: One of ``METHODS``.
        out: The directory written.
        dataset: ``"adult"`` or ``"digits"``. Default ``None``: ``"adult"``, unless ``data``
            is given (then it must stay ``None``).
        data: ``"path/to/file.py:function"`` whose function returns the user's points as
            ``DATA_CONTRACT`` says (the file's code is run), or ``None`` for ``dataset``.
        model: ``"path/to/file.py:function"`` whose function returns the learner: a
            scikit-learn classifier (cloned per coalition) or a callable
            ``fit(x, y) -> predict``; or ``None`` (default) for the logistic regression.
            ``knn`` and ``influence`` value the points for a model of their own, so they
            refuse it; ``datamodels`` needs a scikit-learn classifier with
            ``decision_function``.
        n_train: Training points valued (drawn from the train split). Default ``None``:
            ``N_TRAIN`` of a bundled dataset, all of ``data``'s.
        n_test: Test points the learner is scored on (drawn from the test split). Default
            ``None``: ``N_TEST`` of a bundled dataset, all of ``data``'s.
        noise: Share of the training labels flipped before valuing, in [0, 0.5].
        seed: Seed of the subsets, the flips and the method's sampling.
        permutations: Permutations of ``tmc`` and ``beta``.
        samples: Coalitions of ``banzhaf``.
        k: Neighbours of ``knn``.
        models: Bootstrap models of ``oob``; models trained on random halves for
            ``datamodels`` (beside ``DATAMODELS_HELDOUT`` more for the LDS).
        overwrite: Replace a valuation already in ``out``.
        resume: Continue the ``tmc`` valuation in ``out`` from its checkpoint, or the
            ``datamodels`` one from the subsets it trained (the settings in ``IDENTITY`` must
            match; ``permutations``, ``models``, ``budget`` and ``max_seconds`` may grow).
        budget: Coalitions ``tmc`` may evaluate (counted over a resumed valuation), or
            ``None``.
        max_seconds: Seconds of sampling ``tmc`` may spend in this call, or ``None``.
    """

    method: str
    out: Path
    dataset: str | None = None
    data: str | None = None
    model: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    noise: float = 0.0
    seed: int = 0
    permutations: int = 100
    samples: int = 2000
    k: int = 10
    models: int = 1000
    overwrite: bool = False
    resume: bool = False
    budget: int | None = None
    max_seconds: float | None = None


@dataclass(frozen=True)
class DataValuation:
    """What ``value_training_data`` computed and wrote.

    Attributes:
        out: The directory.
        files: The files written (relative to ``out``).
        indices: Each valued point's row in the dataset's train split (``data``'s
            ``x_train``).
        labels: The labels the points were valued with (after the flips).
        flipped: Whether each point's label was flipped.
        values: Each point's value (higher: more useful to the learner).
        scores: With ``noise``: ``f1`` (flagging as many points as were flipped),
            ``f1_two_means`` (OpenDataVal's rule) and ``auc``; else empty.
        fits: Models fitted (over a resumed valuation).
        seconds: Wall time of the valuation (over a resumed valuation).
        status: ``"complete"``, or ``"interrupted"`` (Ctrl-C; ``--resume`` continues).
        stop_reason: Why the method stopped (``tmc``: ``"n_permutations"``,
            ``"max_evaluations"``, ``"max_seconds"``, ``"interrupted"``; others ``"complete"``).
        curve: The point-removal curves (``report.html`` draws them).
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
    curve: "RemovalCurves | None" = None
    status: str = "complete"
    stop_reason: str = "complete"


@dataclass(frozen=True)
class RemovalCurves:
    """The test accuracy of the learner refitted without a share of the valued points.

    Attributes:
        fractions: Share of the points removed at each step (0 first).
        counts: Points removed at each step.
        lowest_first: Accuracy after removing the lowest-valued points first (should rise,
            or fall slowest, where low values flag harmful points).
        highest_first: The same removing the highest-valued first (should fall fastest).
        random: ``(n_draws, n_steps)``, removing points in random orders.
        fits: Models fitted for the curves.
    """

    fractions: np.ndarray
    counts: np.ndarray
    lowest_first: np.ndarray
    highest_first: np.ndarray
    random: np.ndarray
    fits: int


def value_training_data(
    options: DataOptions,
    log: Callable[[str], None] = lambda line: None,
    *,
    progress: ProgressCallback | None = None,
    on_game: Callable[[list[str]], None] | None = None,
) -> DataValuation:
    """Check everything, value the training points with ``options.method``, write ``out``.

    A ``data`` or ``model`` spec is loaded (its file's code run) after the checks of the
    options and of ``out``, and before anything is written; its arrays and its learner (one
    fit on all the points) are checked then.

    Args:
        options: What to do.
        log: Where one-line messages go. Default: nowhere.
        progress: Called after every task of ``tmc``'s walks (the other methods take no
            callback). Default ``None``.
        on_game: Called with the players' names before ``tmc`` samples. Default ``None``.
    """
    _check_options(options)
    given = {"data": str(options.data), "model": str(options.model)}  # as messages show them
    # Specs absolute (the record must not depend on the current directory), digests of the
    # bytes about to be run: load_factory refuses a file that changes in between.
    data = None if options.data is None else absolute_spec(options.data)
    model = None if options.model is None else absolute_spec(options.model)
    dataset = None if data is not None else options.dataset or "adult"
    n_train, n_test = options.n_train, options.n_test
    if data is None:
        n_train, n_test = n_train or N_TRAIN, n_test or N_TEST
    options = dataclasses.replace(
        options, dataset=dataset, data=data, model=model, n_train=n_train, n_test=n_test
    )
    settings = _settings(options)
    out = Path(options.out)
    previous = _plan_directory(out, options, settings)
    points = _load_points(options, settings, given["data"])
    learner = _load_learner(options, settings, points, given["model"])
    n_available, n_test_available = len(points.x_train), len(points.x_test)
    n_train, n_test = n_train or n_available, n_test or n_test_available
    for flag, wanted, available in (
        ("--n-train", n_train, n_available),
        ("--n-test", n_test, n_test_available),
    ):
        if not 2 <= wanted <= available:
            raise RunError(
                f"{flag} must be in [2, {available}] for {points.name}. Got {wanted} instead."
            )
    options = dataclasses.replace(options, n_train=n_train, n_test=n_test)
    settings = {**settings, "n_train": n_train, "n_test": n_test}  # the digests as loaded
    if previous is not None:  # the sizes of the user's data are known only now
        _check_identity(out, previous, settings)
    if options.method == "datamodels" and options.models < 2:
        raise RunError(f"--models must be at least 2 for datamodels. Got {options.models}.")
    if options.method == "knn" and options.k > n_train:
        raise RunError(f"--k must be at most --n-train ({n_train}). Got {options.k}.")

    started = time.perf_counter()
    rng = np.random.default_rng(options.seed)
    rows = np.sort(rng.choice(n_available, size=n_train, replace=False))
    test_rows = np.sort(rng.choice(n_test_available, size=n_test, replace=False))
    x = points.x_train[rows].reshape(n_train, -1).astype(np.float64)
    x_test = points.x_test[test_rows].reshape(n_test, -1).astype(np.float64)
    clean, y_test = points.y_train[rows], points.y_test[test_rows]
    if model is not None:
        _check_learner(learner, x, clean, x_test, given["model"])
    flipped = np.zeros(n_train, dtype=bool)
    labels = clean
    if options.noise > 0:
        from neuronshapley.data.detection import flip_labels

        # Flipped among the classes the train split holds, by their rank: a user's labels may
        # skip numbers (0 and 2 are two classes, and flipping one gives the other, never a
        # class 1 that is not there). The bundled splits hold 0 .. n-1: the ranks are labels.
        classes = np.unique(points.y_train)
        ranks, where = flip_labels(
            np.searchsorted(classes, clean),
            options.noise,
            seed=options.seed,
            n_classes=len(classes),
        )
        labels = classes[ranks]
        flipped[where] = True
        log(f"flipped {len(where)} of {n_train} training labels")
    log(f"valuing {n_train} {points.name} points by {options.method}")
    sampling = _Sampling(out, previous, progress, on_game, log, settings)
    task = _Task(options, x, labels, x_test, y_test, points.n_classes, learner)
    try:
        result, fits, params = _value(task, sampling)
        values = result.values
        seconds = time.perf_counter() - started
        curve = _removal(task, values)
    except RuntimeError as error:
        if model is None:
            raise
        # The user's learner failed on a coalition (DataGame names its size and classes);
        # a sampling method's record stays "running": --resume or --overwrite after a fix.
        raise RunError(f"--model {given['model']}: {' '.join(str(error).split())}") from None
    if previous is not None and options.method in SAMPLED:  # counts over every call
        fits += int(previous.get("fits", 0))
        seconds += float(previous.get("seconds", 0.0))
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
        curve=curve,
        status="interrupted" if result.stop_reason == "interrupted" else "complete",
        stop_reason=result.stop_reason if options.method in SAMPLED else "complete",
    )
    if options.method in SAMPLED:
        done.files.append(f"{CHECKPOINT_DIR}/{CHECKPOINTS[options.method]}")
    elif options.method == "datamodels":
        done.files.extend(_block_files(out))
    about = _About(settings, points.name, _describe(learner))
    _write(out, options, about, done, params)
    return done


def _check_options(options: DataOptions) -> None:
    """The checks that need nothing loaded."""
    if options.data is not None:
        if options.dataset is not None:
            raise RunError(
                f"--data {options.data} and --dataset {options.dataset} both name the points; "
                "pass one."
            )
        if not is_spec(options.data):
            raise RunError(
                f"--data must be 'path/to/file.py:function'. Got {options.data!r} instead."
            )
    elif options.dataset is not None and options.dataset not in DATASETS:
        raise RunError(
            f"--dataset must be one of {', '.join(DATASETS)}. Got {options.dataset!r} instead."
        )
    if options.model is not None and not is_spec(options.model):
        raise RunError(
            f"--model must be 'path/to/file.py:function' returning the learner. Got "
            f"{options.model!r} instead."
        )
    if options.method not in METHODS:
        raise RunError(
            f"--method must be one of {', '.join(METHODS)}. Got {options.method!r} instead."
        )
    if options.model is not None and options.method in OWN_MODEL:
        usable = tuple(m for m in METHODS if m not in OWN_MODEL)
        raise RunError(
            f"--method {options.method} {OWN_MODEL[options.method]}, not of --model's learner; "
            f"with --model {options.model} use --method {_either(usable)}."
        )
    if not 0.0 <= options.noise <= 0.5:
        raise RunError(f"--noise must be a share in [0, 0.5]. Got {options.noise} instead.")
    for flag, given, methods in (
        ("--resume", options.resume or None, RESUMABLE),
        ("--budget", options.budget, SAMPLED),
        ("--max-seconds", options.max_seconds, SAMPLED),
    ):
        if given is not None and options.method not in methods:
            raise RunError(
                f"{flag} applies to --method {_either(methods)} only"
                + (" (the methods that save their work as it goes)" if flag == "--resume" else "")
                + f". Got --method {options.method}."
            )
    if options.resume and options.overwrite:
        raise RunError(
            "--resume continues the valuation in --out and --overwrite replaces it; pass one."
        )
    for flag, given in (("--n-train", options.n_train), ("--n-test", options.n_test)):
        if given is not None and given < 2:
            raise RunError(f"{flag} must be at least 2. Got {given} instead.")


@dataclass(frozen=True)
class _Points:
    """The splits valued from (every row), their classes, and their name in messages."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    name: str


def _load_points(options: DataOptions, settings: dict[str, Any], given: str) -> _Points:
    """The bundled dataset's splits, or what the ``data`` spec's function returns, checked
    (``given``: the spec as the caller wrote it, for the messages)."""
    if options.data is None:
        from neuronshapley.zoo import datasets

        name = str(options.dataset)
        bundle = datasets.DATASETS[name]()
        return _Points(
            bundle.train.x.numpy(),
            bundle.train.y.numpy(),
            bundle.test.x.numpy(),
            bundle.test.y.numpy(),
            len(bundle.classes),
            name,
        )
    made = load_factory(given, "data", sha256=settings["data_sha256"])
    return _user_points(made, given)


def _user_points(made: Any, spec: str) -> _Points:
    """The four arrays of a ``data`` spec's function, or a one-line error naming the array,
    the rule and what came instead."""
    prefix = f"--data {spec}"
    if isinstance(made, dict):
        missing = [key for key in DATA_KEYS if key not in made]
        if missing:
            raise RunError(
                f"{prefix} must return {DATA_CONTRACT}. Got a dict without {missing[0]!r} "
                f"(keys: {', '.join(map(str, made)) or 'none'})."
            )
        arrays = [made[key] for key in DATA_KEYS]
    elif isinstance(made, tuple | list) and len(made) == len(DATA_KEYS):
        arrays = list(made)
    else:
        got = type(made).__name__ + (f" of {len(made)}" if isinstance(made, tuple | list) else "")
        raise RunError(f"{prefix} must return {DATA_CONTRACT}. Got a {got} instead.")
    x_train, y_train, x_test, y_test = (
        _as_array(value, key, prefix) for value, key in zip(arrays, DATA_KEYS, strict=True)
    )
    for key, x in (("x_train", x_train), ("x_test", x_test)):
        if x.dtype.kind not in "biuf" or x.ndim < 2:
            raise RunError(
                f"{prefix}: {key} must be an array of numbers of shape (points, features...). "
                f"Got shape {x.shape} and dtype {x.dtype} instead."
            )
        if len(x) < 2:
            raise RunError(f"{prefix}: {key} must hold at least 2 points. Got {len(x)}.")
        bad = ~np.isfinite(x.astype(np.float64)).reshape(len(x), -1).all(axis=1)
        if bad.any():
            raise RunError(
                f"{prefix}: {key} must hold finite numbers. Got NaN or infinity in "
                f"{int(bad.sum())} point(s), the first row {int(np.flatnonzero(bad)[0])}."
            )
    if x_train.shape[1:] != x_test.shape[1:]:
        raise RunError(
            f"{prefix}: x_test must have x_train's shape past the first axis, "
            f"{x_train.shape[1:]}. Got {x_test.shape[1:]} instead."
        )
    for key, y, x in (("y_train", y_train, x_train), ("y_test", y_test, x_test)):
        if y.ndim != 1 or y.dtype.kind not in "biu":
            raise RunError(
                f"{prefix}: {key} must be 1-d integer class labels (0, 1, ...). Got shape "
                f"{y.shape} and dtype {y.dtype} instead."
            )
        if len(y) != len(x):
            raise RunError(
                f"{prefix}: {key} must hold one label per point of {key.replace('y', 'x')} "
                f"({len(x)}). Got {len(y)} instead."
            )
        if y.min() < 0:
            raise RunError(
                f"{prefix}: {key} must be class labels 0, 1, ... Got {int(y.min())} instead."
            )
    y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    if len(np.unique(y_train)) < 2:
        raise RunError(
            f"{prefix}: y_train must hold at least 2 classes. Got only class {int(y_train[0])}."
        )
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    name = Path(spec.rpartition(":")[0]).name + ":" + spec.rpartition(":")[2]
    return _Points(x_train, y_train, x_test, y_test, n_classes, name)


def _as_array(value: Any, key: str, prefix: str) -> np.ndarray:
    try:
        if hasattr(value, "detach"):  # a torch tensor, on any device, with or without grad
            value = value.detach().cpu()
            if str(value.dtype) == "torch.bfloat16":
                value = value.float()  # numpy has no bfloat16; every bfloat16 is a float32
            value = value.numpy()
        return np.asarray(value)
    except Exception as error:  # ragged lists, a meta tensor (no data), an exotic dtype
        raise RunError(
            f"{prefix}: {key} must be an array (numpy, torch or nested lists). Got "
            f"{type(value).__name__} ({' '.join(str(error).split())})."
        ) from None


def _load_learner(
    options: DataOptions, settings: dict[str, Any], points: _Points, spec: str
) -> Any:
    """The logistic regression, or what the ``model`` spec's function returns, checked for
    the kind ``DataGame`` takes (and ``datamodels``' ``decision_function``)."""
    if options.model is None:
        # The classes the training points hold, not the largest label: labels 0 and 2 are
        # two classes, fitted as 0 and 1 are (liblinear), not as three.
        return _learner(len(np.unique(points.y_train)))
    made = load_factory(spec, "model", sha256=settings["model_sha256"])
    if isinstance(made, type):
        raise RunError(
            f"--model {spec} returned the class {made.__name__}; return an instance of it "
            f"({made.__name__}(...))."
        )
    is_estimator = hasattr(made, "fit") and hasattr(made, "predict")
    if not is_estimator and not callable(made):
        raise RunError(
            f"--model {spec} must return a scikit-learn classifier (with fit and predict) or a "
            f"callable fit(x, y) -> predict. Got {type(made).__name__} instead."
        )
    if options.method == "datamodels" and not (
        is_estimator and hasattr(made, "decision_function") and hasattr(made, "get_params")
    ):
        raise RunError(
            f"--method datamodels fits each point's weight on the learner's correct-class "
            f"margin, so --model {spec} must return a scikit-learn classifier with "
            f"decision_function. Got {type(made).__name__} instead."
        )
    return made


def _describe(learner: Any) -> str:
    """The learner in words: a scikit-learn estimator's repr (its parameters), a callable's
    qualified name (its repr would hold a memory address, different on every run)."""
    if hasattr(learner, "get_params"):
        return repr(learner)
    return str(getattr(learner, "__qualname__", type(learner).__qualname__))


def _check_learner(
    learner: Any, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, spec: str
) -> None:
    """Fit the user's learner once on all the valued points before anything is written: a
    learner that fails, or predicts no label per test point, is refused in one line rather
    than in the middle of the sampling."""
    try:
        if hasattr(learner, "fit") and hasattr(learner, "predict"):
            from sklearn.base import clone

            predictions = clone(learner).fit(x, y).predict(x_test)
        else:
            predictions = learner(x, y)(x_test)
    except Exception as error:
        raise RunError(
            f"--model {spec}: fitting it on the {len(x)} training points and predicting the "
            f"{len(x_test)} test points raised {type(error).__name__}: "
            f"{' '.join(str(error).split())}"
        ) from None
    shape = np.shape(predictions)
    if shape != (len(x_test),):
        raise RunError(
            f"--model {spec}: its predictions must hold one label per test point, shape "
            f"({len(x_test)},). Got shape {shape} instead."
        )


def _either(names: tuple[str, ...]) -> str:
    """``"a, b or c"``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


@dataclass(frozen=True)
class _Sampling:
    """What a resumable method needs beside the data: the directory, the record it continues
    (``None``: a fresh start), and the callbacks."""

    out: Path
    previous: dict[str, Any] | None
    progress: ProgressCallback | None
    on_game: Callable[[list[str]], None] | None
    log: Callable[[str], None]
    settings: dict[str, Any]


@dataclass(frozen=True)
class _Task:
    """The valued points (after the flips), the test points, and the learner."""

    options: DataOptions
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    learner: Any


def _learner(n_classes: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    if n_classes == 2:
        return LogisticRegression(C=C, solver="liblinear")
    return LogisticRegression(C=C, max_iter=1000)


def _value(task: _Task, sampling: _Sampling) -> tuple[ShapleyResult, int, dict[str, Any]]:
    """The values, the models fitted, and the method's parameters.

    Every method but ``influence`` returns a ``ShapleyResult``; influence's predicted changes
    become one through ``ShapleyResult.from_values`` (no intervals), named like the game's
    players (``train:i``, ``i`` the point's row in ``values.csv``).
    """
    from neuronshapley import data

    options, x, y, x_test, y_test = task.options, task.x, task.y, task.x_test, task.y_test
    seed, method, learner = options.seed, options.method, task.learner
    if method == "knn":
        result = data.knn_shapley(x, y, x_test, y_test, k=options.k)
        return result, 0, {"k": options.k}
    if method == "influence":
        values = _influence(x, y, x_test, y_test, task.n_classes)
        made = {"model": "softmax regression", "weight_decay": 1.0 / (C * len(x))}
        names = [f"train:{i}" for i in range(len(x))]
        return ShapleyResult.from_values(values, names, estimator="influence", params=made), 1, made
    if method == "datamodels":
        return _datamodels(task, sampling)
    if method == "oob":
        try:
            result = data.data_oob(x, y, fit=learner, n_models=options.models, seed=seed)
        except ValueError as error:  # too few models: some point never out of bag
            raise RunError(f"--models: {error}") from None
        made = {"learner": _describe(learner), "n_models": options.models}
        return result, result.n_evaluations, made
    game = data.DataGame(x, y, x_test, y_test, fit=learner)
    if method == "tmc":
        result = _sampled(options, game, sampling)
        params = {"tolerance": 0.01, "n_permutations": options.permutations}
    elif method == "beta":
        result = _sampled(options, game, sampling)
        params = {"alpha": 16.0, "beta": 1.0, "n_permutations": options.permutations}
    elif method == "banzhaf":
        result = _sampled(options, game, sampling)
        params = {"n_samples": options.samples}
    else:
        result = data.leave_one_out_values(game)
        params = {}
    return result, game.n_fits, {"learner": _describe(learner), **params}


def _sampled(options: DataOptions, game: Any, sampling: _Sampling) -> ShapleyResult:
    """TMC-Shapley or Beta(16, 1) Shapley (tail 1e-3) on the engine's walks, or Data Banzhaf,
    checkpointing into ``out/checkpoint`` (every 30 s and at the end), so that Ctrl-C or a
    budget leaves a valuation ``--resume`` continues to the uninterrupted result.

    Each permutation is its own task (``walks_per_task=1``): a cut keeps every finished walk,
    and the result does not depend on a task size chosen from measured time.
    """
    from neuronshapley.data import beta_shapley, data_banzhaf, tmc_shapley
    from neuronshapley.estimators.checkpoint import CheckpointError

    out = sampling.out
    checkpoint = out / CHECKPOINT_DIR
    resume = sampling.previous is not None
    live = [f"{CHECKPOINT_DIR}/{CHECKPOINTS[options.method]}"]
    _start_record(out, sampling, options.overwrite, live=live)
    if sampling.on_game is not None:
        sampling.on_game(list(game.player_names))
    engine: dict[str, Any] = {
        "seed": options.seed,
        "max_evaluations": options.budget,
        "max_seconds": options.max_seconds,
        "checkpoint": checkpoint,
        "checkpoint_every": 30.0,
        "resume": checkpoint if resume else None,
        "progress": sampling.progress,
    }
    walks: dict[str, Any] = {"n_permutations": options.permutations, "walks_per_task": 1}
    try:
        if options.method == "banzhaf":
            return data_banzhaf(game, n_samples=options.samples, **engine)
        if options.method == "beta":
            return beta_shapley(game, alpha=16.0, beta=1.0, tail=1e-3, **engine, **walks)
        return tmc_shapley(game, tolerance=0.01, value_range=2.0, **engine, **walks)
    except CheckpointError as error:
        raise RunError(
            f"--resume: cannot continue from {checkpoint}: {error}; start anew with --overwrite."
        ) from None


def _datamodels(task: _Task, sampling: _Sampling) -> tuple[ShapleyResult, int, dict[str, Any]]:
    """Datamodels on random halves; a point's value is the mean over the test examples of its
    datamodel weight (the change of the correct-class margin it brings when in the subset).

    Each block of 50 trained subsets is saved in ``out/datamodels`` as it completes, so Ctrl-C
    loses at most a block and ``--resume`` trains only the missing ones.
    """
    from neuronshapley.data import datamodels

    options, x, y, x_test, y_test = task.options, task.x, task.y, task.x_test, task.y_test
    learner = task.learner
    out = sampling.out
    _check_halves(options, y, y_test)
    _start_record(out, sampling, options.overwrite, live=[])
    try:
        made = datamodels(
            x,
            y,
            x_test,
            y_test,
            fit=learner,
            fraction=DATAMODELS_FRACTION,
            n_models=options.models,
            n_heldout=DATAMODELS_HELDOUT,
            seed=options.seed,
            directory=out / DATAMODELS_DIR,
        )
    except KeyboardInterrupt:
        record_files(out, _block_files(out))
        _mark(out, "interrupted")
        sampling.log(
            f"interrupted: the subsets trained so far are saved in {out / DATAMODELS_DIR}; "
            f"continue with --resume --out {out}"
        )
        raise
    except (ValueError, RuntimeError) as error:  # a subset without a class, another run's blocks
        record_files(out, _block_files(out))
        _mark(out, "interrupted")
        message = str(error).replace("raise 'fraction'", "pass a larger --n-train")
        raise RunError(f"--method datamodels: {message}") from None
    record_files(out, _block_files(out))
    values = made.weights.mean(axis=0)
    params = {
        "learner": _describe(learner),
        "fraction": DATAMODELS_FRACTION,
        "n_models": options.models,
        "n_heldout": DATAMODELS_HELDOUT,
        "output": "correct-class margin",
        "lds": made.lds,
        "n_lasso_unconverged": made.n_lasso_unconverged,
    }
    names = [f"train:{i}" for i in range(len(x))]
    result = ShapleyResult.from_values(values, names, estimator="datamodels", params=params)
    return result, options.models + DATAMODELS_HELDOUT, params


def _check_halves(options: DataOptions, y: np.ndarray, y_test: np.ndarray) -> None:
    """Refuse, before anything is written, subsets a model cannot be fitted on or scored by
    the correct-class margin: one class only, or without a class the test split holds."""
    from neuronshapley.data.datamodels import subset_mask

    n = len(y)
    size = min(n - 1, max(1, round(DATAMODELS_FRACTION * n)))  # as train_subsets draws them
    needed = np.unique(y_test)
    for heldout, count in ((False, options.models), (True, DATAMODELS_HELDOUT)):
        for j in range(count):
            present = np.unique(y[subset_mask(options.seed, j, n, size, heldout=heldout)])
            missing = np.setdiff1d(needed, present)
            if len(present) < 2 or len(missing):
                which = "held-out subset" if heldout else "subset"
                lacking = f"class {missing[0]}" if len(missing) else "a second class"
                raise RunError(
                    f"--n-train {n} is too small for datamodels: its {which} {j} ({size} of "
                    f"the {n} points) holds no {lacking}, so no model can be fitted or scored "
                    "on it; pass a larger --n-train (or another --seed)."
                )


def _block_files(out: Path) -> list[str]:
    """The blocks of trained subsets in ``out/datamodels`` (``data/datamodels.py`` names them)."""
    folder = out / DATAMODELS_DIR
    if not folder.is_dir():
        return []
    return [
        f"{DATAMODELS_DIR}/{path.name}"
        for path in sorted(folder.iterdir())
        if path.is_file() and re.fullmatch(r"(train|heldout)_\d+_\d+\.npz", path.name)
    ]


def _mark(out: Path, status: str) -> None:
    """Set the status of the record in ``out`` (a valuation stopped before its values)."""
    record = _read_record(out)
    record["status"] = status
    atomic_write(out / RECORD_FILE, json_text(record).encode())
    record_files(out, [RECORD_FILE])


def _start_record(out: Path, sampling: _Sampling, overwrite: bool, live: list[str]) -> None:
    """Mark ``out`` as a valuation in progress before sampling: ``data.json`` with status
    "running" (so a killed one is resumed or overwritten, never mistaken for a user's folder),
    the files in ``live`` (a checkpoint) as ours from their first write, and a replaced
    valuation's files gone."""
    out.mkdir(parents=True, exist_ok=True)
    previous = sampling.previous
    record = dict(previous) if previous is not None else dict(sampling.settings)
    record["status"] = "running"
    atomic_write(out / RECORD_FILE, json_text(record).encode())
    record_files(out, [RECORD_FILE])
    if previous is None and overwrite:  # the new record is written: the old files go
        delete_ours(out, keep=[RECORD_FILE])
    record_live(out, live)


def _settings(options: DataOptions) -> dict[str, Any]:
    """What the record says the valuation was made of: the ``IDENTITY`` keys (the specs as
    ``options`` holds them, made absolute by the caller; a size not yet known ``None``)."""
    return {
        "dataset": options.dataset,
        "data": options.data,
        "data_sha256": None if options.data is None else file_digest(options.data),
        "model": options.model,
        "model_sha256": None if options.model is None else file_digest(options.model),
        "method": options.method,
        "n_train": options.n_train,
        "n_test": options.n_test,
        "noise": options.noise,
        "seed": options.seed,
    }


def _plan_directory(
    out: Path, options: DataOptions, settings: dict[str, Any]
) -> dict[str, Any] | None:
    """Check that ``out`` may receive this valuation, writing nothing; with ``resume``, the
    record of the valuation it continues (a spec's file that changed since refused before
    its code runs)."""
    if options.resume:
        if not (out / RECORD_FILE).is_file():
            raise RunError(f"--resume: {out} holds no valuation to continue (no {RECORD_FILE}).")
        record = _read_record(out)
        _check_identity(out, record, settings)
        clash = foreign(out, [*FILES, REPORT_FILE])
        if clash:
            raise RunError(
                f"--out {out}: {', '.join(clash)} changed since neuronshapley wrote it, so "
                "--resume will not replace it; move it away or choose another directory."
            )
        checkpoint = out / CHECKPOINT_DIR / CHECKPOINTS.get(options.method, CHECKPOINT_FILE)
        if options.method in SAMPLED and not checkpoint.is_file():
            if record.get("status") != "running":
                raise RunError(f"--resume: {out} has no checkpoint to continue from.")
            return None  # killed before its first checkpoint: start it again from the beginning
        return record
    try:
        existing = _read_record(out) if (out / RECORD_FILE).is_file() else None
    except RunError:
        existing = None  # damaged: check_output_directory decides (--overwrite replaces ours)
    if (
        existing is not None
        and (
            existing.get("status") in ("running", "interrupted")
            or existing.get("stop_reason") in BUDGET_STOPS
        )
        and not options.overwrite
    ):
        raise RunError(
            f"--out {out} holds an unfinished {existing.get('method')} valuation; pass --resume "
            "to continue it or --overwrite to replace it."
        )
    _check_directory(out, options.overwrite)
    return None


def _check_identity(out: Path, record: dict[str, Any], settings: dict[str, Any]) -> None:
    """Refuse to continue ``record`` with other ``IDENTITY`` settings (a size ``None`` in
    ``settings``: not known yet, checked once the user's data is loaded)."""
    for what, sha in DIGESTS.items():
        spec, now = settings[what], settings[sha]
        if (
            spec is not None
            and record.get(what) == spec
            and now is not None
            and record.get(sha) != now
        ):
            raise RunError(
                f"--resume: --{what} {spec} changed since the valuation in {out} was made "
                "(its file's SHA-256 no longer matches); restore the file, or start anew "
                "with --overwrite."
            )
    differences = [
        f"{key} {record.get(key)!r}, not {settings[key]!r}"
        for key in IDENTITY
        if key not in DIGESTS.values()  # a same spec's file: above; a missing one: when loaded
        and not (key in ("n_train", "n_test") and settings[key] is None)
        and record.get(key) != settings[key]
    ]
    if differences:
        raise RunError(
            f"--resume: the valuation in {out} was made with other settings "
            f"({'; '.join(differences)}); resume it with the same settings, or start anew "
            "with --overwrite."
        )


def _read_record(out: Path) -> dict[str, Any]:
    path = out / RECORD_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RunError(f"cannot read {path} ({error}); start anew with --overwrite.") from None
    if not isinstance(record, dict) or record.get("status", "complete") not in STATUSES:
        raise RunError(f"{path} is not a valuation record; start anew with --overwrite.")
    return record


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


def _removal(task: _Task, values: np.ndarray) -> RemovalCurves:
    """Refit the learner without the first 0, 10, ..., 50% of the points in value order (both
    ways) and in ``REMOVAL_DRAWS`` random orders: a few dozen fits, whatever the method."""
    from neuronshapley.data import DataGame
    from neuronshapley.data.detection import removal_curve

    n = len(values)
    fractions = np.asarray(REMOVAL_FRACTIONS)
    counts = np.round(fractions * n).astype(np.int64)
    game = DataGame(task.x, task.y, task.x_test, task.y_test, fit=task.learner)
    lowest = removal_curve(game, np.argsort(values, kind="stable"), counts)
    highest = removal_curve(game, np.argsort(-values, kind="stable"), counts)
    # Random orders of their own stream (not the method's permutations), the same on every run.
    random = np.stack(
        [
            removal_curve(
                game, np.random.default_rng((task.options.seed, 1, draw)).permutation(n), counts
            )
            for draw in range(REMOVAL_DRAWS)
        ]
    )
    return RemovalCurves(fractions, counts, lowest, highest, random, game.n_fits)


def _check_directory(out: Path, overwrite: bool) -> None:
    check_output_directory(
        out,
        overwrite,
        record=RECORD_FILE,
        files=(
            *FILES,
            REPORT_FILE,
            *sorted({f"{CHECKPOINT_DIR}/{name}" for name in CHECKPOINTS.values()}),
        ),
        noun="valuation",
        command="neuronshapley data",
    )


@dataclass(frozen=True)
class _About:
    """What the record and the page say the valuation was made of."""

    settings: dict[str, Any]
    name: str  # the dataset's name, or the data spec's file:function
    learner: str  # the learner's repr (the logistic regression's, or the user's)


def _write(
    out: Path, options: DataOptions, about: _About, done: DataValuation, params: dict[str, Any]
) -> None:
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
    report = _write_report(out, options, about, done, params)
    record = {
        **about.settings,
        "learner": about.learner,
        "status": done.status,
        "stop_reason": done.stop_reason,
        "method_params": params,
        "evaluations": None if done.result is None else done.result.n_evaluations,
        "scores": done.scores,
        "fits": done.fits,
        "seconds": done.seconds,
        "removal": None if done.curve is None else _curve_record(done.curve),
        "report": report,
    }
    atomic_write(out / RECORD_FILE, json_text(record).encode())
    record_files(out, done.files)
    # What the valuation replaced but did not write again (a page a run without matplotlib
    # left out) goes, if ours and unchanged; nothing else is touched.
    delete_ours(out, keep=done.files)


def _curve_record(curve: RemovalCurves) -> dict[str, Any]:
    return {
        "fractions": curve.fractions.tolist(),
        "counts": curve.counts.tolist(),
        "lowest_first": curve.lowest_first.tolist(),
        "highest_first": curve.highest_first.tolist(),
        "random": curve.random.tolist(),
        "fits": curve.fits,
    }


def _write_report(
    out: Path, options: DataOptions, about: _About, done: DataValuation, params: dict[str, Any]
) -> str:
    """Write ``report.html`` (one self-contained page) and add it to ``done.files``; without
    matplotlib (the ``plot`` extra) the page is left out and the record says why."""
    from neuronshapley.report.html import Section, render_html, write_html

    try:
        from neuronshapley.report.data import data_value_histogram, removal_curves

        histogram = data_value_histogram(
            done.values, flipped=done.flipped if done.flipped.any() else None, method=options.method
        )
        curve = done.curve
        figure = None
        if curve is not None:
            figure = removal_curves(
                curve.fractions,
                {options.method: curve.lowest_first, "random": curve.random},
                {options.method: curve.highest_first, "random": curve.random},
            )
    except ImportError as error:
        return f"not written ({error})"
    n_flipped = int(done.flipped.sum())
    settings = about.settings
    if options.data is None:
        data_text = f"{options.dataset} (bundled)"
    else:
        data_text = f"{options.data} (SHA-256 {settings['data_sha256']})"
    if options.model is None:
        learner_text = f"logistic regression (bundled): {about.learner}"
    else:
        learner_text = f"{options.model} (SHA-256 {settings['model_sha256']}): {about.learner}"
    user_learner = options.model is not None
    summary = [
        ("Data", data_text),
        ("Learner", learner_text),
        ("Method", f"{options.method} ({_params_text(params)})" if params else options.method),
        (
            "Training points",
            f"{options.n_train}"
            + (f", {n_flipped} labels flipped ({options.noise:g})" if options.noise else ""),
        ),
        ("Test points", str(options.n_test)),
        ("Seed", str(options.seed)),
        ("Model fits", f"{done.fits:,} in {done.seconds:.1f} s"),
    ]
    if done.scores:
        summary.append(("Flagging the lowest-valued as flipped", scores_text(done.scores)))
    if "lds" in params:
        lds = (
            f"{params['lds']:.3f} (Spearman of predicted and actual margins on "
            f"{params['n_heldout']} held-out subsets, mean over the test examples)"
        )
        summary.append(("Linear datamodeling score", lds))
    if done.result is not None:
        summary.append(("Intervals", done.result.interval_guarantee))
    order = np.argsort(done.values, kind="stable")[:LOWEST_SHOWN]
    lowest = [
        {
            "rank": rank,
            "point": int(point),
            "train index": int(done.indices[point]),
            "label": int(done.labels[point]),
            "flipped": "yes" if done.flipped[point] else "",
            "value": float(done.values[point]),
        }
        for rank, point in enumerate(order, start=1)
    ]
    sections = [
        Section(
            "Values",
            text=(
                "Each training point's value for the learner "
                + ("(--model's)" if user_learner else "(a logistic regression)")
                + f" by {options.method}; higher means more useful."
                + (
                    " The points whose label was flipped are stacked in red: the lower they "
                    "sit, the better the method flags them."
                    if n_flipped
                    else ""
                )
            ),
            figures=[(f"Values by {options.method}", histogram)],
        ),
        Section(
            "Lowest-valued training points",
            text=(
                f"The {len(lowest)} points with the lowest values, of {options.n_train} "
                "(all in values.csv). 'point' is the row in result.npz, 'train index' the "
                + (
                    "row in the dataset's train split."
                    if options.data is None
                    else "row in the x_train --data returned."
                )
            ),
            table=lowest,
            table_limit=len(lowest),
        ),
    ]
    if done.scores:
        sections.append(
            Section(
                "Noisy-label detection",
                text=(
                    f"{n_flipped} of {options.n_train} labels were flipped. Flagging as many "
                    f"points as were flipped, lowest value first: F1 {done.scores['f1']:.3f} "
                    f"(flagging at random: {n_flipped / len(done.values):.3f} expected). "
                    "Flagging the lower of two clusters of values (OpenDataVal's rule): F1 "
                    f"{done.scores['f1_two_means']:.3f}. AUC of the values ranking the flipped "
                    f"points below the others: {done.scores['auc']:.3f} (0.5: at random)."
                ),
            )
        )
    if curve is not None and figure is not None:
        mean = curve.random.mean(axis=0)
        rows = [
            {
                "removed": f"{fraction:.0%} ({int(count)})",
                "lowest first": float(low),
                "highest first": float(high),
                f"random (mean of {len(curve.random)})": float(rand),
            }
            for fraction, count, low, high, rand in zip(
                curve.fractions,
                curve.counts,
                curve.lowest_first,
                curve.highest_first,
                mean,
                strict=True,
            )
        ]
        sections.append(
            Section(
                "Point removal",
                text=(
                    "Test accuracy of the learner refitted without a share of the training "
                    "points: removing the highest-valued first should lower it faster than "
                    "removing points at random, removing the lowest-valued first should raise "
                    f"it (or lower it slowest). {curve.fits} fits, beside the method's."
                ),
                figures=[("Test accuracy as points are removed", figure)],
                table=rows,
                table_limit=len(rows),
            )
        )
    page = render_html(
        title=f"Data valuation: {about.name}, {options.method}",
        summary=summary,
        sections=sections,
    )
    write_html(out / REPORT_FILE, page)
    done.files.append(REPORT_FILE)
    return REPORT_FILE


def scores_text(scores: dict[str, float]) -> str:
    """The detection scores in one line (the command prints it, the page shows it)."""
    return (
        f"F1 {scores['f1']:.3f} (as many as flipped), {scores['f1_two_means']:.3f} (2-means); "
        f"AUC {scores['auc']:.3f}"
    )


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in params.items())
