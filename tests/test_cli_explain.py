"""``neuronshapley explain``: the files it writes, and bad input refused in one line before any
work (exit 2)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from neuronshapley.cli.main import main

FAST = ["explain", "--model", "digits-cnn", "--examples", "0-1", "--method", "saliency,deeplift"]


def test_explain_writes_attributions_heat_maps_agreement_and_a_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "explain"
    assert main([*FAST, "--out", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "agreement.csv",
        "attributions.csv",
        "attributions.npz",
        "explain.json",
        "heatmaps.png",
        "manifest.json",
        "report.html",
    ]
    arrays = np.load(out / "attributions.npz")
    assert arrays["maps_saliency"].shape == (2, 1, 8, 8) == arrays["maps_deeplift"].shape
    assert arrays["values_deeplift"].shape == (2, 64)
    assert (out / "heatmaps.png").read_bytes().startswith(b"\x89PNG")
    lines = (out / "attributions.csv").read_text().splitlines()
    assert lines[0] == "example,label,target,method,player,value" and len(lines) == 1 + 2 * 2 * 64
    assert "saliency,deeplift" in (out / "agreement.csv").read_text()
    assert "Agreement between methods" in (out / "report.html").read_text()
    assert json.loads((out / "manifest.json").read_text())["files"].keys() >= {"heatmaps.png"}
    assert "Wrote" in capsys.readouterr().out
    # Again without --overwrite: refused; with it: replaced.
    assert main([*FAST, "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*FAST, "--out", str(out), "--overwrite"]) == 0


def test_exact_on_image_patches_is_efficient(tmp_path: Path) -> None:
    out = tmp_path / "exact"
    args = ["explain", "--model", "digits-cnn", "--examples", "3", "--method", "exact"]
    assert main([*args, "--patch", "4", "--out", str(out)]) == 0
    arrays = np.load(out / "attributions.npz")
    assert list(arrays["player_names"]) == ["patch(0,0)", "patch(0,1)", "patch(1,0)", "patch(1,1)"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--examples", "3-1"], r"--examples must be indices or ranges .* Got '3-1'"),
        (["--examples", "0-5000"], r"--examples .* which holds 360"),
        (["--method", "gradcam"], r"--method must be one or more of dasp, exact.*Got 'gradcam'"),
        (["--method", "exact"], r"allows at most 25 players; digits-cnn has 64 .* --patch N"),
        (["--model", "digits"], r"--model must be one of the bundled models"),
        (["--patch", "9"], r"--patch must be at most the image side 8"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: list[str], message: str
) -> None:
    options = dict(zip(FAST[1::2], FAST[2::2], strict=True)) | {change[0]: change[1]}
    args = ["explain", *[w for pair in options.items() for w in pair], "--out", str(tmp_path / "n")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("neuronshapley explain: error:")
    assert re.search(message, err), err
    assert not (tmp_path / "n").exists()


def test_a_foreign_non_empty_out_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main([*FAST, "--out", str(tmp_path), "--overwrite"]) == 2
    assert "holds no explanation" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


USER = """
import torch
from torch import nn


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def data():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(5, 6, generator=generator)
    return {"data": (x, torch.arange(5) % 3), "reference": torch.randn(20, 6, generator=generator)}
"""


def test_a_user_model_and_data_with_a_background_set(tmp_path: Path) -> None:
    user = tmp_path / "user.py"
    user.write_text(USER)
    out = tmp_path / "user"
    args = ["explain", "--model", f"{user}:mlp", "--data", f"{user}:data", "--examples", "0-1"]
    args += ["--method", "exact,dasp", "--baseline", "background", "--background", "3"]
    assert main([*args, "--out", str(out)]) == 0
    record = json.loads((out / "explain.json").read_text())
    assert record["baseline"] == "background" and record["background"] == 3
    assert record["data"] == f"{user}:data"
    assert np.load(out / "attributions.npz")["values_exact"].shape == (2, 6)


def test_a_user_model_without_data_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = tmp_path / "user.py"
    user.write_text(USER)
    args = ["explain", "--model", f"{user}:mlp", "--out", str(tmp_path / "n")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gave no data" in err
