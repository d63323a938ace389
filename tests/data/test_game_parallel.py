"""DataGame's parallel fits (equal to the serial ones bit for bit) and warm starts (within the
solver's tolerance of the cold fits)."""

import os
import pickle
import signal
import time
from collections.abc import Iterator

import numpy as np
import pytest
import threadpoolctl
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from neuronshapley.data import DataGame, tmc_shapley

N_TRAIN = 12


@pytest.fixture(scope="module", autouse=True)
def one_thread_per_fit() -> Iterator[None]:
    """One OpenMP and BLAS thread, here and (mirrored) in the workers: lbfgs' two OpenMP
    threads spin 40x slower when the cores are shared (measured: 170 ms a fit, not 4)."""
    with threadpoolctl.threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def wine() -> tuple[np.ndarray, ...]:
    x, y = load_wine(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:N_TRAIN], order[100:160]
    return x[train], y[train], x[test], y[test]


@pytest.fixture(scope="module")
def binary(wine) -> tuple[np.ndarray, ...]:
    """Class 0 against the others: one coefficient vector, no coalition with other classes."""
    x, y, x_test, y_test = wine
    return x, (y == 0).astype(np.int64), x_test, (y_test == 0).astype(np.int64)


def nearest_centroid(x: np.ndarray, y: np.ndarray):
    """A callable learner (loky's cloudpickle carries it, and its lambda, to the workers)."""
    classes = np.unique(y)
    centroids = np.stack([x[y == c].mean(axis=0) for c in classes])
    return lambda x_test: classes[
        ((x_test[:, None, :] - centroids[None]) ** 2).sum(axis=2).argmin(axis=1)
    ]


@pytest.fixture(scope="module")
def parallel(wine) -> Iterator[DataGame]:
    """One game with two workers for the module: a pool starts once (seconds: its workers
    import the package)."""
    yield DataGame(*wine, fit=LogisticRegression(), n_jobs=2)


def mixed_batch(n_players: int) -> np.ndarray:
    """Random coalitions with the empty one and the full one among them."""
    rng = np.random.default_rng(1)
    batch = rng.random((24, n_players)) < rng.random((24, 1))
    batch[3] = False
    batch[7] = True
    return batch


def test_a_batch_fitted_in_workers_equals_the_serial_one_bit_for_bit(wine, parallel) -> None:
    serial = DataGame(*wine, fit=LogisticRegression())
    batch = mixed_batch(N_TRAIN)
    before = parallel.n_fits
    assert np.array_equal(parallel.value(batch), serial.value(batch))
    assert parallel.n_fits - before == serial.n_fits > 1
    assert parallel._pool is not None  # the fits did go to the workers


def test_tmc_shapley_with_workers_equals_the_serial_run_bit_for_bit(wine, parallel) -> None:
    serial = DataGame(*wine, fit=LogisticRegression())
    # Whole rounds as tasks (the default cuts them by the measured cost of a fit: timing).
    runs = [
        tmc_shapley(game, max_evaluations=150, seed=0, value_range=2.0, walks_per_task=None)
        for game in (serial, parallel)
    ]
    assert np.array_equal(runs[0].values, runs[1].values)
    assert np.array_equal(runs[0].ci_low, runs[1].ci_low)
    assert runs[0].n_evaluations == runs[1].n_evaluations == 150


def test_a_callable_learner_travels_to_the_workers(wine) -> None:
    batch = mixed_batch(N_TRAIN)
    serial = DataGame(*wine, fit=nearest_centroid).value(batch)
    game = DataGame(*wine, fit=nearest_centroid, n_jobs=2)
    assert np.array_equal(game.value(batch), serial)
    # Pickled (as Ray ships a game), the copy leaves the pool behind and values alike.
    copy = pickle.loads(pickle.dumps(game))
    assert copy._pool is None
    assert np.array_equal(copy.value(batch[:1]), serial[:1])


