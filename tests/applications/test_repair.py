"""Repair: the repaired model computes the ablated game exactly, without hooks, and ships."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from neuronshapley.applications import repair as repair_module
from neuronshapley.applications.repair import (
    Ablated,
    load_repaired,
    repair,
    save_repaired,
    select_units,
)
from neuronshapley.results.result import ShapleyResult
from neuronshapley.units import NeuronGame
from neuronshapley.units.ablation import evaluation_mode, hooked
from neuronshapley.units.selection import heads
from neuronshapley.workflows.runs import load_factory
from tests.units._models import (
    BUDGET,
    Snapshot,
    assert_no_hooks,
    fitted,
    images,
    tokens,
    vectors,
)

MODELS_FILE = Path(__file__).resolve().parents[1] / "units" / "_models.py"
REMOVE = {
    "cnn": ["conv1:0", "conv1:2", "conv2:1", "conv2:4", "conv2:5"],
    "mlp": ["fc1:1", "fc1:4", "fc2:0", "fc2:3"],
}


def make_game(kind: str, ablation: str, model: nn.Module | None = None, **kwargs: Any) -> Any:
    model = fitted(kind) if model is None else model
    make = images if kind == "cnn" else vectors
    return NeuronGame(
        model,
        kwargs.pop("units", None),
        data=make(48, seed=1),
        reference=make(32, seed=2)[0],
        ablation=ablation,
        memory_budget=BUDGET,
        **kwargs,
    )


def hooked_logits(game: Any, removed: list[str], x: torch.Tensor) -> torch.Tensor:
    """The game's model with ``removed`` ablated by hooks, as the game computes it."""
    coalition = game.coalition_without(removed)[0]
    transforms, offset = [], 0
    for layer, fill in zip(game.layers, game.fills, strict=True):
        columns = coalition[offset : offset + len(layer.indices)]
        offset += len(layer.indices)
        keep = torch.ones(layer.size, dtype=torch.bool)
        keep[[i for i, kept in zip(layer.indices, columns, strict=True) if not kept]] = False
        keep = keep.repeat_interleave(layer.group)

        def transform(
            a: torch.Tensor, keep: Any = keep, fill: Any = fill, layer: Any = layer
        ) -> Any:
            shape = [1] * a.dim()
            shape[layer.channel_dim % a.dim()] = keep.numel()
            return torch.where(keep.view(shape), a, fill)

        transforms.append(transform)
    with (
        evaluation_mode(game.model),
        torch.inference_mode(),
        hooked(game.model, game.layers, transforms),
    ):
        return game.model(x)


def accuracy(model: nn.Module, game: Any) -> float:
    with torch.inference_mode():
        return float((model(game.data.x).argmax(1) == game.data.y).double().mean())


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
@pytest.mark.parametrize("ablation", ["zero", "channel_mean", "mean"])
def test_repair_reproduces_the_ablated_game(kind: str, ablation: str) -> None:
    game = make_game(kind, ablation)
    snapshot = Snapshot(game.model)
    removed = REMOVE[kind]
    repaired = repair(game, removed)

    assert accuracy(repaired, game) == game.value_without(removed)
    with torch.inference_mode():
        logits = repaired(game.data.x)
    torch.testing.assert_close(logits, hooked_logits(game, removed, game.data.x), rtol=0, atol=1e-6)
    assert_no_hooks(repaired)
    snapshot.assert_untouched()

    wrapped = kind == "cnn" and ablation == "mean"  # per-position mean maps: not foldable
    for layer, fill in zip(game.layers, game.fills, strict=True):
        module: Any = repaired.get_submodule(layer.path)
        units = [int(name.split(":")[1]) for name in removed if name.startswith(layer.path + ":")]
        if wrapped:
            assert isinstance(module, Ablated)
            assert module.mask.tolist() == [i not in units for i in range(layer.size)]
            continue
        assert not isinstance(module, Ablated)
        constants = fill.reshape(-1) if fill.dim() else fill.expand(layer.size)
        for unit in units:
            assert not module.weight[unit].any()
            assert module.bias[unit] == constants[unit]
        original: Any = game.model.get_submodule(layer.path)
        kept = [i for i in range(layer.size) if i not in units]
        assert torch.equal(module.weight[kept], original.weight[kept])


def test_heads_are_masked_on_the_projection_input() -> None:
    model = fitted("hand")
    game = NeuronGame(
        model,
        heads(model, "attn.proj", 2),
        data=tokens(32, seed=1),
        reference=tokens(24, seed=2)[0],
        memory_budget=BUDGET,
    )
    repaired = repair(game, ["attn.proj:1"])
    projection = repaired.get_submodule("attn.proj")
    assert isinstance(projection, Ablated) and projection.on_input
    assert accuracy(repaired, game) == game.value_without(["attn.proj:1"])
    with torch.inference_mode():
        logits = repaired(game.data.x)
    expected = hooked_logits(game, ["attn.proj:1"], game.data.x)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)


def test_multihead_attention_is_not_supported() -> None:
    model = fitted("mha")
    game = NeuronGame(
        model,
        "attn",
        data=tokens(16, seed=1),
        ablation="zero",
        memory_budget=BUDGET,
    )
    with pytest.raises(ValueError, match="MultiheadAttention 'attn'"):
        repair(game, ["attn:0"])


def test_repair_rejects_unknown_units_with_the_closest_names() -> None:
    game = make_game("mlp", "zero")
    with pytest.raises(ValueError, match=r"'fc1:9'.*Closest unit names: 'fc1:"):
        repair(game, ["fc1:9"])
    with pytest.raises(TypeError, match="not one string"):
        repair(game, "fc1:0")


