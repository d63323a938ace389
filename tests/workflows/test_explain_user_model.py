"""``explain`` on a user's model (``file.py:function``) and data, with the mean and background
baselines: the values are those of the library on the same game, and bad input is named."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import neuronshapley as ns
from neuronshapley.features import FeatureGame
from neuronshapley.workflows.explain import ExplainOptions, explain
from neuronshapley.workflows.runs import RunError

MODEL = """
import torch
from torch import nn


def linear():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 3))


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def tanh():
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def data():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(10, 6, generator=generator)
    reference = torch.randn(40, 6, generator=generator) + 1.0
    return {"data": (x, torch.arange(10) % 3), "reference": reference}


def unlabelled():
    return {"data": torch.randn(4, 6)}
"""


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "user.py"
    path.write_text(MODEL)
    return path


def options(user_file: Path, out: Path, model: str = "mlp", **kwargs: object) -> ExplainOptions:
    fields: dict = {
        "model": f"{user_file}:{model}",
        "data": f"{user_file}:data",
        "examples": "0-2",
        "methods": ("exact", "dasp"),
        "out": out,
    }
    return ExplainOptions(**(fields | kwargs))


def user_objects(user_file: Path) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    namespace: dict = {}
    exec(MODEL, namespace)
    data = namespace["data"]()
    return namespace["mlp"]().eval(), data["data"][0], data["reference"]


def test_a_user_model_and_data_with_the_mean_baseline(user_file: Path, tmp_path: Path) -> None:
    done = explain(options(user_file, tmp_path / "mean", baseline="mean"))
    model, x, reference = user_objects(user_file)
    arrays = np.load(tmp_path / "mean" / "attributions.npz")
    for row in range(3):
        game = FeatureGame(model, x[row], baseline=reference.mean(dim=0))
        truth = ns.exact_shapley(game).values  # float32 forwards: the mean rounds differently
        np.testing.assert_allclose(arrays["values_exact"][row], truth, rtol=0, atol=1e-6)
    assert list(arrays["labels"]) == [0, 1, 2] and done.examples == [0, 1, 2]
    record = json.loads((tmp_path / "mean" / "explain.json").read_text())
    assert record["baseline"] == "mean" and len(record["model_sha256"]) == 64
    assert "per-feature mean" in (tmp_path / "mean" / "report.html").read_text()


def test_dasp_equals_exact_with_a_background_set_on_a_linear_model(
    user_file: Path, tmp_path: Path
) -> None:
    """A background set of 5 rows: both average over the rows, and DASP is exact when linear."""
    explain(options(user_file, tmp_path / "bg", "linear", baseline="background", background=5))
    arrays = np.load(tmp_path / "bg" / "attributions.npz")
    np.testing.assert_allclose(arrays["values_dasp"], arrays["values_exact"], atol=1e-5)
    record = json.loads((tmp_path / "bg" / "explain.json").read_text())
    assert record["background"] == 5


def test_unlabelled_data_is_explained_with_label_minus_one(user_file: Path, tmp_path: Path) -> None:
    explain(options(user_file, tmp_path / "u", data=f"{user_file}:unlabelled", examples="0-1"))
    assert list(np.load(tmp_path / "u" / "attributions.npz")["labels"]) == [-1, -1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": None}, r"gave no data: return \(model, Bundle\) from it or pass --data"),
        (
            {"data": "{file}:unlabelled", "baseline": "mean"},
            r"--baseline mean needs reference inputs shaped like the examples \(n, 6\)",
        ),
        ({"model": "tanh"}, r"--method dasp on --model .*layer '1' of type Tanh"),
        ({"baseline": "median"}, r"--baseline must be one of zero, mean, background"),
        ({"data": "data.csv"}, r"--data must be 'path/to/file.py:function'"),
        ({"examples": "0-10"}, r"--examples .* which holds 10"),
    ],
)
def test_bad_user_input_is_named(
    user_file: Path, tmp_path: Path, change: dict, message: str
) -> None:
    change = {k: v.format(file=user_file) if isinstance(v, str) else v for k, v in change.items()}
    with pytest.raises(RunError, match=message):
        explain(options(user_file, tmp_path / "bad", **change))
