"""NeuronGame: batching, memory-bounded passes, V(N) and V(empty), counters, and a model that
leaves the game exactly as it came in (parameters, buffers, modes, hooks)."""

import copy
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from neuronshapley.pytorch.metrics import MetricError
from neuronshapley.units import NeuronGame
from tests.units._models import (
    BUDGET,
    NormDropNet,
    Snapshot,
    TinyCNN,
    activation_bytes_per_example,
    assert_no_hooks,
    fitted,
    images,
    mean_logit_0,
    random_coalitions,
    seeded,
    vectors,
)

FLOAT32 = {"rtol": 1e-5, "atol": 1e-6}
N_EXAMPLES = 24


@pytest.fixture(scope="module")
def cnn_setup() -> tuple[TinyCNN, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    return fitted("cnn"), images(N_EXAMPLES, seed=1), images(30, seed=2)[0]


def one_at_a_time(game: NeuronGame, coalitions: np.ndarray) -> np.ndarray:
    return np.array([game.value(coalitions[i : i + 1])[0] for i in range(len(coalitions))])


# -- batching ----------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["accuracy", "neg_cross_entropy"])
def test_batched_equals_one_at_a_time(cnn_setup: Any, metric: str) -> None:
    model, data, reference = cnn_setup
    game = NeuronGame(model, data=data, metric=metric, reference=reference, memory_budget=BUDGET)
    coalitions = random_coalitions(40, game.n_players, seed=0)
    assert game.coalitions_per_pass >= len(coalitions)  # one pass for the whole batch
    batched = game.value(coalitions)
    assert np.array_equal(batched, one_at_a_time(game, coalitions))
    assert len(np.unique(batched)) > 5  # the coalitions do differ


@pytest.mark.parametrize("metric", ["accuracy", "neg_cross_entropy"])
def test_memory_budget_splits_passes_without_changing_values(cnn_setup: Any, metric: str) -> None:
    model, data, reference = cnn_setup
    coalitions = random_coalitions(40, 10, seed=1)
    kwargs = {"data": data, "metric": metric, "reference": reference}
    expected = NeuronGame(model, memory_budget=BUDGET, **kwargs).value(coalitions)
    per_example = activation_bytes_per_example(model, data[0])

    # A few coalitions per pass: the batch takes several passes.
    several = NeuronGame(model, memory_budget=3 * N_EXAMPLES * per_example, **kwargs)
    assert 1 < several.coalitions_per_pass < len(coalitions)
    assert several.examples_per_pass == N_EXAMPLES
    assert np.array_equal(several.value(coalitions), expected)

    # One coalition per pass, and its examples split over several passes (of more than one
    # example each; see the next test for passes of single examples).
    split = NeuronGame(model, memory_budget=8 * per_example, **kwargs)
    assert split.coalitions_per_pass == 1
    assert 1 < split.examples_per_pass < N_EXAMPLES
    assert np.array_equal(split.value(coalitions), expected)
    assert split.n_forward_examples == len(coalitions) * N_EXAMPLES


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_one_example_per_pass(kind: str) -> None:
    # On CPU, PyTorch runs a batch of one example through another kernel than a larger batch
    # (gemv rather than gemm for a Linear, another convolution algorithm), so the float32
    # logits, not the game's logic, differ in their last bits: compare to float32 rounding
    # here (a logit off by a few ulps moves a cross-entropy by about 1e-7). The bitwise checks
    # above split the examples into passes of several.
    model = fitted(kind)
    make = images if kind == "cnn" else vectors
    kwargs = {"data": make(N_EXAMPLES, seed=1), "metric": "neg_cross_entropy"}
    kwargs["reference"] = make(30, seed=2)[0]
    tiny = NeuronGame(model, memory_budget=1, **kwargs)
    assert (tiny.coalitions_per_pass, tiny.examples_per_pass) == (1, 1)
    coalitions = random_coalitions(20, tiny.n_players, seed=3)
    expected = NeuronGame(model, memory_budget=BUDGET, **kwargs).value(coalitions)
    np.testing.assert_allclose(tiny.value(coalitions), expected, **FLOAT32)
    assert tiny.n_forward_examples == len(coalitions) * N_EXAMPLES


# -- V(N) and V(empty) -----------------------------------------------------------------------


@pytest.mark.parametrize("ablation", ["zero", "mean", "channel_mean"])
def test_full_coalition_is_the_plain_model(cnn_setup: Any, ablation: str) -> None:
    model, (x, y), reference = cnn_setup
    seen: list[torch.Tensor] = []

    def record(logits: torch.Tensor, targets: torch.Tensor, batch: Any) -> float:
        seen.append(logits.clone())
        return 0.0

    reference_kw = {} if ablation == "zero" else {"reference": reference}
    recorder = NeuronGame(model, data=(x, y), metric=record, ablation=ablation, **reference_kw)
    recorder.value(np.ones((1, recorder.n_players), dtype=bool))
    with torch.inference_mode():
        plain = model(x)
    assert torch.equal(seen[0], plain)  # no unit touched: the very same logits

    accuracy = NeuronGame(model, data=(x, y), ablation=ablation, **reference_kw)
    expected = float((plain.argmax(dim=1) == y).double().mean())
    assert accuracy.value(np.ones((1, 10), dtype=bool))[0] == expected
    nce = NeuronGame(
        model, data=(x, y), metric="neg_cross_entropy", ablation=ablation, **reference_kw
    )
    np.testing.assert_allclose(
        nce.value(np.ones((1, 10), dtype=bool))[0],
        -float(F.cross_entropy(plain.double(), y)),
        rtol=1e-12,
    )


@pytest.mark.parametrize("ablation", ["zero", "mean", "channel_mean"])
def test_empty_coalition_ablates_every_unit(cnn_setup: Any, ablation: str) -> None:
    model, (x, y), reference = cnn_setup
    with torch.inference_mode():
        first = model.conv1(reference)
        second = model.conv2(torch.relu(first))
        if ablation == "zero":
            # conv1 and conv2 output zero: the network outputs fc's bias for every example.
            logits = model.fc.bias.detach().expand(len(x), -1)
        else:
            dims = (0,) if ablation == "mean" else (0, 2, 3)
            fill = second.double().mean(dim=dims, keepdim=True).float()
            pooled = torch.relu(fill).expand(len(x), -1, 6, 6).reshape(len(x), 6, 3, 2, 3, 2)
            logits = model.fc(pooled.mean(dim=(3, 5)).flatten(1))
    reference_kw = {} if ablation == "zero" else {"reference": reference}
    empty = np.zeros((1, 10), dtype=bool)
    for metric, expected in [
        ("neg_cross_entropy", -float(F.cross_entropy(logits.double(), y))),
        (mean_logit_0, float(logits[:, 0].double().mean())),
    ]:
        game = NeuronGame(model, data=(x, y), metric=metric, ablation=ablation, **reference_kw)
        np.testing.assert_allclose(game.value(empty)[0], expected, **FLOAT32)
    accuracy = NeuronGame(model, data=(x, y), ablation=ablation, **reference_kw)
    # Every example gets the same logits: accuracy is the share of the predicted class.
    assert accuracy.value(empty)[0] == float((y == logits[0].argmax()).double().mean())


# -- the model is left as it came in --------------------------------------------------------


class Tripwire(nn.Module):
    """Identity, until it sees more than ``limit`` examples at once."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > self.limit:
            raise RuntimeError(f"tripwire: {len(x)} examples")
        return x


class TripwireNet(NormDropNet):
    """NormDropNet with a tripwire between its (hooked) convolution and its BatchNorm."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.wire = Tripwire(limit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.relu(self.bn(self.wire(self.conv(x)))))
        return self.fc(self.pool(h).flatten(1))


def mixed_modes(model: nn.Module) -> nn.Module:
    """Train mode, with one submodule in eval mode, and BatchNorm statistics that are not 0/1."""
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.num_batches_tracked.fill_(7)
    model.train()
    model.pool.eval()
    return model


@pytest.fixture
def trip() -> nn.Module:
    return mixed_modes(seeded(lambda: TripwireNet(limit=12)))


def test_model_untouched_by_construction_and_value(trip: nn.Module) -> None:
    before = Snapshot(trip)
    x, y = images(10, seed=1)
    game = NeuronGame(trip, data=(x, y), reference=images(10, seed=2)[0], reference_batch_size=5)
    before.assert_untouched()
    game.value(np.ones((1, 4), dtype=bool))  # 10 examples: under the tripwire
    game.value(np.zeros((1, 4), dtype=bool))
    before.assert_untouched()
    assert game.model is trip  # evaluated in place, not on a copy


def test_model_untouched_when_the_model_raises_in_value(trip: nn.Module) -> None:
    before = Snapshot(trip)
    x, y = images(10, seed=1)
    game = NeuronGame(trip, data=(x, y), reference=images(10, seed=2)[0], reference_batch_size=5)
    with pytest.raises(RuntimeError, match=r"The model raised RuntimeError.*tripwire: 20"):
        game.value(random_coalitions(2, 4, seed=0))  # 2 x 10 examples in one pass
    before.assert_untouched()
    assert game.n_evaluations == 0  # a failed batch is not counted
    game.value(np.ones((1, 4), dtype=bool))  # and the game still works
    assert game.n_evaluations == 1
    before.assert_untouched()


def test_model_untouched_when_the_model_raises_on_the_reference(trip: nn.Module) -> None:
    before = Snapshot(trip)
    x, y = images(10, seed=1)
    with pytest.raises(RuntimeError, match=r"The model raised RuntimeError.*ablation means"):
        NeuronGame(trip, data=(x, y), reference=images(30, seed=2)[0], reference_batch_size=30)
    before.assert_untouched()


def test_model_untouched_when_the_metric_raises(trip: nn.Module) -> None:
    before = Snapshot(trip)

    def broken(logits: torch.Tensor, targets: torch.Tensor, batch: Any) -> float:
        raise ZeroDivisionError("metric broke")

    x, y = images(10, seed=1)
    game = NeuronGame(trip, data=(x, y), metric=broken, reference=images(10, seed=2)[0])
    with pytest.raises(MetricError, match="raised ZeroDivisionError on coalition 0: metric broke"):
        game.value(np.ones((1, 4), dtype=bool))
    before.assert_untouched()


def test_model_untouched_after_bad_input(trip: nn.Module) -> None:
    before = Snapshot(trip)
    x, y = images(10, seed=1)
    game = NeuronGame(trip, data=(x, y), reference=images(10, seed=2)[0])
    with pytest.raises(ValueError, match=r"shape \(n_coalitions, 4\)"):
        game.value(np.ones((1, 5), dtype=bool))
    with pytest.raises(TypeError, match="dtype bool"):
        game.value(np.ones((1, 4)))
    with pytest.raises(ValueError, match="class ids in"):
        NeuronGame(trip, data=(x, y + 5), reference=images(10, seed=2)[0])
    before.assert_untouched()


def test_model_already_on_the_device_is_not_copied(cnn_setup: Any) -> None:
    # "cpu:0" stands in for the usual device="cuda" with a model on "cuda:0".
    model, data, reference = cnn_setup
    assert NeuronGame(model, data=data, reference=reference, device="cpu").model is model
    assert NeuronGame(model, data=data, reference=reference, device="cpu:0").model is model


def test_no_hooks_on_any_submodule_after_success(cnn_setup: Any) -> None:
    model, data, reference = cnn_setup
    game = NeuronGame(model, data=data, reference=reference, memory_budget=BUDGET)
    game.value(random_coalitions(5, 10, seed=0))
    assert_no_hooks(model)


def test_batchnorm_and_dropout_in_train_mode_give_eval_values() -> None:
    in_train = mixed_modes(seeded(NormDropNet))
    in_eval = copy.deepcopy(in_train).eval()
    x, y = images(N_EXAMPLES, seed=1)
    reference, _ = images(30, seed=2)
    coalitions = random_coalitions(12, 4, seed=4)
    values = []
    for model in (in_train, in_eval):
        game = NeuronGame(model, data=(x, y), metric="neg_cross_entropy", reference=reference)
        values.append(game.value(coalitions))
    assert np.array_equal(values[0], values[1])
    assert in_train.training and in_train.bn.training and in_train.drop.training


# -- counters and conveniences ---------------------------------------------------------------


def test_counters(cnn_setup: Any) -> None:
    model, data, reference = cnn_setup
    game = NeuronGame(model, data=data, reference=reference, memory_budget=BUDGET)
    assert (game.n_evaluations, game.n_forward_examples) == (0, 0)
    game.value(random_coalitions(7, 10, seed=0))
    game.value(random_coalitions(3, 10, seed=1))
    assert game.n_evaluations == 10
    assert game.n_forward_examples == 10 * N_EXAMPLES
    game.value_without(["conv1:0"])
    assert (game.n_evaluations, game.n_forward_examples) == (11, 11 * N_EXAMPLES)


def test_no_coalition(cnn_setup: Any) -> None:
    model, data, reference = cnn_setup
    game = NeuronGame(model, data=data, reference=reference)
    values = game.value(np.zeros((0, 10), dtype=bool))
    assert values.shape == (0,) and values.dtype == np.float64
    assert (game.n_evaluations, game.n_forward_examples) == (0, 0)


def test_value_without_and_coalition_without(cnn_setup: Any) -> None:
    model, data, reference = cnn_setup
    game = NeuronGame(model, data=data, reference=reference, metric="neg_cross_entropy")
    coalition = game.coalition_without(["conv1:2", "conv2:5"])
    assert coalition.shape == (1, 10) and coalition.dtype == np.bool_
    assert [game.player_names[i] for i in np.flatnonzero(~coalition[0])] == ["conv1:2", "conv2:5"]
    assert game.value_without(["conv1:2", "conv2:5"]) == game.value(coalition)[0]
    assert game.value_without([]) == game.value(np.ones((1, 10), dtype=bool))[0]
    assert game.value_without(["conv1:2"]) != game.value_without([])


def test_value_without_unknown_name(cnn_setup: Any) -> None:
    model, data, reference = cnn_setup
    game = NeuronGame(model, data=data, reference=reference)
    with pytest.raises(ValueError, match=r"'conv3:0' is not a player of this game"):
        game.value_without(["conv3:0"])
    with pytest.raises(ValueError, match=r"'conv1' is not a player"):
        game.coalition_without(["conv1"])


def test_logits_with_units_removed_match_the_metric() -> None:
    model = fitted("cnn")
    x, y = images(80, seed=11)
    reference, _ = images(40, seed=12)
    game = NeuronGame(model, "conv*", data=(x, y), reference=reference)
    removed = game.player_names[:3]
    logits = game.logits(removed)
    accuracy = (logits.argmax(1) == y).double().mean().item()
    assert accuracy == game.value_without(removed)
    held_out, held_labels = images(30, seed=13)
    other = game.logits(removed, data=(held_out, held_labels))
    assert other.shape == (30, logits.shape[1])
    with torch.inference_mode():
        plain = model.eval()(x)
    torch.testing.assert_close(game.logits(), plain)
    assert_no_hooks(model)


def test_a_game_s_fingerprint_is_the_one_earlier_versions_computed() -> None:
    """Checkpoints, run directories and results are matched to their game by this digest, so
    a change of its encoding would refuse every earlier run as "another game". The literal was
    computed by the code before metrics declared bounds (commit aaf5e23); hand-set weights and
    data, so no training or random draw enters it."""
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        for i, parameter in enumerate(model.parameters()):
            count = parameter.numel()
            parameter.copy_(
                torch.arange(count, dtype=torch.float32).reshape(parameter.shape) / (7 + i)
            )
    x = torch.arange(40, dtype=torch.float32).reshape(10, 4) / 40.0
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    game = NeuronGame(model, data=(x, y), reference=1.0 - x)
    assert game.fingerprint() == "e9d543e3ccae373a72e13db591486e860b443de4703be83f88c1398ee5fcda51"
