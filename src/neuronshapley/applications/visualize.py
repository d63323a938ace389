"""What a unit sees: its most and least activating examples, and an input that maximises it.

Ghorbani & Zou (2020, figure 1) interpret the few units with the largest Neuron Shapley values
two ways: the examples of a data set on which the unit's activation is the most positive and the
most negative, and a "deep dream" input found by gradient ascent on the unit's activation with
small transformations (jitter, blur) at each step (Olah et al. 2017; Yosinski et al. 2015,
"Understanding neural networks through deep visualization"). The bottom of figure 1 counts how
many of the top-k units each layer holds. The figures are drawn by
:mod:`neuronshapley.report.units` (:func:`~neuronshapley.report.units.plot_extremes`,
:func:`~neuronshapley.report.units.plot_maximized`,
:func:`~neuronshapley.report.units.plot_layer_distribution`).

A unit's activation on one example is one scalar: its output averaged over positions (the mean
of a filter's feature map, a ``Linear`` feature averaged over tokens, a head's features averaged
over its dimensions and tokens). Units are named ``"<module path>:<index>"`` as players of a
:class:`~neuronshapley.units.NeuronGame` are. The model is observed through hooks that exist only
inside a context manager, in eval mode, and leaves this module exactly as it came in.
"""

import copy
import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional as F  # noqa: N812

from neuronshapley._internal.devices import model_device, resolve_device
from neuronshapley._internal.validation import check_float, check_int
from neuronshapley.pytorch.data import as_split
from neuronshapley.units.ablation import evaluation_mode, hooked
from neuronshapley.units.game import NeuronGame
from neuronshapley.units.selection import Layer, resolve_units

_UNIT = re.compile(r"^(?P<path>[^*?\[\]]*):(?P<index>\d+)$")


@dataclass(frozen=True)
class Extremes:
    """The examples that activate a unit the most and the least.

    Attributes:
        unit: The unit's name, ``"<module path>:<index>"``.
        indices_top: Example indices with the largest activations, largest first.
        values_top: Their activations.
        indices_bottom: Example indices with the smallest activations, smallest first.
        values_bottom: Their activations.
    """

    unit: str
    indices_top: NDArray[np.intp]
    values_top: NDArray[np.float64]
    indices_bottom: NDArray[np.intp]
    values_bottom: NDArray[np.float64]


# -- activations ----------------------------------------------------------------------------


def unit_activations(
    game_or_model: NeuronGame | nn.Module,
    unit: str,
    data: Any = None,
    *,
    batch_size: int = 512,
) -> NDArray[np.float64]:
    """One activation per example: the unit's output averaged over positions.

    A convolution filter gives the mean of its feature map, a ``Linear`` neuron its feature (the
    mean over tokens for sequence inputs), a head the mean of its features. The model runs in
    eval mode under ``torch.inference_mode``; its modes are restored and no hook is left.

    Args:
        game_or_model: A :class:`~neuronshapley.units.NeuronGame` (``unit`` must be one of its
            players) or a ``torch.nn.Module`` (``unit`` names an output channel or feature of a
            Conv, Linear, BatchNorm or a head of a MultiheadAttention).
        unit: ``"<module path>:<index>"``, e.g. ``"features.3:17"``.
        data: The examples: a :class:`~neuronshapley.pytorch.data.Split`, a tuple ``(x, y)``, or
            a tensor or array of inputs. Default ``None``: the game's evaluation data (required
            with a plain model).
        batch_size: Examples per forward pass. Default 512.

    Returns:
        float64 array of shape ``(n_examples,)``.
    """
    owner = "unit_activations"
    model, layer, index = _resolve(game_or_model, unit, owner)
    check_int(batch_size, "batch_size", owner, min_value=1)
    inputs = _inputs(game_or_model, data, owner).to(model_device(model))
    parts: list[torch.Tensor] = []
    seen: list[torch.Tensor] = []

    def observe(activation: torch.Tensor) -> torch.Tensor:
        seen.append(_unit_mean(layer, index, activation))
        return activation

    with evaluation_mode(model), torch.inference_mode(), hooked(model, [layer], [observe]):
        for start in range(0, len(inputs), batch_size):
            seen.clear()
            model(inputs[start : start + batch_size])
            parts.append(_single_call(seen, layer, owner))
    return torch.cat(parts).double().cpu().numpy()


