"""``neuronshapley data --data file.py:function --model file.py:function``: the user's points
and learner valued as the library values them, the specs and their files' SHA-256 recorded,
a resumed valuation refusing a changed file, and bad specs or arrays refused in one line
(exit 2) with nothing written."""

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from neuronshapley.cli.main import main
from neuronshapley.data import DataGame, data_oob, knn_shapley, leave_one_out_values
from neuronshapley.results.result import ShapleyResult

# The user's file: 20 training and 30 test points of scikit-learn's bundled breast-cancer set
# (no download), standardised, and learners of both kinds DataGame takes; then bad ones.
SPECS = '''
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression


def split():
    x, y = load_breast_cancer(return_X_y=True)
    rows = np.random.default_rng(0).permutation(len(x))[:50]
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x[rows[:20]], y[rows[:20]], x[rows[20:]], y[rows[20:]]


def as_dict():
    x_train, y_train, x_test, y_test = split()
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def tensors():
    import torch

    return tuple(torch.tensor(array) for array in split())


def regression():
    return LogisticRegression(C=0.5, solver="liblinear")


def centroid():
    """fit(x, y) -> predict: the nearest class mean."""

    def fit(x, y):
        classes = np.unique(y)
        centres = np.stack([x[y == c].mean(axis=0) for c in classes])

        def predict(x_new):
            distances = ((x_new[:, None, :] - centres[None]) ** 2).sum(axis=-1)
            return classes[np.argmin(distances, axis=1)]

        return predict

    return fit


def three():
    return split()[:3]


def no_test_labels():
    d = as_dict()
    del d["y_test"]
    return d


def other_features():
    x_train, y_train, x_test, y_test = split()
    return x_train, y_train, x_test[:, :29], y_test


def column_labels():
    x_train, y_train, x_test, y_test = split()
    return x_train, y_train[:, None], x_test, y_test


def float_labels():
    x_train, y_train, x_test, y_test = split()
    return x_train, y_train + 0.5, x_test, y_test


def one_point():
    x_train, y_train, x_test, y_test = split()
    return x_train[:1], y_train[:1], x_test, y_test


def nan_feature():
    x_train, y_train, x_test, y_test = split()
    x_train[3, 7] = np.nan
    return x_train, y_train, x_test, y_test


def short_labels():
    x_train, y_train, x_test, y_test = split()
    return x_train, y_train[:19], x_test, y_test


def one_class():
    x_train, y_train, x_test, y_test = split()
    return x_train, np.zeros_like(y_train), x_test, y_test


def negative_label():
    x_train, y_train, x_test, y_test = split()
    return x_train, y_train - 1, x_test, y_test


def flat():
    x_train, y_train, x_test, y_test = split()
    return x_train[:, 0], y_train, x_test[:, 0], y_test


def number():
    return 3


def the_class():
    return LogisticRegression


def failing():
    def fit(x, y):
        raise ValueError("boom")

    return fit


def two_columns():
    def fit(x, y):
        return lambda x_new: np.zeros((len(x_new), 2))

    return fit


def all_or_nothing():
    """Fits the 20 points, fails on any fewer (as leave-one-out asks)."""
    inner = centroid()

    def fit(x, y):
        if len(x) < 20:
            raise ValueError("needs all 20 points")
        return inner(x, y)

    return fit


def broken():
    raise RuntimeError("cannot open the database")


def skipped_class():
    """Two classes named 0 and 2 (no class 1)."""
    x_train, y_train, x_test, y_test = split()
    return x_train, 2 * y_train, x_test, 2 * y_test


def bfloat16():
    import torch

    x_train, y_train, x_test, y_test = split()
    features = [torch.tensor(x).to(torch.bfloat16) for x in (x_train, x_test)]
    return features[0], torch.tensor(y_train), features[1], torch.tensor(y_test)


def no_data():
    import torch

    x_train, y_train, x_test, y_test = split()
    return torch.empty(x_train.shape, device="meta"), y_train, x_test, y_test
'''


