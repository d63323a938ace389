"""Baseline importance scores of the units of a :class:`~neuronshapley.units.NeuronGame`.

Section 4.1 of Ghorbani & Zou (2020) compares Neuron Shapley with the common ways of ranking
units: the size of a filter (the l2 norm of its weights), the l2 norm of its response, the
leave-one-out change of the metric, and gradient-based attributions (conductance, Dhamdhere et
al. 2019). Each function here returns one score per player of a game, a float64 array aligned
with ``game.player_names``, higher meaning more important; :func:`critical_units_study
<neuronshapley.applications.critical.critical_units_study>` removes the top-scored units and
compares the damage with the Shapley ranking.

Every function leaves the model as it came in: parameters untouched, no hook left, modes
restored.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from neuronshapley._internal.optional import require
from neuronshapley._internal.validation import check_choice, check_int
from neuronshapley.pytorch.data import as_split
from neuronshapley.typing import PlayerValues
from neuronshapley.units.ablation import evaluation_mode, hooked
from neuronshapley.units.game import NeuronGame
from neuronshapley.units.selection import Layer

# Captum's integration rules (captum.attr._utils.approximation_methods).
_METHODS = ("riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle", "gausslegendre")

Baseline = Callable[[NeuronGame], PlayerValues]


def weight_norm(game: NeuronGame) -> PlayerValues:
    """The l2 norm of each unit's incoming weights ("filter size", Ghorbani & Zou 2020, 4.1).

    - convolution filter c: ``weight[c]`` over input channels and kernel positions;
    - ``Linear`` neuron j: the row ``weight[j]``;
    - head h (``"heads"`` or ``"mha"`` units): the input columns of the output projection that
      read the head, ``out_proj.weight[:, h*d:(h+1)*d]`` (the weights the head is seen
      through, as a head has no single incoming weight vector);
    - ``BatchNorm`` channel c: ``|gamma[c]|``.

    Biases are not counted.

    Args:
        game: The game whose players are scored.

    Returns:
        One score per player, aligned with ``game.player_names``.

    Raises:
        TypeError: For a unit whose module has no weight to measure (a ``BatchNorm`` with
            ``affine=False``).
    """
    scores = []
    with torch.no_grad():
        for layer in game.layers:
            module = game.model.get_submodule(layer.path)
            norms = _unit_weight_norms(layer, module)
            scores.append(norms[list(layer.indices)])
    return np.concatenate(scores)


def _unit_weight_norms(layer: Layer, module: Any) -> NDArray[np.float64]:
    if layer.kind in ("conv", "linear"):
        weight = module.weight.detach().double()
        return weight.flatten(1).norm(dim=1).cpu().numpy()
    if layer.kind == "norm":
        if module.weight is None:
            raise TypeError(
                f"weight_norm cannot score the units of {layer.path!r}: the "
                f"{type(module).__name__} has no weight (affine=False)."
            )
        return module.weight.detach().double().abs().cpu().numpy()
    if layer.kind in ("heads", "mha"):
        projection: Any = module.out_proj if layer.kind == "mha" else module
        weight = projection.weight.detach().double()
        columns = weight.view(weight.shape[0], layer.size, layer.group)
        return columns.pow(2).sum(dim=(0, 2)).sqrt().cpu().numpy()
    raise TypeError(
        f"weight_norm cannot score the units of {layer.path!r}, of kind {layer.kind!r}: it knows "
        "conv, linear, norm, heads and mha units."
    )


def response_norm(game: NeuronGame, data: Any = None, *, batch_size: int = 256) -> PlayerValues:
    """The l2 norm of each unit's response, averaged over examples (Ghorbani & Zou 2020, 4.1).

    For one example, a unit's response is its whole output: the feature map of a filter, the
    scalar of a neuron, the ``seq x head_dim`` slice of a head. The score is the mean over
    the examples of that response's l2 norm, on the unmodified model in eval mode.

    Args:
        game: The game whose players are scored.
        data: Inputs to observe the units on: a tensor of inputs, or anything
            :func:`~neuronshapley.pytorch.data.as_split` accepts. Default ``None``
            (``game.data``, the evaluation examples).
        batch_size: Examples per forward pass. Default 256.

    Returns:
        One score per player, aligned with ``game.player_names``.
    """
    return _activation_statistic(game, data, batch_size, "response_norm")


def mean_activation(game: NeuronGame, data: Any = None, *, batch_size: int = 256) -> PlayerValues:
    """The mean of each unit's output over examples and positions (signed).

    A unit that is on (large and positive) on average scores high; an often-negative one
    (before a ReLU) scores low.

    Args:
        game: The game whose players are scored.
        data: Inputs to observe the units on: a tensor of inputs, or anything
            :func:`~neuronshapley.pytorch.data.as_split` accepts. Default ``None``
            (``game.data``).
        batch_size: Examples per forward pass. Default 256.

    Returns:
        One score per player, aligned with ``game.player_names``.
    """
    return _activation_statistic(game, data, batch_size, "mean_activation")


def _activation_statistic(game: NeuronGame, data: Any, batch_size: int, owner: str) -> PlayerValues:
    check_int(batch_size, "batch_size", owner, min_value=1)
    inputs = _inputs(game, data, owner)
    totals: list[torch.Tensor | None] = [None] * len(game.layers)

    def observer(index: int) -> Callable[[torch.Tensor], torch.Tensor]:
        layer = game.layers[index]

        def observe(activation: torch.Tensor) -> torch.Tensor:
            units = _per_unit(layer, activation)  # (batch, size, features per unit)
            if owner == "response_norm":
                part = units.norm(dim=2).sum(dim=0)
            else:
                part = units.mean(dim=2).sum(dim=0)
            total = totals[index]
            totals[index] = part if total is None else total + part
            return activation

        return observe

    transforms = [observer(index) for index in range(len(game.layers))]
    with (
        evaluation_mode(game.model),
        torch.inference_mode(),
        hooked(game.model, game.layers, transforms),
    ):
        for start in range(0, len(inputs), batch_size):
            game.model(inputs[start : start + batch_size])
    scores = []
    for layer, total in zip(game.layers, totals, strict=True):
        if total is None:
            raise RuntimeError(f"Module {layer.path!r} did not run on the data given to {owner}.")
        scores.append((total / len(inputs)).cpu().numpy()[list(layer.indices)])
    return np.concatenate(scores)


def _inputs(game: NeuronGame, data: Any, owner: str) -> torch.Tensor:
    if data is None:
        return game.data.x
    if isinstance(data, torch.Tensor):
        return data.to(game.device)
    return as_split(data, "data", owner).x.to(game.device)


def _per_unit(layer: Layer, activation: torch.Tensor) -> torch.Tensor:
    """The activation as float64 ``(batch, size, features of one unit)``."""
    unit_dim = layer.channel_dim % activation.dim()
    moved = activation.detach().double().movedim(unit_dim, 1)
    # (batch, size * group, rest) -> (batch, size, group * rest): a head's features are
    # consecutive on the unit dimension.
    flat = moved.reshape(moved.shape[0], layer.size, layer.group, -1)
    return flat.reshape(moved.shape[0], layer.size, -1)


def leave_one_out(game: NeuronGame) -> PlayerValues:
    """The drop of the metric when a unit alone is removed: ``V(N) - V(N minus {i})``.

    The leave-one-out (LOO) baseline of Ghorbani & Zou (2020, 4.1), with the game's own
    ablation. All ``n + 1`` coalitions are evaluated in one batched call.

    Args:
        game: The game whose players are scored.

    Returns:
        One score per player, aligned with ``game.player_names``.
    """
    n = game.n_players
    coalitions = np.ones((n + 1, n), dtype=bool)
    coalitions[np.arange(1, n + 1), np.arange(n)] = False
    values = np.asarray(game.value(coalitions), dtype=np.float64)
    return values[0] - values[1:]


def conductance(
    game: NeuronGame,
    target: int | torch.Tensor | None = None,
    *,
    n_steps: int = 16,
    method: str = "riemann_trapezoid",
    batch_size: int = 64,
    internal_batch_size: int | None = None,
) -> PlayerValues:
    """Layer conductance of each unit (Dhamdhere, Yan & Sundararajan 2019), through Captum.

    Conductance is integrated gradients (Sundararajan et al. 2017) seen at a hidden layer: the
    flow of attribution from input to output that passes through the unit, along the straight
    path from the baseline input (zeros) to the example. Computed with
    ``captum.attr.LayerConductance`` on the output of each layer's module, for the output
    logit of ``target``. A filter's conductance is summed over its spatial positions, and the
    score is the **signed** mean over the evaluation examples (``game.data``): a unit whose
    attribution pushes the target logit up on average scores high. Summed over a layer's
    units, the conductances of one example add up to ``logit(x) - logit(0)`` (completeness),
    up to the error of the ``n_steps``-point integral.

    Args:
        game: The game whose players are scored.
        target: The output index attributed: ``None`` (each example's label,
            ``game.data.y``), an int, or a tensor with one index per example. Default None.
        n_steps: Points of the path integral. Default 16.
        method: Captum's integration rule. Default ``"riemann_trapezoid"``, whose points
            include both ends of the path: the layer's output differences between points then
            add up to exactly ``layer(x) - layer(0)``, so completeness is exact when the output
            is linear in the layer (Captum's default, ``"gausslegendre"``, misses the ends).
        batch_size: Examples per Captum call. Default 64.
        internal_batch_size: Rows per forward pass inside Captum (it runs ``n_steps`` scaled
            copies of each example); ``None`` for all of a call's rows at once. Default None.

    Returns:
        One score per player, aligned with ``game.player_names``.

    Raises:
        ValueError: For attention heads (``"heads"``/``"mha"`` units), whose output is
            not a module's output that Captum can attribute to.
    """
    owner = "conductance"
    check_int(n_steps, "n_steps", owner, min_value=2)
    check_int(batch_size, "batch_size", owner, min_value=1)
    check_int(internal_batch_size, "internal_batch_size", owner, min_value=1, allow_none=True)
    check_choice(method, "method", owner, _METHODS)
    for layer in game.layers:
        if layer.kind in ("heads", "mha"):
            raise ValueError(
                f"conductance cannot score the attention heads of {layer.path!r}: a head is a "
                "slice of a module's input or of its internals, and Captum's LayerConductance "
                "attributes to a module's whole output. Value these units with the other "
                "baselines, or select conv/linear/norm units."
            )
    attr = require("captum.attr", "studies", "conductance")
    x = game.data.x
    targets = _targets(game, target, owner)
    scores = []
    with evaluation_mode(game.model), torch.enable_grad():
        for layer in game.layers:
            layer_conductance = attr.LayerConductance(
                game.model, game.model.get_submodule(layer.path)
            )
            total = torch.zeros(layer.size, dtype=torch.float64, device=game.device)
            for start in range(0, len(x), batch_size):
                inputs = x[start : start + batch_size]
                attribution = layer_conductance.attribute(
                    inputs,
                    baselines=torch.zeros_like(inputs),
                    target=targets[start : start + batch_size],
                    n_steps=n_steps,
                    method=method,
                    internal_batch_size=internal_batch_size,
                )
                total += _per_unit(layer, attribution).sum(dim=(0, 2))
            scores.append((total / len(x)).cpu().numpy()[list(layer.indices)])
    return np.concatenate(scores)


def _targets(game: NeuronGame, target: int | torch.Tensor | None, owner: str) -> torch.Tensor:
    n = len(game.data)
    if target is None:
        return game.data.y
    if isinstance(target, int) and not isinstance(target, bool):
        if not 0 <= target < game.n_classes:
            raise ValueError(
                f"The 'target' parameter of {owner} must be an output index in [0, "
                f"{game.n_classes - 1}]. Got {target} instead."
            )
        return torch.full((n,), target, dtype=torch.long, device=game.device)
    if isinstance(target, torch.Tensor) and target.shape == (n,) and not target.is_floating_point():
        return target.to(game.device)
    raise ValueError(
        f"The 'target' parameter of {owner} must be None, an int or an integer tensor of shape "
        f"({n},) (one output index per evaluation example). Got {target!r} instead."
    )


BASELINES: dict[str, Baseline] = {
    "weight_norm": weight_norm,
    "response_norm": response_norm,
    "mean_activation": mean_activation,
    "leave_one_out": leave_one_out,
    "conductance": conductance,
}
"""The baselines by name, as :func:`critical_units_study` takes them."""
