"""The options of a sampling run as types: each group validated once, at the boundary.

The public estimators (``permutation_shapley``, ``truncated_shapley``, ``tmab_shapley``) keep
their keyword arguments for users; inside, the arguments become these frozen dataclasses, and a
round of the driver loop is a :class:`RoundPlan` or a :class:`Stop`, never a bare string.
"""

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import check_bool, check_choice, check_float, check_int
from neuronshapley.typing import GameValues

TRUNCATION_MODES = ("relative", "absolute")


@dataclass(frozen=True)
class Truncation:
    """When a walk counts the network as dead (appendix B of Ghorbani & Zou 2020).

    Attributes:
        threshold: In ``"relative"`` mode a coalition is dead when it keeps at most this fraction
            of the full network's gain over the empty one, (V - V(empty)) / (V(N) - V(empty)) <=
            threshold; this works for metrics where higher or lower is better. In ``"absolute"``
            mode it is dead when V <= threshold.
        mode: ``"relative"`` or ``"absolute"``.
        patience: Consecutive dead evaluations after which the walk stops.
        continue_probability: ``None`` (plain truncation: the players a walk did not reach get a
            zero marginal, a bias the intervals bound, see ``results.tails``), or p in (0, 1):
            at the truncation point a walk goes on with probability p and its tail marginals are
            weighted by 1/p, which keeps every sample unbiased (see ``walks``).
    """

    threshold: float
    mode: str = "relative"
    patience: int = 5
    continue_probability: float | None = None

    @classmethod
    def from_arguments(
        cls,
        owner: str,
        threshold: Any,
        mode: Any,
        patience: Any,
        continue_probability: Any = None,
    ) -> "Truncation | None":
        """The rule for an estimator's ``truncation``, ``truncation_mode``, ``patience`` and
        ``continue_probability``."""
        check_choice(mode, "truncation_mode", owner, TRUNCATION_MODES)
        check_int(patience, "patience", owner, min_value=1)
        check_float(
            continue_probability,
            "continue_probability",
            owner,
            low=0.0,
            high=1.0,
            include_low=False,
            include_high=False,
            allow_none=True,
        )
        if threshold is None:
            if continue_probability is not None:
                raise ValueError(
                    f"The 'continue_probability' parameter of {owner} needs truncation: with "
                    f"truncation=None no walk is cut. Got continue_probability="
                    f"{continue_probability!r}."
                )
            return None
        if mode == "relative":
            check_float(threshold, "truncation", owner, low=0.0, high=1.0, include_high=False)
        else:
            check_float(threshold, "truncation", owner)
        p = None if continue_probability is None else float(continue_probability)
        return cls(float(threshold), str(mode), int(patience), p)

    @property
    def bias(self) -> str:
        """``"bounded"`` (plain: intervals widened by the tails' bound) or ``"unbiased"``."""
        return "bounded" if self.continue_probability is None else "unbiased"

    def dead_band(self, v_full: float, v_empty: float) -> float:
        """D = |dead level - V(empty)|: the largest total a monotone truncated tail can hide."""
        level, _ = self.dead_level(v_full, v_empty)
        return abs(level - v_empty) if np.isfinite(level) else 0.0

    def dead(self, values: GameValues, v_full: float, v_empty: float) -> NDArray[np.bool_]:
        """Which of ``values`` count as a dead network."""
        level, below = self.dead_level(v_full, v_empty)
        return values <= level if below else values >= level

    def dead_level(self, v_full: float, v_empty: float) -> tuple[float, bool]:
        """The test ``dead`` reduces to: ``V <= level`` if the flag is true, else ``V >= level``.

        Solving the relative rule for V once per run keeps it to one comparison per batch.
        """
        if self.mode == "absolute":
            return self.threshold, True
        gain = v_full - v_empty
        if gain == 0.0:  # no gain to lose: the progress fraction is undefined, never truncate
            return -np.inf, True
        return v_empty + self.threshold * gain, gain > 0


AUTO = "auto"
"""The value of ``walks_per_task`` that asks the run to choose it from the measured cost of an
evaluation (:meth:`Sampling.resolved`)."""
DEFAULT_BATCH_SIZE = 32
TASK_SECONDS = 60.0
"""About the most work a task should hold when the run chooses ``walks_per_task``: a task is what a
kill (between checkpoints) or a budget cut loses."""
TASKS_PER_TIME_BUDGET = 4
"""With ``max_seconds``, a chosen task takes at most this fraction of it, so that a time budget
shorter than a round still keeps finished walks."""
CALL_SHARE_OF_TIME = 0.05
"""The most one call to the game should take of ``max_seconds``: a time budget is checked between
calls, so it overshoots by one call at most (see :func:`call_size`)."""


