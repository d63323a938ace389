"""``neuronshapley run`` / ``show`` on a user's own model and data files (no bundled model)."""

import csv
import json
import re
from pathlib import Path

import pytest
import torch

from neuronshapley.cli import main

FACTORY = """
from pathlib import Path

import torch
from torch import nn


def model():
    generator = torch.Generator().manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return net


def data():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(240, 1, 6, 6, generator=generator)
    with torch.no_grad():
        logits = model()(x)
    # Labels from the model plus noise, so accuracy is high but not perfect.
    y = (logits + 2.0 * torch.randn(logits.shape, generator=generator)).argmax(1)
    return {"data": (x[:120], y[:120]), "reference": x[120:]}


def broken():
    raise RuntimeError("no weights here")


class CtrlC(nn.Module):
    # Wraps the model; its 12th forward raises KeyboardInterrupt, as Ctrl-C would, once: a
    # marker file next to this one records that it happened.

    def __init__(self):
        super().__init__()
        self.net = model()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        marker = Path(__file__).with_name("interrupted-once")
        if self.calls == 12 and not marker.exists():
            marker.write_text("")
            raise KeyboardInterrupt
        return self.net(x)


def interrupted():
    return CtrlC()
"""


@pytest.fixture
def factory(tmp_path: Path) -> Path:
    path = tmp_path / "mine.py"
    path.write_text(FACTORY)
    return path


def _run(factory: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "run",
            "--model",
            f"{factory}:model",
            "--data",
            f"{factory}:data",
            "--k",
            "3",
            "--budget",
            "1500",
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ]
    )


