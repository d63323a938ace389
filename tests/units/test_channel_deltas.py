"""Linear layers run on differences under prefix reuse: W·x_j = W·x_0 + W[:, U]·(x_j - x_0)[U].

The values are those of the plain evaluation, the layer really runs on the changed channels
only, and the model leaves our code as it came in, even when the metric fails half-way.
"""

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from neuronshapley.pytorch.metrics import MetricError
from neuronshapley.units import NeuronGame, channel_deltas
from neuronshapley.units.channel_deltas import (
    _by_deltas,
    families,
    pays_for_deltas,
    runs_on_deltas,
)
from tests.units._models import (
    N_CLASSES,
    Snapshot,
    TinyCNN,
    TinyMLP,
    images,
    random_coalitions,
    seeded,
    trained,
    vectors,
    walk_batch,
)


def test_families_group_blocks_by_parent() -> None:
    parents = np.array([3, 3, 1, 3, 1, 7])
    found = families(parents, torch.device("cpu"))
    assert found is not None
    assert found.bases.tolist() == [0, 2, 5]  # the first block with each parent
    assert found.others.tolist() == [1, 3, 4]
    bases = found.bases.numpy()
    assert [parents[bases[b]] for b in found.base_of.tolist()] == [3, 3, 1]


def test_no_families_when_no_two_blocks_share_a_parent() -> None:
    assert families(np.array([0, 2, 1]), torch.device("cpu")) is None
    assert families(None, torch.device("cpu")) is None


# -- the forward on differences against the plain one, module by module -------------------------


def input_widths(module: nn.Module, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The input channels of every weight ``module`` is run with, recorded from now on."""
    widths: list[int] = []
    if isinstance(module, nn.Linear):
        linear = torch.nn.functional.linear

        def spy(x: torch.Tensor, weight: torch.Tensor, bias: Any = None) -> torch.Tensor:
            widths.append(weight.shape[1])
            return linear(x, weight, bias)

        monkeypatch.setattr(torch.nn.functional, "linear", spy)
    else:
        conv = module._conv_forward

        def conv_spy(x: torch.Tensor, weight: torch.Tensor, bias: Any) -> torch.Tensor:
            widths.append(weight.shape[1])
            return conv(x, weight, bias)

        monkeypatch.setattr(module, "_conv_forward", conv_spy)
    return widths


def blocks_differing_in(
    shape: tuple[int, ...], parents: list[int], channels: list[int], channel_dim: int, seed: int
) -> torch.Tensor:
    """One block per entry of ``parents``: blocks with the same parent are equal except in
    ``channels`` (along ``channel_dim`` of a block), where each block has its own values."""
    generator = torch.Generator().manual_seed(seed)
    by_parent = {p: torch.randn(shape, generator=generator) for p in set(parents)}
    blocks = []
    for parent in parents:
        block = by_parent[parent].clone()
        index = [slice(None)] * len(shape)
        index[channel_dim] = channels
        block[tuple(index)] = torch.randn(block[tuple(index)].shape, generator=generator)
        blocks.append(block)
    return torch.cat(blocks)


MODULES = [
    pytest.param(lambda: nn.Linear(12, 5), (4, 12), -1, id="linear"),
    pytest.param(lambda: nn.Linear(12, 5), (4, 3, 12), -1, id="linear-tokens"),
    pytest.param(lambda: nn.Conv1d(12, 5, 3, padding=1), (4, 12, 9), 1, id="conv1d"),
    pytest.param(lambda: nn.Conv2d(12, 5, 3, padding=1), (4, 12, 6, 6), 1, id="conv2d"),
    pytest.param(
        lambda: nn.Conv2d(12, 5, 3, stride=2, dilation=2, padding=2, padding_mode="reflect"),
        (4, 12, 7, 7),
        1,
        id="conv2d-reflect-strided",
    ),
    pytest.param(lambda: nn.Conv3d(12, 5, 2), (4, 12, 3, 3, 3), 1, id="conv3d"),
]


@pytest.mark.parametrize(("build", "shape", "channel_dim"), MODULES)
def test_differences_give_the_plain_output(
    build: Any, shape: tuple[int, ...], channel_dim: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = seeded(build)
    parents = [0, 0, 1, 0, 1, 2]
    x = blocks_differing_in(shape, parents, channels=[2, 7], channel_dim=channel_dim, seed=0)
    with torch.no_grad():
        expected = module(x)
        widths = input_widths(module, monkeypatch)
        forward = _by_deltas(module, module.forward, lambda: families(np.array(parents), x.device))
        got = forward(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert widths == [12, 2]  # the three family bases with every channel, the rest with two


def test_wide_differences_and_nan_run_the_plain_way() -> None:
    module = seeded(lambda: nn.Conv2d(4, 3, 3, padding=1))
    calls: list[int] = []
    conv = module._conv_forward
    module._conv_forward = lambda x, w, b: calls.append(len(x)) or conv(x, w, b)
    current = lambda: families(np.array([0, 0, 0]), x.device)  # noqa: E731
    forward = _by_deltas(module, module.forward, current)
    x = blocks_differing_in((2, 4, 5, 5), [0, 0, 0], channels=[0, 1, 3], channel_dim=1, seed=1)
    with torch.no_grad():
        forward(x)  # 3 of 4 channels differ: more than a quarter
        x[0, 2, 0, 0] = x[2, 2, 0, 0] = float("inf")  # inf - inf
        forward(x)
    assert calls == [6, 6]  # every block, in one plain call, each time


def test_only_stock_linear_layers_with_one_group_qualify() -> None:
    class Scaled(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    assert runs_on_deltas(nn.Linear(3, 2))
    assert runs_on_deltas(nn.Conv2d(4, 2, 3))
    assert not runs_on_deltas(nn.Conv2d(4, 2, 3, groups=2))
    assert not runs_on_deltas(nn.ConvTranspose2d(4, 2, 3))
    assert not runs_on_deltas(Scaled(3, 2))
    assert not runs_on_deltas(nn.ReLU())


def test_only_layers_wide_enough_run_on_deltas() -> None:
    """Deltas pay against wide outputs only (docs/efficiency.md): digits-cnn-wide's conv2 and
    conv3, not the 64-channel convolutions of digits-cnn nor the MLPs' hidden layers."""
    assert pays_for_deltas(nn.Conv2d(128, 256, 3)) and pays_for_deltas(nn.Conv2d(256, 768, 3))
    assert not pays_for_deltas(nn.Conv2d(32, 64, 3))
    assert not pays_for_deltas(nn.Linear(512, 512)) and not pays_for_deltas(nn.Linear(64, 64))
    game = NeuronGame(TinyCNN(), data=images(10, seed=0), ablation="zero")
    assert game.reuse is not None and game._delta_modules == {}


# -- inside the game (deltas on the tiny test models' narrow layers too) --------------------------


@pytest.fixture
def deltas_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channel_deltas, "MIN_MACS_PER_INPUT", 0)


