"""Training points as players: Data Shapley (Ghorbani & Zou 2019; chapter §10.2, Example 10.2.1).

``V(S)`` is the test metric of a model fitted on the training points in ``S`` (or on the points
of the groups in ``S``: a source, an annotator, a batch). Any estimator of the engine applies;
``tmc_shapley`` is TMC-Shapley on the engine's truncated walks, and ``harmful_points`` is TMAB
(Ghorbani & Zou 2020) for the k lowest-valued points on the same walks.
"""

import copy
import gc
import os
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.fingerprint import digest
from neuronshapley._internal.optional import require
from neuronshapley._internal.validation import check_bool, check_choice, check_float
from neuronshapley.data.splits import labelled_arrays
from neuronshapley.estimators import tmab_shapley, truncated_shapley
from neuronshapley.games.base import BaseGame, Game, check_coalitions, game_fingerprint
from neuronshapley.results import ShapleyResult
from neuronshapley.typing import CoalitionMatrix, GameValues

OWNER = "DataGame"
Metric = Callable[[Any, Any], float]


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of predictions equal to the labels."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


# Fits valued in one call are handed to the workers in this many strided chunks per worker:
# walk batches hold runs of similar sizes, so striding balances the work, and a few chunks
# per worker keep it busy when fits differ in cost without paying one message per fit.
_CHUNKS_PER_WORKER = 4


class _Fitter:
    """What fitting one coalition needs, and nothing else: shipped once to each worker.

    ``fit_predict`` is a pure function of the points (and of ``start``, fixed before any
    coalition is fitted), so a fit gives the same predictions in this process and in a
    worker, whatever the order or the batching.
    """

    def __init__(
        self,
        x_train: Any,
        y_train: Any,
        x_test: Any,
        fit: Any,
        classification: bool,
        start: Any = None,
    ) -> None:
        self.x_train, self.y_train, self.x_test = x_train, y_train, x_test
        self.fit, self.classification, self.start = fit, classification, start

    def fit_predict(self, points: NDArray[np.bool_]) -> Any:
        x, y = self.x_train[points], self.y_train[points]
        labels = np.unique(y) if self.classification else None
        what = f"a coalition of {int(points.sum())} training point(s)" + (
            f" with {len(labels)} class(es)" if labels is not None else ""
        )
        try:
            if hasattr(self.fit, "fit") and hasattr(self.fit, "predict"):
                model = self._model(labels).fit(x, y)
                return model.predict(self.x_test)
            return self.fit(x, y)(self.x_test)
        except Exception as error:
            raise RuntimeError(
                f"The 'fit' of {OWNER} failed on {what}: {type(error).__name__}: {error}"
            ) from error

    def _model(self, labels: Any) -> Any:
        """A warm copy of the full-data model where its coefficients fit the coalition's
        classes (the same classes), else a cold clone: a rule of the coalition alone."""
        if self.start is not None and (
            labels is None or np.array_equal(labels, getattr(self.start, "classes_", labels))
        ):
            model = copy.deepcopy(self.start)
            model.set_params(warm_start=True)
            return model
        from sklearn.base import clone

        return clone(self.fit)


# The fitter of this worker process, installed once when the worker starts.
_worker_fitter: _Fitter | None = None


def _thread_limits() -> list[tuple[str, int]]:
    """This process's thread pools (OpenMP, BLAS), by library file: (path, threads)."""
    try:
        import threadpoolctl
    except ImportError:  # pragma: no cover - installed with scikit-learn, as joblib is
        return []
    return [(info["filepath"], info["num_threads"]) for info in threadpoolctl.threadpool_info()]