def test_a_fit_that_raises_in_a_worker_is_wrapped_naming_the_first_coalition(wine) -> None:
    def broken(x, y):
        raise np.linalg.LinAlgError("singular matrix")

    game = DataGame(*wine, fit=broken, n_jobs=2)
    batch = np.zeros((4, N_TRAIN), bool)
    for row, size in enumerate((5, 6, 7, 8)):
        batch[row, :size] = True
    classes = len(np.unique(wine[1][:5]))
    # The same message as in this process, for the batch's first coalition whichever worker
    # failed first.
    with pytest.raises(
        RuntimeError,
        match=rf"failed on a coalition of 5 training point\(s\) with {classes} class\(es\): "
        r"LinAlgError: singular matrix",
    ):
        game.value(batch)


def dies_on_seven_points(x, y):
    """A learner whose process dies (as on a crash or the kernel's OOM killer) on 7 points."""
    if len(x) == 7:
        os._exit(1)
    return nearest_centroid(x, y)


def test_a_worker_that_dies_is_named_and_the_next_batch_gets_new_workers(wine) -> None:
    game = DataGame(*wine, fit=dies_on_seven_points, n_jobs=2)
    batch = np.zeros((3, N_TRAIN), bool)
    for row, size in enumerate((7, 8, 9)):
        batch[row, :size] = True
    with pytest.raises(
        RuntimeError, match="A worker process of DataGame died while fitting a batch of 3"
    ):
        game.value(batch)
    serial = DataGame(*wine, fit=nearest_centroid).value(batch[1:])
    assert np.array_equal(game.value(batch[1:]), serial)


def test_a_worker_killed_while_idle_is_named_at_the_next_batch_which_restarts(wine) -> None:
    """Killed between batches (the OOM killer picks an idle worker too), the pool is broken
    before the next batch: that batch is one named error, not loky's, and the one after it
    gets new workers (a broken pool kept would fail every later batch)."""
    batch = mixed_batch(N_TRAIN)
    serial = DataGame(*wine, fit=nearest_centroid).value(batch)
    game = DataGame(*wine, fit=nearest_centroid, n_jobs=2)
    game.value(batch)
    pool = game._pool
    victim = next(iter(pool._processes.values()))
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    # loky's manager thread marks the pool broken once it sees the death; waiting for that
    # (a bound, never a measured time) makes the next submit meet the broken pool.
    for _ in range(600):
        if pool._flags.broken is not None:
            break
        time.sleep(0.1)
    with pytest.raises(RuntimeError, match=r"A worker process of DataGame died .* or idle before"):
        game.value(batch)
    assert np.array_equal(game.value(batch), serial)
    assert game._pool is not pool


def fails_on_five_points_and_is_slow_on_six(x, y):
    """A fit that raises on 5 points, and one that would hold its worker for minutes on 6."""
    if len(x) == 5:
        raise ValueError("five")
    if len(x) == 6:
        time.sleep(600)
    return nearest_centroid(x, y)


def test_a_batch_that_raises_stops_its_workers(wine) -> None:
    """A fit that raises ends the batch; the other chunks already in the workers would run
    on (and this process's exit would wait for them): the workers are stopped instead."""
    game = DataGame(*wine, fit=fails_on_five_points_and_is_slow_on_six, n_jobs=2)
    batch = np.zeros((2, N_TRAIN), bool)
    batch[0, :7], batch[1, :8] = True, True
    serial = DataGame(*wine, fit=nearest_centroid).value(batch)
    assert np.array_equal(game.value(batch), serial)
    workers = list(game._pool._processes.values())
    failing = np.zeros((2, N_TRAIN), bool)
    failing[0, :5], failing[1, :6] = True, True
    with pytest.raises(RuntimeError, match=r"failed on a coalition of 5 training point\(s\)"):
        game.value(failing)
    assert game._pool is None
    # Loky's manager thread kills the workers and reaps them; a worker it has reaped but not
    # yet given its exit code reads as alive for a moment (is_alive() failed once that way in a
    # full run), so wait for the exit codes, within a bound far below the 600 s sleep.
    deadline = time.monotonic() + 120
    for worker in workers:
        while worker.exitcode is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.exitcode is not None, f"{worker.name} still runs"
    assert np.array_equal(game.value(batch), serial)  # new workers