@dataclass(frozen=True)
class Semivalue:
    """A semivalue's weights on the walks' marginals: the same walks, another weighting.

    A semivalue weighs player i's marginal by the size of the coalition it joins,
    phi_i = sum_k p_k mean_{|S| = k, i not in S} [V(S + i) - V(S)] with ``p_k >= 0`` summing to 1
    (Dubey, Neyman & Weber 1981; Shapley: ``p_k = 1/n``). In a uniform permutation the coalition
    a player joins has a uniform size, so its marginal weighted by ``n p_k`` is an unbiased
    sample of phi_i (Kwon & Zou 2022). A walk goes down from N: the player removed at position
    q joins a coalition of ``n - 1 - q`` players.

    ``tail`` leaves out the sizes ``k >= K`` for the smallest K whose remaining weight
    ``sum_{k >= K} p_k`` is at most ``tail``: their weight becomes 0, so a walk evaluates only
    the coalitions of at most K players, and each value moves by at most that dropped weight
    times the largest marginal, a bias the intervals include (:attr:`dropped_weight`).

    Attributes:
        name: What the weights are (e.g. ``"beta"``), recorded in the run's identity.
        size_weights: ``p_k`` for ``k = 0 .. n - 1``.
        tail: Weight left out at the large sizes, in [0, 1).
        params: The parameters behind the weights (e.g. alpha and beta), for the identity.
    """

    name: str
    size_weights: tuple[float, ...]
    tail: float = 0.0
    params: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_arguments(
        cls,
        owner: str,
        n_players: int,
        size_weights: Any,
        tail: Any = 0.0,
        name: str = "semivalue",
        params: dict[str, float] | None = None,
    ) -> "Semivalue":
        """The weights of an estimator's ``size_weights`` and ``tail``, checked."""
        check_float(tail, "tail", owner, low=0.0, high=1.0, include_high=False)
        weights = np.asarray(size_weights, dtype=np.float64)
        if weights.shape != (n_players,):
            raise ValueError(
                f"The 'size_weights' parameter of {owner} must hold {n_players} numbers, one per "
                f"coalition size 0 .. {n_players - 1}. Got shape {weights.shape} instead."
            )
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError(
                f"The 'size_weights' parameter of {owner} must hold finite non-negative "
                f"numbers. Got {weights.tolist()[:10]} instead."
            )
        if abs(weights.sum() - 1.0) > 1e-9:
            raise ValueError(
                f"The 'size_weights' parameter of {owner} must sum to 1 (a distribution over "
                f"coalition sizes). Got a sum of {weights.sum()!r}."
            )
        pairs = tuple(sorted((str(k), float(v)) for k, v in (params or {}).items()))
        return cls(str(name), tuple(weights.tolist()), float(tail), pairs)

    @property
    def cut(self) -> int:
        """K: the walks weigh coalitions of fewer than K players (all of them when K = n)."""
        remaining = np.cumsum(np.asarray(self.size_weights)[::-1])[::-1]
        above = np.flatnonzero(remaining <= self.tail)
        return int(above[0]) if len(above) else len(self.size_weights)

    @property
    def dropped_weight(self) -> float:
        """The weight ``sum_{k >= K} p_k`` left out (0 without ``tail``)."""
        return float(sum(self.size_weights[self.cut :]))

    def position_weights(self) -> NDArray[np.float64]:
        """The weight of the marginal at walk position q: ``n p_{n-1-q}``, 0 past the cut."""
        n = len(self.size_weights)
        weights = n * np.asarray(self.size_weights)[::-1]
        weights[: n - self.cut] = 0.0  # positions q <= n - 1 - K join coalitions of K or more
        return weights

    @property
    def max_weight(self) -> float:
        """W: weighted samples of marginals in [a, b] (holding 0) lie in [W a, W b].

        At least 1, so that [W a, W b] holds [a, b] and with it (V(N) - V(empty)) / n, a mean
        of marginals: the anytime bound's first guess of a sample (``RunState.absorb``,
        ``ShapleyResult.merge``), which must lie in the samples' interval. Without a ``tail``
        the largest ``n p_k`` is at least 1 anyway (the p_k sum to 1); a tail that leaves only
        small weights (most of p on the large sizes) would otherwise make W < 1.
        """
        return max(float(self.position_weights().max()), 1.0)

    def record(self) -> dict[str, Any]:
        """The run's identity and the result's ``params["semivalue"]`` (JSON types)."""
        digest = hashlib.sha256(np.asarray(self.size_weights).tobytes()).hexdigest()[:16]
        return {
            "name": self.name,
            **dict(self.params),
            "tail": self.tail,
            "max_weight": self.max_weight,
            "dropped_weight": self.dropped_weight,
            "weights_sha256": digest,
        }


