"""``ShapleyResult``: the values, their uncertainty, and how they were made.

Saved as a directory holding ``result.json`` (names, parameters, counts) and ``result.npz``
(arrays), loaded without pickle. Results of sampling estimators keep their sufficient statistics
(count, mean, variance), so two runs over disjoint permutations merge exactly.
"""

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.files import atomic_write, json_text
from neuronshapley.results.bounds import confidence_halfwidth
from neuronshapley.results.stats import RunningStats
from neuronshapley.typing import PlayerValues

FORMAT_VERSION = 1
_ARRAYS = ("values", "stderr", "ci_low", "ci_high", "n_samples", "variance")


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
        n_evaluations: Coalitions the estimator evaluated.
        estimator: Name of the estimator function.
        params: The estimator's parameters (JSON types only).
        seed: The seed the permutations came from (``None`` for deterministic estimators).
        stop_reason: Why the estimator stopped (e.g. ``"separated"``, ``"max_evaluations"``).
        elapsed_seconds: Wall time of the run (summed over resumed parts).
        sample_range: Smallest and largest marginal sample seen, or ``None``.
        diagnostics: Estimator-specific counters (truncated walks, undecided players, ...).
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

    @property
    def n_players(self) -> int:
        return len(self.values)

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
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in zip(*columns.values(), strict=True):
                writer.writerow([repr(float(x)) if isinstance(x, np.floating) else x for x in row])

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save into directory ``path`` (created if needed) as JSON + ``.npz``; no pickle."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "player_names": self.player_names,
            "n_evaluations": int(self.n_evaluations),
            "estimator": self.estimator,
            "params": self.params,
            "seed": self.seed,
            "stop_reason": self.stop_reason,
            "elapsed_seconds": self.elapsed_seconds,
            "sample_range": list(self.sample_range) if self.sample_range else None,
            "diagnostics": self.diagnostics,
        }
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        atomic_write(directory / "result.json", json_text(meta).encode())
        atomic_write(directory / "result.npz", lambda f: np.savez(f, **arrays))
        return directory

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "ShapleyResult":
        """Load a result written by :meth:`save`."""
        directory = Path(path)
        meta_path, array_path = directory / "result.json", directory / "result.npz"
        if not meta_path.is_file() or not array_path.is_file():
            raise FileNotFoundError(
                f"{directory} is not a saved ShapleyResult: expected result.json and result.npz "
                "in it (written by ShapleyResult.save)."
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{meta_path} has format version {meta.get('format_version')!r}; this version "
                f"of neuronshapley reads version {FORMAT_VERSION}."
            )
        with np.load(array_path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in _ARRAYS}
        sample_range = meta["sample_range"]
        return cls(
            **arrays,
            player_names=list(meta["player_names"]),
            n_evaluations=meta["n_evaluations"],
            estimator=meta["estimator"],
            params=meta["params"],
            seed=meta["seed"],
            stop_reason=meta["stop_reason"],
            elapsed_seconds=meta["elapsed_seconds"],
            sample_range=tuple(sample_range) if sample_range else None,
            diagnostics=meta["diagnostics"],
        )

    # -- merging ---------------------------------------------------------------------------
    def stats(self) -> RunningStats:
        """The sufficient statistics behind the estimates."""
        m2 = self.variance * np.maximum(self.n_samples - 1, 0)
        low, high = self.sample_range or (math.inf, -math.inf)
        return RunningStats(self.n_samples.copy(), self.values.copy(), m2, low, high)

    def merge(self, other: "ShapleyResult") -> "ShapleyResult":
        """Combine two sampling runs over disjoint permutations of the same game.

        The merged statistics equal those of one run over both sets of permutations (Chan's
        parallel update), and the intervals are recomputed with this result's bound settings.
        """
        if "bound" not in self.params or "bound" not in other.params:
            raise ValueError("Exact results have no sampling error to pool; nothing to merge.")
        if self.player_names != other.player_names:
            raise ValueError("Cannot merge results of games with different players.")
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
        for key in ("bound", "delta", "value_range", "union_bound", "truncation", "antithetic"):
            if self.params.get(key) != other.params.get(key):
                raise ValueError(
                    f"Cannot merge results computed with different {key!r}: "
                    f"{self.params.get(key)!r} and {other.params.get(key)!r}."
                )
        stats = self.stats().merge(other.stats())
        return result_from_stats(
            stats,
            player_names=self.player_names,
            n_evaluations=self.n_evaluations + other.n_evaluations,
            estimator=self.estimator,
            params=self.params,
            seed=None,
            stop_reason="merged",
            elapsed_seconds=self.elapsed_seconds + other.elapsed_seconds,
            diagnostics={
                "merged_seeds": sorted(self.seeds() + other.seeds()),
                "merged_from": [self.diagnostics, other.diagnostics],
            },
        )

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
    player_names: list[str],
    n_evaluations: int,
    estimator: str,
    params: dict[str, Any],
    seed: int | None,
    stop_reason: str,
    elapsed_seconds: float,
    diagnostics: dict[str, Any],
) -> ShapleyResult:
    """Build a result from sampling statistics, with intervals from ``params``' bound settings.

    ``params`` must hold ``bound``, ``delta``, ``value_range`` (``None``: the observed range of
    all samples) and ``union_bound`` (divide ``delta`` among the players).
    """
    variance = stats.variance
    count = stats.count
    half, value_range = interval_halfwidth(stats, params)
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
    )


def interval_halfwidth(stats: RunningStats, params: dict[str, Any]) -> tuple[PlayerValues, float]:
    """Confidence half-width per player under ``params``' bound settings, and the range used."""
    value_range = params["value_range"]
    if value_range is None:
        value_range = stats.observed_range
    delta = params["delta"] / (stats.n_players if params["union_bound"] else 1)
    half = confidence_halfwidth(
        stats.count, stats.variance, delta=delta, bound=params["bound"], value_range=value_range
    )
    return half, float(value_range)
