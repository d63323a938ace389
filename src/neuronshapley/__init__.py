"""neuronshapley: which units of a network are responsible for a behaviour.

A unit's value is its Shapley value in the game "performance of the network when only the units
in S are active" (Ghorbani & Zou, NeurIPS 2020). The core is game-agnostic: any ``Game`` (or
callable over boolean coalition matrices) goes into any estimator and comes out as a
``ShapleyResult``.

Nothing heavy is imported here: no torch, no plotting.
"""

from neuronshapley import games
from neuronshapley.estimators import (
    DifferenceResult,
    InteractionResult,
    RankedPlayer,
    ShapleyResult,
    anchored_shapley,
    control_variate_shapley,
    difference_shapley,
    exact_banzhaf,
    exact_interactions,
    exact_shapley,
    permutation_interactions,
    permutation_semivalue,
    permutation_shapley,
    tmab_shapley,
    truncated_shapley,
)
from neuronshapley.games import Game

__version__ = "0.1.0"

# The PyTorch side is loaded on first use, so `import neuronshapley` stays free of torch.
_LAZY = {
    "NeuronGame": ("neuronshapley.units.game", "NeuronGame"),
    "FeatureGame": ("neuronshapley.features.game", "FeatureGame"),
    "DataGame": ("neuronshapley.data.game", "DataGame"),
    "dasp": ("neuronshapley.features.dasp", "dasp"),
    "Split": ("neuronshapley.pytorch.data", "Split"),
    "Bundle": ("neuronshapley.pytorch.data", "Bundle"),
    "units": ("neuronshapley.units", None),
    "metrics": ("neuronshapley.pytorch.metrics", None),
    "zoo": ("neuronshapley.zoo", None),
    "backends": ("neuronshapley.backends", None),
    "features": ("neuronshapley.features", None),
    "data": ("neuronshapley.data", None),
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'neuronshapley' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


__all__ = [
    "Bundle",
    "DataGame",
    "DifferenceResult",
    "FeatureGame",
    "Game",
    "InteractionResult",
    "NeuronGame",
    "RankedPlayer",
    "ShapleyResult",
    "Split",
    "anchored_shapley",
    "control_variate_shapley",
    "dasp",
    "difference_shapley",
    "exact_banzhaf",
    "exact_interactions",
    "exact_shapley",
    "features",
    "games",
    "metrics",
    "permutation_interactions",
    "permutation_semivalue",
    "permutation_shapley",
    "tmab_shapley",
    "truncated_shapley",
    "units",
    "zoo",
]
