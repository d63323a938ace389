"""Shapley value estimators: exact, Monte Carlo, truncated, and the TMAB top-k bandit."""

from neuronshapley.estimators._common import Progress
from neuronshapley.estimators.bandit import tmab_shapley, undecided_players
from neuronshapley.estimators.bounds import confidence_halfwidth
from neuronshapley.estimators.exact import exact_banzhaf, exact_shapley
from neuronshapley.estimators.permutation import permutation_shapley, truncated_shapley
from neuronshapley.estimators.result import RankedPlayer, Ranking, ShapleyResult
from neuronshapley.estimators.stats import RunningStats
from neuronshapley.estimators.walks import Truncation

__all__ = [
    "Progress",
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
