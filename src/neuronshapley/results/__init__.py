"""What every estimator returns: ``ShapleyResult``, its running statistics and its intervals;
``InteractionResult`` for pairwise interactions."""

from neuronshapley.results.bounds import IntervalRule, confidence_halfwidth
from neuronshapley.results.interactions import InteractionPair, InteractionResult
from neuronshapley.results.result import RankedPlayer, Ranking, ShapleyResult
from neuronshapley.results.stats import RunningStats

__all__ = [
    "InteractionPair",
    "InteractionResult",
    "IntervalRule",
    "RankedPlayer",
    "Ranking",
    "RunningStats",
    "ShapleyResult",
    "confidence_halfwidth",
]
