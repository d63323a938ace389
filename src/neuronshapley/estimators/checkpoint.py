"""A sampling run's state on disk: one atomic file that carries the game's fingerprint.

The checkpoint is ``checkpoint.npz`` in the run's checkpoint directory: the statistics' arrays
and, in the same file, the run's record as JSON (estimator, seed, parameters, fingerprint of the
game, counters). It is written through the one atomic writer, so it cannot tear: a kill at any
moment leaves the previous checkpoint or the new one. Loading refuses a checkpoint of another
estimator, seed, parameter set or game, and reports a damaged file in one line.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuronshapley._internal.files import atomic_write, json_text, jsonable
from neuronshapley.estimators.options import AUTO
from neuronshapley.estimators.state import RunState
from neuronshapley.estimators.walks import Endpoints, WalkRange
from neuronshapley.results.stats import RunningStats
from neuronshapley.results.tails import TailBounds

CHECKPOINT_FILE = "checkpoint.npz"
CHECKPOINT_VERSION = 3
# Version 2 had no variance process (the anytime bound's); it resumes with a valid one (all its
# samples as one block). A version-2 checkpoint of a truncated run lacks the tails' statistics
# and is refused with its reason.
READABLE_CHECKPOINT_VERSIONS = (2, 3)
# What versions before 0.1's one-file checkpoint wrote (two files, renamed one after the other).
LEGACY_FILES = ("state.json", "state.npz")


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed: damaged, of another run or game, or too old."""


def has_legacy_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` holds a checkpoint of an older version (which cannot be resumed)."""
    return not has_checkpoint(directory) and (Path(directory) / LEGACY_FILES[0]).is_file()


def has_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` holds a checkpoint (``checkpoint=`` of an estimator wrote one)."""
    return (Path(directory) / CHECKPOINT_FILE).is_file()


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint holds: which run it is (owner, seed, parameters, game), its state, and
    the round in progress when the state is inside one (``pending``: its range and sampled
    players, so a resumed run finishes it with the same plan)."""

    owner: str
    entropy: int
    identity: dict[str, Any]
    fingerprint: str
    state: RunState
    elapsed_seconds: float
    pending: WalkRange | None = None

    @staticmethod
    def peek_entropy(directory: str | Path) -> int | None:
        """The seed recorded in ``directory``'s checkpoint (``None`` if there is none)."""
        path = Path(directory) / CHECKPOINT_FILE
        if not path.is_file():
            return None
        return int(_read(path)[0]["entropy"])


