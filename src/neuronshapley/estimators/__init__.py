"""Shapley value estimators: exact, Monte Carlo, truncated, and the TMAB top-k bandit."""

from neuronshapley.estimators.bandit import tmab_shapley, undecided_players
from neuronshapley.estimators.exact import exact_banzhaf, exact_shapley
from neuronshapley.estimators.permutation import permutation_shapley, truncated_shapley
from neuronshapley.estimators.progress import Progress, ProgressCallback
from neuronshapley.estimators.walks import Truncation
from neuronshapley.results.bounds import confidence_halfwidth
from neuronshapley.results.result import RankedPlayer, Ranking, ShapleyResult
from neuronshapley.results.stats import RunningStats

__all__ = [
    "Progress",
    "ProgressCallback",
    "RankedPlayer",
    "Ranking",
    "RunningStats",
    "ShapleyResult",
    "Truncation",
    "confidence_halfwidth",
    "exact_banzhaf",
    "exact_shapley",
    "permutation_shapley",
    "tmab_shapley",
    "truncated_shapley",
    "undecided_players",
]
