"""The Ray backend: a run's tasks walked by Ray actors, on this machine or on a cluster.

The game is put in Ray's object store once per run; one actor per worker deserialises it once
and walks the tasks it is given (``job.walker(game).walk(task)``). The driver keeps two tasks in
flight per actor, hands the next task to whichever actor finishes first, and returns the
statistics in task order, so the result is the local run's bit for bit whatever the number of
workers (see :mod:`neuronshapley.estimators.backend`).

Faults: an actor whose process dies is restarted by Ray (``max_restarts``) and the task it was
walking is sent again (``max_task_retries``). A task is a pure function of the game, the job and
its range of permutations, so a retried task gives the same statistics: no sample is lost and
none is counted twice.

A model whose class comes from a user's ``file.py`` (loaded by
:mod:`neuronshapley._internal.specs`) travels by value: its code goes with the game, so the
workers need neither the file nor its path.
"""

import socket
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from types import ModuleType
from typing import Any

from neuronshapley._internal.optional import require
from neuronshapley._internal.validation import check_float, check_int
from neuronshapley.estimators.backend import BackendRun, WalkJob
from neuronshapley.estimators.walks import RangeStats, Walker, WalkRange
from neuronshapley.games.base import Game

_OWNER = "RayBackend"
# Tasks in flight per actor: the next one waits on the worker while the driver merges.
_IN_FLIGHT = 2
# Modules made by the spec loader from a user's file.py (see _internal/specs.py).
_USER_MODULE_PREFIX = "_neuronshapley_user_"


class RayBackend:
    """Walk a run's tasks on Ray actors, one per worker.

    Pass it as ``backend=`` to ``permutation_shapley``, ``truncated_shapley`` or
    ``tmab_shapley``, with ``walks_per_task`` (the permutations of one task; part of the run's
    identity): the result equals a local run with the same ``walks_per_task`` bit for bit, for
    any number of workers.

    Args:
        workers: Number of actors. Default ``None``: one per CPU of the cluster (of this
            machine when the backend starts Ray itself).
        address: A running cluster, ``"host:port"`` of its head (``ray start --head``), or
            ``"auto"``. Default ``None``: the Ray already initialised in this process, else a
            local cluster started for the run (with ``workers`` CPUs) and shut down after it.
        num_gpus_per_worker: GPUs each actor reserves (Ray sets ``CUDA_VISIBLE_DEVICES``, so a
            game on ``"cuda"`` uses the actor's own GPU). Default 0.0.
        connect_timeout: Seconds to wait for ``address`` to answer before a clear error.
            Default 30.0.
        max_restarts: Times Ray restarts an actor whose process died. Default 3.
        max_task_retries: Times a task of a dead actor is sent again. Default 3.
    """

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        num_gpus_per_worker: float = 0.0,
        connect_timeout: float = 30.0,
        max_restarts: int = 3,
        max_task_retries: int = 3,
    ) -> None:
        self.workers = check_int(workers, "workers", _OWNER, min_value=1, allow_none=True)
        if address is not None and not isinstance(address, str):
            raise TypeError(
                f"The 'address' parameter of {_OWNER} must be 'host:port', 'auto' or None. "
                f"Got {address!r} instead."
            )
        if address is not None and address != "auto":
            _host_and_port(address)
        self.address = address
        # Not None: allow_none is False (the checks' return types admit None).
        self.num_gpus_per_worker = float(
            check_float(num_gpus_per_worker, "num_gpus_per_worker", _OWNER, low=0.0) or 0.0
        )
        self.connect_timeout = float(
            check_float(connect_timeout, "connect_timeout", _OWNER, low=0.0, include_low=False)
            or 0.0
        )
        self.max_restarts = check_int(max_restarts, "max_restarts", _OWNER, min_value=0)
        self.max_task_retries = check_int(max_task_retries, "max_task_retries", _OWNER, min_value=0)

    def __repr__(self) -> str:
        return f"RayBackend(workers={self.workers}, address={self.address!r})"

    def check_address(self) -> None:
        """Raise ``ConnectionError`` now, within ``connect_timeout``, if nothing answers at
        ``address`` (``start`` checks it too; this lets a caller fail before any other work)."""
        if self.address not in (None, "auto"):
            _probe(self.address, self.connect_timeout)

    def start(self, game: Game, job: WalkJob) -> BackendRun:
        """Connect to (or start) Ray, ship ``game`` once and start the actors."""
        return RayRun(self, game, job)


class _Worker:
    """What one actor holds: the game (deserialised once) and the walker of the run."""

    def __init__(self, game: Game, job: WalkJob) -> None:
        self.walker: Walker = job.walker(game)

    def ready(self) -> bool:
        return True

    def walk(self, first: int, count: int, sampled: Any) -> RangeStats:
        # The driver puts the task back on its own range: the sampled mask need not return.
        return replace(self.walker.walk(WalkRange(first, count, sampled)), work=WalkRange(0, 1))


