"""Confidence half-widths for a mean of bounded samples.

``bernstein`` is the empirical Bernstein bound of Maurer & Pontil (2009, Theorem 4) used by
Ghorbani & Zou (2020, appendix E): with probability at least 1 - delta/2 on each side,

    |phi - mean| <= sqrt(2 var ln(4/delta) / t) + 7 R ln(4/delta) / (3 (t - 1)),

for t >= 2 samples with range R and unbiased sample variance var. (The paper writes ln(2/delta)
for the one-sided bound; both sides need ln(4/delta).) Since the samples and their mean lie in an
interval of width R, the half-width never needs to exceed R. ``normal`` is the CLT interval
z_{1-delta/2} sqrt(var / t): tighter, asymptotic, without a finite-sample guarantee.
"""

from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

BOUNDS = ("bernstein", "normal")


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
        delta: Failure probability per player, in (0, 1).
        bound: ``"bernstein"`` or ``"normal"``.
        value_range: Width R of the interval the samples lie in (``bernstein`` only).
    """
    t = count.astype(np.float64)
    half = np.full_like(t, np.inf)
    many = count > 1
    if bound == "bernstein":
        log_term = np.log(4.0 / delta)
        tm = t[many]
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
