"""What every estimator returns: ``ShapleyResult``, its running statistics and its intervals."""

from neuronshapley.results.bounds import IntervalRule, confidence_halfwidth
from neuronshapley.results.result import RankedPlayer, Ranking, ShapleyResult
from neuronshapley.results.stats import RunningStats

__all__ = [
    "IntervalRule",
    "RankedPlayer",
    "Ranking",
    "RunningStats",
    "ShapleyResult",
    "confidence_halfwidth",
]
