"""Per-player running mean and variance that merge exactly (Welford updates, Chan merges).

Two workers that each summarise part of the samples merge into the summary of all samples
(up to floating-point rounding), which is what resumed runs and distributed runs rely on.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass
class RunningStats:
    """Sufficient statistics of each player's marginal-contribution samples.

    Attributes:
        count: Samples per player, int64 of shape ``(n_players,)``.
        mean: Running mean per player, float64.
        m2: Sum of squared deviations from the mean per player (Welford's M2), float64.
        sample_min: Smallest sample seen over all players (``inf`` before any sample).
        sample_max: Largest sample seen over all players (``-inf`` before any sample).
    """

    count: NDArray[np.int64]
    mean: NDArray[np.float64]
    m2: NDArray[np.float64]
    sample_min: float = float("inf")
    sample_max: float = float("-inf")

    @classmethod
    def zeros(cls, n_players: int) -> "RunningStats":
        """Statistics with no samples."""
        return cls(
            np.zeros(n_players, dtype=np.int64),
            np.zeros(n_players, dtype=np.float64),
            np.zeros(n_players, dtype=np.float64),
        )

    @property
    def n_players(self) -> int:
        return len(self.count)

    def copy(self) -> "RunningStats":
        return RunningStats(
            self.count.copy(), self.mean.copy(), self.m2.copy(), self.sample_min, self.sample_max
        )

    def add(self, players: NDArray[np.intp], samples: NDArray[np.float64]) -> None:
        """Add one sample for each of ``players`` (distinct indices), in place (Welford)."""
        if len(players) == 0:
            return
        count = self.count[players] + 1
        delta = samples - self.mean[players]
        mean = self.mean[players] + delta / count
        self.m2[players] += delta * (samples - mean)
        self.mean[players] = mean
        self.count[players] = count
        self.sample_min = min(self.sample_min, float(samples.min()))
        self.sample_max = max(self.sample_max, float(samples.max()))

    def merge(self, other: "RunningStats") -> "RunningStats":
        """Statistics of the union of both sample sets (Chan et al. 1979), as a new object."""
        if other.n_players != self.n_players:
            raise ValueError(
                f"Cannot merge statistics of {self.n_players} and {other.n_players} players."
            )
        # Only the players the other summary saw change: merging a sparse summary (TMAB's
        # rounds sample few players) costs O(its players), and the rest are exact copies.
        seen = np.flatnonzero(other.count)
        count, mean, m2 = self.count.copy(), self.mean.copy(), self.m2.copy()
        n_self, n_other = self.count[seen], other.count[seen]
        total = n_self + n_other
        delta = other.mean[seen] - self.mean[seen]
        mean[seen] = self.mean[seen] + delta * (n_other / total)
        m2[seen] = self.m2[seen] + other.m2[seen] + delta**2 * (n_self * n_other / total)
        count[seen] = total
        return RunningStats(
            count,
            mean,
            m2,
            min(self.sample_min, other.sample_min),
            max(self.sample_max, other.sample_max),
        )

    @property
    def variance(self) -> NDArray[np.float64]:
        """Unbiased sample variance per player; 0 where fewer than two samples."""
        out = np.zeros_like(self.mean)
        many = self.count > 1
        out[many] = self.m2[many] / (self.count[many] - 1)
        return out

    @property
    def observed_range(self) -> float:
        """Width of the interval the samples fell in so far (0 before two distinct samples)."""
        if self.sample_max < self.sample_min:
            return 0.0
        return self.sample_max - self.sample_min