def test_n_jobs_leaves_the_fingerprint_and_warm_start_enters_it(wine) -> None:
    base = DataGame(*wine, fit=LogisticRegression())
    assert base.fingerprint() == DataGame(*wine, fit=LogisticRegression(), n_jobs=2).fingerprint()
    warm = DataGame(*wine, fit=LogisticRegression(), warm_start=True)
    assert base.fingerprint() != warm.fingerprint()


class Margins(LogisticRegression):
    """Logistic regression whose 'predictions' are its margins on the test points."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.decision_function(x)


class Iterations(LogisticRegression):
    """Logistic regression whose 'predictions' are the solver's iteration count."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), float(self.n_iter_.max()))


def mean(_: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(predictions))


def test_warm_starts_agree_with_cold_ones_within_the_solver_tolerance(binary) -> None:
    x, _, x_test, _ = binary
    tol, c = 1e-6, 1.0
    learner = Margins(C=c, tol=tol, fit_intercept=False, max_iter=10_000)
    batch = mixed_batch(N_TRAIN)
    cold = DataGame(*binary, fit=learner, metric=mean).value(batch)
    warm = DataGame(*binary, fit=learner, metric=mean, warm_start=True).value(batch)
    # V = mean margin = x_bar . w, so |V_warm - V_cold| <= |x_bar| |w_warm - w_cold|. lbfgs
    # stops at |grad|_inf <= tol, so |grad|_2 <= sqrt(d) tol; scikit-learn's objective, mean
    # loss + |w|^2 / (2 C n_S), is 1 / (C n_S)-strongly convex, so each w lies within
    # sqrt(d) tol C n_S of the optimum: the two within twice that.
    sizes = batch.sum(axis=1)
    bound = np.linalg.norm(x_test.mean(axis=0)) * 2 * np.sqrt(x.shape[1]) * tol * c * sizes
    assert (np.abs(warm - cold) <= bound).all()
    assert np.abs(warm - cold).max() > 0  # the warm fits did start elsewhere


def test_warm_starts_take_fewer_iterations(binary) -> None:
    batch = mixed_batch(N_TRAIN)
    batch = batch[batch.sum(axis=1) > N_TRAIN // 2]  # near the full set, as in TMC's walks
    learner = Iterations(tol=1e-6, max_iter=10_000)
    cold = DataGame(*binary, fit=learner, metric=mean).value(batch)
    warm = DataGame(*binary, fit=learner, metric=mean, warm_start=True).value(batch)
    assert warm.sum() < cold.sum()


def test_a_coalition_without_all_the_classes_is_fitted_cold(wine) -> None:
    y = wine[1]
    two_classes = np.isin(y, (0, 1))[None]
    assert len(np.unique(y[two_classes[0]])) == 2 < len(np.unique(y))
    learner = Margins(tol=1e-3)
    cold = DataGame(*wine, fit=learner, metric=mean)
    warm = DataGame(*wine, fit=learner, metric=mean, warm_start=True)
    warm.value(np.zeros((1, N_TRAIN), bool))
    assert warm.n_fits == 0  # the empty coalition needs no fit, nor the warm starts' model
    assert warm.value(two_classes)[0] == cold.value(two_classes)[0]
    assert warm.n_fits == 2  # the full-data model, then the coalition


def test_bad_n_jobs_and_warm_start_are_named(wine) -> None:
    for bad in (0, -2):
        with pytest.raises(ValueError, match=rf"'n_jobs' parameter of DataGame .*Got {bad}"):
            DataGame(*wine, fit=nearest_centroid, n_jobs=bad)
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError, match=r"'n_jobs' parameter of DataGame must be an int >= 1"):
            DataGame(*wine, fit=nearest_centroid, n_jobs=bad)
    with pytest.raises(TypeError, match="'warm_start' parameter of DataGame must be a bool"):
        DataGame(*wine, fit=LogisticRegression(), warm_start="yes")
    for learner in (nearest_centroid, KNeighborsClassifier()):
        with pytest.raises(TypeError, match="'warm_start' parameter of DataGame needs a scikit"):
            DataGame(*wine, fit=learner, warm_start=True)
    with pytest.raises(ValueError, match="no effect with LogisticRegression\\(solver='liblinear'"):
        DataGame(*wine, fit=LogisticRegression(solver="liblinear"), warm_start=True)
