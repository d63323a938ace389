"""Confidence half-widths for a mean of bounded samples.

``bernstein`` is the empirical Bernstein bound of Maurer & Pontil (2009, Theorem 4) used by
Ghorbani & Zou (2020, appendix E): with probability at least 1 - delta/2 on each side,

    |phi - mean| <= sqrt(2 var ln(4/delta) / t) + 7 R ln(4/delta) / (3 (t - 1)),

for t >= 2 samples with range R and unbiased sample variance var. (The paper writes ln(2/delta)
for the one-sided bound; both sides need ln(4/delta).) Since the samples and their mean lie in an
interval of width R, the half-width never needs to exceed R. ``normal`` is the CLT interval
z_{1-delta/2} sqrt(var / t): tighter, asymptotic, without a finite-sample guarantee.

Both hold at a *fixed* sample size t, for each player on its own. A rule that looks at the
intervals after every round and stops on them (TMAB) needs more: ``anytime`` is the same
Bernstein bound with delta spent over the sample sizes, delta_t = delta 6 / (pi^2 t^2) at t
samples (sum over t >= 1: delta), as in the empirical Bernstein stopping of Mnih, Szepesvari &
Audibert (ICML 2008), and divided among the players. By the union bound over players and sample
sizes, with probability at least 1 - delta every player's interval covers its value at every
sample size at once, so at any round and under any stopping rule. A player's samples are
i.i.d. (each comes from a fresh permutation, whatever decided to sample the player), which is
what the fixed-t bound needs at each t. The price is ln(pi^2 t^2 n / 6) in the log term:
wider than the fixed-t bound, and valid where it is used.
"""

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import check_bool, check_choice, check_float
from neuronshapley.results.stats import RunningStats

BOUNDS = ("bernstein", "normal", "anytime")

# sum_{t >= 1} 6 / (pi^2 t^2) = 1: the share of delta spent at sample size t (``anytime``).
_ANYTIME_SHARE = 6.0 / np.pi**2


def confidence_halfwidth(
    count: NDArray[np.int64],
    variance: NDArray[np.float64],
    *,
    delta: float,
    bound: str,
    value_range: float,
) -> NDArray[np.float64]:
    """Half-width of a two-sided ``1 - delta`` interval per player (``inf`` with no samples).

    Args:
        count: Samples per player.
        variance: Unbiased sample variance per player.
        delta: Failure probability per player, in (0, 1) (``anytime``: over all sample sizes).
        bound: ``"bernstein"``, ``"anytime"`` or ``"normal"``.
        value_range: Width R of the interval the samples lie in (not for ``normal``).
    """
    t = count.astype(np.float64)
    half = np.full_like(t, np.inf)
    many = count > 1
    if bound in ("bernstein", "anytime"):
        tm = t[many]
        if bound == "anytime":  # delta_t = delta 6 / (pi^2 t^2): ln(4 / delta_t)
            log_term = np.log(4.0 / (delta * _ANYTIME_SHARE)) + 2.0 * np.log(tm)
        else:
            log_term = np.full_like(tm, np.log(4.0 / delta))
        half[many] = np.sqrt(2.0 * variance[many] * log_term / tm) + 7.0 * value_range * (
            log_term / (3.0 * (tm - 1.0))
        )
        half[count == 1] = value_range
        seen = count > 0
        half[seen] = np.minimum(half[seen], value_range)
        return half
    z = NormalDist().inv_cdf(1.0 - delta / 2.0)
    half[many] = z * np.sqrt(variance[many] / t[many])
    return half


@dataclass(frozen=True)
class IntervalRule:
    """How a sampling run turns its statistics into intervals, and what those intervals promise.

    Attributes:
        bound: ``"bernstein"`` (empirical Bernstein, finite-sample, at a fixed sample size),
            ``"anytime"`` (empirical Bernstein with delta spent over sample sizes and players:
            all intervals hold at every sample size at once) or ``"normal"`` (CLT, asymptotic).
        delta: Each interval fails with probability at most ``delta`` (``union_bound`` or
            ``anytime``: all of them together), in (0, 1).
        value_range: Range R of a marginal contribution; ``None`` takes the observed range of
            all samples, a heuristic that voids the finite-sample guarantee.
        union_bound: Divide ``delta`` among the players, so all intervals hold at once
            (``anytime`` always does).
    """

    bound: str = "bernstein"
    delta: float = 0.05
    value_range: float | None = None
    union_bound: bool = False

    def check(self, owner: str) -> "IntervalRule":
        """This rule if every field is valid; else an error naming the parameter of ``owner``."""
        check_float(
            self.delta, "delta", owner, low=0.0, high=1.0, include_low=False, include_high=False
        )
        check_choice(self.bound, "bound", owner, BOUNDS)
        check_float(
            self.value_range, "value_range", owner, low=0.0, include_low=False, allow_none=True
        )
        check_bool(self.union_bound, "union_bound", owner)
        return IntervalRule(
            self.bound,
            float(self.delta),
            None if self.value_range is None else float(self.value_range),
            self.union_bound,
        )

    @property
    def simultaneous(self) -> bool:
        """Whether ``delta`` covers all players at once (``union_bound``, or ``anytime``)."""
        return self.union_bound or self.bound == "anytime"

    def halfwidth(self, stats: RunningStats) -> tuple[NDArray[np.float64], float]:
        """Half-width of each player's interval, and the range R it used."""
        value_range = stats.observed_range if self.value_range is None else self.value_range
        delta = self.delta / (stats.n_players if self.simultaneous else 1)
        half = confidence_halfwidth(
            stats.count, stats.variance, delta=delta, bound=self.bound, value_range=value_range
        )
        return half, float(value_range)

    @property
    def guarantee(self) -> str:
        """What the intervals promise, in words (printed beside them)."""
        scope = "all players at once" if self.simultaneous else "each player on its own"
        when = (
            "at any time (anytime-valid)" if self.bound == "anytime" else "at a fixed sample size"
        )
        if self.bound == "normal":
            kind = "asymptotic (normal approximation), no finite-sample guarantee"
        elif self.value_range is None:
            kind = "empirical Bernstein with the observed range (a heuristic range)"
        else:
            kind = f"finite-sample (empirical Bernstein, range {self.value_range:g})"
        return f"{100 * (1 - self.delta):g}% for {scope}, {when}; {kind}"