def save_checkpoint(directory: Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``directory/checkpoint.npz`` in one atomic step."""
    state = checkpoint.state
    stats = state.stats
    endpoints = state.endpoints
    record = {
        "checkpoint_version": CHECKPOINT_VERSION,
        "estimator": checkpoint.owner,
        "entropy": checkpoint.entropy,
        "identity": checkpoint.identity,
        "game_fingerprint": checkpoint.fingerprint,
        "n_players": stats.n_players,
        "next_permutation": state.next_permutation,
        "n_evaluations": state.n_evaluations,
        "v_full": None if endpoints is None else endpoints.v_full,
        "v_empty": None if endpoints is None else endpoints.v_empty,
        "n_walks_truncated": state.n_walks_truncated,
        "removed_fraction_sum": state.removed_fraction_sum,
        "sample_min": stats.sample_min,
        "sample_max": stats.sample_max,
        "extra": state.extra,
        "n_walks_continued": state.n_walks_continued,
        # With plain truncation: the bounds on what the tails hide (their arrays below).
        "tails": None if state.tails is None else _tail_extremes(state.tails),
        "elapsed_seconds": checkpoint.elapsed_seconds,
        "pending": (
            None
            if checkpoint.pending is None
            else {"first": checkpoint.pending.first, "count": checkpoint.pending.count}
        ),
    }
    arrays: dict[str, Any] = {"count": stats.count, "mean": stats.mean, "m2": stats.m2}
    if stats.variance_process is not None:
        arrays["variance_process"] = stats.variance_process
    if checkpoint.pending is not None and checkpoint.pending.sampled is not None:
        arrays["pending_sampled"] = checkpoint.pending.sampled
    if state.tails is not None:
        for end, tail_stats in (("low", state.tails.low), ("high", state.tails.high)):
            arrays[f"tails_{end}_mean"] = tail_stats.mean
            arrays[f"tails_{end}_m2"] = tail_stats.m2
            if tail_stats.variance_process is not None:
                arrays[f"tails_{end}_variance_process"] = tail_stats.variance_process
    path = atomic_write(
        directory / CHECKPOINT_FILE,
        lambda file: np.savez(file, record=np.array(json_text(record)), **arrays),
    )
    # A process killed inside a write leaves its temporary file (only that, never a torn
    # checkpoint). One run owns this directory's checkpoint, so what is left is stale.
    for stale in directory.glob(f".{CHECKPOINT_FILE}.*.tmp"):
        stale.unlink(missing_ok=True)
    return path


def load_checkpoint(
    directory: str | Path,
    *,
    owner: str,
    n_players: int,
    entropy: int,
    identity: dict[str, Any],
    fingerprint: str,
) -> Checkpoint:
    """Read ``directory``'s checkpoint, refusing one of another run or another game."""
    path = Path(directory) / CHECKPOINT_FILE
    if has_legacy_checkpoint(directory):
        raise CheckpointError(
            f"The checkpoint in {directory} ({', '.join(LEGACY_FILES)}) was written by an older "
            "version of neuronshapley and cannot be resumed; start the run again."
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"The 'resume' parameter of {owner} points at {directory}, which holds no "
            f"checkpoint ({CHECKPOINT_FILE}, written when checkpoint= is given)."
        )
    record, arrays = _read(path)
    if record["estimator"] != owner:
        raise CheckpointError(
            f"The checkpoint in {directory} was written by {record['estimator']}, not {owner}."
        )
    if record["n_players"] != n_players:
        raise CheckpointError(
            f"The checkpoint in {directory} is for {record['n_players']} players; the game has "
            f"{n_players}."
        )
    if record["game_fingerprint"] != fingerprint:
        raise CheckpointError(
            f"The checkpoint in {directory} belongs to another game: the players match in "
            "number, but the game differs (its model weights, data, metric or ablation). "
            "Resume it with the game it was made with, or start a new run."
        )
    if record["entropy"] != entropy:
        raise CheckpointError(
            f"The checkpoint in {directory} was made with seed {record['entropy']}; this call "
            f"has seed {entropy}. Resume with the same seed (or seed=None to take the saved one)."
        )
    saved_identity, wanted = record["identity"], jsonable(identity)
    if wanted.get("truncation_bias") == "bounded" and "truncation_bias" not in saved_identity:
        raise CheckpointError(
            f"The checkpoint in {directory} was written by an earlier version, before truncated "
            "runs kept what their truncated tails can hide (version 2): its intervals could not "
            "include the truncation bias. Start the run again (its values are not lost: the "
            "earlier result, if saved, still loads)."
        )
    for key, value in wanted.items():
        if value == AUTO:  # left to the run: the run being resumed chose it
            wanted[key] = saved_identity.get(key)
        elif saved_identity.get(key) != value:
            raise CheckpointError(
                f"The checkpoint in {directory} was made with {key}={saved_identity.get(key)!r}; "
                f"this call has {key}={value!r}. Resume with the same parameters (only the "
                "budgets may change)."
            )
    endpoints = None if record["v_full"] is None else Endpoints(record["v_full"], record["v_empty"])
    stats = RunningStats(
        arrays["count"],
        arrays["mean"],
        arrays["m2"],
        _number(record["sample_min"], math.inf),
        _number(record["sample_max"], -math.inf),
        arrays.get("variance_process", _block_variance_process(arrays, endpoints)),
    )
    state = RunState(
        stats,
        next_permutation=int(record["next_permutation"]),
        n_evaluations=int(record["n_evaluations"]),
        endpoints=endpoints,
        n_walks_truncated=int(record["n_walks_truncated"]),
        removed_fraction_sum=float(record["removed_fraction_sum"]),
        extra=dict(record["extra"]),
        tails=_tails(record, arrays, directory),
        n_walks_continued=int(record.get("n_walks_continued", 0)),
    )
    pending = None
    if record.get("pending") is not None:
        pending = WalkRange(
            int(record["pending"]["first"]),
            int(record["pending"]["count"]),
            arrays.get("pending_sampled"),
        )
    return Checkpoint(
        owner, entropy, wanted, fingerprint, state, float(record["elapsed_seconds"]), pending
    )


_FIELDS = (
    "estimator",
    "entropy",
    "identity",
    "game_fingerprint",
    "n_players",
    "next_permutation",
    "n_evaluations",
    "v_full",
    "v_empty",
    "n_walks_truncated",
    "removed_fraction_sum",
    "sample_min",
    "sample_max",
    "extra",
    "elapsed_seconds",
)


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The record and arrays of a checkpoint file; a damaged file is one clear ``ValueError``."""
    try:
        # Our own handle: np.load leaks its file when it fails on a damaged one.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            record = json.loads(str(data["record"]))
            arrays = {name: np.asarray(data[name]) for name in ("count", "mean", "m2")}
            if "variance_process" in data.files:
                arrays["variance_process"] = np.asarray(data["variance_process"])
            arrays.update(
                {name: np.asarray(data[name]) for name in data.files if name.startswith("tails_")}
            )
            if "pending_sampled" in data.files:
                arrays["pending_sampled"] = np.asarray(data["pending_sampled"], dtype=bool)
    except Exception as error:  # BadZipFile, EOFError, zlib and CRC errors, KeyError, JSON
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"The checkpoint {path} is damaged and cannot be read ({type(error).__name__}"
            f"{': ' + reason if reason else ''}); start the run again without resuming."
        ) from None
    problem = None
    version = record.get("checkpoint_version") if isinstance(record, dict) else None
    if version not in READABLE_CHECKPOINT_VERSIONS:
        problem = "it has an unknown checkpoint version"
    elif missing := [name for name in _FIELDS if name not in record]:
        problem = f"its record lacks {', '.join(missing)}"
    elif any(len(array) != record["n_players"] for array in arrays.values()):
        problem = f"its arrays do not hold {record['n_players']} entries, one per player"
    if problem is not None:
        raise CheckpointError(
            f"The checkpoint {path} cannot be resumed: {problem}; start the run again without "
            "resuming."
        )
    return record, arrays


def _block_variance_process(
    arrays: dict[str, np.ndarray], endpoints: Endpoints | None
) -> np.ndarray:
    """The variance process of a checkpoint written without one (version 2): all its samples
    as one block guessed by the mean of all values, sum (x - guess)^2 = M2 + t (mean - guess)^2.
    Valid for the anytime bound (the guess is fixed before any sample); usually a little larger
    than the process the run would have kept (1.000-1.006x where measured), not always."""
    count, mean, m2 = arrays["count"], arrays["mean"], arrays["m2"]
    if endpoints is None:
        return np.zeros(len(count))
    guess = (endpoints.v_full - endpoints.v_empty) / len(count)
    return np.asarray(m2 + count * (mean - guess) ** 2, dtype=np.float64)


def _tail_extremes(tails: TailBounds) -> dict[str, Any]:
    record = tails.to_record()
    return {key: record[key] for key in ("low_min", "low_max", "high_min", "high_max", "dead_band")}


def _tails(
    record: dict[str, Any], arrays: dict[str, np.ndarray], directory: str | Path
) -> TailBounds | None:
    """The tail bounds of a plainly truncated run's checkpoint (``None`` for other runs)."""
    extremes = record.get("tails")
    if extremes is None:  # no truncation, or no range merged yet
        bounded = record["identity"].get("truncation_bias") == "bounded"
        if bounded and np.any(arrays["count"] > 0):
            # Samples without their tails: the widening would cover only later samples.
            raise CheckpointError(
                f"The checkpoint in {directory} cannot be resumed: it holds samples of a "
                "truncated run but not its truncated tails' bounds; start the run again "
                "without resuming."
            )
        return None
    ends = {
        f"{end}_{part}": arrays.get(f"tails_{end}_{part}")
        for end in ("low", "high")
        for part in ("mean", "m2", "variance_process")
    }
    if any(ends[f"{end}_{part}"] is None for end in ("low", "high") for part in ("mean", "m2")):
        raise CheckpointError(
            f"The checkpoint in {directory} cannot be resumed: it lacks the arrays of its "
            "truncated tails' bounds; start the run again without resuming."
        )
    return TailBounds.from_record({**extremes, **ends}, arrays["count"])


def _number(value: Any, default: float) -> float:
    return default if value is None else float(value)