def _install_fitter(fitter: _Fitter, limits: list[tuple[str, int]]) -> None:
    """Worker start-up: keep the fitter, and give each thread pool this process's size.

    A worker then runs a fit as the same computation as the driver would: a sum split over
    another number of threads could round otherwise. Fewer threads (``threadpoolctl``'s
    ``threadpool_limits(1)`` around the run) reach the workers too, which is what pays when
    the workers fill the cores.
    """
    global _worker_fitter
    _worker_fitter = fitter
    if limits:
        import contextlib
        import ctypes

        import threadpoolctl

        # Load the driver's libraries now (a module imported later finds them loaded, by
        # their soname): a library loaded after the limits would keep its default size.
        for path, _ in limits:
            # The same environment holds the same files; a missing one keeps its default.
            with contextlib.suppress(OSError):
                ctypes.CDLL(path)
        controller = threadpoolctl.ThreadpoolController()
        for path, threads in limits:
            controller.select(filepath=path).limit(limits=threads)
    _freeze_imports()


def _freeze_imports() -> None:
    """Leave what is loaded by now out of every garbage collection.

    Without psutil, loky runs ``gc.collect()`` in each worker once a second; over the modules
    a worker imports (torch among them) that costs 170 ms of CPU (measured), a sixth of the
    worker's time. Frozen, they are skipped: 0.01 ms. Done again after the first chunk, for
    what the learner imports on its first fit.
    """
    gc.collect()
    gc.freeze()


_worker_chunks = 0


def _fit_chunk(chunk: NDArray[np.bool_]) -> list[Any]:
    global _worker_chunks
    if _worker_fitter is None:  # pragma: no cover - the pool's initializer always ran
        raise RuntimeError(f"A {OWNER} worker was started without its fitter.")
    predictions = [_worker_fitter.fit_predict(points) for points in chunk]
    _worker_chunks += 1
    if _worker_chunks == 1:
        _freeze_imports()
    return predictions


def _resolve_workers(n_jobs: int) -> int:
    if n_jobs != -1:
        return n_jobs
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