@dataclass(frozen=True)
class Sampling:
    """How permutations are walked.

    Attributes:
        antithetic: Walk each permutation and its reverse; the pair's mean is one sample.
        batch_size: Coalitions a batch of walk steps plans for (with truncation, how the walks
            share it decides what a dead walk wastes). Evaluated in calls of at most this many
            (fewer under a tight time budget, :func:`call_size`, which changes no value).
        n_walks: Permutations per round; the estimator decides between rounds (TMAB updates
            its undecided players), and a round is the unit that is checkpointed.
        walks_per_task: Permutations per task: a round is cut into tasks of this many, each
            walked on its own (its coalitions share batches) and merged in order; tasks are what
            a backend runs in parallel and what a checkpoint inside a round holds. ``None``: the
            whole round is one task. :data:`AUTO`: chosen by :meth:`resolved`.
        semivalue: Weights on the marginals (:class:`Semivalue`), or ``None`` (Shapley).
    """

    antithetic: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    n_walks: int = 8
    walks_per_task: int | str | None = None
    semivalue: Semivalue | None = None

    @classmethod
    def from_arguments(
        cls,
        owner: str,
        antithetic: Any,
        batch_size: Any,
        n_walks: Any,
        walks_per_task: Any = None,
    ) -> "Sampling":
        check_bool(antithetic, "antithetic", owner)
        check_int(batch_size, "batch_size", owner, min_value=1)
        check_int(n_walks, "n_walks", owner, min_value=1)
        walks_per_task = _count_or_auto(walks_per_task, "walks_per_task", owner)
        if antithetic and n_walks % 2:
            raise ValueError(
                f"With antithetic=True, the 'n_walks' parameter of {owner} must be even (each "
                f"permutation walks with its reverse). Got n_walks={n_walks}."
            )
        if antithetic and isinstance(walks_per_task, int) and walks_per_task % 2:
            raise ValueError(
                f"With antithetic=True, the 'walks_per_task' parameter of {owner} must be even "
                f"(a task holds whole pairs). Got walks_per_task={walks_per_task}."
            )
        tasks = walks_per_task
        if isinstance(walks_per_task, int) and walks_per_task >= n_walks:
            tasks = None
        return cls(bool(antithetic), int(batch_size), int(n_walks), tasks)

    @property
    def chosen(self) -> bool:
        """Whether ``walks_per_task`` is fixed (not :data:`AUTO`)."""
        return self.walks_per_task != AUTO

    @property
    def task(self) -> int | None:
        """``walks_per_task`` of a resolved sampling (``None``, whole rounds, while AUTO)."""
        return self.walks_per_task if isinstance(self.walks_per_task, int) else None

    def resolved(
        self, seconds_per_evaluation: float, walk_evaluations: int, max_seconds: float | None
    ) -> "Sampling":
        """``walks_per_task`` chosen from the measured cost of an evaluation, if :data:`AUTO`.

        Whole rounds when a round is expected to take at most :data:`TASK_SECONDS` (and, with
        ``max_seconds``, at most 1 / :data:`TASKS_PER_TIME_BUDGET` of it), else as many walks
        (at least one; an even number when antithetic) as fit in that time, so that a kill or a
        budget cut loses about a minute of work and a time budget keeps finished walks. It
        depends on the machine, so a run records what it chose (its identity, its result's
        ``params``) and a resumed run takes the checkpoint's; give it explicitly for the same
        bits on any machine. What it changes is how the work is cut: the values agree to
        rounding (merged in another order), the intervals' variance process is summed in other
        blocks, and truncated walks may waste other evaluations.

        Args:
            seconds_per_evaluation: Measured seconds of one coalition (V(N) and V(empty)).
            walk_evaluations: The most coalitions one walk evaluates (n_players - 1).
            max_seconds: The run's time budget, or ``None``.
        """
        if self.walks_per_task != AUTO:
            return self
        limit = TASK_SECONDS
        if max_seconds is not None:
            limit = min(limit, max_seconds / TASKS_PER_TIME_BUDGET)
        walk_seconds = seconds_per_evaluation * max(walk_evaluations, 1)
        fit = self.n_walks if walk_seconds <= 0 else int(limit / walk_seconds)
        if self.antithetic:
            fit -= fit % 2
        tasks = None if fit >= self.n_walks else max(fit, 2 if self.antithetic else 1)
        return replace(self, walks_per_task=tasks)

    def adopted(self, identity: dict[str, Any]) -> "Sampling":
        """``walks_per_task``, if :data:`AUTO`, taken from a checkpoint's identity (what the run
        being resumed chose). A run stopped before it measured anything saved :data:`AUTO`:
        that stays, and the resumed run chooses once it has measured."""
        if self.walks_per_task != AUTO:
            return self
        saved = identity.get("walks_per_task")
        if saved == AUTO:
            return self
        return replace(self, walks_per_task=saved if isinstance(saved, int) else None)


