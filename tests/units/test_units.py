"""Selecting units: patterns, names, index ranges, callables, helpers, defaults, errors."""

import pytest
import torch
from torch import nn

import neuronshapley as ns
from neuronshapley.units import NeuronGame, resolve_units
from tests.units._models import (
    BUDGET,
    HandAttentionNet,
    MHANet,
    TinyCNN,
    TinyMLP,
    images,
    seeded,
    vectors,
)


@pytest.fixture(scope="module")
def cnn() -> nn.Module:
    return seeded(TinyCNN)


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    return seeded(TinyMLP)


def test_pattern_selects_every_matching_module(cnn: nn.Module) -> None:
    units = resolve_units(cnn, "conv*")
    assert [layer.path for layer in units.layers] == ["conv1", "conv2"]
    assert units.names == [f"conv1:{i}" for i in range(4)] + [f"conv2:{i}" for i in range(6)]
    assert units.n_units == len(units) == 10


def test_exact_name(cnn: nn.Module) -> None:
    assert resolve_units(cnn, "conv2").names == [f"conv2:{i}" for i in range(6)]
    assert resolve_units(cnn, "fc").names == ["fc:0", "fc:1", "fc:2"]


def test_single_index_and_range(cnn: nn.Module) -> None:
    assert resolve_units(cnn, "conv2:3").names == ["conv2:3"]
    assert resolve_units(cnn, "conv2:1-4").names == ["conv2:1", "conv2:2", "conv2:3", "conv2:4"]
    assert resolve_units(cnn, "conv*:0-1").names == ["conv1:0", "conv1:1", "conv2:0", "conv2:1"]


def test_list_of_patterns_keeps_model_order_and_merges(cnn: nn.Module) -> None:
    units = resolve_units(cnn, ["conv2:5", "conv1:2", "conv2:0-1", "conv2:1"])
    assert units.names == ["conv1:2", "conv2:0", "conv2:1", "conv2:5"]
    assert units.unit_layers == ["conv1", "conv2", "conv2", "conv2"]


def test_callable(cnn: nn.Module) -> None:
    units = resolve_units(cnn, lambda name, module: isinstance(module, nn.Conv2d) and "2" in name)
    assert units.names == [f"conv2:{i}" for i in range(6)]


def test_conv_filters(cnn: nn.Module) -> None:
    assert ns.units.conv_filters(cnn).names == resolve_units(cnn, "conv*").names
    assert ns.units.conv_filters(cnn, "conv1").names == [f"conv1:{i}" for i in range(4)]


def test_linear_neurons_excludes_last_by_default(mlp: nn.Module) -> None:
    units = ns.units.linear_neurons(mlp)
    assert units.names == [f"fc1:{i}" for i in range(6)] + [f"fc2:{i}" for i in range(5)]
    with_last = ns.units.linear_neurons(mlp, include_last=True)
    assert with_last.names[-3:] == ["fc3:0", "fc3:1", "fc3:2"]
    assert ns.units.linear_neurons(mlp, "fc2").names == [f"fc2:{i}" for i in range(5)]


def test_attention_heads_of_multihead_attention() -> None:
    model = seeded(MHANet)
    units = ns.units.attention_heads(model)
    assert units.names == ["attn:0", "attn:1"]
    assert units.layers[0].kind == "mha"
    assert units.layers[0].group == 4  # head_dim = 8 / 2
    # The out-projection is a Linear, but its units are the heads: not hidden neurons.
    assert "attn.out_proj" not in ns.units.linear_neurons(model).unit_layers


def test_heads_of_a_hand_written_projection() -> None:
    model = seeded(HandAttentionNet)
    units = ns.units.heads(model, "attn.proj", 2)
    assert units.names == ["attn.proj:0", "attn.proj:1"]
    assert units.unit_layers == ["attn.proj", "attn.proj"]
    layer = units.layers[0]
    assert (layer.kind, layer.size, layer.group) == ("heads", 2, 4)


def test_heads_errors() -> None:
    model = seeded(HandAttentionNet)
    with pytest.raises(ValueError, match=r"no module named 'attn\.prj'.*'attn\.proj'"):
        ns.units.heads(model, "attn.prj", 2)
    with pytest.raises(TypeError, match=r"must name a Linear.*HandAttention"):
        ns.units.heads(model, "attn", 2)
    with pytest.raises(ValueError, match=r"'n_heads' parameter of heads.*dividing the 8"):
        ns.units.heads(model, "attn.proj", 3)


