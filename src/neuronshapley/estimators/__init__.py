"""Shapley value estimators: exact, Monte Carlo, truncated, the TMAB top-k bandit,
differences of values sampled directly (``differences``), and permutation sampling with a
surrogate game as control variate (``control_variate``).

The sampling estimators share one engine: ``walks.Walker.walk`` walks a range of permutations
into mergeable statistics (the pure step), and ``driver.run_rounds`` plans rounds, merges them,
checkpoints (``checkpoint``) and reports ``Progress``.
"""

from neuronshapley.estimators.bandit import TopKRace, tmab_shapley, undecided_players
from neuronshapley.estimators.control_variate import control_variate_shapley
from neuronshapley.estimators.differences import (
    DifferenceResult,
    anchored_shapley,
    difference_shapley,
)
from neuronshapley.estimators.exact import exact_banzhaf, exact_shapley
from neuronshapley.estimators.interactions import (
    exact_interactions,
    permutation_interactions,
    shapiq_interactions,
)
from neuronshapley.estimators.options import (
    Budget,
    Persistence,
    RoundPlan,
    Sampling,
    Stop,
    Truncation,
)
from neuronshapley.estimators.permutation import (
    permutation_semivalue,
    permutation_shapley,
    truncated_shapley,
)
from neuronshapley.estimators.progress import Progress, ProgressCallback
from neuronshapley.estimators.walks import RangeStats, Walker, WalkRange
from neuronshapley.results import (
    InteractionPair,
    InteractionResult,
    IntervalRule,
    RankedPlayer,
    Ranking,
    RunningStats,
    ShapleyResult,
    confidence_halfwidth,
)

__all__ = [
    "Budget",
    "DifferenceResult",
    "InteractionPair",
    "InteractionResult",
    "IntervalRule",
    "Persistence",
    "Progress",
    "ProgressCallback",
    "RangeStats",
    "RankedPlayer",
    "Ranking",
    "RoundPlan",
    "RunningStats",
    "Sampling",
    "ShapleyResult",
    "Stop",
    "TopKRace",
    "Truncation",
    "WalkRange",
    "Walker",
    "anchored_shapley",
    "confidence_halfwidth",
    "control_variate_shapley",
    "difference_shapley",
    "exact_banzhaf",
    "exact_interactions",
    "exact_shapley",
    "permutation_interactions",
    "permutation_semivalue",
    "permutation_shapley",
    "shapiq_interactions",
    "tmab_shapley",
    "truncated_shapley",
    "undecided_players",
]