def test_repair_guards_against_a_wrong_model(monkeypatch: pytest.MonkeyPatch) -> None:
    game = make_game("mlp", "zero", metric="neg_cross_entropy")
    monkeypatch.setattr(repair_module, "_fold", lambda *args: None)
    with pytest.raises(RuntimeError, match="bug in neuronshapley's repair"):
        repair(game, REMOVE["mlp"])


# -- select_units -----------------------------------------------------------------------------


def result_of(values: dict[str, float]) -> ShapleyResult:
    array = np.asarray(list(values.values()), dtype=float)
    zeros = np.zeros_like(array)
    return ShapleyResult(
        values=array,
        stderr=zeros,
        ci_low=array,
        ci_high=array,
        n_samples=np.zeros(len(array), dtype=np.int64),
        variance=zeros,
        player_names=list(values),
        n_evaluations=0,
        estimator="by_hand",
        params={},
        seed=None,
        stop_reason="exact",
        elapsed_seconds=0.0,
    )


RESULT = result_of({"a:0": 0.5, "a:1": -0.2, "a:2": 0.1, "b:0": -0.4, "b:1": 0.3})


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("top:2", ["a:0", "b:1"]),
        ("bottom:2", ["b:0", "a:1"]),
        ("negative:1", ["b:0"]),
        ("negative:4", ["b:0", "a:1"]),  # only the two negative ones
        ("b:1, a:2,b:1", ["b:1", "a:2"]),
        (["a:1", "a:0"], ["a:1", "a:0"]),
    ],
)
def test_select_units(spec: Any, expected: list[str]) -> None:
    assert select_units(RESULT, spec) == expected


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ("top:0", ValueError, r"count in \[1, 5\].*'top:0'"),
        ("top:6", ValueError, r"count in \[1, 5\]"),
        ("negative:x", ValueError, "after the colon"),
        ("a:7", ValueError, r"'a:7', which is not a unit.*Closest unit names: 'a:"),
        (["b:0", "c:0"], ValueError, "'c:0', which is not a unit"),
        (" , ", ValueError, "names no unit"),
        (3, TypeError, "'top:N'"),
    ],
)
def test_select_units_errors(spec: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        select_units(RESULT, spec)


# -- a standalone file ------------------------------------------------------------------------

NO_BIAS_FACTORY = """\
import torch
from torch import nn


def build():
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3)
    )
"""

FRESH = """\
import sys
import torch
from neuronshapley.applications.repair import load_repaired

torch.set_num_threads(1)
x = torch.load(sys.argv[1], weights_only=True)
outputs = []
for path in sys.argv[3:]:
    model = load_repaired(path)
    hooks = [m for m in model.modules() if m._forward_hooks or m._forward_pre_hooks]
    assert not hooks, hooks
    with torch.inference_mode():
        outputs.append(model(x[path]))
torch.save(outputs, sys.argv[2])
"""


def test_save_and_load_in_a_fresh_process(tmp_path: Path) -> None:
    factory = tmp_path / "factory.py"
    factory.write_text(NO_BIAS_FACTORY)
    cases = [
        ("cnn", "mean", fitted("cnn"), f"{MODELS_FILE}:TinyCNN"),  # wrapped
        ("mlp", "channel_mean", fitted("mlp"), f"{MODELS_FILE}:TinyMLP"),  # folded
        (
            "cnn",
            "zero",
            load_factory(f"{factory}:build", "model"),
            f"{factory}:build",
        ),  # folded into a new bias
    ]
    inputs, expected, files = {}, [], []
    for number, (kind, ablation, model, spec) in enumerate(cases):
        units = "0" if spec.endswith(":build") else None
        game = make_game(kind, ablation, model, units=units)
        removed = ["0:1", "0:3"] if units else REMOVE[kind]
        repaired = repair(game, removed)
        path = str(tmp_path / f"repaired{number}.pt")
        save_repaired(repaired, path, recipe={"model": spec, "removed": removed})
        inputs[path] = game.data.x
        with torch.inference_mode():
            expected.append(repaired(game.data.x))
        files.append(path)
    spec = torch.load(files[2], weights_only=True)["spec"]
    assert spec["added_biases"] == ["0"] and spec["wrapped"] == []
    assert torch.load(files[0], weights_only=True)["spec"]["wrapped"][0]["path"] == "conv1"

    torch.save(inputs, tmp_path / "inputs.pt")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH,
            str(tmp_path / "inputs.pt"),
            str(tmp_path / "out.pt"),
            *files,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for got, want in zip(torch.load(tmp_path / "out.pt", weights_only=True), expected, strict=True):
        assert torch.equal(got, want)


def test_load_rejects_other_files(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a repaired model"):
        load_repaired(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="'model' entry"):
        save_repaired(nn.Linear(2, 2), tmp_path / "x.pt", recipe={})


@pytest.mark.slow
def test_bundled_model_repair_round_trip(tmp_path: Path) -> None:
    from neuronshapley import zoo

    model, bundle = zoo.load("digits-cnn")
    game = NeuronGame(model, "conv3", data=bundle.test, reference=bundle.reference, ablation="mean")
    rng = np.random.default_rng(0)
    result = result_of({name: float(rng.normal()) for name in game.player_names})
    removed = select_units(result, "top:10")
    repaired = repair(game, removed)
    assert isinstance(repaired.conv3, Ablated)
    path = tmp_path / "digits.pt"
    save_repaired(repaired, path, recipe={"model": "digits-cnn", "removed": removed})
    torch.save({str(path): bundle.test.x}, tmp_path / "inputs.pt")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH,
            str(tmp_path / "inputs.pt"),
            str(tmp_path / "out.pt"),
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (logits,) = torch.load(tmp_path / "out.pt", weights_only=True)
    accuracy = float((logits.argmax(1) == bundle.test.y).double().mean())
    assert accuracy == game.value_without(removed)
