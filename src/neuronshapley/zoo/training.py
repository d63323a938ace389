"""Deterministic training of the bundled models on the CPU.

Everything random comes from the recipe's seed: the initial weights and the order of the
mini-batches from a local ``torch.Generator``; channel dropout, which can only draw from torch's
global RNG, from a global seed set inside ``fork_rng``, so the user's global state is restored on
exit. Two runs with the same recipe on the same machine (and the same number of torch threads)
give bit-identical weights.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from neuronshapley.pytorch.data import Split
from neuronshapley.zoo.models import init_parameters


@dataclass(frozen=True)
class TrainingRecipe:
    """How a bundled model is trained: Adam on mini-batches, learning rate decayed to 0.

    Attributes:
        epochs: Passes over the train split.
        batch_size: Examples per step (the last, smaller batch of an epoch is kept).
        lr: Peak learning rate of Adam.
        weight_decay: L2 penalty of Adam. Defaults to 0.0.
        schedule: ``"cosine"`` (decay from ``lr`` to 0 over all steps, per step) or
            ``"constant"``. Defaults to ``"cosine"``.
    """

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    schedule: str = "cosine"


def train(model: nn.Module, data: Split, recipe: TrainingRecipe, seed: int) -> nn.Module:
    """Initialise ``model`` from ``seed`` and train it on ``data`` (cross-entropy), in place.

    Args:
        model: A freshly built model; its parameters are re-initialised.
        data: The train split.
        recipe: Optimiser, schedule, epochs and batch size.
        seed: Seed of the initial weights, of the batch order and of dropout.

    Returns:
        ``model``, trained, in eval mode.
    """
    generator = torch.Generator().manual_seed(seed)
    init_parameters(model, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    n = len(data)
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    step = 0
    with torch.random.fork_rng(devices=[]):
        # Only dropout reads the global RNG; seeding it here makes dropout masks reproducible,
        # and fork_rng gives the user back their own state afterwards.
        torch.manual_seed(seed)
        model.train()
        for _ in range(recipe.epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, recipe.batch_size):
                if recipe.schedule == "cosine":
                    lr = 0.5 * recipe.lr * (1 + math.cos(math.pi * step / total_steps))
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                batch = order[start : start + recipe.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(data.x[batch]), data.y[batch])
                loss.backward()
                optimizer.step()
                step += 1
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, data: Split, batch_size: int = 2048) -> float:
    """Share of ``data`` that ``model`` classifies correctly (argmax of the logits).

    Args:
        model: The model, used as it is (put it in eval mode first).
        data: The examples.
        batch_size: Examples per forward pass. Defaults to 2048.
    """
    correct = 0
    for start in range(0, len(data), batch_size):
        logits = model(data.x[start : start + batch_size])
        correct += int((logits.argmax(dim=1) == data.y[start : start + batch_size]).sum())
    return correct / len(data)