class DataGame(BaseGame):
    """V(S) = ``metric(y_test, predict(x_test))`` for a model fitted on the training points in S.

    Coalitions the learner cannot fit get a defined value, never an exception from inside the
    learner (classification, i.e. labels that are not floats):

    - the empty coalition: the best constant predictor, the class (among the training labels)
      whose constant prediction scores highest on the test set; with ``empty_value`` given,
      that number instead;
    - a coalition whose points all have one label (``degenerate="constant"``, the default):
      the constant predictor of that label, which is what any learner fitted on it predicts.
      Learners that handle one class (k nearest neighbours) can be called on it with
      ``degenerate="fit"``.

    For regression (float labels) the empty coalition predicts the mean training label.

    Parallel fits (``n_jobs``): the fits of one call to ``value`` (an estimator's batch of
    coalitions) are spread over worker processes (joblib's loky, which ships with scikit-learn),
    started at the first batch that has two fits or more and kept for the game's later batches
    (a batch that raises or is interrupted stops its workers, so that none runs on; the next
    batch starts new ones). The values come back in the batch's order and each is a pure
    function of its coalition, so they equal ``n_jobs=1``'s bit for bit (for learners whose
    result does not depend on the process: a fixed ``random_state``, the same thread settings).
    ``n_jobs`` is not part of the fingerprint. With a Ray backend, which already runs one game
    per worker, leave ``n_jobs=1``.

    Warm starts (``warm_start=True``): each coalition's fit starts from the coefficients of
    the model fitted on all the training points (fitted once, cold), not from the previous
    coalition's, so a value does not depend on the order of evaluation, the batching or the
    backend. Coalitions whose classes differ from all the points' are fitted cold. For a
    strictly convex learner run to convergence (L2 logistic regression with lbfgs) this moves
    the optimum reached only within the solver's tolerance (``tol``), so a value can differ
    from the cold one where a test point lies that close to the decision boundary. For
    learners stopped before convergence (SGD with few epochs, ``max_iter`` reached) or
    non-convex ones (MLP) the values are those of another learner. Hence off by default and
    part of the fingerprint when on. Needs a scikit-learn estimator with a ``warm_start``
    parameter that a warm start uses (not ``LogisticRegression(solver="liblinear")``).

    Args:
        x_train: Training inputs, first axis the points.
        y_train: Training labels, one per point.
        x_test: Test inputs (the training inputs' shape past the first axis).
        y_test: Test labels.
        fit: A scikit-learn-style estimator (cloned and fitted for every coalition, the
            original untouched) or a callable ``fit(x, y) -> predict`` with
            ``predict(x) -> predictions``.
        metric: ``metric(y_true, y_pred) -> float``, higher is better. Default: accuracy.
        groups: One group label per training point; the players are then the groups (sorted),
            and a coalition holds all the points of its groups. Default ``None``: one player
            per point.
        empty_value: V of the empty coalition. Default ``None``: the best constant predictor.
        degenerate: ``"constant"`` (default) or ``"fit"``, see above.
        n_jobs: Worker processes for the fits of a batch: an int >= 1, or -1 for one per
            CPU. Default 1: every fit in this process.
        warm_start: Start each fit from the full-data model's coefficients (see above).
            Default ``False``.

    Attributes:
        n_fits: Models fitted so far (coalitions valued without a fit not counted; with
            ``warm_start``, the full-data model counted once).
    """

    fingerprint_ignores = ("n_fits",)

    def __init__(
        self,
        x_train: Any,
        y_train: Any,
        x_test: Any,
        y_test: Any,
        *,
        fit: Any,
        metric: Metric = accuracy,
        groups: Sequence[Any] | None = None,
        empty_value: float | None = None,
        degenerate: str = "constant",
        n_jobs: int = 1,
        warm_start: bool = False,
    ) -> None:
        self.x_train, self.y_train, self.x_test, self.y_test = labelled_arrays(
            x_train, y_train, x_test, y_test, OWNER
        )
        is_estimator = hasattr(fit, "fit") and hasattr(fit, "predict")
        if not is_estimator and not callable(fit):
            raise TypeError(
                f"The 'fit' parameter of {OWNER} must be a scikit-learn-style estimator (with "
                "fit and predict) or a callable fit(x, y) -> predict. Got "
                f"{type(fit).__name__} instead."
            )
        if not callable(metric):
            raise TypeError(
                f"The 'metric' parameter of {OWNER} must be a callable metric(y_true, y_pred) "
                f"-> float. Got {type(metric).__name__} instead."
            )
        self.fit = fit
        self.metric = metric
        self.empty_value = check_float(empty_value, "empty_value", OWNER, allow_none=True)
        self.degenerate = check_choice(degenerate, "degenerate", OWNER, ("constant", "fit"))
        self.n_jobs = _check_n_jobs(n_jobs)
        self.warm_start = check_bool(warm_start, "warm_start", OWNER)
        if self.warm_start:
            _check_warm_start(fit)
        self.classification = self.y_train.dtype.kind not in "fc"
        if groups is None:
            self.point_player = np.arange(len(self.x_train))
            names = [f"train:{i}" for i in range(len(self.x_train))]
        else:
            labels = np.asarray(groups)
            if labels.shape != (len(self.x_train),):
                raise ValueError(
                    f"The 'groups' parameter of {OWNER} must hold one group per training point, "
                    f"shape ({len(self.x_train)},). Got shape {labels.shape} instead."
                )
            unique, self.point_player = np.unique(labels, return_inverse=True)
            names = [str(name) for name in unique]
        super().__init__(len(names), names)
        self.n_fits = 0
        self._fitter: _Fitter | None = None
        self._pool: Any = None

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        points = coalitions[:, self.point_player]
        values = np.empty(len(points), dtype=np.float64)
        to_fit = []
        for row, members in enumerate(points):
            value = self._value_without_fit(members)
            if value is None:
                to_fit.append(row)
            else:
                values[row] = value
        for row, predictions in zip(to_fit, self._fit_predict(points[to_fit]), strict=True):
            values[row] = self._score(predictions)
        return values

    def _value_without_fit(self, points: NDArray[np.bool_]) -> float | None:
        """V of a coalition the learner is not called on; ``None`` for the others."""
        if not points.any():
            if self.empty_value is not None:
                return self.empty_value
            return self._best_constant()
        y = self.y_train[points]
        if self.classification and self.degenerate == "constant":
            first = y[0]
            if np.all(y == first):
                return self._score(np.full(len(self.y_test), first, dtype=self.y_train.dtype))
        return None

    def _best_constant(self) -> float:
        if not self.classification:
            mean = float(np.mean(self.y_train))
            return self._score(np.full(len(self.y_test), mean))
        scores = [
            self._score(np.full(len(self.y_test), label, dtype=self.y_train.dtype))
            for label in np.unique(self.y_train)
        ]
        return max(scores)

    def _fit_predict(self, points: NDArray[np.bool_]) -> list[Any]:
        """Predictions of the models fitted on each row of ``points``, in order."""
        if not len(points):  # nothing to fit: no warm starts' model, no workers
            return []
        fitter = self._get_fitter()
        workers = _resolve_workers(self.n_jobs)
        if workers == 1 or len(points) < 2:
            # One fit gains nothing from a worker and would pay a message (or start-up).
            predictions = []
            for members in points:
                predictions.append(fitter.fit_predict(members))
                self.n_fits += 1
            return predictions
        n_chunks = min(len(points), workers * _CHUNKS_PER_WORKER)
        pool = self._get_pool(fitter, workers)
        futures = []
        chunks = []
        try:
            # Submitting is inside: a worker killed while idle since the last batch (the OOM
            # killer) leaves the pool broken, and submit is where that shows first.
            for k in range(n_chunks):
                futures.append(pool.submit(_fit_chunk, points[k::n_chunks]))
            for future in futures:
                chunks.append(future.result())
        except BaseException as error:
            for future in futures:
                future.cancel()
            # The chunks already handed to the workers would run on (a cancel reaches only
            # those still queued here), and this process's exit waits for them: after a fit
            # that raised or Ctrl-C, minutes. So the workers go, and the next batch starts new
            # ones (as it must after a worker died: the pool stays broken).
            pool.shutdown(wait=False, kill_workers=True)
            self._pool = None
            if isinstance(error, BrokenExecutor):
                raise RuntimeError(
                    f"A worker process of {OWNER} died while fitting a batch of {len(points)} "
                    "coalitions, or idle before it (killed, out of memory, or a crash inside "
                    "the learner); the next call starts new workers. "
                    f"{type(error).__name__}: {error}"
                ) from error
            raise
        predictions = [None] * len(points)
        for k, chunk in enumerate(chunks):
            predictions[k::n_chunks] = chunk
        self.n_fits += len(points)
        return predictions

    def _get_fitter(self) -> _Fitter:
        if self._fitter is None:
            cold = _Fitter(self.x_train, self.y_train, self.x_test, self.fit, self.classification)
            start = None
            if self.warm_start:
                # Fitted once, cold, before any coalition: every warm fit starts from it,
                # whatever the order in which coalitions come.
                start = cold._model(None)
                try:
                    start.fit(self.x_train, self.y_train)
                except Exception as error:
                    raise RuntimeError(
                        f"The 'fit' of {OWNER} failed on all {len(self.x_train)} training "
                        f"points (the warm starts' model): {type(error).__name__}: {error}"
                    ) from error
                self.n_fits += 1
            self._fitter = _Fitter(
                self.x_train, self.y_train, self.x_test, self.fit, self.classification, start
            )
        return self._fitter

    def _get_pool(self, fitter: _Fitter, workers: int) -> Any:
        if self._pool is None:
            loky = require("joblib.externals.loky", "zoo", f"{OWNER}(n_jobs > 1)")
            self._pool = loky.ProcessPoolExecutor(
                max_workers=workers,
                initializer=_install_fitter,
                initargs=(fitter, _thread_limits()),
            )
            # The workers leave with the game (and with this process in any case).
            weakref.finalize(self, self._pool.shutdown, wait=False)
        return self._pool

    def __getstate__(self) -> dict[str, Any]:
        # A pool does not travel (Ray ships the game): the copy starts its own if it needs one.
        state = dict(vars(self))
        state["_pool"] = None
        return state

    def _score(self, predictions: Any) -> float:
        value = float(self.metric(self.y_test, predictions))
        if not np.isfinite(value):
            raise ValueError(
                f"The 'metric' of {OWNER} returned {value!r}; it must return a finite number."
            )
        return value

    def fingerprint(self) -> str:
        """A hash of the data, the learner (its parameters, or the callable's code and captured
        values), the metric, the groups, the rules for unfittable coalitions and ``warm_start``
        when on (it can move a value, see the class notes). ``n_jobs`` does not count: it does
        not change a value."""
        learner: Any = self.fit
        if hasattr(learner, "get_params"):
            learner = (type(learner).__qualname__, learner.get_params(deep=True))
        # Named only when on, so that the games made before warm starts keep their fingerprint.
        warm = ("warm_start",) if self.warm_start else ()
        return digest(
            "DataGame",
            self.x_train,
            self.y_train,
            self.x_test,
            self.y_test,
            learner,
            self.metric,
            self.point_player,
            self.player_names,
            self.empty_value,
            self.degenerate,
            *warm,
        )

    def __repr__(self) -> str:
        return (
            f"DataGame(n_players={self.n_players}, n_train={len(self.x_train)}, "
            f"n_test={len(self.x_test)})"
        )


