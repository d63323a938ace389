"""neuronshapley: which units of a network are responsible for a behaviour.

A unit's value is its Shapley value in the game "performance of the network when only the units
in S are active" (Ghorbani & Zou, NeurIPS 2020). The core is game-agnostic: any ``Game`` (or
callable over boolean coalition matrices) goes into any estimator and comes out as a
``ShapleyResult``.

Nothing heavy is imported here: no torch, no plotting.
"""

from neuronshapley import games
from neuronshapley.estimators import (
    RankedPlayer,
    ShapleyResult,
    exact_banzhaf,
    exact_shapley,
    permutation_shapley,
    tmab_shapley,
    truncated_shapley,
)
from neuronshapley.games import Game

__version__ = "0.1.0"

__all__ = [
    "Game",
    "RankedPlayer",
    "ShapleyResult",
    "exact_banzhaf",
    "exact_shapley",
    "games",
    "permutation_shapley",
    "tmab_shapley",
    "truncated_shapley",
]
