"""Where the walks of a round run: in this process (the default) or on workers elsewhere.

A round of the driver loop is cut into *tasks*: ranges of ``Sampling.walks_per_task``
permutations (the whole round by default). The tasks, not the workers, fix the arithmetic: each
task is walked by its own :class:`Walker` and the driver merges the tasks' statistics in
permutation order, so a run gives the same result bit for bit whether its tasks run one after
another here or at once on any number of workers.

A :class:`Backend` is started once per run with the game and what every task shares
(:class:`WalkJob`); its :meth:`BackendRun.walk` walks a round's tasks to the end and returns their
statistics in task order. The driver keeps the budget: it counts what the tasks spent in order,
and walks again here, under the exact budget left, the first task that would cross it, so that a
budget stops a distributed run exactly where it stops a local one.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from neuronshapley.estimators.options import Sampling, Truncation
from neuronshapley.estimators.walks import Endpoints, Evaluator, RangeStats, Walker, WalkRange
from neuronshapley.games.base import Game


@dataclass(frozen=True)
class WalkJob:
    """What every task of a run shares besides the game: a worker builds its walker from it.

    Attributes:
        entropy: Root of the permutation stream.
        endpoints: V(N) and V(empty) of the run (evaluated once, by the driver).
        sampling: How permutations are walked.
        truncation: Early truncation, or ``None``.
    """

    entropy: int
    endpoints: Endpoints
    sampling: Sampling
    truncation: Truncation | None

    def walker(self, game: Game) -> Walker:
        """A walker of ``game`` for this job, with no budget of its own."""
        return Walker(Evaluator(game), self.entropy, self.endpoints, self.sampling, self.truncation)


@runtime_checkable
class BackendRun(Protocol):
    """A backend started for one run."""

    def walk(self, tasks: Sequence[WalkRange]) -> list[RangeStats]:
        """Walk every task to its end; their statistics in the order of ``tasks``."""
        ...

    def close(self) -> None:
        """Release the workers (called once, when the run ends)."""
        ...


@runtime_checkable
class Backend(Protocol):
    """Runs the tasks of a run's rounds somewhere (see ``neuronshapley.backends``)."""

    def start(self, game: Game, job: WalkJob) -> BackendRun:
        """Ship ``game`` and ``job`` to the workers, once; the run's tasks follow."""
        ...


def split_round(work: WalkRange, walks_per_task: int | None) -> list[WalkRange]:
    """The tasks of a round: consecutive ranges of ``walks_per_task`` permutations (the last may
    be shorter); the whole round as one task when ``walks_per_task`` is ``None``."""
    if walks_per_task is None or walks_per_task >= work.count:
        return [work]
    return [
        WalkRange(first, min(walks_per_task, work.first + work.count - first), work.sampled)
        for first in range(work.first, work.first + work.count, walks_per_task)
    ]


def check_backend(backend: object, owner: str) -> Backend | None:
    """``backend`` if it is ``None`` (this process) or a :class:`Backend`."""
    if backend is None or isinstance(backend, Backend):
        return backend
    raise TypeError(
        f"The 'backend' parameter of {owner} must be None (walk here) or a backend such as "
        f"ns.backends.RayBackend(workers=2). Got {backend!r} instead."
    )
