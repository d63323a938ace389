"""Tiny seeded models and data shared by the PyTorch adapter tests, and checks that a model is
left exactly as it came in (parameters, buffers, modes, hooks)."""

import copy
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

N_CLASSES = 3
# Small enough that the tiled inputs stay tiny, large enough for many coalitions per pass.
BUDGET = 2**22


def seeded(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """``build()`` under a fixed torch seed, without touching the global RNG state."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


class TinyCNN(nn.Module):
    """conv1 -> relu -> conv2 -> relu -> 2 x 2 average pool -> fc, on 1 x 6 x 6 images."""

    def __init__(self, c1: int = 4, c2: int = 6) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(c2 * 9, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(h).flatten(1))


class TinyMLP(nn.Module):
    """fc1 -> relu -> fc2 -> relu -> fc3 (the logits)."""

    def __init__(self, d_in: int = 8, h1: int = 6, h2: int = 5) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, h1)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(h1, h2)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(h2, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(x)))))


class MHANet(nn.Module):
    """Tokens (batch, seq, 5) -> embed -> nn.MultiheadAttention (2 heads) -> mean over seq -> fc."""

    def __init__(self, embed_dim: int = 8, num_heads: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(5, embed_dim)
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.fc = nn.Linear(embed_dim, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        out, _ = self.attn(h, h, h, need_weights=False)
        return self.fc(out.mean(dim=1))


class HandAttention(nn.Module):
    """A hand-written self-attention: qkv Linear, per-head softmax attention, proj Linear."""

    def __init__(self, embed_dim: int = 8, n_heads: int = 2) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """The concatenated head outputs, (batch, seq, embed_dim), before ``proj``."""
        batch, seq, dim = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (t.view(batch, seq, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))
        weights = (q @ k.transpose(-1, -2) / math.sqrt(dim // self.n_heads)).softmax(dim=-1)
        return (weights @ v).transpose(1, 2).reshape(batch, seq, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.heads(x))


class HandAttentionNet(nn.Module):
    """Tokens (batch, seq, 5) -> embed -> HandAttention -> mean over seq -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(5, 8)
        self.attn = HandAttention(8, 2)
        self.fc = nn.Linear(8, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.attn(self.embed(x)).mean(dim=1))


class NormDropNet(nn.Module):
    """conv -> BatchNorm -> relu -> Dropout -> pool -> fc: behaves differently in train mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.relu(self.bn(self.conv(x))))
        return self.fc(self.pool(h).flatten(1))


def _teacher(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Labels of a fixed random linear teacher: learnable, and spread over the classes."""
    features = x.mean(dim=1) if x.dim() == 3 else x.flatten(1)  # tokens: their mean
    weight = torch.randn(
        features.shape[1], N_CLASSES, generator=torch.Generator().manual_seed(seed)
    )
    return (features @ weight).argmax(dim=1)


def images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random 1 x 6 x 6 images and their teacher's labels in [0, N_CLASSES)."""
    x = torch.randn(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))
    return x, _teacher(x, seed=1000)


def vectors(n: int, seed: int, d_in: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random feature vectors and their teacher's labels in [0, N_CLASSES)."""
    x = torch.randn(n, d_in, generator=torch.Generator().manual_seed(seed))
    return x, _teacher(x, seed=1001)


def tokens(n: int, seed: int, seq: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random sequences of ``seq`` 5-dim tokens and their teacher's labels."""
    x = torch.randn(n, seq, 5, generator=torch.Generator().manual_seed(seed))
    return x, _teacher(x, seed=1002)


def trained(
    build: Callable[[], nn.Module],
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    steps: int = 150,
    seed: int = 0,
) -> nn.Module:
    """``build()`` fitted to ``data`` by full-batch Adam: a model whose units matter, whose
    predictions spread over the classes. Seeded, and the global RNG state is left alone."""
    x, y = data
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model.eval()


@functools.cache
def _fitted(kind: str) -> nn.Module:
    if kind == "cnn":
        return trained(TinyCNN, images(64, seed=0), steps=60)
    if kind == "mlp":
        return trained(TinyMLP, vectors(64, seed=0))
    if kind == "mha":
        return trained(MHANet, tokens(64, seed=0))
    return trained(HandAttentionNet, tokens(64, seed=0))


def fitted(kind: str) -> Any:
    """A fresh copy of the trained ``"cnn"``, ``"mlp"``, ``"mha"`` or ``"hand"`` model (each is
    trained once per test run)."""
    return copy.deepcopy(_fitted(kind))


def random_coalitions(n_coalitions: int, n_players: int, seed: int) -> np.ndarray:
    """Random coalitions, plus the full and the empty one as the first two rows."""
    rows = np.random.default_rng(seed).random((n_coalitions, n_players)) < 0.5
    rows[0], rows[1] = True, False
    return rows


def walk_batch(n_players: int, seed: int, start: int, count: int) -> np.ndarray:
    """``count`` consecutive coalitions of a permutation walk from the full set down."""
    ranks = np.random.default_rng(seed).permutation(n_players)
    return ranks[None, :] >= np.arange(start, start + count)[:, None]


def mean_logit_0(logits: torch.Tensor, targets: torch.Tensor, batch: object) -> float:
    """A user metric: the mean logit of class 0 (continuous, so no ties)."""
    return float(logits[:, 0].double().mean())


def neg_ce(logits: torch.Tensor, targets: torch.Tensor, batch: object) -> float:
    """A user metric: minus the mean cross-entropy."""
    return -float(F.cross_entropy(logits.double(), targets))


# -- the model leaves our code exactly as it came in ----------------------------------------

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_backward_hooks",
    "_backward_pre_hooks",
)


class Snapshot:
    """Parameters, buffers and the mode of every submodule of a model, taken now."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.state = {key: value.detach().clone() for key, value in model.state_dict().items()}
        self.modes = {name: module.training for name, module in model.named_modules()}
        self.requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
        self.own_forwards = _own_forwards(model)

    def assert_untouched(self) -> None:
        state = self.model.state_dict()
        assert state.keys() == self.state.keys()
        for key, value in self.state.items():
            assert torch.equal(state[key], value), f"{key} changed"
        modes = {name: module.training for name, module in self.model.named_modules()}
        assert modes == self.modes
        requires_grad = {name: p.requires_grad for name, p in self.model.named_parameters()}
        assert requires_grad == self.requires_grad
        assert _own_forwards(self.model) == self.own_forwards  # none replaced and left behind
        assert_no_hooks(self.model)


def _own_forwards(model: nn.Module) -> dict[str, Any]:
    """The ``forward`` set on each module instance (rather than its class), by module name."""
    return {name: vars(m)["forward"] for name, m in model.named_modules() if "forward" in vars(m)}


def assert_no_hooks(model: nn.Module) -> None:
    for name, module in model.named_modules():
        for attribute in _HOOK_DICTS:
            assert not getattr(module, attribute), f"{attribute} left on {name or 'the model'}"
    from torch.nn.modules import module as module_globals

    for attribute in ("_global_forward_hooks", "_global_forward_pre_hooks"):
        assert not getattr(module_globals, attribute)


def activation_bytes_per_example(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of every module's output for one example (what ``memory_budget`` is measured in)."""
    total = [0]

    def count(_: nn.Module, __: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * output.element_size()

    probe = copy.deepcopy(model)
    for module in probe.modules():
        module.register_forward_hook(count)
    with torch.inference_mode():
        probe(x[:2])
    return total[0] // 2