def test_default_units_are_all_convolutions(cnn: nn.Module) -> None:
    assert resolve_units(cnn, None).names == resolve_units(cnn, "conv*").names


def test_default_units_of_an_mlp_are_the_hidden_linear_layers(mlp: nn.Module) -> None:
    units = resolve_units(mlp, None)
    assert [layer.path for layer in units.layers] == ["fc1", "fc2"]
    assert units.n_units == 11


def test_game_carries_names_and_layers(cnn: nn.Module) -> None:
    x, y = images(10, seed=1)
    reference, _ = images(10, seed=2)
    game = NeuronGame(
        cnn, units=["conv2:4-5", "conv1:0"], data=(x, y), reference=reference, memory_budget=BUDGET
    )
    assert game.player_names == ["conv1:0", "conv2:4", "conv2:5"]
    assert game.unit_layers == ["conv1", "conv2", "conv2"]
    assert game.n_players == 3


def test_game_accepts_a_unit_set(mlp: nn.Module) -> None:
    x, y = vectors(10, seed=1)
    reference, _ = vectors(10, seed=2)
    units = ns.units.linear_neurons(mlp, "fc2")
    game = NeuronGame(mlp, units=units, data=(x, y), reference=reference, memory_budget=BUDGET)
    assert game.player_names == units.names


def test_model_module_order_not_selection_order() -> None:
    class Reversed(nn.Module):
        # Registered b then a: module order is b, a, whatever the names sort to.
        def __init__(self) -> None:
            super().__init__()
            self.b = nn.Linear(4, 3)
            self.a = nn.Linear(3, 2)
            self.out = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.a(self.b(x)))

    model = seeded(Reversed)
    assert resolve_units(model, ["a", "b"]).unit_layers == ["b"] * 3 + ["a"] * 2
    assert resolve_units(model, None).unit_layers == ["b"] * 3 + ["a"] * 2


# -- errors ----------------------------------------------------------------------------------


def test_unknown_name_lists_the_closest(cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"no module named 'conv_1'.*Closest.*'conv1'"):
        resolve_units(cnn, "conv_1")
    with pytest.raises(ValueError, match=r"no module named 'conv_1'.*'conv1'"):
        resolve_units(cnn, "conv_1:0-2")


def test_module_that_cannot_be_ablated(cnn: nn.Module) -> None:
    with pytest.raises(TypeError, match=r"'relu1'.*is a ReLU.*cannot be ablated"):
        resolve_units(cnn, "relu1")
    with pytest.raises(TypeError, match="is a ReLU"):
        resolve_units(cnn, lambda name, module: name == "relu2")


def test_pattern_matching_nothing(cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"'lstm\*'.*matches no ablatable module.*'conv1'"):
        resolve_units(cnn, "lstm*")


def test_callable_selecting_nothing(cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match="selects no unit"):
        resolve_units(cnn, lambda name, module: False)


def test_empty_list_selects_nothing(cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match="selects no unit"):
        resolve_units(cnn, [])


@pytest.mark.parametrize("pattern", ["conv1:4", "conv1:2-9", "conv*:5"])
def test_index_out_of_range(cnn: nn.Module, pattern: str) -> None:
    with pytest.raises(ValueError, match=r"index \d+ of module 'conv1', which has 4 units"):
        resolve_units(cnn, pattern)


def test_reversed_range(cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"'conv1:3-1'.*is empty"):
        resolve_units(cnn, "conv1:3-1")


@pytest.mark.parametrize("units", [5, 2.5, {"conv1": 1}, ["conv1", 3]])
def test_bad_units_type(cnn: nn.Module, units: object) -> None:
    with pytest.raises(TypeError, match="'units' parameter of NeuronGame must be None"):
        resolve_units(cnn, units)


def test_unit_set_that_does_not_fit_the_model(cnn: nn.Module) -> None:
    other = seeded(lambda: TinyCNN(c1=8))
    with pytest.raises(ValueError, match="index 4 of module 'conv1', which has 4 units"):
        resolve_units(cnn, ns.units.conv_filters(other, "conv1"))


def test_model_without_units() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="found no units to value"):
        resolve_units(model, None)


def test_glob_over_multihead_attention_selects_its_heads_only() -> None:
    model = seeded(MHANet)
    assert resolve_units(model, "attn*").names == ["attn:0", "attn:1"]
