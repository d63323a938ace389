"""The bundled architectures: small networks whose units (filters, neurons) are the players.

Every architecture is an ``nn.Sequential`` with short, stable module names (``conv1``,
``relu1``, ..., ``fc``), so units can be named ``"conv2:17"`` and reached as ``model.conv2``.
Activations are separate ``nn.ReLU`` modules (never functional calls) so that hooks can sit on
them. Every ``forward`` takes a split's ``x`` and returns logits of shape ``(n, n_classes)``.

Parameters are initialised from an explicit ``torch.Generator`` (:func:`init_parameters`), never
from the global RNG, so building a model leaves the user's random state as it was.
"""

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class DigitsCNN(nn.Sequential):
    """A small 2-D CNN for the 8x8 scikit-learn digits.

    Layout: ``conv1 -> relu1 -> pool1 (8x8 -> 4x4) -> conv2 -> relu2 -> pool2 (4x4 -> 2x2) ->
    conv3 -> relu3 -> flatten -> fc``. All convolutions are 3x3 with padding 1. Pooling early
    keeps a forward pass cheap (about 0.46 M multiply-adds per image with the default channels,
    a quarter of pooling after conv2), which is what a Neuron Shapley run pays millions of times;
    test accuracy stayed at 98-99%.
    With ``dropout > 0`` a channel dropout (``nn.Dropout2d``) follows each ReLU as ``drop1``,
    ``drop2``, ``drop3``; in eval mode it is the identity, so the trained network has the same
    units and the same module names as without it.

    Args:
        channels: Filters of ``conv1``, ``conv2`` and ``conv3``. Defaults to ``(32, 64, 64)``
            (160 filters).
        n_classes: Number of outputs of ``fc``. Defaults to 10.
        dropout: Channel dropout probability after each conv block while training.
            Defaults to 0.0 (no dropout modules at all).
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 64),
        n_classes: int = 10,
        dropout: float = 0.0,
    ) -> None:
        c1, c2, c3 = channels
        layers: list[tuple[str, nn.Module]] = []

        def block(i: int, c_in: int, c_out: int) -> None:
            layers.append((f"conv{i}", nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)))
            layers.append((f"relu{i}", nn.ReLU()))
            if dropout > 0:
                layers.append((f"drop{i}", nn.Dropout2d(p=dropout)))

        block(1, 1, c1)
        layers.append(("pool1", nn.MaxPool2d(2)))
        block(2, c1, c2)
        layers.append(("pool2", nn.MaxPool2d(2)))
        block(3, c2, c3)
        # A flattened 2x2 map rather than a global average: on 8x8 digits the average pooling
        # head lost 3-5 points of test accuracy in the same number of epochs.
        layers += [
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(4 * c3, n_classes)),
        ]
        super().__init__(OrderedDict(layers))


class MNIST1DCNN(nn.Sequential):
    """A 1-D CNN for MNIST-1D sequences of length 40.

    Layout: ``conv1 -> relu1 -> conv2 -> relu2 -> pool1 (40 -> 20) -> conv3 -> relu3 ->
    pool2 (20 -> 10) -> flatten -> fc``. All convolutions have kernel 5 and padding 2.

    Args:
        channels: Channels of ``conv1``, ``conv2`` and ``conv3``. Defaults to ``(32, 64, 64)``.
        n_classes: Number of outputs of ``fc``. Defaults to 10.
        length: Length of the input sequences. Defaults to 40.
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 64),
        n_classes: int = 10,
        length: int = 40,
    ) -> None:
        c1, c2, c3 = channels
        super().__init__(
            OrderedDict(
                [
                    ("conv1", nn.Conv1d(1, c1, kernel_size=5, padding=2)),
                    ("relu1", nn.ReLU()),
                    ("conv2", nn.Conv1d(c1, c2, kernel_size=5, padding=2)),
                    ("relu2", nn.ReLU()),
                    ("pool1", nn.MaxPool1d(2)),
                    ("conv3", nn.Conv1d(c2, c3, kernel_size=5, padding=2)),
                    ("relu3", nn.ReLU()),
                    ("pool2", nn.MaxPool1d(2)),
                    ("flatten", nn.Flatten()),
                    ("fc", nn.Linear(c3 * (length // 4), n_classes)),
                ]
            )
        )


class AdultMLP(nn.Sequential):
    """A two-hidden-layer MLP for UCI Adult: ``fc1 -> relu1 -> fc2 -> relu2 -> out``.

    Args:
        n_features: Width of the input (the one-hot encoded features).
        hidden: Neurons of ``fc1`` and ``fc2``. Defaults to ``(64, 64)``.
        n_classes: Number of outputs of ``out``. Defaults to 2.
    """

    def __init__(
        self, n_features: int, hidden: Sequence[int] = (64, 64), n_classes: int = 2
    ) -> None:
        h1, h2 = hidden
        super().__init__(
            OrderedDict(
                [
                    ("fc1", nn.Linear(n_features, h1)),
                    ("relu1", nn.ReLU()),
                    ("fc2", nn.Linear(h1, h2)),
                    ("relu2", nn.ReLU()),
                    ("out", nn.Linear(h2, n_classes)),
                ]
            )
        )


class DigitsMLP(nn.Sequential):
    """A wide two-hidden-layer MLP for the 8x8 digits: ``flatten -> fc1 -> relu1 -> fc2 -> relu2
    -> out``.

    Many units for little compute (about 0.3 M multiply-adds per image with the default 1,024
    neurons, less than ``DigitsCNN``): the benchmark's game with more than 1,000 players.

    Args:
        hidden: Neurons of ``fc1`` and ``fc2``. Defaults to ``(512, 512)``.
        n_classes: Number of outputs of ``out``. Defaults to 10.
    """

    def __init__(self, hidden: Sequence[int] = (512, 512), n_classes: int = 10) -> None:
        h1, h2 = hidden
        super().__init__(
            OrderedDict(
                [
                    ("flatten", nn.Flatten()),
                    ("fc1", nn.Linear(64, h1)),
                    ("relu1", nn.ReLU()),
                    ("fc2", nn.Linear(h1, h2)),
                    ("relu2", nn.ReLU()),
                    ("out", nn.Linear(h2, n_classes)),
                ]
            )
        )


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "DigitsCNN": DigitsCNN,
    "DigitsMLP": DigitsMLP,
    "MNIST1DCNN": MNIST1DCNN,
    "AdultMLP": AdultMLP,
}


def build(architecture: str, params: dict[str, Any]) -> nn.Module:
    """A fresh model of ``architecture``, built without touching any global random state.

    The constructors' default initialisation draws from torch's global RNG; it runs inside
    ``fork_rng`` so the user's state is restored, and its draws are overwritten anyway (by
    :func:`init_parameters` before training, or by cached weights).

    Args:
        architecture: A key of :data:`ARCHITECTURES`.
        params: Keyword arguments of its constructor.
    """
    with torch.random.fork_rng(devices=[]):
        return ARCHITECTURES[architecture](**params)


def init_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every conv and linear layer of ``model`` from ``generator``.

    The same distributions as PyTorch's defaults (``reset_parameters``: Kaiming-uniform weights
    with ``a = sqrt(5)``, biases uniform in ``+-1/sqrt(fan_in)``), drawn from a local generator
    so that the result depends on the seed alone.

    Args:
        model: The model, modified in place.
        generator: The source of randomness.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)


def units_per_layer(model: nn.Module) -> dict[str, int]:
    """Units of each conv (filters) and linear (neurons) layer, in forward order.

    The last entry is the output layer (one unit per class).

    Args:
        model: The model.
    """
    units: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d):
            units[name] = module.out_channels
        elif isinstance(module, nn.Linear):
            units[name] = module.out_features
    return units
