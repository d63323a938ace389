"""The ``neuronshapley`` command, run in-process on small games."""

import csv
import re
from pathlib import Path

import pytest

import neuronshapley as ns
from neuronshapley.cli import main

SMALL = ["synthetic", "--players", "200", "--k", "5"]


def test_demo_prints_the_table_precision_and_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(SMALL) == 0
    out = capsys.readouterr().out
    assert "rank  player  estimate  95% interval" in out
    assert "in true top-5" in out
    assert "Precision of the top-5: 5/5 = 1.00" in out
    assert "Stop reason: separated" in out
    assert "Evaluation ratio TMAB / plain:" in out
    # header, five rows, the rest: compact enough to read at a glance
    assert len(out.splitlines()) < 40


def test_demo_without_compare_skips_plain_monte_carlo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL, "--no-compare"]) == 0
    out = capsys.readouterr().out
    assert "Precision of the top-5" in out
    assert "Plain Monte Carlo" not in out


def test_demo_is_reproducible(capsys: pytest.CaptureFixture[str]) -> None:
    def table() -> list[str]:
        assert main([*SMALL, "--no-compare", "--seed", "3"]) == 0
        lines = capsys.readouterr().out.splitlines()
        return [line for line in lines if not line.startswith("Elapsed")]

    assert table() == table()


def test_demo_out_is_readable_by_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "run"
    assert main([*SMALL, "--no-compare", "--out", str(out_dir)]) == 0
    assert f"Saved the TMAB result to {out_dir}" in capsys.readouterr().out
    assert (out_dir / "result.json").is_file()
    assert (out_dir / "result.npz").is_file()
    saved = ns.ShapleyResult.load(out_dir)
    assert saved.estimator == "tmab_shapley"
    assert saved.n_players == 200

    table = tmp_path / "values.csv"
    assert main(["show", str(out_dir), "--top", "3", "--bottom", "2", "--csv", str(table)]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("ShapleyResult(tmab_shapley, 200 players")
    assert "Top 3 (of 200 players):" in shown
    assert "Bottom 2 (of 200 players):" in shown
    assert saved.top(1)[0].name in shown
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 200
    assert list(rows[0]) == ["player", "value", "stderr", "ci_low", "ci_high", "n_samples"]
    assert float(rows[0]["value"]) == pytest.approx(saved.values[0])


def test_show_without_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ns.exact_shapley(ns.games.dataset_pricing_game()).save(tmp_path)
    assert main(["show", str(tmp_path), "--top", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ShapleyResult(exact_shapley, 3 players")
    assert "Top" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["synthetic", "--players", "10", "--k", "6"], r"--players must be at least --k \+ 5 = 11"),
        (["synthetic", "--k", "0"], r"argument --k: must be an int >= 1\. Got 0"),
        (
            ["synthetic", "--players", "many"],
            r"argument --players: must be an int >= 1\. Got 'many'",
        ),
        (["synthetic", "--seed", "-1"], r"argument --seed: must be an int >= 0\. Got -1"),
        (["show", "x", "--top", "-2"], r"argument --top: must be an int >= 0\. Got -2"),
        (["synthetic", "--unknown"], r"unrecognized arguments: --unknown"),
        (["bogus"], r"invalid choice: 'bogus'"),
        (
            [],
            r"choose a command: run, demo, show, study, explain, data, repair, unit or synthetic",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("neuronshapley")
    assert "Traceback" not in captured.err
    assert re.search(message, lines[0]), lines[0]


def test_show_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert main(["show", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"{missing} does not exist" in err


def test_show_directory_without_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "is not a saved ShapleyResult" in err


def test_show_corrupt_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "result.json").write_text("{not json")
    (tmp_path / "result.npz").write_bytes(b"not a zip")
    assert main(["show", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_demo_out_must_not_be_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file.txt"
    target.write_text("")
    assert main([*SMALL, "--out", str(target)]) == 2
    captured = capsys.readouterr()
    assert "--out must be a directory" in captured.err
    assert captured.out == ""  # refused before running anything


def test_show_csv_unwritable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ns.exact_shapley(ns.games.dataset_pricing_game()).save(tmp_path / "run")
    bad = tmp_path / "no" / "such" / "dir" / "out.csv"
    assert main(["show", str(tmp_path / "run"), "--csv", str(bad)]) == 2
    assert "cannot write --csv" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synthetic", "--help"]) == 0
    assert "--no-compare" in capsys.readouterr().out
