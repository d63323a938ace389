"""Ablation against hand computations: the model is run step by step in the test (no hooks),
with the removed unit's activation replaced by its fill, and compared with the game's value."""

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

import neuronshapley as ns
from neuronshapley.units import NeuronGame
from tests.units._models import (
    BUDGET,
    MHANet,
    NormDropNet,
    TinyCNN,
    fitted,
    images,
    mean_logit_0,
    neg_ce,
    seeded,
    tokens,
    vectors,
)

# Float32 forward passes in a different batch layout: agreement to float32 rounding.
FLOAT32 = {"rtol": 1e-5, "atol": 1e-6}
METRICS = {"mean_logit_0": mean_logit_0, "neg_ce": neg_ce}
ABLATIONS = ("zero", "mean", "channel_mean")


def by_hand(metric: str, logits: torch.Tensor, y: torch.Tensor) -> float:
    if metric == "mean_logit_0":
        return float(logits[:, 0].double().mean())
    return -float(F.cross_entropy(logits.double(), y))


# -- convolution filters -------------------------------------------------------------------


def cnn_by_hand(
    model: TinyCNN, x: torch.Tensor, replace: dict[str, tuple[int, torch.Tensor]]
) -> torch.Tensor:
    """Logits with channel c of conv1 / conv2 set to ``fill`` (``replace[layer] = (c, fill)``)."""
    h = model.conv1(x).clone()
    if "conv1" in replace:
        channel, fill = replace["conv1"]
        h[:, channel] = fill
    h = model.conv2(torch.relu(h)).clone()
    if "conv2" in replace:
        channel, fill = replace["conv2"]
        h[:, channel] = fill
    return model.fc(pool_by_hand(torch.relu(h)))


def pool_by_hand(h: torch.Tensor) -> torch.Tensor:
    """2 x 2 average pooling of (n, c, 6, 6) maps, flattened to (n, c * 9)."""
    n, c = h.shape[:2]
    return h.reshape(n, c, 3, 2, 3, 2).mean(dim=(3, 5)).flatten(1)


def cnn_channel_fill(activation: torch.Tensor, channel: int, ablation: str) -> torch.Tensor:
    maps = activation[:, channel]  # (n_reference, 6, 6)
    if ablation == "zero":
        return torch.zeros(())
    if ablation == "mean":
        return maps.double().mean(dim=0).float()
    return maps.double().mean().float()


