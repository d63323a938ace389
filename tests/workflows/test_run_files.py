"""A run directory's files: ours deleted only when safe, others never; damage in one line."""

import json
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

import neuronshapley as ns
from neuronshapley.cli import main
from tests.test_cli_run import FACTORY

SIGTERM_FACTORY = """

class Terminated(nn.Module):
    # Its 12th forward sends SIGTERM to this process, as a kill would, once.

    def __init__(self):
        super().__init__()
        self.net = model()
        self.calls = 0

    def forward(self, x):
        import os
        import signal

        self.calls += 1
        marker = Path(__file__).with_name("terminated-once")
        if self.calls == 12 and not marker.exists():
            marker.write_text("")
            os.kill(os.getpid(), signal.SIGTERM)
        return self.net(x)


def terminated():
    return Terminated()
"""


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("factory") / "mine.py"
    path.write_text(FACTORY + SIGTERM_FACTORY)
    return path


def _run(factory: Path, out: Path, *extra: str, model: str = "model") -> int:
    return main(
        [
            "run",
            "--model",
            f"{factory}:{model}",
            "--data",
            f"{factory}:data",
            "--k",
            "3",
            "--budget",
            "300",
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def made(factory: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("made") / "run"
    assert _run(factory, out) == 0
    return out


@pytest.fixture
def run(made: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(made, copy)
    return copy


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- never delete what is not ours ---------------------------------------------------------------
@pytest.mark.parametrize("mode", ["--overwrite", "--resume"])
def test_files_of_others_survive_overwrite_and_resume(
    factory: Path, run: Path, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = {
        "studies/mine.txt": "a study of my own",
        "checkpoint/notes.txt": "my notes",
        "notes.txt": "keep me",
    }
    for name, text in mine.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    assert _run(factory, run, mode, "--budget", "600") == 0
    for name, text in mine.items():
        assert (run / name).read_text() == text, name
    manifest = json.loads((run / "manifest.json").read_text())["files"]
    assert "values.csv" in manifest
    assert not any(name in manifest for name in mine)


@pytest.mark.parametrize("mode", ["--overwrite", "--resume"])
@pytest.mark.parametrize("name", ["report.html", "values.csv"])
def test_an_output_replaced_by_a_user_is_not_replaced(
    factory: Path, run: Path, mode: str, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (run / name).write_text("the user's own")
    capsys.readouterr()
    assert _run(factory, run, mode, "--budget", "600") == 2
    line = _one_line(capsys)
    assert f"{name} was not written by this run" in line
    assert (run / name).read_text() == "the user's own"


def test_overwrite_deletes_our_studies_but_not_a_users_files(
    factory: Path, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["study", "critical", "--run", str(run), "--k", "2", "--random", "2"]) == 0
    assert (run / "studies" / "critical" / "study.json").is_file()
    (run / "studies" / "critical" / "mine.txt").write_text("mine")
    assert _run(factory, run, "--overwrite", "--seed", "3") == 0
    assert not (run / "studies" / "critical" / "study.json").exists()
    assert (run / "studies" / "critical" / "mine.txt").read_text() == "mine"


def test_resume_keeps_studies_while_the_values_do_not_change(
    factory: Path, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["study", "critical", "--run", str(run), "--k", "2", "--random", "2"]) == 0
    study = run / "studies" / "critical" / "study.json"
    assert _run(factory, run, "--resume") == 0  # budget already spent: nothing new
    assert study.is_file()
    assert _run(factory, run, "--resume", "--budget", "600") == 0
    assert not study.exists()


def test_a_folder_that_is_not_a_run_is_refused(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "report.html").write_text("theirs")
    assert _run(factory, out, "--overwrite") == 2
    assert "is not a neuronshapley run" in _one_line(capsys)
    assert (out / "report.html").read_text() == "theirs"


# -- SIGTERM, killed runs, counts ------------------------------------------------------------
def test_sigterm_is_handled_like_ctrl_c(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "run"
    extra = ("--units", "net.0,net.2", "--budget", "1500")
    assert _run(factory, out, *extra, model="terminated") == 0
    assert signal.getsignal(signal.SIGTERM) is before
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert (out / "values.csv").is_file()
    assert _run(factory, out, *extra, "--resume", model="terminated") == 0
    resumed = json.loads((out / "run.json").read_text())
    assert resumed["status"] == "complete"
    assert resumed["n_evaluations"] > record["n_evaluations"]
    # The count covers both processes.
    assert resumed["n_forward_examples"] > record["n_forward_examples"]


def test_a_run_killed_before_its_first_checkpoint_starts_again(
    factory: Path, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = json.loads((run / "run.json").read_text())
    record["status"] = "running"
    (run / "run.json").write_text(json.dumps(record))
    shutil.rmtree(run / "checkpoint")
    assert _run(factory, run) == 0
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


class Killed(BaseException):
    """Ends a run as SIGKILL would: no handler, no outputs, nothing recorded after it."""


def test_a_run_killed_after_a_checkpoint_can_be_overwritten_and_resumed(
    factory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import neuronshapley.workflows.runs as runs

    real = runs.tmab_shapley
    rounds = []

    def killed_after_two_rounds(*args: Any, **kwargs: Any) -> Any:
        def progress(_: Any) -> None:
            rounds.append(1)
            if len(rounds) == 2:
                raise Killed

        return real(*args, **{**kwargs, "checkpoint_every": 0.0, "progress": progress})

    out = tmp_path / "run"
    monkeypatch.setattr(runs, "tmab_shapley", killed_after_two_rounds)
    with pytest.raises(Killed):
        _run(factory, out, "--budget", "3000")
    monkeypatch.undo()
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    assert (out / "checkpoint" / "checkpoint.npz").is_file()
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert _run(factory, out, "--budget", "3000", "--resume") == 0
    assert _run(factory, copy, "--budget", "3000", "--overwrite") == 0
    for folder in (out, copy):
        assert json.loads((folder / "run.json").read_text())["status"] == "complete"


def test_a_checkpoint_of_an_older_version_is_never_restarted_silently(
    factory: Path, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = json.loads((run / "run.json").read_text())
    record["status"] = "running"
    (run / "run.json").write_text(json.dumps(record))
    shutil.rmtree(run / "checkpoint")
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "state.json").write_text("{}")
    (run / "checkpoint" / "state.npz").write_bytes(b"PK")
    assert _run(factory, run, "--resume") == 2
    assert re.search(
        r"written by an older version .* start anew with --overwrite", _one_line(capsys)
    )
    assert _run(factory, run) == 2  # not taken for a run killed before its first checkpoint
    assert "pass --resume to continue it or --overwrite" in _one_line(capsys)
    assert (run / "checkpoint" / "state.json").is_file()


def test_forward_examples_add_up_over_a_resume(
    factory: Path, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = json.loads((run / "run.json").read_text())
    assert _run(factory, run, "--resume", "--budget", "600") == 0
    second = json.loads((run / "run.json").read_text())
    assert second["n_forward_examples"] > first["n_forward_examples"]
    fresh = run.parent / "fresh"
    assert _run(factory, fresh, "--budget", "600") == 0
    alone = json.loads((fresh / "run.json").read_text())
    # Two processes did the work of one: about the same count, not only the second's share.
    assert second["n_forward_examples"] >= 0.9 * alone["n_forward_examples"]


def test_a_budget_below_what_was_spent_is_refused(
    factory: Path, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(factory, run, "--resume", "--budget", "100") == 2
    assert re.search(r"--budget 100 is below the 300 evaluations", _one_line(capsys))


# -- code from saved files -------------------------------------------------------------------
def test_a_run_stores_its_files_absolute_with_their_digest(
    factory: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(factory.parent)
    out = tmp_path / "run"
    assert _run(Path("mine.py"), out) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["model"] == f"{factory}:model"
    assert len(record["code"]["model"]) == 64
    monkeypatch.chdir(tmp_path)  # elsewhere: the run still finds its files
    assert main(["unit", "--run", str(out), "--unit", "2:3", "--k", "2"]) == 0


def test_a_changed_model_file_is_refused(
    factory: Path, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = json.loads((run / "run.json").read_text())
    changed = tmp_path / "changed.py"
    changed.write_text(FACTORY + "\n# changed\n")
    record["config"]["model"] = f"{changed}:model"
    record["code"]["model"] = "0" * 64
    (run / "run.json").write_text(json.dumps(record))
    assert main(["unit", "--run", str(run), "--unit", "2:3"]) == 2
    line = _one_line(capsys)
    assert f"{changed} changed since the run was made" in line


# -- damaged files ----------------------------------------------------------------------------
def _damage(path: Path, kind: str) -> None:
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbled":
        path.write_bytes(data[:20] + bytes(range(256)) * 4 + data[-20:])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "wrong shape":
        path.write_text(json.dumps([1, 2, 3]))


COMMANDS = {
    "show": lambda run: ["show", str(run)],
    "study": lambda run: ["study", "critical", "--run", str(run), "--no-progress"],
    "repair": lambda run: ["repair", "--run", str(run)],
    "unit": lambda run: ["unit", "--run", str(run), "--unit", "2:3"],
}
CASES = [
    (name, kind, command)
    for name in ("run.json", "result.json", "result.npz")
    for kind in ("truncated", "garbled", "empty", "wrong shape")
    if not (name.endswith(".npz") and kind == "wrong shape")
    for command in COMMANDS
]


@pytest.mark.parametrize(("name", "kind", "command"), CASES)
def test_a_damaged_file_is_one_line(
    run: Path, name: str, kind: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _damage(run / name, kind)
    assert main(COMMANDS[command](run)) == 2
    line = _one_line(capsys)
    assert str(run / name) in line
    assert "--overwrite" in line  # what to do


@pytest.mark.parametrize("kind", ["truncated", "garbled", "empty", "wrong shape"])
def test_resume_with_a_damaged_run_record(
    factory: Path, run: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _damage(run / "run.json", kind)
    assert _run(factory, run, "--resume") == 2
    assert str(run / "run.json") in _one_line(capsys)


@pytest.mark.parametrize("kind", ["truncated", "garbled", "empty"])
def test_resume_with_a_damaged_checkpoint(
    factory: Path, run: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _damage(run / "checkpoint" / "checkpoint.npz", kind)
    assert _run(factory, run, "--resume", "--budget", "600") == 2
    line = _one_line(capsys)
    assert "checkpoint" in line
    assert "--overwrite" in line


@pytest.mark.parametrize("name", ["result.json", "result.npz"])
def test_resume_with_a_damaged_result(
    factory: Path, run: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Changed since the run wrote it: not replaced, whatever happened to it.
    _damage(run / name, "garbled")
    assert _run(factory, run, "--resume", "--budget", "600") == 2
    assert f"{name} was not written by this run (or was changed since)" in _one_line(capsys)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_result_arrays_of_another_length(
    run: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    with np.load(run / "result.npz") as data:
        arrays = {key: data[key][:-2] for key in data.files}
    np.savez(run / "result.npz", **arrays)
    assert main(COMMANDS[command](run)) == 2
    assert str(run / "result.npz") in _one_line(capsys)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_complete_run_without_result_json(
    run: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (run / "result.json").unlink()
    assert main(COMMANDS[command](run)) == 2
    line = _one_line(capsys)
    assert f"{run / 'result.json'} is missing" in line


# -- checked before any work ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--tol", "inf"], r"argument --tol: must be a number > 0 \(finite\)\. Got inf"),
        (["--max-seconds", "inf"], r"argument --max-seconds: must be a number > 0 \(finite\)"),
        (["--metric", "recall:99"], r"--metric recall:99: the data has no example of class 99"),
    ],
)
def test_bad_values_are_refused_before_anything_is_written(
    factory: Path,
    tmp_path: Path,
    arguments: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    assert _run(factory, out, *arguments) == 2
    assert re.search(message, _one_line(capsys))
    assert not out.exists()


def test_out_under_a_file_or_in_proc(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    assert _run(factory, blocker / "run") == 2
    assert f"{blocker} is a file" in _one_line(capsys)
    assert _run(factory, Path("/proc/neuronshapley-run")) == 2
    assert "cannot write in /proc" in _one_line(capsys)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_out_in_a_read_only_folder(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert _run(factory, folder / "run") == 2
        assert "cannot write in" in _one_line(capsys)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_show_options_do_what_they_say(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "all.csv"
    assert main(["show", str(run), "--top", "2", "--bottom", "1", "--csv", str(table)]) == 0
    out = capsys.readouterr().out
    assert "Top 2 units (of 14)" in out
    assert "Bottom 1 units (of 14)" in out
    # What the intervals promise: TMAB's default (anytime) intervals hold for all players at
    # once and at every round, which its decisions need.
    assert "Intervals: 95% for all players at once, at any time (anytime-valid)" in out
    # Each unit's layer (from the result's groups) is the module path before its index.
    assert re.search(r"^\s+1\s+(\d+):\d+\s+\1\s", out, re.MULTILINE)
    assert len(table.read_text().splitlines()) == 15
    assert main(["show", str(run), "--top", "99"]) == 2
    assert "--top must be at most the number of players (14). Got 99" in _one_line(capsys)


# -- the range R of the intervals (issue 17, item 5) ------------------------------------------


def test_the_intervals_use_the_metric_s_range_and_say_which(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Accuracy lies in [0, 1], so its marginals in [-1, 1]: R = 2, a valid range."""
    record = json.loads((run / "run.json").read_text())
    assert record["config"]["value_range"] == "metric"
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert "finite-sample (empirical Bernstein, range 2)" in out
    # How many units TMAB decided, from the result's diagnostics.
    undecided = ns.ShapleyResult.load(run).diagnostics["n_undecided"]
    assert f"Decided: {14 - undecided} of 14 units in or out of the top 3" in out


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--value-range", "observed"], r"observed range \d[\d.e-]* \(a heuristic range\)"),
        (["--value-range", "0.5"], r"range 0\.5\)"),
        (["--metric", "neg_cross_entropy"], r"observed range \d[\d.e-]* \(a heuristic range\)"),
    ],
)
def test_other_ranges_are_printed_as_what_they_are(
    factory: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    expected: str,
) -> None:
    assert _run(factory, tmp_path / "run", *extra) == 0
    out = capsys.readouterr().out
    # A metric without declared bounds gets the heuristic, and the run says so.
    assert ("declares no range for its values" in out) == ("neg_cross_entropy" in extra)
    assert main(["show", str(tmp_path / "run")]) == 0
    assert re.search(expected, capsys.readouterr().out)


@pytest.mark.parametrize("value", ["0", "-1", "inf", "wide"])
def test_a_bad_value_range_is_one_line(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert _run(factory, tmp_path / "run", "--value-range", value) == 2
    line = _one_line(capsys)
    assert "--value-range: must be 'metric', 'observed' or a number R > 0" in line
    assert not (tmp_path / "run").exists()


def test_unbiased_truncation_from_the_command_line(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(factory, tmp_path / "run", "--continue-probability", "0.5") == 0
    result = ns.ShapleyResult.load(tmp_path / "run")
    assert result.params["continue_probability"] == 0.5
    assert "unbiased truncation" in capsys.readouterr().out
    # Without truncation there is nothing to continue: one line, nothing written.
    assert (
        _run(factory, tmp_path / "off", "--truncation", "off", "--continue-probability", "0.5") == 2
    )
    assert "continue_probability" in _one_line(capsys)
    assert not (tmp_path / "off").exists()


FLAKY_METRIC = """
CALLS = []


def flaky(logits, targets, batch):
    CALLS.append(1)
    if len(CALLS) > 40:
        raise ValueError("the metric broke")
    return float((logits.argmax(1) == targets).double().mean())
"""


def test_a_metric_that_raises_while_sampling_is_one_line_and_the_run_can_be_made_again(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metric = tmp_path / "metric.py"
    metric.write_text(FLAKY_METRIC)
    out = tmp_path / "run"
    assert _run(factory, out, "--metric", f"{metric}:flaky") == 2
    line = _one_line(capsys)
    assert "The metric you passed ('flaky') raised ValueError on coalition" in line
    assert "fix the metric and make the run again with --overwrite" in line
    metric.write_text(FLAKY_METRIC.replace("> 40", "> 10**9"))
    assert _run(factory, out, "--metric", f"{metric}:flaky", "--overwrite") == 0


def test_a_run_directory_of_an_earlier_version_resumes_with_its_observed_range(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run.json written before --value-range and --continue-probability existed: its
    identity has neither key, and it used the observed range."""
    out = tmp_path / "run"
    assert _run(factory, out, "--value-range", "observed") == 0
    record = json.loads((out / "run.json").read_text())
    for part in (record["config"], record["config"]["identity"]):
        part.pop("value_range", None)
        part.pop("continue_probability", None)
    (out / "run.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert _run(factory, out, "--budget", "600", "--resume") == 2
    assert "add --value-range observed" in _one_line(capsys)
    assert _run(factory, out, "--budget", "600", "--resume", "--value-range", "observed") == 0


def test_a_run_recorded_before_the_option_used_the_observed_range(run: Path) -> None:
    from neuronshapley.workflows.runs import run_config

    record = json.loads((run / "run.json").read_text())
    del record["config"]["value_range"]
    assert run_config(record).value_range == "observed"
    assert "value_range" not in run_config(record).identity()


def test_a_relative_path_in_a_record_is_resolved_from_the_run_directory(
    factory: Path,
    run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shutil.copy(factory, run / "mine.py")
    record = json.loads((run / "run.json").read_text())
    record["config"]["model"] = "mine.py:model"
    record["config"]["data"] = "mine.py:data"
    (run / "run.json").write_text(json.dumps(record))
    monkeypatch.chdir(tmp_path)  # no mine.py here
    assert main(["unit", "--run", str(run), "--unit", "2:3", "--k", "2"]) == 0


def test_a_repaired_model_refuses_a_changed_factory(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuronshapley.applications.repair import load_repaired

    own = tmp_path / "own.py"
    own.write_text(factory.read_text())
    out = tmp_path / "run"
    assert _run(own, out) == 0
    assert main(["repair", "--run", str(out), "--remove", "top:2"]) == 0
    load_repaired(out / "repaired.pt")
    own.write_text(own.read_text() + "\n# changed\n")
    with pytest.raises(ValueError, match=r"own\.py changed since the run was made"):
        load_repaired(out / "repaired.pt")


def test_a_hand_edited_manifest_cannot_delete_outside_the_run(
    factory: Path, run: Path, tmp_path: Path
) -> None:
    from neuronshapley.workflows.manifest import MANIFEST_FILE, digest

    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    manifest = json.loads((run / MANIFEST_FILE).read_text())
    manifest["files"]["../precious.txt"] = digest(precious)
    manifest["files"][str(precious)] = digest(precious)
    (run / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert _run(factory, run, "--overwrite") == 0
    assert precious.read_text() == "mine"