def _check_n_jobs(n_jobs: Any) -> int:
    rule = "an int >= 1, or -1 for one worker per CPU"
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer):
        raise TypeError(
            f"The 'n_jobs' parameter of {OWNER} must be {rule}. Got {n_jobs!r} instead."
        )
    if n_jobs < 1 and n_jobs != -1:
        raise ValueError(
            f"The 'n_jobs' parameter of {OWNER} must be {rule}. Got {n_jobs!r} instead."
        )
    return int(n_jobs)


def _check_warm_start(fit: Any) -> None:
    """``warm_start=True`` needs an estimator that a warm start reaches."""
    params = fit.get_params() if hasattr(fit, "get_params") else {}
    if "warm_start" not in params or not hasattr(fit, "set_params"):
        raise TypeError(
            f"The 'warm_start' parameter of {OWNER} needs a scikit-learn estimator with a "
            "warm_start parameter (LogisticRegression with lbfgs, SGDClassifier, ...) as 'fit'. "
            f"Got {type(fit).__name__} instead; leave warm_start=False."
        )
    if params.get("solver") == "liblinear":
        raise ValueError(
            f"The 'warm_start' parameter of {OWNER} has no effect with "
            f"{type(fit).__name__}(solver='liblinear') (liblinear always starts cold); use "
            "solver='lbfgs' or leave warm_start=False."
        )