class Shuffled(nn.Module):
    """conv1 -> relu -> a fixed 1x1 convolution (not hooked) -> conv2: channels mix before conv2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.mix = nn.Conv2d(6, 6, 1)
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 36, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mix(torch.relu(self.conv1(x)))
        return self.fc(torch.relu(self.conv2(h)).flatten(1))


def games_both_ways(
    build: Any, data: Any, reference: torch.Tensor, **kwargs: Any
) -> tuple[NeuronGame, NeuronGame]:
    """The game with differences off (prefix reuse only) and on, on the same trained model."""
    model = trained(build, data, steps=40)
    off = NeuronGame(model, data=data, reference=reference, **kwargs)
    off._delta_modules = {}
    return off, NeuronGame(model, data=data, reference=reference, **kwargs)


@pytest.mark.usefixtures("deltas_everywhere")
@pytest.mark.parametrize(
    ("build", "data", "second"),
    [
        pytest.param(lambda: TinyCNN(c1=16), images, "conv2", id="cnn"),
        pytest.param(lambda: TinyMLP(h1=16), vectors, "fc2", id="mlp"),
    ],
)
def test_a_walk_runs_the_second_layer_on_the_changed_channels(
    build: Any, data: Any, second: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    off, on = games_both_ways(build, data(30, seed=3), data(20, seed=4)[0])
    assert list(on._delta_modules.values()) == [on.model.get_submodule(second)]
    n = on.n_players
    full_width = on.model.get_submodule(second).weight.shape[1]
    widths = input_widths(on.model.get_submodule(second), monkeypatch)
    for coalitions in [
        walk_batch(n, seed=0, start=0, count=n + 1),
        walk_batch(n, seed=1, start=2, count=9),
        walk_batch(n, seed=2, start=5, count=4),  # a few changes in the first layer
        random_coalitions(16, n, seed=2),
    ]:
        np.testing.assert_allclose(on.value(coalitions), off.value(coalitions), rtol=1e-6)
    assert any(width < full_width // 2 for width in widths)  # differences did run


@pytest.mark.usefixtures("deltas_everywhere")
def test_channels_mixed_between_the_layers_run_the_plain_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    off, on = games_both_ways(
        Shuffled, images(30, seed=3), images(20, seed=4)[0], units=["conv1", "conv2"]
    )
    widths = input_widths(on.model.conv2, monkeypatch)
    coalitions = walk_batch(on.n_players, seed=0, start=0, count=on.n_players + 1)
    np.testing.assert_allclose(on.value(coalitions), off.value(coalitions), rtol=1e-6)
    assert set(widths) == {6}  # every conv1 change reaches every channel of conv2's input


@pytest.mark.usefixtures("deltas_everywhere")
def test_the_model_is_left_as_it_came_even_when_the_metric_fails() -> None:
    def failing(logits: torch.Tensor, targets: torch.Tensor, batch: object) -> float:
        raise ValueError("no")

    model = trained(TinyCNN, images(30, seed=3), steps=10)
    snapshot = Snapshot(model)
    game = NeuronGame(model, data=images(30, seed=3), metric=failing, ablation="zero")
    coalitions = walk_batch(game.n_players, seed=0, start=0, count=5)
    with pytest.raises(MetricError):
        game.value(coalitions)
    snapshot.assert_untouched()


@pytest.mark.usefixtures("deltas_everywhere")
def test_an_infinite_input_ablated_away_runs_the_plain_way() -> None:
    """x_0 holds inf in a channel that block j ablates to 0: W·x_0 + W·(x_j - x_0) would be
    inf - inf, where the plain W·x_j is finite."""
    model = seeded(TinyMLP).eval()
    with torch.no_grad():
        model.fc1.bias[0] = float("inf")

    def finite_share(logits: torch.Tensor, targets: torch.Tensor, batch: object) -> float:
        return float(torch.isfinite(logits).double().mean())

    options = {"data": vectors(6, seed=3), "ablation": "zero", "metric": finite_share}
    game = NeuronGame(model, **options)
    coalitions = np.ones((2, game.n_players), dtype=bool)
    coalitions[1, 0] = False  # the full model, and the one without fc1:0
    values = game.value(coalitions)
    plain = NeuronGame(model, reuse_prefixes=False, **options).value(coalitions)
    assert plain.tolist() == [0.0, 1.0]
    np.testing.assert_array_equal(values, plain)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_the_plain_way(dtype: torch.dtype) -> None:
    """Each term rounded to half precision before the sum: an ablated channel of 300 would leave
    nothing of a result of 0.6, so the layer runs the plain way."""
    module = nn.Linear(4, 1, bias=False).to(dtype)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([[1.0, 0.1, 0.1, 0.1]]))
    x = torch.tensor([[300.0, 1, 2, 3], [0.0, 1, 2, 3]], dtype=dtype)  # two blocks, one family
    forward = _by_deltas(module, module.forward, lambda: families(np.array([0, 0]), x.device))
    with torch.no_grad():
        torch.testing.assert_close(forward(x), module(x), rtol=0, atol=0)


@pytest.mark.usefixtures("deltas_everywhere")
def test_a_forward_the_user_set_since_is_kept_and_used() -> None:
    """A forward set on the instance after the game was made (as patching libraries do) is the
    layer's computation: it runs as it is, and stays after the evaluation."""
    model = trained(lambda: TinyMLP(h1=16), vectors(30, seed=3), steps=40)
    options = {"data": vectors(30, seed=3), "reference": vectors(20, seed=4)[0]}
    game, plain = NeuronGame(model, **options), NeuronGame(model, reuse_prefixes=False, **options)
    assert model.fc2 in game._delta_modules.values()
    stock = model.fc2.forward
    model.fc2.forward = lambda x: 2 * stock(x)
    patched = model.fc2.forward
    coalitions = walk_batch(game.n_players, seed=0, start=3, count=6)
    values = game.value(coalitions)
    assert model.fc2.forward is patched
    np.testing.assert_allclose(values, plain.value(coalitions), rtol=1e-6)
