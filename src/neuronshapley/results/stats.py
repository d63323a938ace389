"""Per-player running mean and variance that merge exactly (Welford updates, Chan merges).

Two workers that each summarise part of the samples merge into the summary of all samples
(up to floating-point rounding), which is what resumed runs and distributed runs rely on.

Beside them, each player keeps the *variance process* of the anytime bound
(``results.bounds``): V_t = sum_i (x_i - xhat_i)^2, where xhat_i is a *predictable* guess of
the i-th sample, fixed before it was drawn. Merging in order makes it so: the samples of the
summary merged in (a task of a round, walked anywhere) are one block, and each of them is
guessed by the mean of the samples merged before them, or by ``first_guess`` for a player with
none. Unlike the mean and M2, V_t depends on that order, so it merges in order only.
"""

from dataclasses import dataclass, field

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
        variance_process: V_t per player (module docstring); ``None`` where unknown (a summary
            rebuilt from a result saved without it).
    """

    count: NDArray[np.int64]
    mean: NDArray[np.float64]
    m2: NDArray[np.float64]
    sample_min: float = float("inf")
    sample_max: float = float("-inf")
    variance_process: NDArray[np.float64] | None = field(default=None)

    @classmethod
    def zeros(cls, n_players: int, *, ordered: bool = False) -> "RunningStats":
        """Statistics with no samples; ``ordered``: with a variance process, to merge into."""
        return cls(
            np.zeros(n_players, dtype=np.int64),
            np.zeros(n_players, dtype=np.float64),
            np.zeros(n_players, dtype=np.float64),
            variance_process=np.zeros(n_players, dtype=np.float64) if ordered else None,
        )

    @property
    def n_players(self) -> int:
        return len(self.count)

    def copy(self) -> "RunningStats":
        process = None if self.variance_process is None else self.variance_process.copy()
        return RunningStats(
            self.count.copy(),
            self.mean.copy(),
            self.m2.copy(),
            self.sample_min,
            self.sample_max,
            process,
        )

    def add(self, players: NDArray[np.intp], samples: NDArray[np.float64]) -> None:
        """Add one sample for each of ``players`` (distinct indices), in place (Welford).

        A summary built this way (a task's, on a worker) has no variance process: merging it
        into an ordered summary computes its part (:meth:`merge`).
        """
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

    def merge(self, other: "RunningStats", *, first_guess: float | None = None) -> "RunningStats":
        """Statistics of the union of both sample sets (Chan et al. 1979), as a new object.

        ``other``'s samples come after this summary's: each is guessed, in the variance
        process, by this summary's mean of its player, or by ``first_guess`` where this
        summary has no sample of it. ``first_guess`` must lie in the range of the samples'
        values (a sampling run passes (V(N) - V(empty)) / n, the mean of all values, which
        does); the anytime bound is valid only then, so an ordered summary refuses to merge
        without one.
        """
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
        process = None
        if self.variance_process is not None:
            if first_guess is None:
                raise ValueError(
                    "An ordered summary (with a variance process) merges only with a first_guess "
                    "inside the range of the samples' values."
                )
            # sum over the block of (x - guess)^2 = its M2 + its count * (its mean - guess)^2.
            guess = np.where(n_self > 0, self.mean[seen], first_guess)
            process = self.variance_process.copy()
            process[seen] += other.m2[seen] + n_other * (other.mean[seen] - guess) ** 2
        return RunningStats(
            count,
            mean,
            m2,
            min(self.sample_min, other.sample_min),
            max(self.sample_max, other.sample_max),
            process,
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
