"""Bad input to NeuronGame found by the audit: non-finite inputs, a reference that is the data,
devices that do not exist, shapes that cannot fit, user callables that raise. Each is refused
early with a message naming the parameter, and the model and the inputs are left untouched."""

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from neuronshapley._internal.devices import model_device, resolve_device
from neuronshapley.applications.visualize import maximize_activation, unit_activations
from neuronshapley.pytorch.metrics import MetricError
from neuronshapley.units import NeuronGame
from tests.units._models import NormDropNet, Snapshot, fitted, images, seeded


@pytest.fixture
def model() -> Iterator[nn.Module]:
    """The trained CNN; checked afterwards: same state_dict, modes, and no hook left."""
    model = fitted("cnn")
    snapshot = Snapshot(model)
    yield model
    snapshot.assert_untouched()


@pytest.fixture
def data() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    x, y = images(10, seed=1)
    copies = x.clone(), y.clone()
    yield x, y
    assert same_bits(x, copies[0]) and torch.equal(y, copies[1]), "the data was changed"


@pytest.fixture
def reference() -> Iterator[torch.Tensor]:
    x = images(12, seed=2)[0]
    copy = x.clone()
    yield x
    assert same_bits(x, copy), "the reference was changed"


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit (NaN included, which torch.equal calls unequal)."""
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


# -- 1. non-finite inputs ---------------------------------------------------------------------


def test_nan_in_the_data(model: nn.Module, data: Any, reference: Any) -> None:
    x, y = data[0].clone(), data[1]
    x[4, 0, 2, 2] = float("nan")
    x[7, 0, 0, 0] = float("inf")
    expected = x.clone()
    with pytest.raises(
        ValueError,
        match=r"'data' parameter of NeuronGame must hold finite inputs. Got 2 non-finite "
        r"entries \(NaN or inf\), the first in row 4\.",
    ):
        NeuronGame(model, data=(x, y), reference=reference)
    assert same_bits(x, expected)


def test_one_nan_pixel_in_the_reference(model: nn.Module, data: Any, reference: Any) -> None:
    poisoned = reference.clone()
    poisoned[9, 0, 3, 1] = float("nan")
    with pytest.raises(
        ValueError,
        match=r"'reference' parameter of NeuronGame must hold finite inputs. Got 1 non-finite "
        r"entry \(NaN or inf\), the first in row 9\.",
    ):
        NeuronGame(model, data=data, reference=poisoned)


def test_non_finite_data_given_to_with_data(model: nn.Module, data: Any, reference: Any) -> None:
    game = NeuronGame(model, data=data, reference=reference)
    x, y = data
    bad = x.clone()
    bad[3] = -float("inf")
    with pytest.raises(ValueError, match=r"NeuronGame.with_data must hold finite.*first in row 3"):
        game.with_data((bad, y))


# -- 2. the reference must not be the evaluation data -----------------------------------------


def test_reference_that_is_a_copy_of_the_data(model: nn.Module, data: Any) -> None:
    x, y = data
    with pytest.raises(ValueError, match="'reference' and 'data' parameters of NeuronGame are"):
        NeuronGame(model, data=(x, y), reference=x.clone())


def test_reference_that_is_a_slice_of_the_data_warns(model: nn.Module) -> None:
    x, y = images(80, seed=1)
    with pytest.warns(
        UserWarning,
        match=r"100% of the rows of the 'reference' parameter of NeuronGame \(59 of 59\) are "
        r"also rows of its 'data' parameter",
    ):
        NeuronGame(model, data=(x, y), reference=x[:59])


def test_reference_half_made_of_the_data_warns(model: nn.Module, reference: Any) -> None:
    x, y = images(40, seed=1)
    mixed = torch.cat([x[:6], reference[:6]])
    with pytest.warns(UserWarning, match=r"50% of the rows .*\(6 of 12\)"):
        NeuronGame(model, data=(x, y), reference=mixed)


def test_reference_sharing_a_few_rows_is_accepted_quietly(
    model: nn.Module, data: Any, reference: Any
) -> None:
    x, _ = data
    mixed = torch.cat([x[:2], reference])  # 2 of 14 rows
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NeuronGame(model, data=data, reference=mixed)


def test_reference_from_the_same_storage_but_other_rows_is_accepted(model: nn.Module) -> None:
    x, y = images(40, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NeuronGame(model, data=(x[:20], y[:20]), reference=x[20:])


# -- 3. devices -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "shown"),
    [
        ("gpu", r"must be a device name such as 'cpu', 'cuda'.*Got 'gpu' instead"),
        ("cuda:7", r".*CUDA.*Got 'cuda:7' instead"),
        ("meta", r"cannot be 'meta'.*Got 'meta' instead"),
        (0, r"must be a device name such as .*Got 0 \(int\) instead"),
        (torch.device("meta"), r"cannot be 'meta'"),
    ],
)
def test_device_that_does_not_exist(
    model: nn.Module, data: Any, reference: Any, device: Any, shown: str
) -> None:
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(ValueError, match=rf"The 'device' parameter of NeuronGame {shown}"):
        NeuronGame(model, data=data, reference=reference, device=device)


def test_cuda_without_a_gpu(model: nn.Module, data: Any, reference: Any) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is available")
    with pytest.raises(
        ValueError,
        match=r"The 'device' parameter of NeuronGame asks for CUDA, but no CUDA GPU is "
        r"available here.*Got 'cuda' instead",
    ):
        NeuronGame(model, data=data, reference=reference, device="cuda")


def test_model_on_the_meta_device(data: Any, reference: Any) -> None:
    with torch.device("meta"):
        model = seeded(lambda: NormDropNet())
    with pytest.raises(ValueError, match=r"'model' passed to NeuronGame has tensors on the 'meta'"):
        NeuronGame(model, data=data, reference=reference, device="cpu")


def test_data_on_the_meta_device(model: nn.Module, reference: Any) -> None:
    x = torch.empty(10, 1, 6, 6, device="meta")
    with pytest.raises(ValueError, match=r"'data' inputs passed to NeuronGame is on the 'meta'"):
        NeuronGame(model, data=(x, torch.zeros(10, dtype=torch.long)), reference=reference)


def test_one_device_helper() -> None:
    assert resolve_device("cpu:0", "f") == torch.device("cpu")
    assert resolve_device(torch.device("cpu"), "f") == torch.device("cpu")
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.ReLU(), default=torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"The 'where' parameter of f must be a device name"):
        resolve_device("tpu-ish", "f", parameter="where")


def test_application_device_goes_through_the_helper(model: nn.Module, data: Any) -> None:
    with pytest.raises(ValueError, match=r"The 'device' parameter of maximize_activation .*'gpu'"):
        maximize_activation(model, "conv1:0", input_shape=(1, 6, 6), steps=1, device="gpu")
    assert unit_activations(model, "conv1:0", data=data).shape == (10,)


# -- 4. shapes that cannot fit, memory that is not there --------------------------------------


def test_reference_of_another_shape_for_mean_maps(data: Any) -> None:
    model = seeded(lambda: NormDropNet())  # adaptive pooling: any image size runs
    snapshot = Snapshot(model)
    wide = images(12, seed=2)[0].repeat(1, 1, 2, 2)  # 12 x 12 images for 6 x 6 data
    with pytest.raises(
        ValueError,
        match=r"'reference' parameter of NeuronGame holds examples that do not fit .*shape "
        r"\(1, 12, 12\) per example.*'data' examples are shape \(1, 6, 6\).*module 'conv' have "
        r"shape \(4, 12, 12\), its output on the data \(4, 6, 6\)",
    ):
        NeuronGame(model, data=data, reference=wide)
    # One mean per unit does not depend on the positions: that fits.
    NeuronGame(model, data=data, reference=wide, ablation="channel_mean")
    snapshot.assert_untouched()


def test_reference_the_model_cannot_take(model: nn.Module, data: Any) -> None:
    with pytest.raises(
        ValueError,
        match=r"'reference' parameter of NeuronGame holds examples the model cannot take: "
        r"shape \(36,\) per example .*'data' examples are shape \(1, 6, 6\)",
    ):
        NeuronGame(model, data=data, reference=torch.zeros(5, 36))


def test_memory_budget_beyond_the_machine(model: nn.Module, data: Any, reference: Any) -> None:
    with pytest.raises(
        ValueError,
        match=r"'memory_budget' parameter of NeuronGame must be at most the memory available "
        r"on cpu .*Got 4611686018427387904",
    ):
        NeuronGame(model, data=data, reference=reference, memory_budget=2**62)


# -- 5. user callables that raise -------------------------------------------------------------


def test_unit_selector_that_raises(model: nn.Module, data: Any, reference: Any) -> None:
    def selector(name: str, module: nn.Module) -> bool:
        return module.out_channels > 4  # type: ignore[no-any-return]  # not every module has it

    with pytest.raises(
        RuntimeError,
        match=r"The units selector you passed to NeuronGame raised AttributeError on module "
        r"'relu1' \(ReLU\): .*out_channels",
    ) as caught:
        NeuronGame(model, units=selector, data=data, reference=reference)
    assert isinstance(caught.value.__cause__, AttributeError)


def test_metric_that_raises_names_the_coalition(
    model: nn.Module, data: Any, reference: Any
) -> None:
    calls = [0]

    def fragile(logits: torch.Tensor, targets: torch.Tensor, batch: Any) -> float:
        calls[0] += 1
        if calls[0] == 4:
            raise ZeroDivisionError("no examples left")
        return 0.5

    game = NeuronGame(model, data=data, metric=fragile, reference=reference)
    with pytest.raises(
        MetricError,
        match=r"The metric you passed \('fragile'\) raised ZeroDivisionError on coalition 3: "
        r"no examples left",
    ) as caught:
        game.value(np.ones((5, 10), dtype=bool))
    assert isinstance(caught.value.__cause__, ZeroDivisionError)
    assert game.n_evaluations == 0


def test_metric_returning_nan_is_caught_once_per_batch(
    model: nn.Module, data: Any, reference: Any
) -> None:
    def sometimes_nan(logits: torch.Tensor, targets: torch.Tensor, batch: Any) -> torch.Tensor:
        return torch.where(logits[..., 0].mean(dim=1) > -1e9, torch.nan, 0.0).double()

    from neuronshapley.units import Metric

    game = NeuronGame(model, data=data, metric=Metric("nan", sometimes_nan), reference=reference)
    with pytest.raises(ValueError, match=r"metric 'nan' returned a non-finite value.*coalition 0"):
        game.value(np.ones((3, 10), dtype=bool))


# -- 7. fingerprint ---------------------------------------------------------------------------


def test_a_model_changed_in_place_changes_the_fingerprint(
    model: nn.Module, data: Any, reference: Any
) -> None:
    game = NeuronGame(model, data=data, reference=reference, units="conv*")
    before = game.fingerprint()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1.0  # fine-tuned after the game was built
    try:
        assert game.fingerprint() != before
    finally:
        model.load_state_dict(state)
    assert game.fingerprint() == before


def test_two_user_metrics_with_one_name_differ(model: nn.Module, data: Any, reference: Any) -> None:
    def metric_of(scale: float) -> Any:
        return lambda logits, y: scale * (logits.argmax(-1) == y).double().mean()

    first, second = (
        NeuronGame(model, data=data, reference=reference, units="conv*", metric=metric_of(s))
        for s in (1.0, 2.0)
    )
    assert first.metric.name == second.metric.name
    assert first.fingerprint() != second.fingerprint()


def test_fingerprint(model: nn.Module, data: Any, reference: Any) -> None:
    x, y = data
    build = dict(data=(x, y), reference=reference, units="conv*")
    first = NeuronGame(model, **build)
    fingerprint = first.fingerprint()
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
    assert first.fingerprint() == fingerprint
    assert NeuronGame(model, **build).fingerprint() == fingerprint
    assert NeuronGame(model, **build, reuse_prefixes=False).fingerprint() == fingerprint

    other = fitted("cnn")
    with torch.no_grad():
        other.conv2.weight[0, 0, 0, 0] += 1e-3
    changed_data = x.clone()
    changed_data[3, 0, 1, 1] += 1e-3
    others = [
        NeuronGame(other, **build),
        NeuronGame(model, **{**build, "data": (changed_data, y)}),
        NeuronGame(model, **build, metric="neg_cross_entropy"),
        NeuronGame(model, **build, ablation="channel_mean"),
        NeuronGame(model, **{**build, "reference": reference[:-1]}),
        NeuronGame(model, **{**build, "units": "conv2"}),
        NeuronGame(model, **build, examples_per_walk=5),
        first.with_data((x[:5], y[:5])),
    ]
    prints = [game.fingerprint() for game in others]
    assert fingerprint not in prints
    assert len(set(prints)) == len(prints)