def test_run_writes_every_output_and_show_prints_it(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _run(factory, out) == 0
    printed = capsys.readouterr().out
    assert "accuracy without the top 3 units" in printed
    for name in (
        "run.json",
        "result.json",
        "result.npz",
        "values.csv",
        "report.html",
        "value_histogram.png",
        "values_by_layer.png",
        "top_units_by_layer.png",
        "removal_curve.png",
    ):
        assert (out / name).is_file(), name
    with open(out / "values.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 14  # 6 + 8 filters
    assert set(rows[0]) == {"unit", "layer", "value", "stderr", "ci_low", "ci_high", "samples"}
    assert {row["layer"] for row in rows} == {"0", "2"}
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete"
    assert record["n_evaluations"] <= 1500
    assert 0.0 <= record["without_top_k"] <= 1.0
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "Top 3 units" in shown
    assert record["top_units"][0] in shown


def test_out_holding_another_run_is_refused(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _run(factory, out) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    capsys.readouterr()
    assert _run(factory, out, "--seed", "5") == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    after = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    assert after == before  # nothing touched
    assert _run(factory, out, "--seed", "5", "--overwrite") == 0
    assert json.loads((out / "run.json").read_text())["config"]["seed"] == 5


def test_out_that_is_not_a_run_is_refused(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert _run(factory, out, "--overwrite") == 2
    assert "is not a neuronshapley run" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_resume_continues_and_refuses_other_settings(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _run(factory, out, "--budget", "300") == 0
    first = json.loads((out / "run.json").read_text())
    assert first["stop_reason"] == "max_evaluations"
    assert _run(factory, out, "--budget", "1500", "--resume") == 0
    resumed = json.loads((out / "run.json").read_text())
    assert resumed["n_evaluations"] > first["n_evaluations"]
    capsys.readouterr()
    assert _run(factory, out, "--resume", "--k", "4") == 2
    assert "made with other settings (k: 3 then 4)" in capsys.readouterr().err


@pytest.mark.parametrize("side", ["bottom", "both"])
def test_side_chooses_the_units_tmab_separates(
    factory: Path, tmp_path: Path, side: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _run(factory, out, "--budget", "300", "--side", side) == 0
    printed = capsys.readouterr().out
    words = {"bottom": "bottom 3", "both": "top and bottom 3"}[side]
    assert f"(TMAB, {words})" in printed and f"in or out of the {words}" in printed
    # The units it separated are listed: the bottom 3, and the top 3 for both.
    assert "Bottom 3 units (of 14):" in printed
    assert ("Top 3 units (of 14):" in printed) == (side == "both")
    assert f"warning: --side {side} with truncation" in printed
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["identity"]["side"] == side
    assert json.loads((out / "result.json").read_text())["params"]["side"] == side
    # The side identifies the run: a resume with another is refused.
    assert _run(factory, out, "--resume", "--budget", "600") == 2


def test_corrupt_checkpoint_on_resume(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _run(factory, out, "--budget", "300") == 0
    (out / "checkpoint" / "checkpoint.npz").write_bytes(b"not a zip")
    capsys.readouterr()
    assert _run(factory, out, "--resume") == 2
    assert "cannot continue from" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model", "nope.py:model"], r"the file \S*nope.py does not exist"),
        (["--model", "digits-cnnn"], r"neither a bundled model"),
        (["--units", "conv*"], r"matches no ablatable module"),
        (["--units", "1"], r"is a ReLU, whose units cannot be ablated"),
        (["--metric", "precision"], r"must be one of accuracy"),
        (["--k", "14"], r"--k 14 must be smaller than the number of units \(14\)"),
        (["--delta", "1.5"], r"argument --delta: must be a number in \(0, 1\)"),
        (["--memory-budget", "0"], r"argument --memory-budget: must be an int >= 1"),
        (["--memory-budget", "100000000"], r"--memory-budget must be at most the memory available"),
    ],
)
def test_bad_arguments(
    factory: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    base = ["run", "--data", f"{factory}:data", "--out", str(tmp_path / "run"), "--no-progress"]
    if "--model" not in arguments:
        base += ["--model", f"{factory}:model"]
    assert main([*base, *arguments]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def test_model_factory_that_raises(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["run", "--model", f"{factory}:broken", "--out", str(tmp_path / "r")]
    assert main(arguments) == 2
    assert "raised RuntimeError: no weights here" in capsys.readouterr().err


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["--help"], ["run", "--help"], ["demo", "--help"], ["show", "--help"]):
        assert main(command) == 0
    printed = capsys.readouterr().out
    for option in ("--model", "--units", "--ablation", "--delta", "--tol", "--budget", "--resume"):
        assert option in printed


def test_ctrl_c_writes_outputs_and_resume_finishes(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    arguments = ["--units", "net.0,net.2"]
    assert (
        main(
            [
                "run",
                "--model",
                f"{factory}:interrupted",
                "--data",
                f"{factory}:data",
                "--k",
                "3",
                "--budget",
                "1500",
                "--out",
                str(out),
                "--no-progress",
                *arguments,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert "continue with --resume" in printed
    assert (out / "values.csv").is_file()
    assert (out / "checkpoint" / "checkpoint.npz").is_file()
    assert (
        main(
            [
                "run",
                "--model",
                f"{factory}:interrupted",
                "--data",
                f"{factory}:data",
                "--k",
                "3",
                "--budget",
                "1500",
                "--out",
                str(out),
                "--no-progress",
                "--resume",
                *arguments,
            ]
        )
        == 0
    )
    resumed = json.loads((out / "run.json").read_text())
    assert resumed["status"] == "complete"
    assert resumed["n_evaluations"] > record["n_evaluations"]


def test_repair_writes_a_model_that_reloads_with_the_ablated_metric(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuronshapley.applications.repair import load_repaired
    from neuronshapley.workflows.runs import game_from_run

    out = tmp_path / "run"
    assert _run(factory, out, "--budget", "400") == 0
    capsys.readouterr()
    assert main(["repair", "--run", str(out), "--remove", "top:2"]) == 0
    printed = capsys.readouterr().out
    assert "Removed 2 units" in printed
    model = load_repaired(out / "repaired.pt")
    game, result, _ = game_from_run(out)
    removed = [row.name for row in result.top(2)]
    with torch.inference_mode():
        predictions = model(game.data.x).argmax(1)
    accuracy = (predictions == game.data.y).double().mean().item()
    assert accuracy == game.value_without(removed)
    assert main(["repair", "--run", str(out), "--remove", "0:0,nope:1"]) == 2
    assert "nope:1" in capsys.readouterr().err


def test_unit_writes_its_plots(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _run(factory, out, "--budget", "200") == 0
    capsys.readouterr()
    assert main(["unit", "--run", str(out), "--unit", "2:3", "--k", "3"]) == 0
    assert "most active examples" in capsys.readouterr().out
    for name in ("extremes.png", "maximized.png"):
        assert (out / "units" / "2_3" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["unit", "--run", str(out), "--unit", "2:99"]) == 2
    assert main(["unit", "--run", str(tmp_path / "missing"), "--unit", "2:3"]) == 2
