"""What the sampling estimators share: argument checks, seeding, the round loop, checkpoints."""

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.files import atomic_write, json_text
from neuronshapley._internal.validation import check_choice, check_float, check_int
from neuronshapley.estimators.progress import Progress, ProgressCallback
from neuronshapley.estimators.walks import Evaluator, Truncation, WalkSampler, WalkState
from neuronshapley.games.base import Game
from neuronshapley.results.bounds import BOUNDS
from neuronshapley.results.result import ShapleyResult, result_from_stats
from neuronshapley.results.stats import RunningStats

CHECKPOINT_VERSION = 1

# A round asks for its permutations' sampled players once: None means every player; a string
# means stop now, for that reason.
Plan = NDArray[np.bool_] | None | str


def seed_entropy(seed: Any, owner: str) -> int:
    """The root of the permutation stream: the int seed itself, or one drawn from a Generator."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**63))
    if seed is None:
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    check_int(seed, "seed", owner, min_value=0)
    return int(seed)


def check_truncation(
    owner: str, truncation: Any, truncation_mode: Any, patience: Any
) -> Truncation | None:
    """Build the truncation rule, or ``None`` when ``truncation`` is ``None``."""
    check_choice(truncation_mode, "truncation_mode", owner, ("relative", "absolute"))
    check_int(patience, "patience", owner, min_value=1)
    if truncation is None:
        return None
    if truncation_mode == "relative":
        check_float(truncation, "truncation", owner, low=0.0, high=1.0, include_high=False)
    else:
        check_float(truncation, "truncation", owner)
    return Truncation(float(truncation), truncation_mode, int(patience))


@dataclass
class RunSpec:
    """One sampling run: what identifies it (for resuming) and how it is carried out."""

    owner: str
    game: Game
    entropy: int
    identity: dict[str, Any]
    truncation: Truncation | None
    antithetic: bool
    batch_size: int
    n_walks: int
    max_evaluations: int | None
    max_seconds: float | None
    checkpoint: str | os.PathLike[str] | None
    checkpoint_every: float
    resume: str | os.PathLike[str] | None
    progress: ProgressCallback | None = None


def make_spec(
    owner: str,
    game: Game,
    identity: dict[str, Any],
    *,
    seed: Any,
    max_evaluations: Any,
    max_seconds: Any,
    checkpoint: str | os.PathLike[str] | None,
    checkpoint_every: Any,
    resume: str | os.PathLike[str] | None,
    progress: ProgressCallback | None = None,
) -> RunSpec:
    """Validate what every sampling estimator takes and describe the run.

    ``identity`` holds the parameters that define the run (a resumed run must match them):
    at least ``delta``, ``bound``, ``value_range``, ``union_bound``, ``truncation``,
    ``truncation_mode``, ``patience``, ``batch_size`` and ``n_walks``.
    """
    check_float(
        identity["delta"], "delta", owner, low=0.0, high=1.0, include_low=False, include_high=False
    )
    check_choice(identity["bound"], "bound", owner, BOUNDS)
    check_float(
        identity["value_range"], "value_range", owner, low=0.0, include_low=False, allow_none=True
    )
    for flag in ("union_bound", "antithetic", "adaptive"):
        if not isinstance(identity.get(flag, False), bool):
            raise TypeError(
                f"The {flag!r} parameter of {owner} must be a bool. Got {identity[flag]!r}."
            )
    check_int(max_evaluations, "max_evaluations", owner, min_value=1, allow_none=True)
    check_float(max_seconds, "max_seconds", owner, low=0.0, include_low=False, allow_none=True)
    check_int(identity["batch_size"], "batch_size", owner, min_value=1)
    check_int(identity["n_walks"], "n_walks", owner, min_value=1)
    check_float(checkpoint_every, "checkpoint_every", owner, low=0.0)
    rule = check_truncation(
        owner, identity["truncation"], identity["truncation_mode"], identity["patience"]
    )
    return RunSpec(
        owner=owner,
        game=game,
        entropy=resume_entropy(seed, resume, owner),
        identity=identity,
        truncation=rule,
        antithetic=identity.get("antithetic", False),
        batch_size=identity["batch_size"],
        n_walks=identity["n_walks"],
        max_evaluations=max_evaluations,
        max_seconds=max_seconds,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        progress=progress,
    )


def run_rounds(spec: RunSpec, plan: Callable[[WalkState], tuple[Plan, int]]) -> ShapleyResult:
    """Walk rounds of permutations until ``plan`` says stop or the budget is spent.

    ``plan(state)`` returns the players to sample in the next round (or a stop reason) and the
    number of permutations in it.

    Ctrl-C (``KeyboardInterrupt``) ends the run cleanly: the state of the last complete round is
    checkpointed (a resumed run repeats the interrupted round) and returned with the stop reason
    ``"interrupted"``.
    """
    game = spec.game
    if spec.checkpoint is not None:
        # Fail before spending the budget, not when saving at the end.
        directory = Path(spec.checkpoint)
        if directory.exists() and not directory.is_dir():
            raise ValueError(
                f"The 'checkpoint' parameter of {spec.owner} must be a directory; {directory} "
                "is a file."
            )
        directory.mkdir(parents=True, exist_ok=True)
    state, elapsed_before = _start_state(spec)
    budget = None if spec.max_evaluations is None else spec.max_evaluations - state.n_evaluations
    evaluator = Evaluator(game, max(budget, 0) if budget is not None else None, spec.max_seconds)
    sampler = WalkSampler(
        evaluator,
        spec.entropy,
        state,
        truncation=spec.truncation,
        antithetic=spec.antithetic,
        batch_size=spec.batch_size,
    )
    try:
        stop_reason = _loop(spec, plan, sampler, evaluator, elapsed_before)
        resumable = state
    except KeyboardInterrupt:  # Ctrl-C: keep the last complete round
        stop_reason, resumable = "interrupted", sampler.resumable
    elapsed = elapsed_before + evaluator.elapsed()
    if spec.checkpoint is not None:
        save_checkpoint(spec, sampler.resumable, elapsed)
    state = resumable
    params = dict(spec.identity)
    params.update(max_evaluations=spec.max_evaluations, max_seconds=spec.max_seconds)
    diagnostics = {
        "n_permutations": state.next_permutation,
        "v_full": state.v_full,
        "v_empty": state.v_empty,
        "n_walks_truncated": state.n_walks_truncated,
        "mean_removed_fraction_at_truncation": (
            state.removed_fraction_sum / state.n_walks_truncated
            if state.n_walks_truncated
            else None
        ),
        **state.extra,
    }
    return result_from_stats(
        state.stats,
        player_names=list(game.player_names),
        n_evaluations=state.n_evaluations,
        estimator=spec.owner,
        params=params,
        seed=spec.entropy,
        stop_reason=stop_reason,
        elapsed_seconds=elapsed,
        diagnostics=diagnostics,
    )


def _loop(
    spec: RunSpec,
    plan: Callable[[WalkState], tuple[Plan, int]],
    sampler: WalkSampler,
    evaluator: Evaluator,
    elapsed_before: float,
) -> str:
    """Run rounds until a stop reason; ``sampler.resumable`` tracks the last complete state."""
    state = sampler.state
    if not sampler.evaluate_endpoints():
        return "max_evaluations"
    last_saved = time.perf_counter()
    while True:
        sampled, size = plan(state)
        if isinstance(sampled, str):
            sampler.resumable = state
            return sampled
        if evaluator.out_of_time():
            sampler.resumable = state
            return "max_seconds"
        sampler.resumable = state.copy()
        if not sampler.run_round(size, sampled):
            return sampler.stop_reason or "budget"
        sampler.resumable = state
        elapsed = elapsed_before + evaluator.elapsed()
        if spec.progress is not None:
            spec.progress(
                Progress(
                    n_evaluations=state.n_evaluations,
                    n_permutations=state.next_permutation,
                    elapsed_seconds=elapsed,
                    values=state.stats.mean,
                    n_undecided=state.extra.get("n_undecided"),
                    max_evaluations=spec.max_evaluations,
                    max_seconds=spec.max_seconds,
                )
            )
        if (
            spec.checkpoint is not None
            and time.perf_counter() - last_saved >= spec.checkpoint_every
        ):
            save_checkpoint(spec, state, elapsed)
            last_saved = time.perf_counter()


def _start_state(spec: RunSpec) -> tuple[WalkState, float]:
    if spec.resume is None:
        return WalkState(RunningStats.zeros(spec.game.n_players)), 0.0
    return load_checkpoint(spec)


def save_checkpoint(spec: RunSpec, state: WalkState, elapsed: float) -> None:
    """Write ``state`` to ``spec.checkpoint`` as ``state.json`` + ``state.npz`` (atomically)."""
    directory = Path(spec.checkpoint)  # type: ignore[arg-type]
    directory.mkdir(parents=True, exist_ok=True)
    stats = state.stats
    meta = {
        "checkpoint_version": CHECKPOINT_VERSION,
        "estimator": spec.owner,
        "identity": spec.identity,
        "entropy": spec.entropy,
        "n_players": stats.n_players,
        "next_permutation": state.next_permutation,
        "n_evaluations": state.n_evaluations,
        "v_full": state.v_full,
        "v_empty": state.v_empty,
        "n_walks_truncated": state.n_walks_truncated,
        "removed_fraction_sum": state.removed_fraction_sum,
        "sample_min": stats.sample_min,
        "sample_max": stats.sample_max,
        "extra": state.extra,
        "elapsed_seconds": elapsed,
    }
    atomic_write(
        directory / "state.npz",
        lambda f: np.savez(f, count=stats.count, mean=stats.mean, m2=stats.m2),
    )
    atomic_write(directory / "state.json", json_text(meta).encode())


def load_checkpoint(spec: RunSpec) -> tuple[WalkState, float]:
    """Read the state written by :func:`save_checkpoint`, refusing one from a different run."""
    directory = Path(spec.resume)  # type: ignore[arg-type]
    meta_path, array_path = directory / "state.json", directory / "state.npz"
    if not meta_path.is_file() or not array_path.is_file():
        raise FileNotFoundError(
            f"The 'resume' parameter of {spec.owner} points at {directory}, which holds no "
            "checkpoint (state.json and state.npz, written when checkpoint= is given)."
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise ValueError(f"{meta_path} has an unknown checkpoint version.")
    if meta["estimator"] != spec.owner:
        raise ValueError(
            f"The checkpoint in {directory} was written by {meta['estimator']}, not {spec.owner}."
        )
    if meta["n_players"] != spec.game.n_players:
        raise ValueError(
            f"The checkpoint in {directory} is for {meta['n_players']} players; the game has "
            f"{spec.game.n_players}."
        )
    if meta["entropy"] != spec.entropy:
        raise ValueError(
            f"The checkpoint in {directory} was made with seed {meta['entropy']}; this call has "
            f"seed {spec.entropy}. Resume with the same seed (or seed=None to take the saved one)."
        )
    for key, value in spec.identity.items():
        if meta["identity"].get(key) != value:
            raise ValueError(
                f"The checkpoint in {directory} was made with {key}={meta['identity'].get(key)!r}; "
                f"this call has {key}={value!r}. Resume with the same parameters (only the "
                "budgets may change)."
            )
    with np.load(array_path, allow_pickle=False) as data:
        stats = RunningStats(
            data["count"],
            data["mean"],
            data["m2"],
            meta["sample_min"] if meta["sample_min"] is not None else math.inf,
            meta["sample_max"] if meta["sample_max"] is not None else -math.inf,
        )
    state = WalkState(
        stats,
        next_permutation=meta["next_permutation"],
        n_evaluations=meta["n_evaluations"],
        v_full=meta["v_full"] if meta["v_full"] is not None else math.nan,
        v_empty=meta["v_empty"] if meta["v_empty"] is not None else math.nan,
        n_walks_truncated=meta["n_walks_truncated"],
        removed_fraction_sum=meta["removed_fraction_sum"],
        extra=meta["extra"],
    )
    return state, float(meta["elapsed_seconds"])


def resume_entropy(seed: Any, resume: Any, owner: str) -> int:
    """The seed of a run: given, or (when resuming with ``seed=None``) the checkpoint's."""
    if resume is not None and seed is None:
        meta_path = Path(resume) / "state.json"
        if meta_path.is_file():
            return int(json.loads(meta_path.read_text())["entropy"])
    return seed_entropy(seed, owner)