def extreme_examples(
    game_or_model: NeuronGame | nn.Module,
    unit: str,
    k: int = 8,
    data: Any = None,
    *,
    batch_size: int = 512,
) -> Extremes:
    """The ``k`` examples with the largest and the ``k`` with the smallest activation of a unit.

    Figure 1 of Ghorbani & Zou (2020) shows five of each for the top unit of several layers.

    Args:
        game_or_model: A :class:`~neuronshapley.units.NeuronGame` or a ``torch.nn.Module``.
        unit: ``"<module path>:<index>"``.
        k: Examples on each side, at most the number of examples. Default 8.
        data: The examples searched (see :func:`unit_activations`). Default ``None``: the
            game's evaluation data.
        batch_size: Examples per forward pass. Default 512.

    Returns:
        The indices and activations of both sets; ties are broken by example index.
    """
    values = unit_activations(game_or_model, unit, data, batch_size=batch_size)
    k = cast(int, check_int(k, "k", "extreme_examples", min_value=1, max_value=len(values)))
    top = np.argsort(-values, kind="stable")[:k]
    bottom = np.argsort(values, kind="stable")[:k]
    return Extremes(unit, top, values[top], bottom, values[bottom])


def maximize_activation(
    game_or_model: NeuronGame | nn.Module,
    unit: str,
    input_shape: Sequence[int],
    *,
    steps: int = 200,
    lr: float = 0.05,
    jitter: int = 1,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    weight_decay: float = 1e-3,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """An input that activates a unit strongly, found by regularised gradient ascent.

    The "deep dream" visualisation of Ghorbani & Zou (2020, figure 1), with the regularisers of
    Yosinski et al. (2015) and Olah et al. (2017). From a small random input, each step rolls the
    input by a random shift of up to ``jitter`` positions along every spatial dimension, takes
    the gradient of the unit's mean activation with respect to the input, moves the input by
    ``lr`` times that gradient divided by its mean absolute value, and shrinks it by
    ``1 - weight_decay`` (L2 decay); every ``blur_every`` steps a Gaussian blur of width
    ``blur_sigma`` removes the high frequencies the ascent favours. Inputs of shape ``(C, L)``
    (signals) have one spatial dimension, ``(C, H, W)`` (images) two; vectors ``(D,)`` none, so
    they get no jitter and no blur; for token sequences ``(seq, d)``, whose last dimension is
    not spatial, pass ``jitter=0`` and ``blur_every=0``.

    Only the input receives gradients (``torch.autograd.grad``): parameters keep ``.grad`` as
    it was, the model's modes are restored and no hook remains. The random start and the shifts
    come from a ``torch.Generator`` seeded with ``seed``, never from the global RNG, so a seed
    gives the same input on the same device.

    Args:
        game_or_model: A :class:`~neuronshapley.units.NeuronGame` or a ``torch.nn.Module``.
        unit: ``"<module path>:<index>"``.
        input_shape: Shape of one example, without the batch dimension (e.g. ``(1, 28, 28)``).
        steps: Gradient steps. Default 200.
        lr: Step size, relative to the mean absolute gradient. Default 0.05.
        jitter: Largest shift, in positions, of the random roll at each step; 0 disables.
            Default 1.
        blur_every: Blur every this many steps; 0 disables. Default 4.
        blur_sigma: Standard deviation of the blur, in positions; 0 disables. Default 0.5.
        weight_decay: Fraction the input shrinks by at each step. Default 1e-3.
        seed: Seed of the random start and the shifts. Default 0.
        device: Where to optimise. Default: the model's device (a model elsewhere is copied).

    Returns:
        The input, detached, shape ``(1, *input_shape)``.
    """
    owner = "maximize_activation"
    model, layer, index = _resolve(game_or_model, unit, owner)
    shape = _check_shape(input_shape, owner)
    n_steps = cast(int, check_int(steps, "steps", owner, min_value=0))
    step_size = cast(float, check_float(lr, "lr", owner, low=0.0))
    shift = cast(int, check_int(jitter, "jitter", owner, min_value=0))
    every = cast(int, check_int(blur_every, "blur_every", owner, min_value=0))
    sigma = cast(float, check_float(blur_sigma, "blur_sigma", owner, low=0.0))
    decay = cast(float, check_float(weight_decay, "weight_decay", owner, low=0.0, high=1.0))
    seed = cast(int, check_int(seed, "seed", owner, min_value=0))
    source = model_device(model)
    target = source if device is None else resolve_device(device, owner)
    if target != source:
        model = copy.deepcopy(model).to(target)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    generator = torch.Generator().manual_seed(seed)
    x = (0.01 * torch.randn((1, *shape), generator=generator)).to(target, dtype)
    spatial = tuple(range(2, x.dim()))
    seen: list[torch.Tensor] = []

    def observe(activation: torch.Tensor) -> torch.Tensor:
        seen.append(_unit_mean(layer, index, activation))
        return activation

    with evaluation_mode(model), torch.enable_grad(), hooked(model, [layer], [observe]):
        for step in range(n_steps):
            x.requires_grad_(True)
            shown = x
            if shift and spatial:
                shifts = torch.randint(-shift, shift + 1, (len(spatial),), generator=generator)
                shown = torch.roll(x, [int(s) for s in shifts], dims=spatial)
            seen.clear()
            model(shown)
            objective = _single_call(seen, layer, owner).sum()
            if not objective.requires_grad:
                raise ValueError(
                    f"The activation of unit {unit!r} does not depend on the input, so "
                    f"{owner} cannot ascend its gradient."
                )
            (gradient,) = torch.autograd.grad(objective, x)
            with torch.no_grad():
                x = x + step_size * gradient / (gradient.abs().mean() + 1e-12)
                x = x * (1.0 - decay)
                if every and sigma > 0 and spatial and (step + 1) % every == 0:
                    x = gaussian_blur(x, sigma)
            x = x.detach()
    return x.detach()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur ``x`` of shape ``(N, C, *spatial)`` along its spatial dimensions.

    A separable Gaussian: one 1-D convolution per spatial dimension, with a kernel of radius
    ``ceil(3 * sigma)`` and replicated edges, so constant inputs stay constant.

    Args:
        x: Batch of signals ``(N, C, L)``, images ``(N, C, H, W)`` or volumes.
        sigma: Standard deviation in positions; 0 returns ``x`` unchanged.
    """
    sigma = cast(float, check_float(sigma, "sigma", "gaussian_blur", low=0.0))
    if sigma == 0 or x.dim() < 3:
        return x
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.device, x.dtype).view(1, 1, -1)
    out = x
    for dim in range(2, x.dim()):
        moved = out.movedim(dim, -1)
        rows = moved.reshape(-1, 1, moved.shape[-1])
        padded = F.pad(rows, (radius, radius), mode="replicate")
        out = F.conv1d(padded, kernel).reshape(moved.shape).movedim(-1, dim)
    return out


# -- helpers --------------------------------------------------------------------------------


def _resolve(game_or_model: Any, unit: Any, owner: str) -> tuple[nn.Module, Layer, int]:
    """The model, the layer holding ``unit`` and the unit's index in that layer."""
    if not isinstance(unit, str):
        raise TypeError(
            f"The 'unit' parameter of {owner} must be a string '<module path>:<index>'. "
            f"Got {type(unit).__name__} instead."
        )
    if isinstance(game_or_model, NeuronGame):
        game = game_or_model
        if unit not in game.player_names:
            close = difflib.get_close_matches(unit, game.player_names, n=5, cutoff=0.4)
            shown = close or game.player_names[:12]
            raise ValueError(
                f"The unit {unit!r} passed to {owner} is not a player of the game. Closest "
                f"players: {', '.join(repr(name) for name in shown)}."
            )
        path, _, number = unit.rpartition(":")
        layer = next(layer for layer in game.layers if layer.path == path)
        return game.model, layer, int(number)
    if not isinstance(game_or_model, nn.Module):
        raise TypeError(
            f"The 'game_or_model' parameter of {owner} must be a NeuronGame or a "
            f"torch.nn.Module. Got {type(game_or_model).__name__} instead."
        )
    match = _UNIT.match(unit)
    if match is None:
        raise ValueError(
            f"The 'unit' parameter of {owner} must name one unit as '<module path>:<index>', "
            f"e.g. 'conv1:3'. Got {unit!r} instead."
        )
    (layer,) = resolve_units(game_or_model, unit, owner).layers
    return game_or_model, layer, int(match["index"])


def _inputs(game_or_model: Any, data: Any, owner: str) -> torch.Tensor:
    if data is None:
        if isinstance(game_or_model, NeuronGame):
            return game_or_model.data.x
        raise ValueError(
            f"The 'data' parameter of {owner} is required with a model (it defaults to the "
            f"evaluation data of a NeuronGame): pass a Split, (x, y) or a tensor of inputs."
        )
    if isinstance(data, torch.Tensor | np.ndarray):
        x = torch.as_tensor(data).detach()
    else:
        x = as_split(data, "data", owner).x
    if x.dim() < 1 or len(x) == 0:
        raise ValueError(f"The 'data' parameter of {owner} holds no examples.")
    return x


def _unit_mean(layer: Layer, index: int, activation: torch.Tensor) -> torch.Tensor:
    """The unit's activation averaged over everything but the batch: shape ``(batch,)``."""
    unit_dim = layer.channel_dim % activation.dim()
    part = activation.narrow(unit_dim, index * layer.group, layer.group)
    return part.reshape(len(part), -1).mean(dim=1)


def _single_call(seen: list[torch.Tensor], layer: Layer, owner: str) -> torch.Tensor:
    if len(seen) != 1:
        raise ValueError(
            f"Module {layer.path!r} ran {len(seen)} times in one forward pass, so {owner} "
            "cannot tell which call is the unit's activation"
            + (" (is it used in forward?)." if not seen else " (a module reused in forward).")
        )
    return seen[0]


def _check_shape(input_shape: Any, owner: str) -> tuple[int, ...]:
    shape = (input_shape,) if isinstance(input_shape, int) else input_shape
    if (
        not isinstance(shape, Sequence)
        or not shape
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
    ):
        raise ValueError(
            f"The 'input_shape' parameter of {owner} must be the shape of one example, a "
            f"tuple of positive ints such as (1, 28, 28). Got {input_shape!r} instead."
        )
    return tuple(shape)