class RayRun:
    """A :class:`RayBackend` started for one run (see :meth:`RayBackend.start`)."""

    def __init__(self, backend: RayBackend, game: Game, job: WalkJob) -> None:
        ray = require("ray", "ray", "the Ray backend")
        self._ray = ray
        self._started_ray = False
        self._by_value: list[ModuleType] = []
        self.actors: list[Any] = []
        try:
            self._connect(backend)
            n_workers = backend.workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
            _check_capacity(ray, backend, n_workers)
            self._by_value = _user_modules()
            for module in self._by_value:
                ray.cloudpickle.register_pickle_by_value(module)
            game_ref = ray.put(game)
            actor = ray.remote(_Worker).options(
                num_cpus=1,
                num_gpus=backend.num_gpus_per_worker,
                max_restarts=backend.max_restarts,
                max_task_retries=backend.max_task_retries,
            )
            self.actors = [actor.remote(game_ref, job) for _ in range(n_workers)]
            self._game_ref = game_ref  # kept alive so that a restarted actor finds it
            try:
                ray.get([a.ready.remote() for a in self.actors])
            except ray.exceptions.RayError as error:
                files = [getattr(m, "__file__", m.__name__) for m in self._by_value]
                where = f" (the model's code from {', '.join(files)})" if files else ""
                raise RuntimeError(
                    f"The Ray workers could not rebuild the game {game!r}{where}: "
                    f"{type(error).__name__}: {_last_line(error)}"
                ) from error
        except BaseException:
            self.close()
            raise

    def _connect(self, backend: RayBackend) -> None:
        ray = self._ray
        backend.check_address()
        if ray.is_initialized():
            return
        if backend.address is not None:
            ray.init(address=backend.address, log_to_driver=False)
        else:
            ray.init(num_cpus=backend.workers, include_dashboard=False, log_to_driver=False)
        self._started_ray = True

    def walk(self, tasks: Sequence[WalkRange]) -> list[RangeStats]:
        """Walk every task on the actors; their statistics in the order of ``tasks``."""
        ray = self._ray
        shared: dict[int, Any] = {}  # one copy of each sampled mask in the object store
        queue = deque(enumerate(tasks))
        pending: dict[Any, tuple[int, Any]] = {}
        results: list[RangeStats | None] = [None] * len(tasks)

        def submit(actor: Any) -> None:
            index, task = queue.popleft()
            sampled = task.sampled
            if sampled is not None:
                if id(sampled) not in shared:
                    shared[id(sampled)] = ray.put(sampled)
                sampled = shared[id(sampled)]
            pending[actor.walk.remote(task.first, task.count, sampled)] = (index, actor)

        for _ in range(_IN_FLIGHT):
            for actor in self.actors:
                if queue:
                    submit(actor)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index, actor = pending.pop(ref)
                outcome = ray.get(ref)
                # Arrays from the object store are read-only views: the driver gets its own.
                results[index] = replace(outcome, work=tasks[index], stats=outcome.stats.copy())
                if queue:
                    submit(actor)
        return [outcome for outcome in results if outcome is not None]

    def close(self) -> None:
        """Kill the actors, and shut Ray down if this run started it."""
        ray = self._ray
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        for module in self._by_value:
            ray.cloudpickle.unregister_pickle_by_value(module)
        self._by_value = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False


def _host_and_port(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"The 'address' parameter of {_OWNER} must be 'host:port' (e.g. 'head-node:6379', "
            f"the port of 'ray start --head --port 6379') or 'auto'. Got {address!r} instead."
        )
    return host, int(port)


def _probe(address: str, timeout: float) -> None:
    """Fail in at most ``timeout`` seconds, and in one line, when nothing listens at ``address``
    (``ray.init`` would retry for a long while)."""
    try:
        socket.create_connection(_host_and_port(address), timeout=timeout).close()
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else error.strerror or str(error)
        raise ConnectionError(
            f"The 'address' parameter of {_OWNER}: no Ray cluster answers at {address} "
            f"({reason}, waited at most {timeout:g} s). Start one there with "
            "'ray start --head --port 6379', or check the host and port."
        ) from None


def _check_capacity(ray: ModuleType, backend: RayBackend, n_workers: int) -> None:
    """More actors than the cluster can place would wait forever: say so instead."""
    resources = ray.cluster_resources()
    cpus = int(resources.get("CPU", 0))
    if n_workers > cpus:
        raise ValueError(
            f"The 'workers' parameter of {_OWNER} asks for {n_workers} workers of 1 CPU each, "
            f"but the Ray cluster has {cpus} CPUs. Got workers={n_workers} instead."
        )
    gpus = resources.get("GPU", 0.0)
    if n_workers * backend.num_gpus_per_worker > gpus:
        raise ValueError(
            f"The 'num_gpus_per_worker' parameter of {_OWNER} asks for "
            f"{n_workers * backend.num_gpus_per_worker:g} GPUs in all ({n_workers} workers), but "
            f"the Ray cluster has {gpus:g}. Got num_gpus_per_worker="
            f"{backend.num_gpus_per_worker} instead."
        )


def _user_modules() -> list[ModuleType]:
    """The modules made from a user's file.py: their code must travel with the game."""
    return [
        module
        for name, module in list(sys.modules.items())
        if name.startswith(_USER_MODULE_PREFIX) and module is not None
    ]


def _last_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
