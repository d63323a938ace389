"""Baseline unit scores against hand computations, and the model left as it came in."""

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from neuronshapley.applications.baselines import (
    BASELINES,
    conductance,
    leave_one_out,
    mean_activation,
    response_norm,
    weight_norm,
)
from neuronshapley.units import NeuronGame
from neuronshapley.units.selection import heads
from tests.units._models import (
    BUDGET,
    HandAttentionNet,
    NormDropNet,
    Snapshot,
    fitted,
    images,
    seeded,
    tokens,
    vectors,
)


def cnn_game(units: object = None) -> NeuronGame:
    x, y = images(24, seed=1)
    reference, _ = images(24, seed=2)
    return NeuronGame(
        fitted("cnn"), units=units, data=(x, y), reference=reference, memory_budget=BUDGET
    )


class LinearReadout(nn.Module):
    """fc0 -> tanh -> fc1 -> fc2: the logits are linear in fc1's output."""

    def __init__(self) -> None:
        super().__init__()
        self.fc0 = nn.Linear(8, 6)
        self.tanh = nn.Tanh()
        self.fc1 = nn.Linear(6, 5)
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(self.tanh(self.fc0(x))))


def readout_game(units: str) -> NeuronGame:
    x, y = vectors(20, seed=3)
    return NeuronGame(seeded(LinearReadout), units=units, data=(x, y), ablation="zero")


@pytest.mark.parametrize("name", list(BASELINES))
def test_scores_are_aligned_float64_and_leave_the_model_untouched(name: str) -> None:
    game = cnn_game()
    snapshot = Snapshot(game.model)
    scores = BASELINES[name](game)
    assert scores.dtype == np.float64
    assert scores.shape == (game.n_players,)
    assert np.isfinite(scores).all()
    snapshot.assert_untouched()
    assert not game.data.x.requires_grad


def test_scores_follow_a_partial_unit_selection() -> None:
    full, part = cnn_game(), cnn_game(units=["conv2:1-3", "conv1:0"])
    position = {name: i for i, name in enumerate(full.player_names)}
    chosen = [position[name] for name in part.player_names]
    for name in ("weight_norm", "response_norm", "mean_activation", "conductance"):
        np.testing.assert_allclose(BASELINES[name](part), BASELINES[name](full)[chosen])


def test_weight_norm_by_hand() -> None:
    game = cnn_game()
    model: Any = game.model
    expected = [model.conv1.weight[c].norm().item() for c in range(4)]
    expected += [torch.sqrt((model.conv2.weight[c] ** 2).sum()).item() for c in range(6)]
    np.testing.assert_allclose(weight_norm(game), expected, rtol=1e-6)


def test_weight_norm_of_linear_norm_and_heads_by_hand() -> None:
    x, y = vectors(10, seed=1)
    mlp = fitted("mlp")
    game = NeuronGame(mlp, units="fc*", data=(x, y), ablation="zero")
    rows = [mlp.fc1.weight[j].norm().item() for j in range(6)]
    rows += [mlp.fc2.weight[j].norm().item() for j in range(5)]
    rows += [mlp.fc3.weight[j].norm().item() for j in range(3)]
    np.testing.assert_allclose(weight_norm(game), rows, rtol=1e-6)

    images_x, images_y = images(10, seed=1)
    net: Any = seeded(NormDropNet)
    with torch.no_grad():
        net.bn.weight.copy_(torch.tensor([0.5, -2.0, 1.0, -0.1]))
    game = NeuronGame(net, units="bn", data=(images_x, images_y), ablation="zero")
    np.testing.assert_allclose(weight_norm(game), [0.5, 2.0, 1.0, 0.1], rtol=1e-6)

    tokens_x, tokens_y = tokens(10, seed=1)
    attention: Any = seeded(HandAttentionNet)
    game = NeuronGame(
        attention,
        units=heads(attention, "attn.proj", 2),
        data=(tokens_x, tokens_y),
        ablation="zero",
    )
    weight = attention.attn.proj.weight
    expected = [weight[:, :4].norm().item(), weight[:, 4:].norm().item()]
    np.testing.assert_allclose(weight_norm(game), expected, rtol=1e-6)


def test_weight_norm_refuses_a_norm_without_weight() -> None:
    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(8, affine=False)
            self.fc = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.bn(x))

    x, y = vectors(10, seed=1)
    game = NeuronGame(seeded(Plain), units="bn", data=(x, y), ablation="zero")
    with pytest.raises(TypeError, match=r"'bn'.*affine=False"):
        weight_norm(game)


