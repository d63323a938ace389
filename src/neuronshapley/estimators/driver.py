"""The driver loop of the sampling estimators: rounds, decisions, checkpoints, progress.

The work itself is the pure step :meth:`Walker.walk` (permutations j..j+m -> mergeable
statistics). The driver asks the estimator's planner for the next round (a :class:`RoundPlan` or a
:class:`Stop`), has the round's tasks walked, merges their statistics into the run's state in the
order of the permutations, checkpoints, and reports progress. A checkpoint holds the state after
the last complete *task*: inside a round it also holds the round itself (its range and sampled
players), so a resumed run finishes that round with the same plan. A task cut short by a budget is
neither in the checkpoint nor in the result (only its evaluations are counted): its walks measured
only the players removed first, marginals against large coalitions, which would bias the values.
A resumed run walks it again and ends where an uninterrupted run ends.

Ctrl-C (``KeyboardInterrupt``, Python's own cancellation) ends a run cleanly with the state of
the last complete round; the estimators install no signal handlers. Which signals mean "stop"
(the command line also treats SIGTERM so) is the caller's policy.
"""

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from neuronshapley._internal.validation import check_int, check_progress
from neuronshapley.estimators.backend import (
    Backend,
    BackendRun,
    WalkJob,
    check_backend,
    split_round,
)
from neuronshapley.estimators.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from neuronshapley.estimators.options import (
    Budget,
    Persistence,
    RoundPlan,
    Sampling,
    Stop,
    Truncation,
)
from neuronshapley.estimators.progress import Progress, ProgressCallback
from neuronshapley.estimators.state import RunState
from neuronshapley.estimators.walks import (
    Endpoints,
    Evaluator,
    RangeStats,
    Walker,
    WalkRange,
    uses_contexts,
)
from neuronshapley.games.base import Game, game_fingerprint, player_groups
from neuronshapley.results.bounds import IntervalRule
from neuronshapley.results.result import (
    ShapleyResult,
    interval_rule,
    result_from_stats,
    widen_by_semivalue_tail,
)
from neuronshapley.results.tails import monotone_refuted


