"""What the truncated tails of walks can hide, as a bound on each player's value.

Plain truncation (Ghorbani & Zou 2020, appendix B) ends a walk at the prefix t* where the network
is dead and records a zero sample for each player it did not reach. The truncated estimator then
estimates the values of another game, and its bias is not in the rule's intervals (issue 17: 9.9
standard errors on a 20-player SOUM). The bias is bounded by what the tails hide:

* The players at positions q >= t* would have contributed V(C_q) - V(C_{q+1}); these add up to
  the tail's total M = V(C_{t*}) - V(empty) (the sum telescopes), known for every walk.
* If the tail is *monotone*, each of its marginals has the sign of M and lies between 0 and M
  (true of a monotone game: adding a player never lowers the value, or, when V(N) < V(empty),
  never raises it; a network whose metric only falls as units are removed). So a player's true
  marginal x in a walk lies between L = s + min(0, M) [tail] and H = s + max(0, M) [tail], where
  s is the recorded sample (the marginal itself where the walk reached the player, 0 in the tail).
* Hence E[L] <= phi_i <= E[H]. The interval is [mean(L) - h(L), mean(H) + h(H)], with h the
  rule's two-sided half-width, which spends delta/2 on each side: the lower end is below E[L]
  and the upper end above E[H], each but with probability delta/2, so the interval covers phi_i
  with probability at least 1 - delta (as the rule says: per player, or all at once). Where no
  walk of a player was truncated, L = H = s and the interval is the rule's own.
* A finite-sample bound needs the range of L and H: the marginals' range R (which must hold 0,
  the zero a truncated sample records; the plain interval needs that too), widened by the largest
  tail total, |M| <= D = |dead level - V(empty)| (a dead coalition is beyond the dead level, and
  in a monotone game M has the sign of V(N) - V(empty)): R + D. With the observed range (the
  default, a heuristic), the observed range of the L and H samples.

Without monotone tails no bound on a player's hidden marginal follows from M (its tail may hold
+5 and -5); only the unbiased option (``continue_probability``) is then trustworthy.
L and H are summarised by running statistics like the samples, so runs, ranges and results that
carry them merge exactly.
"""

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from neuronshapley.results.bounds import IntervalRule
from neuronshapley.results.stats import RunningStats
from neuronshapley.typing import PlayerValues


@dataclass
class TailBounds:
    """Running statistics of the ends L and H of each sample's true marginal (module notes).

    Attributes:
        low: Statistics of L = sample + min(0, M) where the sample's walk was truncated before
            the player (M: that walk's tail total), else the sample.
        high: Statistics of H = sample + max(0, M), likewise.
        dead_band: D, the largest tail total a monotone tail can have: |dead level - V(empty)|.
    """

    low: RunningStats
    high: RunningStats
    dead_band: float

    @classmethod
    def zeros(cls, n_players: int, dead_band: float, *, ordered: bool = False) -> "TailBounds":
        """No samples; ``ordered``: with variance processes (``RunningStats.zeros``)."""
        return cls(
            RunningStats.zeros(n_players, ordered=ordered),
            RunningStats.zeros(n_players, ordered=ordered),
            dead_band,
        )

    def merge(self, other: "TailBounds", *, first_guess: float | None = None) -> "TailBounds":
        """The bounds of both sample sets, ``other``'s after this one's (``RunningStats.merge``;
        ``first_guess`` must lie in the range of L and H, as the marginals' mean does)."""
        return TailBounds(
            self.low.merge(other.low, first_guess=first_guess),
            self.high.merge(other.high, first_guess=first_guess),
            max(self.dead_band, other.dead_band),
        )

    def interval(self, rule: IntervalRule) -> tuple[PlayerValues, PlayerValues, float]:
        """``(ci_low, ci_high, range used)``: the rule's interval widened by the tails' bound."""
        if rule.value_range is None:  # the observed range of both ends: a heuristic
            spread = max(self.high.sample_max, self.low.sample_max) - min(
                self.low.sample_min, self.high.sample_min
            )
            value_range = max(float(spread), 0.0)
        else:
            value_range = rule.value_range + self.dead_band
        widened = replace(rule, value_range=value_range)
        low_half, _ = widened.halfwidth(self.low)
        high_half, _ = widened.halfwidth(self.high)
        return self.low.mean - low_half, self.high.mean + high_half, value_range

    def to_record(self) -> dict[str, Any]:
        """JSON types: kept in a result's diagnostics, so that merged results stay bounded."""
        processes = {
            f"{end}_variance_process": (
                None if stats.variance_process is None else stats.variance_process.tolist()
            )
            for end, stats in (("low", self.low), ("high", self.high))
        }
        return {
            **processes,
            "low_mean": self.low.mean.tolist(),
            "low_m2": self.low.m2.tolist(),
            "high_mean": self.high.mean.tolist(),
            "high_m2": self.high.m2.tolist(),
            "low_min": _finite_or_none(self.low.sample_min),
            "low_max": _finite_or_none(self.low.sample_max),
            "high_min": _finite_or_none(self.high.sample_min),
            "high_max": _finite_or_none(self.high.sample_max),
            "dead_band": self.dead_band,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], count: Any) -> "TailBounds":
        """Bounds from :meth:`to_record`, with the samples' ``count`` per player."""
        counts = np.asarray(count, dtype=np.int64)

        def stats(end: str) -> RunningStats:
            process = record.get(f"{end}_variance_process")
            return RunningStats(
                counts.copy(),
                np.asarray(record[f"{end}_mean"], dtype=np.float64),
                np.asarray(record[f"{end}_m2"], dtype=np.float64),
                _number(record[f"{end}_min"], np.inf),
                _number(record[f"{end}_max"], -np.inf),
                None if process is None else np.asarray(process, dtype=np.float64),
            )

        return cls(stats("low"), stats("high"), float(record["dead_band"]))


def monotone_refuted(stats: RunningStats, v_full: float, v_empty: float) -> bool:
    """Whether the samples show that the game is not monotone in the direction of its gain:
    a measured marginal below 0 when V(N) > V(empty) (above 0 when V(N) < V(empty)). Then the
    tails' bound has no proof (module notes); beyond rounding only."""
    gain = v_full - v_empty
    slack = 1e-12 * max(1.0, abs(gain))
    if gain > 0:
        return stats.sample_min < -slack
    if gain < 0:
        return stats.sample_max > slack
    return False


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _number(value: Any, default: float) -> float:
    return default if value is None else float(value)
