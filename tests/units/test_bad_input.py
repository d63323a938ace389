"""Bad input to NeuronGame: each mistake raises an error that names it, and the model is left
exactly as it came in (parameters, buffers, modes, no hooks)."""

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from neuronshapley.units import Metric, NeuronGame, Split
from tests.units._models import Snapshot, TinyCNN, fitted, images


@pytest.fixture
def model() -> Iterator[nn.Module]:
    """The trained CNN, in train mode with one submodule in eval mode; checked afterwards."""
    model = fitted("cnn").train()
    model.relu1.eval()
    snapshot = Snapshot(model)
    yield model
    snapshot.assert_untouched()


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return images(10, seed=1)


@pytest.fixture
def reference() -> torch.Tensor:
    return images(12, seed=2)[0]


def test_unknown_module_name(model: nn.Module, data: Any, reference: Any) -> None:
    with pytest.raises(
        ValueError, match=r"no module named 'conv_1'.*Closest module names: 'conv1'"
    ):
        NeuronGame(model, units="conv_1", data=data, reference=reference)


def test_module_that_cannot_be_ablated(model: nn.Module, data: Any, reference: Any) -> None:
    with pytest.raises(TypeError, match=r"'pool'.*is a AvgPool2d.*cannot be ablated"):
        NeuronGame(model, units="pool", data=data, reference=reference)


def test_units_matching_nothing(model: nn.Module, data: Any, reference: Any) -> None:
    with pytest.raises(ValueError, match=r"'attn\*' passed to NeuronGame matches no ablatable"):
        NeuronGame(model, units="attn*", data=data, reference=reference)


def test_missing_data(model: nn.Module, reference: Any) -> None:
    with pytest.raises(ValueError, match="'data' parameter of NeuronGame is required"):
        NeuronGame(model, reference=reference)


def test_empty_data(model: nn.Module, data: Any, reference: Any) -> None:
    x, y = data
    with pytest.raises(ValueError, match="'data' parameter of NeuronGame holds no examples"):
        NeuronGame(model, data=(x[:0], y[:0]), reference=reference)
    with pytest.raises(ValueError, match="split 'test' is empty"):
        Split(x[:0], y[:0], name="test")


def test_data_of_a_bad_type(model: nn.Module, data: Any, reference: Any) -> None:
    x, y = data
    with pytest.raises(TypeError, match=r"'data' parameter of NeuronGame must be a Split.*list"):
        NeuronGame(model, data=[x, y, y, y], reference=reference)
    with pytest.raises(TypeError, match=r"inputs of 'data'.*must be a torch.Tensor or a numpy"):
        NeuronGame(model, data=(x.tolist(), y), reference=reference)


def test_mismatched_data(model: nn.Module, data: Any, reference: Any) -> None:
    x, y = data
    with pytest.raises(ValueError, match=r"has 10 inputs but labels of shape \(9,\)"):
        NeuronGame(model, data=(x, y[:9]), reference=reference)
    with pytest.raises(ValueError, match=r"has 10 inputs but groups of shape \(11,\)"):
        NeuronGame(model, data=(x, y, torch.zeros(11, dtype=torch.long)), reference=reference)


@pytest.mark.parametrize(("bad", "shown"), [(3, "from 0 to 3"), (-1, "from -1 to")])
def test_labels_out_of_range(
    model: nn.Module, data: Any, reference: Any, bad: int, shown: str
) -> None:
    x, y = data
    y = y.clone()
    y[4] = bad
    with pytest.raises(ValueError, match=rf"class ids in \[0, 2\] \(the model has 3 .*{shown}"):
        NeuronGame(model, data=(x, y), reference=reference)


def test_float_labels_that_are_not_integers(model: nn.Module, data: Any, reference: Any) -> None:
    x, y = data
    with pytest.raises(TypeError, match=r"labels of 'data'.*must hold integers"):
        NeuronGame(model, data=(x, y.double() + 0.5), reference=reference)
    # Whole numbers stored as floats are class ids: accepted.
    game = NeuronGame(model, data=(x, y.float()), reference=reference)
    assert torch.equal(game.data.y, y)