class _DualGame:
    """``W(C) = V(N) - V(N \\ C)``: the same Shapley values as V (the dual game).

    The engine walks from the full set down and stops a walk once ``W <= threshold``; on W
    that is once the players *added so far* in the reversed order hold V within ``threshold``
    of V(N), which is TMC-Shapley's rule (Ghorbani & Zou 2019, Algorithm 1).
    """

    def __init__(self, game: Game) -> None:
        self.game = game
        self.n_players = game.n_players
        self.player_names = list(game.player_names)
        self.player_groups = getattr(game, "player_groups", None)
        self.v_full = float(game.value(np.ones((1, game.n_players), dtype=bool))[0])
        self.n_evaluations = 0

    def value(self, coalitions: CoalitionMatrix) -> GameValues:
        coalitions = check_coalitions(coalitions, self.n_players, "tmc_shapley")
        values = self.v_full - np.asarray(self.game.value(~coalitions), dtype=np.float64)
        self.n_evaluations += len(coalitions)
        return values

    def fingerprint(self) -> str:
        return digest("dual", game_fingerprint(self.game))


def tmc_shapley(game: Game, *, tolerance: float = 0.01, **options: Any) -> ShapleyResult:
    """TMC-Shapley (Ghorbani & Zou 2019): truncated Monte Carlo on the engine's walks.

    Each permutation adds the training points one at a time; once the metric of the points
    added is within ``tolerance`` of V(N) for ``patience`` consecutive steps, the remaining
    points get a zero marginal for that permutation. This runs ``ns.truncated_shapley`` in
    absolute mode on the dual game ``W(C) = V(N) - V(N \\ C)`` (same Shapley values; its
    downward walk is the upward walk of V), so every option of the engine applies.

    Args:
        game: A ``DataGame`` (or any game).
        tolerance: Performance tolerance of the truncation (same units as the metric).
            Default 0.01. ``None`` disables truncation (plain permutation sampling).
        **options: Passed to ``truncated_shapley`` (``n_permutations``, ``max_evaluations``,
            ``patience``, ``seed``, ``value_range``, ``checkpoint`` ...).

    Returns:
        The ``ShapleyResult`` of ``truncated_shapley`` on the dual game (values and intervals
        are those of V's Shapley values). ``n_evaluations`` leaves out the one V(N).
    """
    if tolerance is not None:
        check_float(tolerance, "tolerance", "tmc_shapley", low=0.0)
    for fixed in ("truncation", "truncation_mode"):
        if fixed in options:
            raise TypeError(
                f"tmc_shapley sets {fixed!r} itself (absolute truncation at 'tolerance'); "
                f"pass 'tolerance' instead. Got {fixed}={options[fixed]!r}."
            )
    return truncated_shapley(
        _DualGame(game), truncation=tolerance, truncation_mode="absolute", **options
    )