def _hidden(game: NeuronGame, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1 and conv2 outputs of the tiny CNN, run step by step without hooks."""
    model: Any = game.model
    with torch.no_grad():
        h1 = model.conv1(x)
        h2 = model.conv2(model.relu1(h1))
    return h1.double(), h2.double()


def test_response_norm_and_mean_activation_by_hand() -> None:
    game = cnn_game()
    h1, h2 = _hidden(game, game.data.x)
    norms = torch.cat([h.flatten(2).norm(dim=2).mean(dim=0) for h in (h1, h2)])
    means = torch.cat([h.mean(dim=(0, 2, 3)) for h in (h1, h2)])
    np.testing.assert_allclose(response_norm(game, batch_size=7), norms.numpy(), rtol=1e-5)
    np.testing.assert_allclose(mean_activation(game), means.numpy(), rtol=1e-5, atol=1e-6)


def test_activation_scores_on_other_data() -> None:
    game = cnn_game()
    other, labels = images(9, seed=5)
    h1, h2 = _hidden(game, other)
    means = torch.cat([h.mean(dim=(0, 2, 3)) for h in (h1, h2)]).numpy()
    np.testing.assert_allclose(mean_activation(game, other), means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean_activation(game, (other, labels)), means, rtol=1e-5, atol=1e-6)


def test_activation_scores_of_heads_by_hand() -> None:
    x, y = tokens(10, seed=1)
    net: Any = seeded(HandAttentionNet)
    game = NeuronGame(net, units=heads(net, "attn.proj", 2), data=(x, y), ablation="zero")
    with torch.no_grad():
        concatenated = net.attn.heads(net.embed(x)).double()  # (batch, seq, 8)
    per_head = concatenated.view(10, 4, 2, 4).transpose(1, 2).reshape(10, 2, -1)
    np.testing.assert_allclose(response_norm(game), per_head.norm(dim=2).mean(dim=0), rtol=1e-5)
    np.testing.assert_allclose(
        mean_activation(game), per_head.mean(dim=(0, 2)), rtol=1e-5, atol=1e-6
    )


def test_leave_one_out_is_the_drop_without_each_unit_in_one_call() -> None:
    game = cnn_game()
    before = game.n_evaluations
    scores = leave_one_out(game)
    assert game.n_evaluations == before + game.n_players + 1
    full = float(game.value(np.ones((1, game.n_players), dtype=bool))[0])
    expected = [full - game.value_without([name]) for name in game.player_names]
    np.testing.assert_allclose(scores, expected, atol=1e-12)


def test_conductance_through_a_linear_readout_is_exact() -> None:
    """The logits are linear in fc1's output h, so conductance of unit j on example x is
    (h_j(x) - h_j(0)) * W2[y, j] for any number of steps, and sums to logit(x) - logit(0)."""
    game = readout_game("fc1")
    model: Any = game.model
    x, y = game.data.x, game.data.y
    with torch.no_grad():
        h = model.fc1(model.tanh(model.fc0(x))).double()
        h0 = model.fc1(model.tanh(model.fc0(torch.zeros_like(x)))).double()
        per_example = (h - h0) * model.fc2.weight.double()[y]
        gap = (model(x) - model(torch.zeros_like(x))).double().gather(1, y[:, None])[:, 0]
    scores = conductance(game, n_steps=4, batch_size=7)
    np.testing.assert_allclose(scores, per_example.mean(dim=0).numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(scores.sum(), gap.mean().item(), rtol=1e-4, atol=1e-6)


def test_conductance_is_complete_through_a_nonlinearity() -> None:
    """Summed over fc0's units (before the tanh), conductance adds up to logit(x) - logit(0)
    up to the error of the path integral."""
    game = readout_game("fc0")
    x = game.data.x
    with torch.no_grad():
        gap = game.model(x)[:, 0] - game.model(torch.zeros_like(x))[:, 0]
    scores = conductance(game, target=0, n_steps=64, internal_batch_size=256)
    assert scores.shape == (6,)
    assert scores.sum() == pytest.approx(gap.mean().item(), abs=1e-3)


def test_conductance_bad_input() -> None:
    game = readout_game("fc1")
    with pytest.raises(ValueError, match=r"'target' parameter of conductance.*\[0, 2\]"):
        conductance(game, target=3)
    with pytest.raises(ValueError, match=r"'target' parameter of conductance.*shape \(20,\)"):
        conductance(game, target=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="'n_steps' parameter of conductance"):
        conductance(game, n_steps=1)


def test_conductance_refuses_heads_and_leaves_no_hook() -> None:
    x, y = tokens(10, seed=1)
    net: Any = seeded(HandAttentionNet)
    game = NeuronGame(net, units=heads(net, "attn.proj", 2), data=(x, y), ablation="zero")
    snapshot = Snapshot(net)
    with pytest.raises(ValueError, match=r"attention heads of 'attn\.proj'"):
        conductance(game)
    snapshot.assert_untouched()


@pytest.mark.parametrize("score", [response_norm, mean_activation])
def test_activation_scores_leave_no_hook_when_the_model_raises(
    score: Callable[[NeuronGame], np.ndarray],
) -> None:
    game = cnn_game()
    snapshot = Snapshot(game.model)
    with pytest.raises(RuntimeError):
        score(game, torch.zeros(3, 2, 6, 6))  # type: ignore[call-arg]  # two input channels
    snapshot.assert_untouched()