def call_size(batch_size: int, seconds_per_evaluation: float, max_seconds: float | None) -> int:
    """Coalitions per call to the game: the batch, or fewer where a call would take more than
    :data:`CALL_SHARE_OF_TIME` of ``max_seconds`` (at least one). The walks plan their batches
    as before, so no value depends on it: a batch is only evaluated in several calls, with the
    time budget checked between them."""
    if max_seconds is None or seconds_per_evaluation <= 0:
        return batch_size
    fit = int(CALL_SHARE_OF_TIME * max_seconds / seconds_per_evaluation)
    return min(max(fit, 1), batch_size)


def _count_or_auto(value: Any, name: str, owner: str) -> int | str | None:
    """A positive int or ``None`` (as an int), or :data:`AUTO`."""
    if isinstance(value, str):
        if value == AUTO:
            return AUTO
        raise ValueError(
            f"The '{name}' parameter of {owner} must be a positive int, None or {AUTO!r}. "
            f"Got {value!r}."
        )
    return check_int(value, name, owner, min_value=1, allow_none=True)


@dataclass(frozen=True)
class Budget:
    """When a run stops, whatever its estimator's own rule says.

    Attributes:
        n_permutations: Permutations to walk in all (``None``: no limit).
        max_evaluations: Coalition evaluations in all, over resumed parts (``None``: no limit).
        max_seconds: Wall time of this call (``None``: no limit).
    """

    n_permutations: int | None = None
    max_evaluations: int | None = None
    max_seconds: float | None = None

    @classmethod
    def from_arguments(
        cls, owner: str, n_permutations: Any, max_evaluations: Any, max_seconds: Any
    ) -> "Budget":
        check_int(n_permutations, "n_permutations", owner, min_value=1, allow_none=True)
        check_int(max_evaluations, "max_evaluations", owner, min_value=1, allow_none=True)
        check_float(max_seconds, "max_seconds", owner, low=0.0, include_low=False, allow_none=True)
        return cls(
            None if n_permutations is None else int(n_permutations),
            None if max_evaluations is None else int(max_evaluations),
            None if max_seconds is None else float(max_seconds),
        )

    @property
    def bounded(self) -> bool:
        return (
            self.n_permutations is not None
            or self.max_evaluations is not None
            or self.max_seconds is not None
        )


@dataclass(frozen=True)
class Persistence:
    """Where a run keeps its state.

    Attributes:
        checkpoint: Directory to save the state in, or ``None``.
        checkpoint_every: Seconds between saves (and one at the end).
        resume: Directory of a checkpoint to continue from, or ``None``.
    """

    checkpoint: Path | None = None
    checkpoint_every: float = 60.0
    resume: Path | None = None

    @classmethod
    def from_arguments(
        cls, owner: str, checkpoint: Any, checkpoint_every: Any, resume: Any
    ) -> "Persistence":
        check_float(checkpoint_every, "checkpoint_every", owner, low=0.0)
        for name, value in (("checkpoint", checkpoint), ("resume", resume)):
            if value is not None and not isinstance(value, str | os.PathLike):
                raise TypeError(
                    f"The {name!r} parameter of {owner} must be a directory path or None. "
                    f"Got {value!r} instead."
                )
        directory = None if checkpoint is None else Path(checkpoint)
        if directory is not None and directory.exists() and not directory.is_dir():
            # Fail before spending the budget, not when saving at the end.
            raise ValueError(
                f"The 'checkpoint' parameter of {owner} must be a directory; {directory} is a file."
            )
        return cls(directory, float(checkpoint_every), None if resume is None else Path(resume))


@dataclass(frozen=True)
class RoundPlan:
    """The next round: walk ``n_permutations`` permutations, recording ``sampled`` players.

    Attributes:
        n_permutations: Permutations in the round (at least 1).
        sampled: Players whose marginals the round records (``None``: every player).
        diagnostics: What the planner saw (JSON types), kept in the run's diagnostics.
    """

    n_permutations: int
    sampled: NDArray[np.bool_] | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stop:
    """The run is over, for ``reason`` (e.g. ``"separated"``, ``"n_permutations"``).

    Attributes:
        reason: Why (recorded as the result's ``stop_reason``).
        diagnostics: What the planner saw (JSON types), kept in the run's diagnostics.
    """

    reason: str
    diagnostics: dict[str, Any] = field(default_factory=dict)
