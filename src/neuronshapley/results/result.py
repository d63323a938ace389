"""``ShapleyResult``: the values, their uncertainty, and how they were made.

Saved as a directory holding ``result.npz`` (arrays) and ``result.json`` (names, groups,
parameters, counts, and a hash of the arrays, so that the two files of different saves are never
read as one), loaded without pickle. Results of sampling estimators keep their sufficient statistics
(count, mean, variance), so two runs over disjoint permutations merge exactly.
"""

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.files import atomic_write
from neuronshapley.results.bounds import IntervalRule
from neuronshapley.results.persistence import damaged, read_saved, write_saved
from neuronshapley.results.stats import RunningStats
from neuronshapley.results.tails import TailBounds
from neuronshapley.typing import PlayerValues

# Version 3 adds the anytime bound's variance process (an optional array).
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
_ARRAYS = ("values", "stderr", "ci_low", "ci_high", "n_samples", "variance")
_OPTIONAL_ARRAYS = ("variance_process",)
# Sampling results whose values are not one mean of samples, so merge cannot pool them.
_NOT_POOLABLE = {
    "data_banzhaf": "a difference of two means (coalitions with and without it)",
    "anchored_shapley": "the anchor's mean minus a mean of differences",
    "control_variate_shapley": "a regression-adjusted mean whose coefficient its own run fitted",
    # Pooling would be sound only for the same learner and data, which the result cannot check.
    "data_oob": "a mean over its own run's bootstrap models, whose learner it does not identify",
}


class RankedPlayer(NamedTuple):
    """A row of a ranking: rank (1 = first), the player's index and name, value, interval."""

    rank: int
    player_index: int
    name: str
    value: float
    ci_low: float
    ci_high: float


