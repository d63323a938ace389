"""The PyTorch adapter: units of a network as players, mean ablation, batched evaluation.

Importing this package imports torch; ``import neuronshapley`` alone does not.
"""

from neuronshapley.torch import metrics, units
from neuronshapley.torch.ablation import ABLATIONS, evaluation_mode
from neuronshapley.torch.data import Bundle, Split, as_split
from neuronshapley.torch.game import NeuronGame
from neuronshapley.torch.metrics import Metric
from neuronshapley.torch.units import Layer, UnitSet, resolve_units

__all__ = [
    "ABLATIONS",
    "Bundle",
    "Layer",
    "Metric",
    "NeuronGame",
    "Split",
    "UnitSet",
    "as_split",
    "evaluation_mode",
    "metrics",
    "resolve_units",
    "units",
]