@pytest.fixture(scope="module")
def cnn_setup() -> tuple[TinyCNN, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    return fitted("cnn"), images(24, seed=1), images(30, seed=2)[0]


@pytest.mark.parametrize("metric", sorted(METRICS))
@pytest.mark.parametrize("ablation", ABLATIONS)
@pytest.mark.parametrize("channel", [0, 3])
def test_conv_filter(cnn_setup: Any, metric: str, ablation: str, channel: int) -> None:
    model, (x, y), reference = cnn_setup
    game = NeuronGame(
        model,
        units="conv*",
        data=(x, y),
        metric=METRICS[metric],
        ablation=ablation,
        reference=reference,
        memory_budget=BUDGET,
    )
    with torch.inference_mode():
        fill = cnn_channel_fill(model.conv1(reference), channel, ablation)
        expected = by_hand(metric, cnn_by_hand(model, x, {"conv1": (channel, fill)}), y)
    got = game.value_without([f"conv1:{channel}"])
    np.testing.assert_allclose(got, expected, **FLOAT32)


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_two_filters_in_two_layers(cnn_setup: Any, ablation: str) -> None:
    # conv2's fill is its mean output in the intact network (computed once, before any ablation).
    model, (x, y), reference = cnn_setup
    game = NeuronGame(model, data=(x, y), metric=neg_ce, ablation=ablation, reference=reference)
    with torch.inference_mode():
        first = model.conv1(reference)
        second = model.conv2(torch.relu(first))
        replace = {
            "conv1": (1, cnn_channel_fill(first, 1, ablation)),
            "conv2": (4, cnn_channel_fill(second, 4, ablation)),
        }
        expected = by_hand("neg_ce", cnn_by_hand(model, x, replace), y)
    np.testing.assert_allclose(game.value_without(["conv1:1", "conv2:4"]), expected, **FLOAT32)


# -- hidden Linear neurons -----------------------------------------------------------------


@pytest.mark.parametrize("metric", sorted(METRICS))
@pytest.mark.parametrize("ablation", ABLATIONS)
@pytest.mark.parametrize("neuron", [0, 4])
def test_linear_neuron(metric: str, ablation: str, neuron: int) -> None:
    model = fitted("mlp")
    x, y = vectors(24, seed=1)
    reference, _ = vectors(30, seed=2)
    game = NeuronGame(
        model,
        data=(x, y),
        metric=METRICS[metric],
        ablation=ablation,
        reference=reference,
        memory_budget=BUDGET,
    )
    with torch.inference_mode():
        outputs = model.fc1(reference)[:, neuron]
        fill = torch.zeros(()) if ablation == "zero" else outputs.double().mean().float()
        h = model.fc1(x).clone()
        h[:, neuron] = fill
        logits = model.fc3(torch.relu(model.fc2(torch.relu(h))))
    got = game.value_without([f"fc1:{neuron}"])
    np.testing.assert_allclose(got, by_hand(metric, logits, y), **FLOAT32)


# -- heads of nn.MultiheadAttention ----------------------------------------------------------


def mha_heads_by_hand(attn: nn.MultiheadAttention, h: torch.Tensor) -> torch.Tensor:
    """Concatenated head outputs (batch, seq, embed) from the module's in_proj weights."""
    batch, seq, embed = h.shape
    n_heads, head_dim = attn.num_heads, embed // attn.num_heads
    weight, bias = attn.in_proj_weight, attn.in_proj_bias
    q, k, v = (
        (h @ weight[i * embed : (i + 1) * embed].T + bias[i * embed : (i + 1) * embed])
        .view(batch, seq, n_heads, head_dim)
        .transpose(1, 2)
        for i in range(3)
    )
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
    return (weights @ v).transpose(1, 2).reshape(batch, seq, embed)


def head_fill(heads: torch.Tensor, head: int, head_dim: int, ablation: str) -> torch.Tensor:
    part = heads[..., head * head_dim : (head + 1) * head_dim]  # (n_reference, seq, head_dim)
    if ablation == "zero":
        return torch.zeros(())
    if ablation == "mean":
        return part.double().mean(dim=0).float()  # (seq, head_dim)
    return part.double().mean(dim=(0, 1)).float()  # (head_dim,)


@pytest.mark.parametrize("ablation", ABLATIONS)
@pytest.mark.parametrize("head", [0, 1])
def test_multihead_attention_head(ablation: str, head: int) -> None:
    model = fitted("mha")
    x, y = tokens(20, seed=1)
    reference, _ = tokens(25, seed=2)
    game = NeuronGame(
        model,
        units=ns.units.attention_heads(model),
        data=(x, y),
        metric=neg_ce,
        ablation=ablation,
        reference=reference,
        memory_budget=BUDGET,
    )
    head_dim = model.attn.head_dim
    with torch.inference_mode():
        fill = head_fill(
            mha_heads_by_hand(model.attn, model.embed(reference)), head, head_dim, ablation
        )
        heads = mha_heads_by_hand(model.attn, model.embed(x)).clone()
        heads[..., head * head_dim : (head + 1) * head_dim] = fill
        out = heads @ model.attn.out_proj.weight.T + model.attn.out_proj.bias
        logits = model.fc(out.mean(dim=1))
        plain = model(x)
    np.testing.assert_allclose(
        game.value_without([f"attn:{head}"]), by_hand("neg_ce", logits, y), **FLOAT32
    )
    # With every head present the hook recomputes the module's output: the same up to rounding.
    full = game.value(np.ones((1, 2), dtype=bool))[0]
    np.testing.assert_allclose(full, by_hand("neg_ce", plain, y), **FLOAT32)


def test_hand_attention_matches_the_module() -> None:
    # The hand computation of nn.MultiheadAttention used above is right for the intact module.
    model = fitted("mha")
    x, _ = tokens(6, seed=3)
    with torch.inference_mode():
        h = model.embed(x)
        heads = mha_heads_by_hand(model.attn, h)
        by_module, _ = model.attn(h, h, h, need_weights=False)
        by_hand_out = heads @ model.attn.out_proj.weight.T + model.attn.out_proj.bias
    torch.testing.assert_close(by_hand_out, by_module, **FLOAT32)


# -- heads() of a hand-written attention -------------------------------------------------------


@pytest.mark.parametrize("ablation", ABLATIONS)
@pytest.mark.parametrize("head", [0, 1])
def test_hand_written_attention_head(ablation: str, head: int) -> None:
    model = fitted("hand")
    x, y = tokens(20, seed=1)
    reference, _ = tokens(25, seed=2)
    game = NeuronGame(
        model,
        units=ns.units.heads(model, "attn.proj", 2),
        data=(x, y),
        metric=mean_logit_0,
        ablation=ablation,
        reference=reference,
        memory_budget=BUDGET,
    )
    with torch.inference_mode():
        fill = head_fill(model.attn.heads(model.embed(reference)), head, 4, ablation)
        heads = model.attn.heads(model.embed(x)).clone()
        heads[..., head * 4 : (head + 1) * 4] = fill
        logits = model.fc(model.attn.proj(heads).mean(dim=1))
    got = game.value_without([f"attn.proj:{head}"])
    np.testing.assert_allclose(got, by_hand("mean_logit_0", logits, y), **FLOAT32)


# -- where the fill comes from -----------------------------------------------------------------


def test_fill_comes_from_reference_not_data(cnn_setup: Any) -> None:
    model, (x, y), reference = cnn_setup
    other_x, other_y = images(17, seed=5)

    def fills(data: Any, ref: torch.Tensor) -> list[torch.Tensor]:
        return NeuronGame(model, data=data, reference=ref, memory_budget=BUDGET).fills

    base = fills((x, y), reference)
    assert all(
        torch.equal(a, b) for a, b in zip(base, fills((other_x, other_y), reference), strict=True)
    )
    moved = fills((x, y), reference + 1.0)
    assert not any(torch.equal(a, b) for a, b in zip(base, moved, strict=True))
    # And the fill is the reference's mean map, not the data's.
    with torch.inference_mode():
        expected = model.conv1(reference).double().mean(dim=0).float()
    torch.testing.assert_close(base[0], expected, **FLOAT32)


@pytest.mark.parametrize("ablation", ["mean", "channel_mean"])
def test_streaming_mean_equals_mean_of_all_at_once(cnn_setup: Any, ablation: str) -> None:
    model, (x, y), reference = cnn_setup  # 30 reference examples: batches of 7, 7, 7, 7, 2
    kwargs = {"data": (x, y), "reference": reference, "ablation": ablation}
    streamed = NeuronGame(model, reference_batch_size=7, **kwargs).fills
    at_once = NeuronGame(model, reference_batch_size=len(reference), **kwargs).fills
    with torch.inference_mode():
        first = model.conv1(reference)
        second = model.conv2(torch.relu(first))
    for fill, fill_at_once, activation in zip(streamed, at_once, (first, second), strict=True):
        if ablation == "mean":  # one mean map per channel: (channels, height, width)
            expected = activation.double().mean(dim=0).float()
        else:  # one scalar per channel, on the channel dimension: (channels, 1, 1)
            expected = activation.double().mean(dim=(0, 2, 3)).float().view(-1, 1, 1)
        torch.testing.assert_close(fill, fill_at_once, **FLOAT32)
        torch.testing.assert_close(fill, expected, **FLOAT32)


def test_zero_fill_is_zero(cnn_setup: Any) -> None:
    model, (x, y), _ = cnn_setup
    game = NeuronGame(model, data=(x, y), ablation="zero")
    assert all(float(fill.abs().max()) == 0.0 for fill in game.fills)


# -- other unit kinds and layouts --------------------------------------------------------------


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_linear_over_tokens(ablation: str) -> None:
    # A Linear applied to every token: "mean" is a per-position map, "channel_mean" one scalar
    # per neuron (over examples and positions).
    model = fitted("mha")
    x, y = tokens(20, seed=1)
    reference, _ = tokens(25, seed=2)
    game = NeuronGame(
        model,
        units="embed",
        data=(x, y),
        metric=mean_logit_0,
        ablation=ablation,
        reference=reference,
    )
    with torch.inference_mode():
        outputs = model.embed(reference)[..., 3].double()  # (n_reference, seq)
        fill = {
            "zero": torch.zeros(()),
            "mean": outputs.mean(dim=0),
            "channel_mean": outputs.mean(),
        }
        h = model.embed(x).clone()
        h[..., 3] = fill[ablation].float()
        logits = model.fc(mha_by_hand(model.attn, h).mean(dim=1))
    got = game.value_without(["embed:3"])
    np.testing.assert_allclose(got, by_hand("mean_logit_0", logits, y), **FLOAT32)


def mha_by_hand(attn: nn.MultiheadAttention, h: torch.Tensor) -> torch.Tensor:
    return mha_heads_by_hand(attn, h) @ attn.out_proj.weight.T + attn.out_proj.bias


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_batchnorm_channel(ablation: str) -> None:
    model = seeded(NormDropNet).eval()
    x, y = images(20, seed=1)
    reference, _ = images(25, seed=2)
    game = NeuronGame(
        model, units="bn", data=(x, y), metric=mean_logit_0, ablation=ablation, reference=reference
    )
    assert game.player_names == ["bn:0", "bn:1", "bn:2", "bn:3"]
    with torch.inference_mode():
        fill = cnn_channel_fill(model.bn(model.conv(reference)), 2, ablation)
        h = model.bn(model.conv(x)).clone()
        h[:, 2] = fill
        logits = model.fc(torch.relu(h).mean(dim=(2, 3)))
    got = game.value_without(["bn:2"])
    np.testing.assert_allclose(got, by_hand("mean_logit_0", logits, y), **FLOAT32)


def test_units_not_selected_stay_active(cnn_setup: Any) -> None:
    # Players conv1:1 and conv1:2 only: the empty coalition ablates those two, not conv1:0, 3.
    model, (x, y), reference = cnn_setup
    game = NeuronGame(model, units="conv1:1-2", data=(x, y), metric=neg_ce, reference=reference)
    with torch.inference_mode():
        h = model.conv1(x).clone()
        h[:, 1:3] = model.conv1(reference)[:, 1:3].double().mean(dim=0).float()
        logits = model.fc(pool_by_hand(torch.relu(model.conv2(torch.relu(h)))))
    empty = game.value(np.zeros((1, 2), dtype=bool))[0]
    np.testing.assert_allclose(empty, by_hand("neg_ce", logits, y), **FLOAT32)


class SequenceFirst(nn.Module):
    """MHANet's weights, with a sequence-first nn.MultiheadAttention (batch_first=False)."""

    def __init__(self, source: MHANet) -> None:
        super().__init__()
        self.embed = copy.deepcopy(source.embed)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=False)
        self.attn.load_state_dict(source.attn.state_dict())
        self.fc = copy.deepcopy(source.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x).transpose(0, 1)  # (seq, batch, embed)
        out, _ = self.attn(h, h, h)  # need_weights left at its default, True
        return self.fc(out.transpose(0, 1).mean(dim=1))


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_sequence_first_attention_gives_the_same_game(ablation: str) -> None:
    source = fitted("mha")
    x, y = tokens(20, seed=1)
    reference, _ = tokens(25, seed=2)
    coalitions = np.array([[True, True], [True, False], [False, True], [False, False]])
    values = [
        NeuronGame(
            model,
            units=ns.units.attention_heads(model),
            data=(x, y),
            metric="neg_cross_entropy",
            ablation=ablation,
            reference=reference,
        ).value(coalitions)
        for model in (source, SequenceFirst(source))
    ]
    np.testing.assert_allclose(values[0], values[1], **FLOAT32)