def _split() -> tuple[np.ndarray, ...]:
    """The same arrays as ``SPECS``' split(), for the library calls."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    rows = np.random.default_rng(0).permutation(len(x))[:50]
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x[rows[:20]], y[rows[:20]], x[rows[20:]], y[rows[20:]]


def _centroid(x: np.ndarray, y: np.ndarray) -> Any:
    classes = np.unique(y)
    centres = np.stack([x[y == c].mean(axis=0) for c in classes])
    return lambda x_new: classes[
        np.argmin(((x_new[:, None, :] - centres[None]) ** 2).sum(axis=-1), axis=1)
    ]


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    path = tmp_path / "specs.py"
    path.write_text(SPECS)
    return path


def _values(out: Path) -> np.ndarray:
    """values.csv's values in point order (it lists them lowest first)."""
    rows = list(csv.DictReader((out / "values.csv").read_text().splitlines()))
    values = np.empty(len(rows))
    values[[int(r["point"]) for r in rows]] = [float(r["value"]) for r in rows]
    return values


def test_user_points_with_the_bundled_learner_equal_the_library_call(
    specs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y, x_test, y_test = _split()
    out = tmp_path / "loo"
    # All the points when --n-train and --n-test are not given.
    assert main(["data", "--data", f"{specs}:split", "--method", "loo", "--out", str(out)]) == 0
    assert "valuing 20 specs.py:split points by loo" in capsys.readouterr().out
    game = DataGame(x, y, x_test, y_test, fit=LogisticRegression(C=1.0, solver="liblinear"))
    expected = leave_one_out_values(game).values
    assert np.array_equal(_values(out), expected)
    assert np.array_equal(ShapleyResult.load(out).values, expected)
    record = json.loads((out / "data.json").read_text())
    sha = hashlib.sha256(specs.read_bytes()).hexdigest()
    assert record["dataset"] is None and record["data"] == f"{specs.resolve()}:split"
    assert record["data_sha256"] == sha and record["model"] is None
    assert record["learner"] == "LogisticRegression(solver='liblinear')"
    assert (record["n_train"], record["n_test"]) == (20, 30)
    page = (out / "report.html").read_text()
    assert "Data valuation: specs.py:split, loo" in page and sha in page
    rows = list(csv.DictReader((out / "values.csv").read_text().splitlines()))
    assert sorted(int(r["train_index"]) for r in rows) == list(range(20))
    # A dict with the four keys is the same points; --n-train draws a subset as for a
    # bundled dataset (the workflow's recipe: the rows, then the test rows, from the seed).
    out = tmp_path / "knn"
    args = ["data", "--data", f"{specs}:as_dict", "--method", "knn", "--k", "3"]
    assert main([*args, "--n-train", "12", "--seed", "5", "--out", str(out)]) == 0
    rng = np.random.default_rng(5)
    rows_ = np.sort(rng.choice(20, size=12, replace=False))
    assert np.array_equal(np.sort(rng.choice(30, size=30, replace=False)), np.arange(30))
    expected = knn_shapley(x[rows_], y[rows_], x_test, y_test, k=3).values
    assert np.array_equal(_values(out), expected)
    written = list(csv.DictReader((out / "values.csv").read_text().splitlines()))
    assert sorted(int(r["train_index"]) for r in written) == rows_.tolist()
    # Torch tensors are the same points.
    out = tmp_path / "tensors"
    args = ["data", "--data", f"{specs}:tensors", "--method", "knn", "--k", "3"]
    assert main([*args, "--out", str(out)]) == 0
    assert np.array_equal(_values(out), knn_shapley(x, y, x_test, y_test, k=3).values)


def test_a_user_learner_of_either_kind_equals_the_library_call(
    specs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y, x_test, y_test = _split()
    data = ["data", "--data", f"{specs}:split"]
    # A callable fit(x, y) -> predict.
    out = tmp_path / "centroid"
    assert main([*data, "--model", f"{specs}:centroid", "--method", "loo", "--out", str(out)]) == 0
    expected = leave_one_out_values(DataGame(x, y, x_test, y_test, fit=_centroid)).values
    assert np.array_equal(_values(out), expected)
    record = json.loads((out / "data.json").read_text())
    assert record["model"] == f"{specs.resolve()}:centroid"
    assert record["model_sha256"] == hashlib.sha256(specs.read_bytes()).hexdigest()
    assert record["learner"] == "centroid.<locals>.fit"
    assert "(--model&#x27;s)" in (out / "report.html").read_text()
    # A scikit-learn classifier, cloned per model, under Data-OOB.
    out = tmp_path / "oob"
    args = ["--model", f"{specs}:regression", "--method", "oob", "--models", "30"]
    assert main([*data, *args, "--out", str(out)]) == 0
    expected = data_oob(x, y, fit=LogisticRegression(C=0.5, solver="liblinear"), n_models=30)
    assert np.array_equal(_values(out), expected.values)
    assert json.loads((out / "data.json").read_text())["learner"] == (
        "LogisticRegression(C=0.5, solver='liblinear')"
    )


def test_tmc_with_specs_resumes_to_the_uninterrupted_values_and_refuses_a_changed_file(
    specs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmc = ["data", "--data", f"{specs}:split", "--model", f"{specs}:regression", "--method"]
    tmc += ["tmc", "--permutations", "4", "--no-progress"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main([*tmc, "--out", str(whole)]) == 0
    # 15 coalitions: the first walk of 20 points (up to 20 fits) is cut.
    assert main([*tmc, "--budget", "15", "--out", str(cut)]) == 0
    assert "Stopped on max_evaluations" in capsys.readouterr().out
    assert not np.array_equal(_values(cut), _values(whole))
    before = {p.name: p.read_bytes() for p in cut.rglob("*") if p.is_file()}
    # The spec's file changed: refused before its code runs, the valuation left as it was.
    original = specs.read_text()
    specs.write_text(original + "\n# edited\n")
    assert main([*tmc, "--resume", "--out", str(cut)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"--resume: --data {specs.resolve()}:split changed since the valuation in" in err
    assert "restore the file, or start anew with --overwrite" in err
    assert {p.name: p.read_bytes() for p in cut.rglob("*") if p.is_file()} == before
    # Another spec than the valuation's: named with both values.
    specs.write_text(original)
    other = ["--data", f"{specs}:as_dict"]
    assert main([*tmc[:1], *other, *tmc[3:], "--resume", "--out", str(cut)]) == 2
    assert f"other settings (data '{specs.resolve()}:split', not" in capsys.readouterr().err
    # Restored: the resume walks the rest, to the uninterrupted values bit for bit.
    assert main([*tmc, "--resume", "--out", str(cut)]) == 0
    assert np.array_equal(_values(cut), _values(whole))
    assert (cut / "values.csv").read_text() == (whole / "values.csv").read_text()


def test_labels_that_skip_a_number_are_flipped_to_a_class_the_points_hold(
    specs: Path, tmp_path: Path
) -> None:
    # Classes 0 and 2: a flipped label is the other one, as for 0 and 1 (a shift modulo
    # max + 1 = 3 made half the flips a class 1 no point has).
    out = tmp_path / "skipped"
    args = ["data", "--data", f"{specs}:skipped_class", "--method", "knn", "--noise", "0.3"]
    assert main([*args, "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "values.csv").read_text().splitlines()))
    clean = 2 * _split()[1]
    flipped = [r for r in rows if r["flipped"] == "1"]
    assert len(flipped) == 6  # round(0.3 * 20)
    for r in rows:
        label, before = int(r["label"]), int(clean[int(r["train_index"])])
        assert label == (2 - before if r["flipped"] == "1" else before)


def test_labels_that_skip_a_number_get_the_two_class_learner(specs: Path, tmp_path: Path) -> None:
    x, y, x_test, y_test = _split()
    out = tmp_path / "skipped"
    args = ["data", "--data", f"{specs}:skipped_class", "--method", "loo"]
    assert main([*args, "--out", str(out)]) == 0
    learner = LogisticRegression(C=1.0, solver="liblinear")
    game = DataGame(x, 2 * y, x_test, 2 * y_test, fit=learner)
    assert np.array_equal(_values(out), leave_one_out_values(game).values)
    record = json.loads((out / "data.json").read_text())
    assert record["learner"] == "LogisticRegression(solver='liblinear')"


def test_bfloat16_tensors_are_their_float32_values(specs: Path, tmp_path: Path) -> None:
    import torch

    x, y, x_test, y_test = (
        torch.tensor(a).to(torch.bfloat16).double().numpy() if a.dtype.kind == "f" else a
        for a in _split()
    )
    out = tmp_path / "bfloat16"
    args = ["data", "--data", f"{specs}:bfloat16", "--method", "knn", "--k", "3"]
    assert main([*args, "--out", str(out)]) == 0
    assert np.array_equal(_values(out), knn_shapley(x, y, x_test, y_test, k=3).values)


BAD = [
    (["--data", "nowhere.py:split"], "--data: the file nowhere.py does not exist."),
    (["--data", "points"], "--data must be 'path/to/file.py:function'. Got 'points' instead."),
    (["--data", "S:nope"], "has no function 'nope'"),
    (["--data", "S:broken"], "raised RuntimeError: cannot open the database"),
    (["--data", "S:split", "--dataset", "adult"], "both name the points; pass one."),
    (["--data", "S:split", "--model", "adult-logreg"], "it contradicts --data S:split"),
    (["--data", "S:three"], "x_test, y_test) or a dict with those keys: features of shape"),
    (["--data", "S:three"], "Got a tuple of 3 instead."),
    (["--data", "S:no_test_labels"], "Got a dict without 'y_test'"),
    (
        ["--data", "S:other_features"],
        "x_test must have x_train's shape past the first axis, (30,). Got (29,) instead.",
    ),
    (["--data", "S:column_labels"], "y_train must be 1-d integer class labels (0, 1, ...)"),
    (["--data", "S:float_labels"], "y_train must be 1-d integer class labels"),
    (["--data", "S:one_point"], "x_train must hold at least 2 points. Got 1."),
    (
        ["--data", "S:no_data"],
        "x_train must be an array (numpy, torch or nested lists). Got Tensor (Cannot copy out",
    ),
    (
        ["--data", "S:nan_feature"],
        "x_train must hold finite numbers. Got NaN or infinity in 1 point(s), the first row 3.",
    ),
    (["--data", "S:short_labels"], "y_train must hold one label per point of x_train (20)."),
    (["--data", "S:one_class"], "y_train must hold at least 2 classes. Got only class 0."),
    (["--data", "S:negative_label"], "y_train must be class labels 0, 1, ... Got -1 instead."),
    (["--data", "S:flat"], "x_train must be an array of numbers of shape (points, features...)"),
    (["--data", "S:split", "--n-train", "25"], "--n-train must be in [2, 20] for specs.py:split"),
    (["--model", "S:number"], "must return a scikit-learn classifier (with fit and predict) or"),
    (["--model", "S:the_class"], "returned the class LogisticRegression; return an instance"),
    (["--model", "regression"], "--model must be one of adult-logreg, digits-logreg or path/"),
    (
        ["--model", "S:centroid", "--method", "knn"],
        (
            "--method knn is the closed form of a K-nearest-neighbour classifier's values, not "
            "of --model's learner; with --model S:centroid use --method tmc, beta, banzhaf, "
            "loo, oob or datamodels."
        ),
    ),
    (["--model", "S:regression", "--method", "influence"], "its own softmax regression, not of"),
    (
        ["--model", "S:centroid", "--method", "datamodels"],
        "must return a scikit-learn classifier with decision_function. Got function instead.",
    ),
    (
        ["--model", "S:failing"],
        (
            "--model S:failing: fitting it on the 20 training points and predicting the 30 "
            "test points raised ValueError: boom"
        ),
    ),
    (
        ["--model", "S:two_columns"],
        "shape (30,). Got shape (30, 2) instead.",
    ),
    (
        ["--model", "S:all_or_nothing"],
        "--model S:all_or_nothing: The 'fit' of DataGame failed on a coalition of 19 training",
    ),
]


@pytest.mark.parametrize(("extra", "message"), BAD)
def test_bad_specs_and_arrays_are_one_line_exit_2_and_write_nothing(
    specs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # "S" is specs.py there, as a user types a relative spec
    extra = [arg.replace("S:", "specs.py:") for arg in extra]
    if "--data" not in extra and "--dataset" not in extra:
        extra += ["--data", "specs.py:split"]
    method = [] if "--method" in extra else ["--method", "loo"]
    out = tmp_path / "never"
    assert main(["data", *method, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("neuronshapley data: error:")
    assert message.replace("S:", "specs.py:") in err
    assert not out.exists()
