"""``neuronshapley data``: the values it writes equal the library's, the lowest-valued points and
the detection scores it prints, and bad input refused in one line (exit 2)."""

import csv
import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from neuronshapley.cli.main import main
from neuronshapley.data import data_oob, knn_shapley
from neuronshapley.data.detection import f1_at_count, flip_labels
from neuronshapley.results.result import ShapleyResult
from neuronshapley.zoo.datasets import adult
from tests.browser import browser_or_skip, check_page

KNN = ["data", "--method", "knn", "--n-train", "120", "--n-test", "80", "--noise", "0.1"]


def test_knn_values_equal_the_library_call_and_the_flags_are_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "knn"
    assert main([*KNN, "--seed", "3", "--show", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "data.json",
        "manifest.json",
        "report.html",
        "result.json",
        "result.npz",
        "values.csv",
    ]
    rows = list(csv.DictReader((out / "values.csv").read_text().splitlines()))
    assert len(rows) == 120 and [int(r["rank"]) for r in rows] == list(range(1, 121))
    # The same subsets and flips by hand (the workflow's documented recipe, seed 3).
    bundle = adult()
    rng = np.random.default_rng(3)
    train = np.sort(rng.choice(len(bundle.train.x), size=120, replace=False))
    test = np.sort(rng.choice(len(bundle.test.x), size=80, replace=False))
    labels, flipped = flip_labels(bundle.train.y.numpy()[train], 0.1, seed=3, n_classes=2)
    expected = knn_shapley(
        bundle.train.x.numpy()[train].astype(np.float64),
        labels,
        bundle.test.x.numpy()[test].astype(np.float64),
        bundle.test.y.numpy()[test],
        k=10,
    ).values
    written = np.empty(120)
    written[[int(r["point"]) for r in rows]] = [float(r["value"]) for r in rows]
    assert np.array_equal(written, expected)
    assert np.array_equal(ShapleyResult.load(out).values, expected)
    assert {int(r["train_index"]) for r in rows} == set(train.tolist())
    assert sum(int(r["flipped"]) for r in rows) == len(flipped) == 12
    record = json.loads((out / "data.json").read_text())
    assert record["scores"]["f1"] == pytest.approx(f1_at_count(expected, flipped))
    assert "Lowest-valued training points (knn)" in printed
    assert "sampling" not in printed  # no progress bar: knn reports none
    assert f"F1 {record['scores']['f1']:.3f} (as many as flipped)" in printed
    lowest = int(rows[0]["point"])
    assert f"     1  {lowest:>5}" in printed
    # Again without --overwrite: refused; with it: replaced.
    assert main([*KNN, "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*KNN, "--out", str(out), "--overwrite"]) == 0


def test_leave_one_out_without_noise_prints_no_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["data", "--method", "loo", "--n-train", "30", "--n-test", "50", "--show", "2"]
    assert main([*args, "--out", str(tmp_path / "loo")]) == 0
    printed = capsys.readouterr().out
    assert "Flagging" not in printed and "(31 fits" in printed
    record = json.loads((tmp_path / "loo" / "data.json").read_text())
    assert record["fits"] == 31 and record["scores"] == {}


def test_oob_values_equal_the_library_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "oob"
    args = ["data", "--method", "oob", "--n-train", "60", "--n-test", "20", "--noise", "0.1"]
    assert main([*args, "--models", "40", "--seed", "2", "--out", str(out)]) == 0
    assert "Lowest-valued training points (oob)" in capsys.readouterr().out
    bundle = adult()
    rng = np.random.default_rng(2)
    train = np.sort(rng.choice(len(bundle.train.x), size=60, replace=False))
    labels, flipped = flip_labels(bundle.train.y.numpy()[train], 0.1, seed=2, n_classes=2)
    expected = data_oob(
        bundle.train.x.numpy()[train].astype(np.float64),
        labels,
        fit=LogisticRegression(C=1.0, solver="liblinear"),
        n_models=40,
        seed=2,
    )
    rows = list(csv.DictReader((out / "values.csv").read_text().splitlines()))
    written = np.empty(60)
    written[[int(r["point"]) for r in rows]] = [float(r["value"]) for r in rows]
    assert np.array_equal(written, expected.values)
    record = json.loads((out / "data.json").read_text())
    assert record["fits"] == expected.n_evaluations
    assert record["method_params"]["n_models"] == 40
    assert record["scores"]["f1"] == pytest.approx(f1_at_count(expected.values, flipped))


def test_influence_values_are_saved_as_a_result_that_show_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "influence"
    # --model adult-logreg: the name for the default, --dataset adult.
    args = ["data", "--model", "adult-logreg", "--method", "influence", "--n-train", "40"]
    args += ["--n-test", "30"]
    assert main([*args, "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "values.csv").read_text().splitlines()))
    assert json.loads((out / "data.json").read_text())["dataset"] == "adult"
    saved = ShapleyResult.load(out)
    assert saved.estimator == "influence" and saved.n_players == 40
    assert [saved.player_names[int(r["point"])] for r in rows[:3]] == [
        f"train:{r['point']}" for r in rows[:3]
    ]
    written = np.empty(40)
    written[[int(r["point"]) for r in rows]] = [float(r["value"]) for r in rows]
    # values.csv holds repr(float): the same numbers, bit for bit.
    assert np.array_equal(saved.values, written)
    capsys.readouterr()
    assert main(["show", str(out), "--top", "2"]) == 0
    printed = capsys.readouterr().out
    best = int(np.argmax(written))
    assert "Top 2 (of 40 players)" in printed and f"train:{best}" in printed


def test_report_shows_values_scores_and_removal_curves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "loo"
    args = ["data", "--method", "loo", "--n-train", "40", "--n-test", "60", "--noise", "0.2"]
    assert main([*args, "--out", str(out)]) == 0
    assert f"Report: {out / 'report.html'}" in capsys.readouterr().out
    record = json.loads((out / "data.json").read_text())
    curve = record["removal"]
    assert curve["counts"] == [0, 4, 8, 12, 16, 20] and len(curve["random"]) == 3
    # Nothing removed: every curve starts at the accuracy of the model fitted on all 40.
    starts = {curve["lowest_first"][0], curve["highest_first"][0], *(r[0] for r in curve["random"])}
    assert len(starts) == 1
    page = (out / "report.html").read_text()
    for heading in ("Values", "Lowest-valued training points", "Noisy-label detection"):
        assert f"<h2>{heading}</h2>" in page
    assert "<h2>Point removal</h2>" in page and page.count("data:image/png;base64,") == 2
    assert f"F1 {record['scores']['f1']:.3f}" in page
    lowest = next(iter(csv.DictReader((out / "values.csv").read_text().splitlines())))
    assert f'<td class="num">{lowest["train_index"]}</td>' in page
    # --overwrite with another method replaces every file of ours, the page too.
    assert main([*args, "--method", "knn", "--out", str(out), "--overwrite"]) == 0
    assert "Data valuation: adult, knn" in (out / "report.html").read_text()


def test_report_renders_in_a_browser(tmp_path: Path) -> None:
    browser_or_skip()
    out = tmp_path / "knn"
    args = ["data", "--method", "knn", "--n-train", "40", "--n-test", "30", "--noise", "0.2"]
    assert main([*args, "--out", str(out)]) == 0
    check = check_page(out / "report.html", tmp_path / "page.png", expected_images=2)
    assert not check.problems, check.problems
    assert check.headings[0] == "Data valuation: adult, knn"
    assert "Point removal" in check.headings


def walked(method: str) -> list[str]:
    """A ``data`` call of a sampling method (tmc, beta: 6 walks; banzhaf: 60 coalitions) on
    20 points."""
    size = ["--samples", "60"] if method == "banzhaf" else ["--permutations", "6"]
    return ["data", "--method", method, "--n-train", "20", "--n-test", "40", *size]


def _values(out: Path) -> np.ndarray:
    return ShapleyResult.load(out).values


@pytest.mark.parametrize("method", ["tmc", "beta", "banzhaf"])
def test_tmc_beta_and_banzhaf_show_progress_and_resume_a_budget_cut_to_the_uninterrupted_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    TMC = walked(method)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main([*TMC, "--seed", "1", "--out", str(whole)]) == 0
    printed = capsys.readouterr().out
    assert "sampling" in printed and " evals, " in printed and "top: train:" in printed
    complete = "n_samples" if method == "banzhaf" else "n_permutations"
    assert json.loads((whole / "data.json").read_text())["stop_reason"] == complete
    # 30 coalitions: one of the 6 walks of 20 points is cut (a tmc walk costs up to 20, a
    # Beta(16, 1) walk with its tail of 1e-3 the coalitions of up to 10 points), or half of
    # banzhaf's 60 coalitions are drawn.
    assert main([*TMC, "--seed", "1", "--budget", "30", "--no-progress", "--out", str(cut)]) == 0
    printed = capsys.readouterr().out
    assert "sampling" not in printed
    goal = "--samples were drawn" if method == "banzhaf" else "--permutations were walked"
    assert f"Stopped on max_evaluations (evaluation budget spent) before the {goal}" in (printed)
    record = json.loads((cut / "data.json").read_text())
    assert record["status"] == "complete" and record["stop_reason"] == "max_evaluations"
    saved = "coalitions.npz" if method == "banzhaf" else "checkpoint.npz"
    assert (cut / "checkpoint" / saved).is_file()
    assert not np.array_equal(_values(cut), _values(whole))
    # Not continued by accident: a budget-cut valuation asks for --resume or --overwrite.
    assert main([*TMC, "--seed", "1", "--out", str(cut)]) == 2
    assert "pass --resume to continue it or --overwrite" in capsys.readouterr().err
    assert main([*TMC, "--seed", "2", "--resume", "--out", str(cut)]) == 2
    assert "other settings (seed 1, not 2)" in capsys.readouterr().err
    assert main([*TMC, "--seed", "1", "--resume", "--no-progress", "--out", str(cut)]) == 0
    assert "Stopped on" not in capsys.readouterr().out
    # The walks cut short are walked again: the very values of the uninterrupted valuation.
    assert np.array_equal(_values(cut), _values(whole))
    resumed = json.loads((cut / "data.json").read_text())
    assert resumed["status"] == "complete" and resumed["stop_reason"] == complete
    assert resumed["fits"] > record["fits"]
    assert (cut / "values.csv").read_text() == (whole / "values.csv").read_text()
    # Replaced by a method that keeps no checkpoint: the old one goes with its folder.
    knn = ["data", "--method", "knn", "--n-train", "20", "--n-test", "40", "--overwrite"]
    assert main([*knn, "--out", str(cut)]) == 0
    assert not (cut / "checkpoint").exists()


@pytest.mark.parametrize("method", ["tmc", "beta"])
def test_ctrl_c_leaves_a_valuation_that_resumes_to_the_uninterrupted_values(
    tmp_path: Path, method: str
) -> None:
    from neuronshapley.workflows.data import DataOptions, value_training_data

    settings = {"dataset": "adult", "method": method, "n_train": 20, "n_test": 40}
    whole = value_training_data(DataOptions(**settings, permutations=6, out=tmp_path / "whole"))
    calls: list[int] = []

    def ctrl_c_on_the_third_walk(progress: Any) -> None:
        calls.append(progress.n_permutations)
        if len(calls) == 3:
            raise KeyboardInterrupt

    out = tmp_path / "cut"
    cut = value_training_data(
        DataOptions(**settings, permutations=6, out=out), progress=ctrl_c_on_the_third_walk
    )
    assert calls == [1, 2, 3]  # one report per walk (each walk its own task)
    assert cut.status == "interrupted" and cut.result is not None
    assert cut.result.stop_reason == "interrupted"
    assert json.loads((out / "data.json").read_text())["status"] == "interrupted"
    assert not np.array_equal(cut.values, whole.values)
    calls.clear()
    done = value_training_data(
        DataOptions(**settings, permutations=6, out=out, resume=True), progress=calls.append
    )
    assert [c.n_permutations for c in calls] == [4, 5, 6]  # walks 1-3 come from the checkpoint
    assert done.status == "complete"
    assert np.array_equal(done.values, whole.values)


DATAMODELS = [
    "data",
    "--method",
    "datamodels",
    "--n-train",
    "60",
    "--n-test",
    "30",
    "--no-progress",
]


def test_datamodels_values_lds_and_resume_from_the_saved_subsets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module (its name is also the function's, which the package exports).
    module = importlib.import_module("neuronshapley.data.datamodels")

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main([*DATAMODELS, "--models", "100", "--seed", "4", "--out", str(whole)]) == 0
    printed = capsys.readouterr().out
    assert "datamodels/ (4 files)" in printed  # 2 blocks of 50 models, 2 of held-out ones
    bundle = adult()
    rng = np.random.default_rng(4)
    train = np.sort(rng.choice(len(bundle.train.x), size=60, replace=False))
    test = np.sort(rng.choice(len(bundle.test.x), size=30, replace=False))
    expected = module.datamodels(
        bundle.train.x.numpy()[train].astype(np.float64),
        bundle.train.y.numpy()[train],
        bundle.test.x.numpy()[test].astype(np.float64),
        bundle.test.y.numpy()[test],
        fit=LogisticRegression(C=1.0, solver="liblinear"),
        n_models=100,
        seed=4,
    )
    assert np.array_equal(_values(whole), expected.weights.mean(axis=0))
    record = json.loads((whole / "data.json").read_text())
    assert record["method_params"]["lds"] == pytest.approx(expected.lds)
    assert record["fits"] == 200
    assert "Linear datamodeling score" in (whole / "report.html").read_text()
    # Ctrl-C in the second block of models: the first block stays, --resume trains the rest.
    real_fit, fits = module._fit_one, []

    def ctrl_c_at_model_60(*args: Any) -> Any:
        fits.append(args[3])
        if len(fits) == 61:
            raise KeyboardInterrupt
        return real_fit(*args)

    monkeypatch.setattr(module, "_fit_one", ctrl_c_at_model_60)
    assert main([*DATAMODELS, "--models", "100", "--seed", "4", "--out", str(cut)]) == 130
    captured = capsys.readouterr()
    assert f"continue with --resume --out {cut}" in captured.out
    assert json.loads((cut / "data.json").read_text())["status"] == "interrupted"
    assert [p.name for p in (cut / "datamodels").iterdir()] == ["train_0000000_0000050.npz"]
    fits.clear()
    monkeypatch.setattr(module, "_fit_one", lambda *args: fits.append(args[3]) or real_fit(*args))
    assert main([*DATAMODELS, "--models", "100", "--seed", "4", "--resume", "--out", str(cut)]) == 0
    assert fits == [*range(50, 100), *range(100)]  # models 50-99, then the 100 held-out ones
    assert np.array_equal(_values(cut), _values(whole))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "shapley"], "--method must be one of tmc, beta, banzhaf, loo, knn"),
        (["--method", "knn", "--dataset", "mnist"], "--dataset must be one of adult, digits"),
        (["--method", "knn", "--noise", "0.7"], r"--noise must be a share in [0, 0.5]"),
        (["--method", "knn", "--n-train", "99999"], "--n-train must be in [2, 24130] for adult"),
        (["--method", "knn", "--n-train", "5", "--k", "6"], "--k must be at most --n-train (5)"),
        (
            ["--method", "oob", "--n-train", "30", "--models", "2"],
            "--models: The 'n_models' parameter of data_oob is too small",
        ),
        (
            ["--method", "loo", "--budget", "9"],
            "--budget applies to --method tmc, beta or banzhaf only",
        ),
        (
            ["--method", "oob", "--resume"],
            "--resume applies to --method tmc, beta, banzhaf or datamodels only",
        ),
        (["--method", "knn", "--model", "adult"], "--model must be one of adult-logreg, digits"),
        (
            ["--method", "knn", "--model", "digits-logreg", "--dataset", "adult"],
            "--model digits-logreg is the digits dataset; it contradicts --dataset adult",
        ),
        (["--method", "datamodels", "--models", "1"], "--models must be at least 2 for datamodels"),
        (
            ["--method", "datamodels", "--n-train", "6", "--models", "10"],
            "--n-train 6 is too small for datamodels: its subset 0 (3 of the 6 points) holds no",
        ),
        (["--method", "tmc", "--resume"], "holds no valuation to continue (no data.json)"),
        (
            ["--method", "tmc", "--resume", "--overwrite"],
            "--resume continues the valuation in --out and --overwrite replaces it; pass one.",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "never"
    assert main(["data", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("neuronshapley data: error:")
    assert message in err
    assert not out.exists()