class Ranking(list[RankedPlayer]):
    """The rows of ``ShapleyResult.top(k)`` or ``bottom(k)``: a list with a table view."""

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per ranked player (needs ``neuronshapley[frame]``)."""
        try:
            import pandas as pd
        except ImportError as error:
            raise ImportError(
                "Ranking.to_frame needs pandas: pip install 'neuronshapley[frame]'"
            ) from error
        return pd.DataFrame(list(self), columns=list(RankedPlayer._fields)).set_index("rank")


@dataclass(eq=False)
class ShapleyResult:
    """Shapley value estimates for every player of a game.

    Attributes:
        values: Estimated Shapley value per player.
        stderr: Standard error of each estimate (0 for exact values).
        ci_low: Lower end of each player's confidence interval.
        ci_high: Upper end of each player's confidence interval.
        n_samples: Marginal-contribution samples behind each estimate.
        variance: Sample variance of each player's marginal contributions.
        player_names: One name per player.
        groups: One group per player (the layer of a unit, the group of a feature, the source
            of a training point), or ``None``.
        n_evaluations: Coalitions the estimator evaluated.
        estimator: Name of the estimator function.
        params: The estimator's parameters (JSON types only).
        seed: The seed the permutations came from (``None`` for deterministic estimators).
        stop_reason: Why the estimator stopped (e.g. ``"separated"``, ``"max_evaluations"``).
        elapsed_seconds: Wall time of the run (summed over resumed parts).
        sample_range: Smallest and largest marginal sample seen, or ``None``.
        diagnostics: Estimator-specific counters (truncated walks, undecided players, ...).
        game_fingerprint: What identifies the game the values are of (``game_fingerprint``),
            so results of different games are never merged; ``None`` if unknown.
        variance_process: The anytime bound's V_t per player (``results.stats``), so that a
            merged result can recompute anytime intervals; ``None`` for exact values and
            results saved before version 3.
    """

    values: PlayerValues
    stderr: PlayerValues
    ci_low: PlayerValues
    ci_high: PlayerValues
    n_samples: NDArray[np.int64]
    variance: PlayerValues
    player_names: list[str]
    n_evaluations: int
    estimator: str
    params: dict[str, Any]
    seed: int | None
    stop_reason: str
    elapsed_seconds: float
    sample_range: tuple[float, float] | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    groups: list[str] | None = None
    game_fingerprint: str | None = None
    variance_process: PlayerValues | None = None

    def __post_init__(self) -> None:
        n = len(self.values)
        for name in _ARRAYS + _OPTIONAL_ARRAYS:
            if getattr(self, name) is None:
                continue
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"ShapleyResult: {name} has {len(getattr(self, name))} entries for {n} "
                    "players; every array holds one entry per player."
                )
        if len(self.player_names) != n:
            raise ValueError(
                f"ShapleyResult: {len(self.player_names)} player names for {n} values."
            )
        if self.groups is not None and len(self.groups) != n:
            raise ValueError(f"ShapleyResult: {len(self.groups)} groups for {n} players.")

    @classmethod
    def from_values(
        cls,
        values: Any,
        player_names: Sequence[str] | None = None,
        *,
        groups: Sequence[str] | None = None,
        estimator: str = "given",
        params: dict[str, Any] | None = None,
    ) -> "ShapleyResult":
        """A result holding known values (exact, or a baseline's scores) without uncertainty.

        Args:
            values: One number per player.
            player_names: One name per player. Default ``p0, p1, ...``.
            groups: One group per player (e.g. the layer of each unit). Default ``None``.
            estimator: What made the values (e.g. ``"weight_norm"``). Default ``"given"``.
            params: How they were made (JSON types). Default ``{}``.
        """
        array = np.array(values, dtype=np.float64)
        if array.ndim != 1 or not np.isfinite(array).all():
            raise ValueError(
                "The 'values' parameter of ShapleyResult.from_values must be a 1-d array of "
                f"finite numbers. Got shape {array.shape}"
                + ("" if array.ndim != 1 else " with non-finite entries")
                + " instead."
            )
        n = len(array)
        names = [f"p{i}" for i in range(n)] if player_names is None else list(player_names)
        return cls(
            values=array,
            stderr=np.zeros(n),
            ci_low=array.copy(),
            ci_high=array.copy(),
            n_samples=np.zeros(n, dtype=np.int64),
            variance=np.zeros(n),
            player_names=names,
            n_evaluations=0,
            estimator=estimator,
            params=dict(params or {}),
            seed=None,
            stop_reason="given",
            elapsed_seconds=0.0,
            groups=None if groups is None else [str(g) for g in groups],
        )

    @property
    def n_players(self) -> int:
        return len(self.values)

    @property
    def interval_guarantee(self) -> str:
        """What ``ci_low``/``ci_high`` promise, in words (per player or all at once, and how)."""
        if "bound" not in self.params:
            return "exact values: no sampling error" if self.n_evaluations else "given values"
        used = self.diagnostics.get("value_range_used")
        observed = float(used) if isinstance(used, int | float) else None
        # An estimator whose intervals combine several (anchored_shapley) says how, here.
        combined = str(self.diagnostics.get("interval_note", ""))
        return (
            interval_rule(self.params).describe(observed)
            + self._range_exceeded()
            + _truncation_note(self.params, self.diagnostics)
            + _semivalue_note(self.diagnostics)
            + combined
        )

    def _range_exceeded(self) -> str:
        """A warning where the samples spread wider than the range the user gave: the
        finite-sample guarantee assumed that range, so it does not hold."""
        given = interval_rule(self.params).value_range
        if given is None or self.sample_range is None:
            return ""
        low, high = self.sample_range
        if high - low <= given * (1 + 1e-9):
            return ""
        return (
            f"; but samples {high - low:.3g} apart were seen, wider than the range {given:g}: "
            "that range is wrong and the guarantee does not hold"
        )

    # -- rankings --------------------------------------------------------------------------
    def top_indices(self, k: int) -> NDArray[np.intp]:
        """Indices of the ``k`` largest values, largest first (ties broken by index)."""
        k = self._check_k(k, "top_indices")
        return np.argsort(-self.values, kind="stable")[:k]

    def bottom_indices(self, k: int) -> NDArray[np.intp]:
        """Indices of the ``k`` smallest (most negative) values, smallest first."""
        k = self._check_k(k, "bottom_indices")
        return np.argsort(self.values, kind="stable")[:k]

    def top(self, k: int) -> Ranking:
        """The ``k`` players with the largest values, largest first."""
        return self._ranked(self.top_indices(k))

    def bottom(self, k: int) -> Ranking:
        """The ``k`` players with the smallest (most negative) values, smallest first."""
        return self._ranked(self.bottom_indices(k))

    def _check_k(self, k: int, owner: str) -> int:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
            raise ValueError(
                f"The 'k' parameter of ShapleyResult.{owner} must be a non-negative int. "
                f"Got {k!r} instead."
            )
        return min(int(k), self.n_players)

    def _ranked(self, indices: NDArray[np.intp]) -> Ranking:
        return Ranking(
            RankedPlayer(
                rank + 1,
                int(i),
                self.player_names[i],
                float(self.values[i]),
                float(self.ci_low[i]),
                float(self.ci_high[i]),
            )
            for rank, i in enumerate(indices)
        )

    # -- tables ----------------------------------------------------------------------------
    def _columns(self) -> dict[str, Any]:
        return {
            "player": self.player_names,
            "value": self.values,
            "stderr": self.stderr,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_samples": self.n_samples,
        }

    def to_frame(self) -> Any:
        """A pandas DataFrame with one row per player (needs ``neuronshapley[frame]``)."""
        try:
            import pandas as pd
        except ImportError as error:
            raise ImportError(
                "ShapleyResult.to_frame needs pandas: pip install 'neuronshapley[frame]'"
            ) from error
        return pd.DataFrame(self._columns())

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write one row per player: player, value, stderr, ci_low, ci_high, n_samples."""
        columns = self._columns()
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(columns)
        for row in zip(*columns.values(), strict=True):
            writer.writerow([repr(float(x)) if isinstance(x, np.floating) else x for x in row])
        atomic_write(path, buffer.getvalue().encode())

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save into directory ``path`` (created if needed) as JSON + ``.npz``; no pickle."""
        arrays: dict[str, Any] = {name: np.asarray(getattr(self, name)) for name in _ARRAYS}
        for name in _OPTIONAL_ARRAYS:
            if getattr(self, name) is not None:
                arrays[name] = np.asarray(getattr(self, name))
        record = {
            "format_version": FORMAT_VERSION,
            "player_names": self.player_names,
            "groups": self.groups,
            "game_fingerprint": self.game_fingerprint,
            "n_evaluations": int(self.n_evaluations),
            "estimator": self.estimator,
            "params": self.params,
            "seed": self.seed,
            "stop_reason": self.stop_reason,
            "elapsed_seconds": self.elapsed_seconds,
            "sample_range": list(self.sample_range) if self.sample_range else None,
            "diagnostics": self.diagnostics,
        }
        return write_saved(Path(path), "result", arrays, record)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "ShapleyResult":
        """Load a result written by :meth:`save`."""
        directory = Path(path)
        meta, arrays = read_saved(
            directory,
            "result",
            kind="ShapleyResult",
            arrays=_ARRAYS,
            optional=_OPTIONAL_ARRAYS,
            versions=READABLE_VERSIONS,
        )
        meta_path = directory / "result.json"
        try:
            sample_range = meta["sample_range"]
            return cls(
                **arrays,
                player_names=[str(name) for name in meta["player_names"]],
                n_evaluations=int(meta["n_evaluations"]),
                estimator=str(meta["estimator"]),
                params=dict(meta["params"]),
                seed=meta["seed"],
                stop_reason=str(meta["stop_reason"]),
                elapsed_seconds=float(meta["elapsed_seconds"]),
                sample_range=tuple(sample_range) if sample_range else None,
                diagnostics=dict(meta["diagnostics"]),
                groups=meta.get("groups"),
                game_fingerprint=meta.get("game_fingerprint"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(damaged(meta_path, error)) from None

    # -- merging ---------------------------------------------------------------------------
    def stats(self) -> RunningStats:
        """The sufficient statistics behind the estimates."""
        m2 = self.variance * np.maximum(self.n_samples - 1, 0)
        low, high = self.sample_range or (math.inf, -math.inf)
        process = None if self.variance_process is None else self.variance_process.copy()
        return RunningStats(self.n_samples.copy(), self.values.copy(), m2, low, high, process)

    def merge(self, other: "ShapleyResult") -> "ShapleyResult":
        """Combine two sampling runs over disjoint permutations of the same game.

        The merged statistics equal those of one run over both sets of permutations (Chan's
        parallel update), and the intervals are recomputed with this result's bound settings.
        """
        if "bound" not in self.params or "bound" not in other.params:
            raise ValueError("Exact results have no sampling error to pool; nothing to merge.")
        if self.estimator in _NOT_POOLABLE:
            raise ValueError(
                f"Cannot merge {self.estimator} results: each value is "
                f"{_NOT_POOLABLE[self.estimator]}, which Chan's update of one mean does not "
                "pool. Run it once with the samples of both."
            )
        if self.player_names != other.player_names:
            raise ValueError("Cannot merge results of games with different players.")
        if (
            self.game_fingerprint is not None
            and other.game_fingerprint is not None
            and self.game_fingerprint != other.game_fingerprint
        ):
            raise ValueError(
                "Cannot merge results of different games: their players have the same names, "
                "but the games differ (model weights, data, metric or ablation; see "
                "ShapleyResult.game_fingerprint)."
            )
        if self.estimator != other.estimator:
            raise ValueError(
                f"Cannot merge results of {self.estimator} and {other.estimator}: their samples "
                "come from different procedures."
            )
        shared = set(self.seeds()) & set(other.seeds())
        if shared:
            raise ValueError(
                f"Both results contain runs from seed {min(shared)}, so they walked the same "
                "permutations; merging them would count those samples twice. Merge runs with "
                "different seeds."
            )
        for key in (
            "bound",
            "delta",
            "value_range",
            "union_bound",
            "truncation",
            "continue_probability",
            "truncation_bias",
            "antithetic",
            "semivalue",
        ):
            if self.params.get(key) != other.params.get(key):
                raise ValueError(
                    f"Cannot merge results computed with different {key!r}: "
                    f"{self.params.get(key)!r} and {other.params.get(key)!r}."
                )
        if self.params["bound"] == "anytime" and self.variance_process is None:
            raise ValueError(
                "Cannot merge these anytime results: the first was saved by an older version, "
                "without the variance process its intervals need; compute it again."
            )
        # Each of the other's samples guessed by this result's mean (results.stats), or by
        # the mean of all values where this result has none.
        v_full, v_empty = self.diagnostics.get("v_full"), self.diagnostics.get("v_empty")
        sampled = self.values[self.n_samples > 0]
        if (
            isinstance(v_full, float)
            and isinstance(v_empty, float)
            and math.isfinite(v_full - v_empty)
        ):
            first_guess = (v_full - v_empty) / self.n_players
        else:  # a mean of sample means: in the samples' range too
            first_guess = float(sampled.mean()) if len(sampled) else 0.0
        stats = self.stats().merge(other.stats(), first_guess=first_guess)
        tails = _merged_tails(self, other, first_guess)
        rule = interval_rule(self.params)
        merged = result_from_stats(
            stats,
            rule=rule,
            player_names=self.player_names,
            n_evaluations=self.n_evaluations + other.n_evaluations,
            estimator=self.estimator,
            params=self.params,
            seed=None,
            stop_reason="merged",
            elapsed_seconds=self.elapsed_seconds + other.elapsed_seconds,
            diagnostics={
                "merged_seeds": sorted(self.seeds() + other.seeds()),
                "merged_from": [
                    {k: v for k, v in part.diagnostics.items() if k != "truncation_tails"}
                    for part in (self, other)
                ],
            },
            groups=self.groups,
            game_fingerprint=self.game_fingerprint or other.game_fingerprint,
        )
        if tails is not None:  # plain truncation: widened by the tails' bound (results.tails)
            merged.ci_low, merged.ci_high, value_range = tails.interval(rule)
            merged.diagnostics.update(
                truncation_tails=tails.to_record(),
                value_range_used=value_range,
                monotone_refuted=any(
                    part.diagnostics.get("monotone_refuted", False) for part in (self, other)
                ),
            )
        widen_by_semivalue_tail(merged)
        return merged

    def seeds(self) -> list[int]:
        """The seeds of the runs behind this result (several after :meth:`merge`)."""
        if "merged_seeds" in self.diagnostics:
            return list(self.diagnostics["merged_seeds"])
        return [] if self.seed is None else [self.seed]

    # -- display ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        head = (
            f"ShapleyResult({self.estimator}, {self.n_players} players, "
            f"{self.n_evaluations:,} evaluations, stopped: {self.stop_reason}, "
            f"{self.elapsed_seconds:.2f} s)"
        )
        shown = min(self.n_players, 5)
        width = max([len("player")] + [len(self.player_names[i]) for i in self.top_indices(shown)])
        level = self.params.get("delta")
        interval = f"{100 * (1 - level):g}% interval" if level is not None else "interval"
        lines = [head, f"  rank  {'player':<{width}}  {'value':>11}  {interval}"]
        for row in self.top(shown):
            lines.append(
                f"  {row.rank:>4}  {row.name:<{width}}  {row.value:>11.5g}  "
                f"[{row.ci_low:.5g}, {row.ci_high:.5g}]"
            )
        if self.n_players > shown:
            lines.append(f"  ... {self.n_players - shown} more (top(k), bottom(k), to_frame())")
        return "\n".join(lines)


def result_from_stats(
    stats: RunningStats,
    *,
    rule: IntervalRule,
    player_names: list[str],
    n_evaluations: int,
    estimator: str,
    params: dict[str, Any],
    seed: int | None,
    stop_reason: str,
    elapsed_seconds: float,
    diagnostics: dict[str, Any],
    groups: list[str] | None = None,
    game_fingerprint: str | None = None,
) -> ShapleyResult:
    """Build a result from sampling statistics, with intervals from ``rule``.

    ``params`` (recorded in the result) must hold the rule's fields, so that a merged result
    recomputes the same kind of intervals.
    """
    variance = stats.variance
    count = stats.count
    half, value_range = rule.halfwidth(stats)
    stderr = np.where(count > 0, np.sqrt(variance / np.maximum(count, 1)), np.inf)
    seen = stats.sample_min <= stats.sample_max
    return ShapleyResult(
        values=stats.mean.copy(),
        stderr=stderr,
        ci_low=stats.mean - half,
        ci_high=stats.mean + half,
        n_samples=count.copy(),
        variance=variance,
        player_names=list(player_names),
        n_evaluations=int(n_evaluations),
        estimator=estimator,
        params=dict(params),
        seed=seed,
        stop_reason=stop_reason,
        elapsed_seconds=float(elapsed_seconds),
        sample_range=(stats.sample_min, stats.sample_max) if seen else None,
        diagnostics=dict(diagnostics, value_range_used=float(value_range)),
        groups=groups,
        game_fingerprint=game_fingerprint,
        variance_process=(
            None if stats.variance_process is None else stats.variance_process.copy()
        ),
    )


def interval_rule(params: dict[str, Any]) -> IntervalRule:
    """The interval rule recorded in a sampling result's ``params``.

    With unbiased truncation (``continue_probability`` p) a tail sample is x / p or 0, so a
    given range R of the marginals is R / p for the samples.
    """
    value_range = params["value_range"]
    p = params.get("continue_probability")
    if value_range is not None and p is not None:
        value_range = value_range / p
    semivalue = params.get("semivalue")
    if value_range is not None and isinstance(semivalue, dict):
        value_range = value_range * semivalue["max_weight"]
    return IntervalRule(params["bound"], params["delta"], value_range, params["union_bound"])


def widen_by_semivalue_tail(result: "ShapleyResult") -> None:
    """Widen a semivalue run's intervals by the bias of the weight its ``tail`` left out.

    Each value leaves out ``sum_{k >= K} p_k`` times a mean of marginals, which lie in an
    interval of width R holding 0, so it moves by at most that weight times R (the range given;
    without one, the widest weighted sample seen divided by the largest weight).
    """
    semivalue = result.params.get("semivalue")
    if not isinstance(semivalue, dict) or not semivalue["dropped_weight"]:
        return
    value_range = result.params.get("value_range")
    if value_range is None:
        observed = result.diagnostics.get("value_range_used", math.inf)
        value_range = float(observed) / semivalue["max_weight"]
    bias = semivalue["dropped_weight"] * value_range
    result.ci_low = result.ci_low - bias
    result.ci_high = result.ci_high + bias
    result.diagnostics["semivalue_bias_bound"] = bias


def _semivalue_note(diagnostics: dict[str, Any]) -> str:
    """What the intervals include for a semivalue's left-out tail weight."""
    bias = diagnostics.get("semivalue_bias_bound")
    if not bias:
        return ""
    return f"; widened by {bias:.3g}, the most the weight left out by 'tail' can move a value"


def _truncation_note(params: dict[str, Any], diagnostics: dict[str, Any]) -> str:
    """What the intervals say about truncation, appended to the rule's guarantee."""
    if params.get("truncation_bias") == "bounded" and diagnostics.get("tails_use_run_endpoints"):
        return (
            "; widened by a truncation bias bound that takes the run's V(empty) for each walk's "
            "own examples, so it is not a guarantee; use continue_probability "
            "(--continue-probability on the command line)"
        )
    if params.get("truncation_bias") == "bounded" and diagnostics.get("monotone_refuted"):
        return (
            "; widened by the truncation bias bound, which holds for a monotone game only, and "
            "this one is not (a marginal of the wrong sign was seen): the values and intervals "
            "may be biased; use continue_probability (--continue-probability on the command line)"
        )
    if params.get("truncation_bias") == "bounded":
        return (
            "; widened by the truncation bias bound (what the truncated tails can hide; holds "
            "for a monotone game)"
        )
    if params.get("truncation") is not None and "truncation_bias" not in params:
        return "; plain truncation, its bias not included (a result of an earlier version)"
    if params.get("truncation_bias") == "unbiased":
        return (
            f"; unbiased truncation (walks go on with probability "
            f"{params['continue_probability']:g}, tails weighted by its inverse)"
        )
    return ""


def _merged_tails(
    first: ShapleyResult, second: ShapleyResult, first_guess: float
) -> TailBounds | None:
    """The merged bounds on what the truncated tails hide (``None`` without plain truncation)."""
    if first.params.get("truncation_bias") != "bounded":
        return None
    tails = []
    for part in (first, second):
        record = part.diagnostics.get("truncation_tails")
        if record is None:
            raise ValueError(
                "Cannot merge these truncated results: one of them lacks the bounds of its "
                "truncated tails (diagnostics['truncation_tails']), which its intervals need."
            )
        tails.append(TailBounds.from_record(record, part.n_samples))
    return tails[0].merge(tails[1], first_guess=first_guess)
