"""Confidence half-widths for a mean of bounded samples.

``bernstein`` is the empirical Bernstein bound of Maurer & Pontil (2009, Theorem 4) used by
Ghorbani & Zou (2020, appendix E): with probability at least 1 - delta/2 on each side,

    |phi - mean| <= sqrt(2 var ln(4/delta) / t) + 7 R ln(4/delta) / (3 (t - 1)),

for t >= 2 samples with range R and unbiased sample variance var. (The paper writes ln(2/delta)
for the one-sided bound; both sides need ln(4/delta).) Since the samples and their mean lie in an
interval of width R, the half-width never needs to exceed R. ``normal`` is the CLT interval
z_{1-delta/2} sqrt(var / t): tighter, asymptotic, without a finite-sample guarantee.

Both hold at a *fixed* sample size t, for each player on its own. A rule that looks at the
intervals after every round and stops on them (TMAB) needs more: ``anytime`` is a confidence
*sequence*, valid at every sample size at once, so at any round and under any stopping rule:
the empirical-Bernstein sequence of Howard, Ramdas, McAuliffe & Sekhon (Ann. Statist. 2021,
Theorem 4 with the polynomial stitched boundary of their Theorem 1). For samples in an interval
of width R with mean phi, and predictable guesses xhat_i in that interval (each fixed before
the i-th sample is drawn), S_t = sum_i (x_i - phi) is sub-exponential with variance process
V_t = sum_i (x_i - xhat_i)^2 and scale c = R, hence sub-gamma with the same c, and with
probability at least 1 - alpha, for all t at once,

    S_t < S_alpha(V_t) = sqrt(k1^2 v l(v) + (k2 c l(v))^2) + k2 c l(v),   v = max(V_t, m),
    l(v) = s ln ln(eta v / m) + ln(zeta(s) / (ln(eta)^s alpha)),
    k1 = (eta^(1/4) + eta^(-1/4)) / sqrt(2),   k2 = (sqrt(eta) + 1) / 2,

with s = 1.4, eta = 2 (the authors' defaults) and m = R^2 (where the boundary starts to
grow). Both sides at alpha = delta / 2 give |mean_t - phi| <= S_{delta/2}(V_t) / t, and delta
is divided among the players (the union bound), so with probability at least 1 - delta every
player's interval covers its value at every sample size. ``RunningStats`` keeps V_t
(``variance_process``), guessing each block of samples by the mean of the player's earlier
ones. The price of validity is l(v), which grows like ln ln v: about 10 at n = 21 players,
delta = 0.1, against ln(4 / delta) = 3.7 for the fixed-t bound of one player (which TMAB used
before, without a proof).
"""

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import check_bool, check_choice, check_float
from neuronshapley.results.stats import RunningStats

BOUNDS = ("bernstein", "normal", "anytime")

# The stitched boundary's shape (module docstring): Howard et al.'s defaults s = 1.4, eta = 2.
_STITCH_S = 1.4
_STITCH_ETA = 2.0
_ZETA_S = 3.1055472779775806  # Riemann zeta(1.4); a test checks it against scipy
_K1 = (_STITCH_ETA**0.25 + _STITCH_ETA**-0.25) / np.sqrt(2.0)
_K2 = (np.sqrt(_STITCH_ETA) + 1.0) / 2.0


def stitched_boundary(
    variance_process: NDArray[np.float64], *, alpha: float, scale: float, v_min: float
) -> NDArray[np.float64]:
    """Howard et al.'s polynomial stitched boundary S_alpha(v) (one-sided crossing alpha)."""
    v = np.maximum(variance_process, v_min)
    ell = (
        _STITCH_S * np.log(np.log(_STITCH_ETA * v / v_min))
        + np.log(_ZETA_S / np.log(_STITCH_ETA) ** _STITCH_S)
        + np.log(1.0 / alpha)
    )
    term = _K2 * scale * ell
    return np.asarray(np.sqrt(_K1**2 * v * ell + term**2) + term)


def confidence_halfwidth(
    count: NDArray[np.int64],
    variance: NDArray[np.float64],
    *,
    delta: float,
    bound: str,
    value_range: float,
    variance_process: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Half-width of a two-sided ``1 - delta`` interval per player (``inf`` with no samples).

    Args:
        count: Samples per player.
        variance: Unbiased sample variance per player.
        delta: Failure probability per player, in (0, 1) (``anytime``: over all sample sizes).
        bound: ``"bernstein"``, ``"anytime"`` or ``"normal"``.
        value_range: Width R of the interval the samples lie in (not for ``normal``).
        variance_process: V_t per player (``anytime`` only; module docstring).
    """
    t = count.astype(np.float64)
    half = np.full_like(t, np.inf)
    many = count > 1
    if bound == "anytime":
        if variance_process is None:
            raise ValueError(
                "The anytime bound needs the samples' variance process (RunningStats."
                "variance_process), which these statistics do not have."
            )
        seen = count > 0
        if value_range == 0.0:  # every sample equal: the mean is exact
            half[seen] = 0.0
            return half
        boundary = stitched_boundary(
            variance_process[seen], alpha=delta / 2.0, scale=value_range, v_min=value_range**2
        )
        half[seen] = np.minimum(boundary / t[seen], value_range)
        return half
    if bound == "bernstein":
        tm = t[many]
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
        """Whether the intervals hold for all players at once (``union_bound`` or ``anytime``
        with a finite-sample bound). The normal interval never does: dividing ``delta`` among
        the players makes each wider, but its coverage is asymptotic, and on the games of
        docs/statistics.md the whole set covered in as few as 0% of runs at nominal 90%."""
        return (self.union_bound or self.bound == "anytime") and self.bound != "normal"

    def halfwidth(self, stats: RunningStats) -> tuple[NDArray[np.float64], float]:
        """Half-width of each player's interval, and the range R it used."""
        value_range = stats.observed_range if self.value_range is None else self.value_range
        # Divided among the players for the union bound, the normal interval's included
        # (Bonferroni; still not joint, see ``simultaneous``).
        divided = self.union_bound or self.bound == "anytime"
        delta = self.delta / (stats.n_players if divided else 1)
        half = confidence_halfwidth(
            stats.count,
            stats.variance,
            delta=delta,
            bound=self.bound,
            value_range=value_range,
            variance_process=stats.variance_process,
        )
        return half, float(value_range)

    @property
    def guarantee(self) -> str:
        """What the intervals promise, in words (printed beside them)."""
        return self.describe()

    def describe(self, observed_range: float | None = None) -> str:
        """:attr:`guarantee`, naming the observed range a run used where it took one."""
        level = f"{100 * (1 - self.delta):g}%"
        if self.bound == "normal":
            spread = ", delta divided among the players" if self.union_bound else ""
            return (
                f"{level} normal approximation for each player{spread}: asymptotic, no "
                "finite-sample guarantee, not joint (coverage can fall far below the level; "
                "docs/statistics.md)"
            )
        scope = "all players at once" if self.simultaneous else "each player on its own"
        when = (
            "at any time (anytime-valid)" if self.bound == "anytime" else "at a fixed sample size"
        )
        if self.value_range is None:
            seen = "" if observed_range is None else f" {observed_range:.3g}"
            kind = f"empirical Bernstein with the observed range{seen} (a heuristic range)"
        else:
            kind = f"finite-sample (empirical Bernstein, range {self.value_range:g})"
        return f"{level} for {scope}, {when}; {kind}"