def seed_entropy(seed: Any, owner: str) -> int:
    """The root of the permutation stream: the int seed itself, or one drawn from a Generator."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**63))
    if seed is None:
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    check_int(seed, "seed", owner, min_value=0)
    return int(seed)


Planner = Callable[[RunState], RoundPlan | Stop]
"""An estimator's rule: from the run's state, the next round or the reason to stop."""


@dataclass(frozen=True)
class RunSpec:
    """One sampling run: the game, the typed options, and what identifies it for resuming.

    Attributes:
        owner: The estimator's name (in messages, results and checkpoints).
        game: The game.
        entropy: Root of the permutation stream.
        identity: The parameters a resumed run must share (JSON types; recorded in the result).
        sampling: How permutations are walked.
        interval: How intervals are computed.
        truncation: Early truncation, or ``None``.
        budget: When to stop regardless of the planner.
        persistence: Checkpoint and resume directories.
        progress: Called after every task (every round when a round is one task), or ``None``.
        backend: Where the tasks run (``None``: in this process).
    """

    owner: str
    game: Game
    entropy: int
    identity: dict[str, Any]
    sampling: Sampling
    interval: IntervalRule
    truncation: Truncation | None
    budget: Budget
    persistence: Persistence
    progress: ProgressCallback | None = None
    backend: Backend | None = None

    def with_sampling(self, sampling: Sampling) -> "RunSpec":
        """This spec with ``sampling`` (its task size chosen) in its options and identity."""
        chosen = {"walks_per_task": sampling.walks_per_task}
        return replace(self, sampling=sampling, identity={**self.identity, **chosen})


def run_identity(
    sampling: Sampling, interval: IntervalRule, truncation: Truncation | None
) -> dict[str, Any]:
    """The parameters every sampling run is identified by (flat, as ``ShapleyResult.params``;
    a semivalue's weights as one entry, only where there are any, so Shapley runs keep theirs)."""
    semivalue = {} if sampling.semivalue is None else {"semivalue": sampling.semivalue.record()}
    return {
        **semivalue,
        "truncation": None if truncation is None else truncation.threshold,
        "truncation_mode": "relative" if truncation is None else truncation.mode,
        "patience": 5 if truncation is None else truncation.patience,
        "continue_probability": None if truncation is None else truncation.continue_probability,
        # "bounded": intervals widened by the tails' bound; "unbiased": continue_probability.
        "truncation_bias": None if truncation is None else truncation.bias,
        "antithetic": sampling.antithetic,
        "delta": interval.delta,
        "bound": interval.bound,
        "value_range": interval.value_range,
        "union_bound": interval.union_bound,
        "batch_size": sampling.batch_size,
        "n_walks": sampling.n_walks,
        "walks_per_task": sampling.walks_per_task,
    }


def sampling_spec(
    owner: str,
    game: Game,
    seed: Any,
    progress: ProgressCallback | None,
    *,
    sampling: Sampling,
    interval: IntervalRule,
    truncation: Truncation | None,
    budget: Budget,
    persistence: Persistence,
    identity: dict[str, Any] | None = None,
    backend: Any = None,
) -> RunSpec:
    """The spec of a sampling run from validated options (``identity``: the estimator's own)."""
    check_progress(progress, owner)
    if truncation is not None and not getattr(game, "supports_truncation", True):
        # A game whose value has no "dead" level (the output for one class, say) says so.
        reason = getattr(game, "truncation_reason", "this game does not support it")
        raise ValueError(
            f"{owner} cannot truncate walks on {game!r} (pass truncation=None): {reason}"
        )
    identity = {**(identity or {}), **run_identity(sampling, interval, truncation)}
    return RunSpec(
        owner=owner,
        game=game,
        entropy=run_entropy(seed, persistence, owner),
        identity=identity,
        sampling=sampling,
        # The rule for the recorded samples (a range scaled by 1/p and by a semivalue's W),
        # read from the identity exactly as a result's intervals are read from its params.
        interval=interval_rule(identity),
        truncation=truncation,
        budget=budget,
        persistence=persistence,
        progress=progress,
        backend=check_backend(backend, owner),
    )


def run_entropy(seed: Any, persistence: Persistence, owner: str) -> int:
    """The seed of a run: given, or (when resuming with ``seed=None``) the checkpoint's."""
    if persistence.resume is not None and seed is None:
        saved = Checkpoint.peek_entropy(persistence.resume)
        if saved is not None:
            return saved
    return seed_entropy(seed, owner)


def run_rounds(spec: RunSpec, plan: Planner) -> ShapleyResult:
    """Walk rounds of permutations until ``plan`` says stop or the budget is spent."""
    game = spec.game
    fingerprint = game_fingerprint(game)
    persistence = spec.persistence
    if persistence.checkpoint is not None:
        persistence.checkpoint.mkdir(parents=True, exist_ok=True)
    pending: WalkRange | None = None
    if persistence.resume is None:
        state, elapsed_before = RunState.fresh(game.n_players), 0.0
    else:
        saved = load_checkpoint(
            persistence.resume,
            owner=spec.owner,
            n_players=game.n_players,
            entropy=spec.entropy,
            identity=spec.identity,
            fingerprint=fingerprint,
        )
        state, elapsed_before = saved.state, saved.elapsed_seconds
        pending = saved.pending
        spec = spec.with_sampling(spec.sampling.adopted(saved.identity))
    max_evaluations = spec.budget.max_evaluations
    budget = None if max_evaluations is None else max(max_evaluations - state.n_evaluations, 0)
    evaluator = Evaluator(game, budget, spec.budget.max_seconds)
    loop = _Loop(spec, plan, evaluator, state, elapsed_before, fingerprint, pending)
    try:
        stop_reason = loop.run()
    except KeyboardInterrupt:  # Ctrl-C: keep the last complete task
        stop_reason = "interrupted"
    finally:
        loop.close()
    elapsed = elapsed_before + evaluator.elapsed()
    if persistence.checkpoint is not None:
        loop.save(elapsed)
    return _result(loop.spec, loop.resumable, stop_reason, elapsed, fingerprint, loop.unused)


class _Loop:
    """The rounds of one call. ``resumable`` is the state after the last complete task (with
    ``pending``, the round it belongs to, while that round is unfinished): what the checkpoint
    holds and the result shows. ``unused`` counts the evaluations of a task a budget cut short:
    they were spent (the result counts them) but their marginals are dropped, whole task at once
    (see docs/design.md, "Seeds, merging, checkpoints")."""

    def __init__(
        self,
        spec: RunSpec,
        plan: Planner,
        evaluator: Evaluator,
        state: RunState,
        elapsed_before: float,
        fingerprint: str,
        pending: WalkRange | None = None,
    ) -> None:
        self.spec = spec
        self.pending = pending
        self.plan = plan
        self.evaluator = evaluator
        self.resumable = state
        self.unused = 0
        self.elapsed_before = elapsed_before
        self.fingerprint = fingerprint
        self.remote: BackendRun | None = None

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()
            self.remote = None

    def run(self) -> str:
        spec = self.spec
        endpoints = self.resumable.endpoints or self._endpoints()
        if endpoints is None:
            return "max_evaluations"
        if not spec.sampling.chosen:  # the task size, from the cost of V(N) and V(empty)
            walk_evaluations = spec.game.n_players - 1
            if spec.sampling.semivalue is not None:  # walks evaluate coalitions up to the cut
                walk_evaluations = min(spec.sampling.semivalue.cut, walk_evaluations)
            sampling = spec.sampling.resolved(
                self.evaluator.seconds_per_evaluation() or 0.0,
                walk_evaluations,
                spec.budget.max_seconds,
            )
            spec = self.spec = spec.with_sampling(sampling)
        walker = Walker(self.evaluator, spec.entropy, endpoints, spec.sampling, spec.truncation)
        if spec.backend is not None:
            job = WalkJob(spec.entropy, endpoints, spec.sampling, spec.truncation)
            self.remote = spec.backend.start(spec.game, job)
        self.last_saved = time.perf_counter()
        while True:
            if self.pending is None:  # a new round (else: finish the one a checkpoint holds)
                decision = self.plan(self.resumable)
                self.resumable.extra.update(decision.diagnostics)
                if isinstance(decision, Stop):
                    return decision.reason
                if self._out_of_permutations():
                    return "n_permutations"
                if self.evaluator.out_of_time():
                    return "max_seconds"
                self.pending = self._next_range(decision)
            tasks = [
                task
                for task in split_round(self.pending, spec.sampling.task)
                if task.first >= self.resumable.next_permutation
            ]
            for outcome in self._walk(tasks, walker):
                if not outcome.complete:
                    self.unused = outcome.n_evaluations
                    return walker.stop_reason or "budget"
                state = self.resumable.absorb(outcome)
                self.resumable = state
                self._report()  # after every task: an expensive game's round takes minutes
                if state.next_permutation < self.pending.first + self.pending.count:
                    self._save_if_due()  # inside the round: an expensive game loses one task
            self.pending = None
            self._save_if_due()

    def _report(self) -> None:
        spec, state = self.spec, self.resumable
        if spec.progress is None:
            return
        spec.progress(
            Progress(
                n_evaluations=state.n_evaluations,
                n_permutations=state.next_permutation,
                elapsed_seconds=self.elapsed_before + self.evaluator.elapsed(),
                values=state.stats.mean,
                n_undecided=state.extra.get("n_undecided"),
                max_evaluations=spec.budget.max_evaluations,
                max_seconds=spec.budget.max_seconds,
            )
        )

    def _save_if_due(self) -> None:
        persistence = self.spec.persistence
        if persistence.checkpoint is None:
            return
        if time.perf_counter() - self.last_saved >= persistence.checkpoint_every:
            self.save(self.elapsed_before + self.evaluator.elapsed())
            self.last_saved = time.perf_counter()

    def _walk(self, tasks: list[WalkRange], walker: Walker) -> Iterator[RangeStats]:
        """The round's tasks, in order, up to the first one a budget cut short."""
        if self.remote is None:
            for task in tasks:
                outcome = walker.walk(task)
                yield outcome
                if not outcome.complete:
                    return
            return
        for task, outcome in zip(tasks, self.remote.walk(tasks), strict=True):
            remaining = self.evaluator.remaining()
            if remaining is not None and outcome.n_evaluations > remaining:
                # This task crosses the budget: walk it here under the budget left, which stops
                # it exactly where a local run stops (the tasks after it are not used).
                yield walker.walk(task)
                return
            self.evaluator.n_evaluations += outcome.n_evaluations
            yield outcome

    def _endpoints(self) -> Endpoints | None:
        """Evaluate V(N) and V(empty) once per run; ``None`` if the budget does not allow it."""
        remaining = self.evaluator.remaining()
        if remaining is not None and remaining < 2:
            return None
        n = self.spec.game.n_players
        coalitions = np.zeros((2, n), dtype=bool)
        coalitions[0] = True
        v_full, v_empty = self.evaluator(coalitions)
        endpoints = Endpoints(float(v_full), float(v_empty))
        self.resumable.endpoints = endpoints
        self.resumable.n_evaluations += 2
        return endpoints

    def _out_of_permutations(self) -> bool:
        limit = self.spec.budget.n_permutations
        return limit is not None and self.resumable.next_permutation >= limit

    def _next_range(self, decision: RoundPlan) -> WalkRange:
        first = self.resumable.next_permutation
        count = decision.n_permutations
        limit = self.spec.budget.n_permutations
        if limit is not None:
            count = min(count, limit - first)
        return WalkRange(first, count, decision.sampled)

    def save(self, elapsed: float) -> None:
        directory = self.spec.persistence.checkpoint
        if directory is None:
            return
        save_checkpoint(
            directory,
            Checkpoint(
                owner=self.spec.owner,
                entropy=self.spec.entropy,
                identity=self.spec.identity,
                fingerprint=self.fingerprint,
                state=self.resumable,
                elapsed_seconds=elapsed,
                pending=self.pending,
            ),
        )


def _result(
    spec: RunSpec,
    state: RunState,
    stop_reason: str,
    elapsed: float,
    fingerprint: str,
    unused: int = 0,
) -> ShapleyResult:
    params = dict(spec.identity)
    params.update(max_evaluations=spec.budget.max_evaluations, max_seconds=spec.budget.max_seconds)
    endpoints = state.endpoints
    diagnostics = {
        "n_permutations": state.next_permutation,
        "v_full": endpoints.v_full if endpoints else math.nan,
        "v_empty": endpoints.v_empty if endpoints else math.nan,
        "n_walks_truncated": state.n_walks_truncated,
        "mean_removed_fraction_at_truncation": (
            state.removed_fraction_sum / state.n_walks_truncated
            if state.n_walks_truncated
            else None
        ),
        "n_walks_continued": state.n_walks_continued,
        # Spent on a task a budget cut short, whose marginals are not in the values.
        "n_evaluations_unused": unused,
        **state.extra,
    }
    if state.tails is not None:
        # Plain truncation biases the values by what the tails hide; the intervals are widened
        # by its bound (results.tails), whose statistics the result keeps for merging.
        diagnostics["truncation_tails"] = state.tails.to_record()
        if uses_contexts(spec.game):
            # Each walk scores its own examples, but the bound takes the run's V(empty) for a
            # truncated walk's (it has none of its own): no guarantee then.
            diagnostics["tails_use_run_endpoints"] = True
        if endpoints is not None:
            diagnostics["monotone_refuted"] = monotone_refuted(
                state.stats, endpoints.v_full, endpoints.v_empty
            )
    result = result_from_stats(
        state.stats,
        rule=spec.interval,
        player_names=list(spec.game.player_names),
        n_evaluations=state.n_evaluations + unused,
        estimator=spec.owner,
        params=params,
        seed=spec.entropy,
        stop_reason=stop_reason,
        elapsed_seconds=elapsed,
        diagnostics=diagnostics,
        groups=player_groups(spec.game),
        game_fingerprint=fingerprint,
    )
    if state.tails is not None:
        result.ci_low, result.ci_high, value_range = state.tails.interval(spec.interval)
        result.diagnostics["value_range_used"] = value_range
    widen_by_semivalue_tail(result)
    return result