class Raising(TinyCNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("no forward today")


def test_model_that_raises(data: Any, reference: Any) -> None:
    model = Raising()
    snapshot = Snapshot(model)
    with pytest.raises(
        RuntimeError,
        match="The model raised ValueError while checking it on the evaluation data: no forward",
    ):
        NeuronGame(model, data=data, reference=reference)
    snapshot.assert_untouched()


def test_model_that_raises_on_the_reference(model: nn.Module, data: Any) -> None:
    # Two input channels for a one-channel convolution: it raises with the hooks in place, and
    # the message blames the reference's shape.
    wrong = torch.zeros(5, 2, 6, 6)
    with pytest.raises(
        ValueError,
        match=r"'reference' parameter of NeuronGame holds examples the model cannot take: "
        r"shape \(2, 6, 6\) per example .* 'data' examples are shape \(1, 6, 6\)",
    ) as caught:
        NeuronGame(model, data=data, reference=wrong)
    assert isinstance(caught.value.__cause__, RuntimeError)


class Outputs(nn.Module):
    """A CNN whose output is passed through ``shape_it``."""

    def __init__(self, shape_it: Any) -> None:
        super().__init__()
        self.net = TinyCNN()
        self.shape_it = shape_it

    def forward(self, x: torch.Tensor) -> Any:
        return self.shape_it(self.net(x))


@pytest.mark.parametrize(
    ("shape_it", "shown"),
    [
        (lambda out: out[:, 0], r"returned \(8,\)"),
        (lambda out: out[:, None], r"returned \(8, 1, 3\)"),
        (lambda out: out[:4], r"returned \(4, 3\)"),
        (lambda out: (out, out), "returned tuple"),
    ],
)
def test_model_returning_the_wrong_shape(
    data: Any, reference: Any, shape_it: Any, shown: str
) -> None:
    model = Outputs(shape_it)
    snapshot = Snapshot(model)
    with pytest.raises(
        ValueError, match=rf"must return logits of shape \(n_examples, n_classes\).*{shown}"
    ):
        NeuronGame(model, data=data, reference=reference)
    snapshot.assert_untouched()


def test_metric_returning_the_wrong_shape(model: nn.Module, data: Any, reference: Any) -> None:
    # A batched metric must return one value per coalition.
    per_example = Metric("per_example", lambda logits, targets, split: logits[..., 0].double())
    game = NeuronGame(model, data=data, metric=per_example, reference=reference)
    with pytest.raises(
        ValueError,
        match=r"'per_example' must return one value per coalition, shape \(2,\). Got \(2, 10\)",
    ):
        game.value(np.ones((2, 10), dtype=bool))
    # A user metric must return one number per coalition.
    game = NeuronGame(
        model, data=data, metric=lambda logits, targets, split: logits[0], reference=reference
    )
    with pytest.raises(ValueError, match=r"one number per call.*Got Tensor of shape \(3,\)"):
        game.value(np.ones((1, 10), dtype=bool))


def test_mean_ablation_without_reference(model: nn.Module, data: Any) -> None:
    for ablation in ("mean", "channel_mean"):
        with pytest.raises(ValueError, match=f"ablation='{ablation}' needs the 'reference'"):
            NeuronGame(model, data=data, ablation=ablation)
    NeuronGame(model, data=data, ablation="zero")  # zero needs none


def test_reference_that_is_the_data_split(model: nn.Module, data: Any) -> None:
    split = Split(*data)
    with pytest.raises(
        ValueError, match="'reference' and 'data' parameters of NeuronGame are the same"
    ):
        NeuronGame(model, data=split, reference=split)


@pytest.mark.parametrize("as_reference", ["tensor", "tuple"])
def test_reference_that_is_the_data_tensor(model: nn.Module, data: Any, as_reference: str) -> None:
    x, y = data
    reference = x if as_reference == "tensor" else (x, y)
    with pytest.raises(
        ValueError, match="'reference' and 'data' parameters of NeuronGame are the same"
    ):
        NeuronGame(model, data=(x, y), reference=reference)


# None is the default: "mean" for tensor inputs, "token_mean" for dict or tuple inputs.
@pytest.mark.parametrize("ablation", ["avg", "Mean", ""])
def test_bad_ablation_name(model: nn.Module, data: Any, reference: Any, ablation: Any) -> None:
    with pytest.raises(
        ValueError,
        match=r"'ablation' parameter of NeuronGame must be one of 'mean', 'channel_mean', "
        r"'token_mean', 'zero'",
    ):
        NeuronGame(model, data=data, ablation=ablation, reference=reference)


@pytest.mark.parametrize(
    ("budget", "error"),
    [(0, ValueError), (-5, ValueError), (1.5, TypeError), ("1GB", TypeError), (True, TypeError)],
)
def test_bad_memory_budget(
    model: nn.Module, data: Any, reference: Any, budget: Any, error: type
) -> None:
    with pytest.raises(
        error, match=r"'memory_budget' parameter of NeuronGame must be an int in \[1, inf\]"
    ):
        NeuronGame(model, data=data, reference=reference, memory_budget=budget)


def test_bad_reference_batch_size(model: nn.Module, data: Any, reference: Any) -> None:
    with pytest.raises(ValueError, match="'reference_batch_size' parameter of NeuronGame"):
        NeuronGame(model, data=data, reference=reference, reference_batch_size=0)


def test_not_a_module(data: Any, reference: Any) -> None:
    with pytest.raises(
        TypeError, match=r"'model' parameter of NeuronGame must be a torch\.nn\.Module"
    ):
        NeuronGame(lambda x: x, data=data, reference=reference)


class Unused(TinyCNN):
    """A CNN with a Linear its forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.spare = nn.Linear(4, 4)


def test_selected_module_that_never_runs(data: Any, reference: Any) -> None:
    model = Unused()
    snapshot = Snapshot(model)
    with pytest.raises(ValueError, match=r"'spare' did not run.*is it used in forward"):
        NeuronGame(model, units="spare", data=data, reference=reference)
    snapshot.assert_untouched()


def test_split_with_float_labels(model: nn.Module, data: Any, reference: Any) -> None:
    # Either rejected up front with a message about the labels, or evaluated like int labels.
    x, y = data
    full = np.ones((1, 10), dtype=bool)
    try:
        game = NeuronGame(
            model, data=Split(x, y.float()), metric="neg_cross_entropy", reference=reference
        )
    except (TypeError, ValueError) as error:
        assert "label" in str(error)
        return
    expected = NeuronGame(model, data=(x, y), metric="neg_cross_entropy", reference=reference)
    assert game.value(full)[0] == expected.value(full)[0]