def harmful_points(
    game: Game,
    k: int,
    *,
    tolerance: float | None = 0.01,
    value_range: float | None = 2.0,
    **options: Any,
) -> ShapleyResult:
    """The ``k`` most harmful training points: TMAB (Ghorbani & Zou 2020, Algorithm 1) for the
    ``k`` lowest Data Shapley values, on TMC-Shapley's truncated walks.

    Runs ``ns.tmab_shapley(..., side="bottom")`` on the dual game of ``tmc_shapley`` (same
    Shapley values, TMC's truncation at ``tolerance``). It samples only the players whose
    interval still straddles the threshold between the ``k`` lowest values and the rest, and
    stops once none does (``stop_reason == "separated"``) or a budget (``max_evaluations``,
    ``max_seconds``) runs out. The answer is ``result.bottom_indices(k)``; when separated,
    with probability at least ``1 - delta`` no point left out is valued below a returned one
    by more than ``2 tol`` (``tmab_shapley``'s guarantee; with truncation it is about the
    truncated game's values unless ``continue_probability`` is given). On a budget the
    intervals of points already decided stop shrinking, so the ranking among them is coarser
    than ``tmc_shapley``'s at the same number of fits.

    Args:
        game: A ``DataGame`` (or any game).
        k: How many points (players) to return, ``1 <= k < n_players``.
        tolerance: TMC's truncation tolerance (units of the metric). Default 0.01. ``None``:
            no truncation.
        value_range: Range of a marginal contribution: 2 for accuracy (marginals in
            [-1, 1]). Default 2.0. ``None`` takes the observed range (voids the guarantee).
        **options: Passed to ``tmab_shapley`` (``delta``, ``tol``, ``max_evaluations``,
            ``max_seconds``, ``seed``, ``n_walks``, ``patience``, ``checkpoint`` ...).

    Returns:
        ``tmab_shapley``'s ``ShapleyResult`` (values of V; ``n_evaluations`` leaves out the
        one V(N)); ``diagnostics["n_undecided"]`` counts the points still undecided.
    """
    if tolerance is not None:
        check_float(tolerance, "tolerance", "harmful_points", low=0.0)
    for fixed in ("side", "truncation", "truncation_mode"):
        if fixed in options:
            raise TypeError(
                f"harmful_points sets {fixed!r} itself (the bottom k, TMC's truncation at "
                f"'tolerance'); use tmab_shapley for other choices. Got {fixed}={options[fixed]!r}."
            )
    return tmab_shapley(
        _DualGame(game),
        k,
        side="bottom",
        truncation=tolerance,
        truncation_mode="absolute",
        value_range=value_range,
        **options,
    )
