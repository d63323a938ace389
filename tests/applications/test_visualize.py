"""What a unit sees: activations, extreme examples and activation maximisation."""

from typing import Any

import numpy as np
import pytest
import torch

from neuronshapley.applications.visualize import (
    extreme_examples,
    gaussian_blur,
    maximize_activation,
    unit_activations,
)
from neuronshapley.units.game import NeuronGame
from neuronshapley.units.selection import heads
from tests.units._models import (
    HandAttentionNet,
    Snapshot,
    assert_no_hooks,
    fitted,
    images,
    seeded,
    tokens,
    vectors,
)


@pytest.fixture(scope="module")
def cnn() -> Any:
    return fitted("cnn")


@pytest.fixture(scope="module")
def cnn_game(cnn: Any) -> NeuronGame:
    return NeuronGame(cnn, units="conv*", data=images(20, seed=1), ablation="zero")


# -- activations ----------------------------------------------------------------------------


def test_conv_activation_is_the_mean_of_the_filter_map(cnn: Any) -> None:
    x, _ = images(10, seed=2)
    with torch.no_grad():
        expected = cnn.conv2(cnn.relu1(cnn.conv1(x)))[:, 3].mean(dim=(1, 2)).double().numpy()
    got = unit_activations(cnn, "conv2:3", x, batch_size=3)  # several batches
    assert got.shape == (10,) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_linear_activation_is_the_feature() -> None:
    model = fitted("mlp")
    x, y = vectors(12, seed=3)
    with torch.no_grad():
        expected = model.fc2(model.relu1(model.fc1(x)))[:, 4].double().numpy()
    np.testing.assert_allclose(unit_activations(model, "fc2:4", (x, y)), expected, rtol=1e-6)


def test_head_activation_is_the_mean_of_its_features() -> None:
    model: Any = seeded(HandAttentionNet).eval()
    data = tokens(8, seed=4)
    game = NeuronGame(model, units=heads(model, "attn.proj", 2), data=data, ablation="zero")
    with torch.no_grad():
        outputs = model.attn.heads(model.embed(data[0]))  # (batch, seq, 8), head 1 = 4..7
        expected = outputs[..., 4:8].mean(dim=(1, 2)).double().numpy()
    np.testing.assert_allclose(unit_activations(game, "attn.proj:1"), expected, rtol=1e-6)


def test_game_activations_default_to_its_data_and_leave_the_model(
    cnn_game: NeuronGame,
) -> None:
    model: Any = cnn_game.model
    snapshot = Snapshot(model)
    got = unit_activations(cnn_game, "conv1:2")
    with torch.no_grad():
        expected = model.conv1(cnn_game.data.x)[:, 2].mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    snapshot.assert_untouched()


def test_unknown_units_name_the_closest(cnn: Any, cnn_game: NeuronGame) -> None:
    x, _ = images(4, seed=0)
    with pytest.raises(ValueError, match=r"'conv2:9' .* not a player.*'conv2:"):
        unit_activations(cnn_game, "conv2:9")
    with pytest.raises(ValueError, match=r"no module named 'conv3'.*'conv2'"):
        unit_activations(cnn, "conv3:0", x)
    with pytest.raises(ValueError, match="index 7 of module 'conv1'"):
        unit_activations(cnn, "conv1:7", x)
    with pytest.raises(ValueError, match="'<module path>:<index>'"):
        unit_activations(cnn, "conv*:0", x)
    with pytest.raises(ValueError, match="'data' parameter of unit_activations is required"):
        unit_activations(cnn, "conv1:0")
    assert_no_hooks(cnn)


def test_a_model_that_raises_leaves_no_hook(cnn: Any) -> None:
    with pytest.raises(RuntimeError):
        unit_activations(cnn, "conv1:0", torch.zeros(2, 3, 6, 6))  # 3 channels for 1
    assert_no_hooks(cnn)


# -- extremes -------------------------------------------------------------------------------


def test_extremes_are_the_largest_and_smallest_activations(cnn_game: NeuronGame) -> None:
    values = unit_activations(cnn_game, "conv2:1")
    extremes = extreme_examples(cnn_game, "conv2:1", k=3)
    order = np.argsort(values)
    assert extremes.unit == "conv2:1"
    np.testing.assert_array_equal(extremes.indices_top, order[::-1][:3])
    np.testing.assert_array_equal(extremes.indices_bottom, order[:3])
    np.testing.assert_array_equal(extremes.values_top, values[order[::-1][:3]])
    assert extremes.values_top[0] == values.max() and extremes.values_bottom[0] == values.min()
    with pytest.raises(ValueError, match=r"'k' parameter of extreme_examples .* \[1, 20\]"):
        extreme_examples(cnn_game, "conv2:1", k=21)


# -- activation maximisation ----------------------------------------------------------------


def test_maximization_raises_the_activation_and_leaves_the_model(cnn: Any) -> None:
    cnn.train()  # a mode to restore
    snapshot = Snapshot(cnn)
    start = 0.01 * torch.randn((1, 1, 6, 6), generator=torch.Generator().manual_seed(0))
    found = maximize_activation(cnn, "conv2:3", (1, 6, 6), steps=30)
    assert found.shape == (1, 1, 6, 6) and not found.requires_grad
    before, after = unit_activations(cnn, "conv2:3", torch.cat([start, found]))
    assert after > before + 5.0
    assert all(p.grad is None for p in cnn.parameters())
    snapshot.assert_untouched()
    cnn.eval()


def test_maximization_is_deterministic_for_a_seed(cnn: Any) -> None:
    state = torch.random.get_rng_state()
    first = maximize_activation(cnn, "conv1:0", (1, 6, 6), steps=8, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert torch.equal(first, maximize_activation(cnn, "conv1:0", (1, 6, 6), steps=8, seed=3))
    assert not torch.equal(first, maximize_activation(cnn, "conv1:0", (1, 6, 6), steps=8, seed=4))


def test_maximization_of_a_tabular_neuron() -> None:
    model = fitted("mlp")
    found = maximize_activation(model, "fc1:2", (8,), steps=20)
    before, after = unit_activations(model, "fc1:2", torch.cat([torch.zeros(1, 8), found]))
    assert after > before + 1.0


def test_maximization_rejects_bad_input(cnn: Any) -> None:
    with pytest.raises(ValueError, match="'input_shape' parameter of maximize_activation"):
        maximize_activation(cnn, "conv1:0", (1, 0, 6))
    with pytest.raises(ValueError, match="'lr' parameter of maximize_activation"):
        maximize_activation(cnn, "conv1:0", (1, 6, 6), lr=-1.0)
    assert_no_hooks(cnn)


def test_blur_keeps_constants_and_smooths_a_spike() -> None:
    assert torch.allclose(gaussian_blur(torch.full((1, 2, 5, 7), 3.0), 1.0), torch.tensor(3.0))
    spike = torch.zeros(1, 1, 9)
    spike[0, 0, 4] = 1.0
    blurred = gaussian_blur(spike, 1.0)
    assert blurred.sum().item() == pytest.approx(1.0) and blurred.max() < 0.5
    assert torch.equal(blurred, blurred.flip(-1))
