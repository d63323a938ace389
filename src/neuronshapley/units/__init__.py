"""Units of a network as players: selection by name, ablation hooks, prefix reuse, ``NeuronGame``.

The first of the three player kinds (units, input features, training data). Importing this
package imports torch; ``import neuronshapley`` alone does not. ``ns.units.conv_filters(model)``
and its siblings select units; ``NeuronGame`` turns a model, data and a metric into a game;
``linearized_game`` gives its first-order surrogate (a control variate).
"""

from neuronshapley.pytorch import metrics
from neuronshapley.pytorch.data import Bundle, Split, as_split
from neuronshapley.pytorch.metrics import Metric
from neuronshapley.units.ablation import ABLATIONS, evaluation_mode
from neuronshapley.units.game import NeuronGame
from neuronshapley.units.linearized import LinearizedGame, linearized_game
from neuronshapley.units.selection import (
    Layer,
    UnitSet,
    ablatable_modules,
    attention_blocks,
    attention_heads,
    conv_filters,
    default_units,
    heads,
    linear_neurons,
    mlp_blocks,
    mlp_neurons,
    resolve_units,
    union,
)

__all__ = [
    "ABLATIONS",
    "Bundle",
    "Layer",
    "LinearizedGame",
    "Metric",
    "NeuronGame",
    "Split",
    "UnitSet",
    "ablatable_modules",
    "as_split",
    "attention_blocks",
    "attention_heads",
    "conv_filters",
    "default_units",
    "evaluation_mode",
    "heads",
    "linear_neurons",
    "linearized_game",
    "metrics",
    "mlp_blocks",
    "mlp_neurons",
    "resolve_units",
    "union",
]
