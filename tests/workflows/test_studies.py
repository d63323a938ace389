"""``neuronshapley study``: the paper's applications on a run directory, each a report section."""

import csv
import json
import re
from pathlib import Path

import pytest

from neuronshapley.cli import main
from neuronshapley.report.html import Section
from neuronshapley.workflows.studies import STUDIES, study_sections
from tests.browser import browser_or_skip, check_page

# A tiny CNN on 6x6 inputs with 3 classes; the data carries two groups (for fairness).
FACTORY = """
import torch
from torch import nn

from neuronshapley.pytorch.data import Split


def model():
    generator = torch.Generator().manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
        # Centre the logits so that every class is predicted for some inputs.
        calibration = torch.randn(200, 1, 6, 6, generator=generator)
        net[-1].bias -= net(calibration).mean(0)
    return net


def _examples():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(240, 1, 6, 6, generator=generator)
    with torch.no_grad():
        logits = model()(x)
    y = (logits + 2.0 * torch.randn(logits.shape, generator=generator)).argmax(1)
    return x, y


def data():
    x, y = _examples()
    return {"data": (x[:120], y[:120]), "reference": x[120:]}


def grouped():
    x, y = _examples()
    groups = (x[:120, 0, 0, 0] > 0).long()
    split = Split(x[:120], y[:120], groups=groups, group_names=("low", "high"), name="grouped")
    return {"data": split, "reference": x[120:]}
"""


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("factory") / "mine.py"
    path.write_text(FACTORY)
    return path


def _make_run(factory: Path, out: Path, data: str = "data") -> None:
    code = main(
        [
            "run",
            "--model",
            f"{factory}:model",
            "--data",
            f"{factory}:{data}",
            "--budget",
            "200",
            "--k",
            "3",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0


def _study(name: str, run: Path, *extra: str) -> int:
    return main(["study", name, "--run", str(run), "--budget", "120", "--no-progress", *extra])


def _headings(page: Path) -> list[str]:
    return re.findall(r"<h2>([^<]*)</h2>", page.read_text())


@pytest.fixture(scope="module")
def run(factory: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    _make_run(factory, out)
    return out


def test_critical_writes_its_files_and_a_report_section(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images_before = run.joinpath("report.html").read_text().count("<img")
    assert _study("critical", run, "--k", "4", "--random", "3") == 0
    folder = run / "studies" / "critical"
    assert {p.name for p in folder.iterdir()} == {
        "critical.png",
        "reverse.png",
        "section.json",
        "study.json",
        "table.csv",
    }
    record = json.loads((folder / "study.json").read_text())
    with open(folder / "table.csv", newline="") as handle:
        rows = {row["ranking"]: row for row in csv.DictReader(handle)}
    # The headline and the table come from the same study.
    assert record["headline"]["k"] == 4
    shapley_after = float(rows["shapley"]["top 4"])
    assert record["headline"]["after_top_k"]["shapley"] == pytest.approx(shapley_after)
    assert set(rows) >= {"shapley", "conductance", "leave_one_out", "random (mean)"}
    page = run / "report.html"
    assert "Critical units against baselines" in _headings(page)
    assert page.read_text().count("<img") == images_before + 2
    assert f"{shapley_after:.3f}" in capsys.readouterr().out


def test_classes_values_each_class_on_its_examples(run: Path) -> None:
    assert _study("classes", run, "--classes", "0,2", "--k", "3") == 0
    record = json.loads((run / "studies" / "classes" / "study.json").read_text())
    headline = record["headline"]
    assert headline["classes"] == [0, 2]
    assert set(headline["top_units"]) == {"0", "2"}
    assert all(len(units) == 3 for units in headline["top_units"].values())
    assert 0.0 <= headline["mean_recall_after"] <= 1.0
    # Sections follow the order of STUDIES, whatever order the studies ran in.
    headings = _headings(run / "report.html")
    assert headings.index("Critical units against baselines") < headings.index(
        "Class-specific units"
    )


def test_classes_absent_from_the_data_are_refused(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _study("classes", run, "--classes", "7") == 2
    assert "no example of class 7" in capsys.readouterr().err


def test_fairness_reports_on_held_out_groups(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "grouped"
    _make_run(factory, out, data="grouped")
    assert _study("fairness", out, "--k", "2") == 0
    folder = out / "studies" / "fairness"
    with open(folder / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["removed"] == "0"
    assert {"recall low", "recall high", "overall accuracy"} <= set(rows[0])
    record = json.loads((folder / "study.json").read_text())
    assert len(record["headline"]["recall_before"]) == 2
    assert "Fairness repair" in _headings(out / "report.html")


def test_fairness_needs_groups(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _study("fairness", run) == 2
    assert "needs a group per example" in capsys.readouterr().err
    assert not (run / "studies" / "fairness").exists()


def test_a_study_needs_a_run_or_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _study("critical", tmp_path / "nothing") == 2
    assert "holds no run" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


def test_model_must_match_the_run(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _study("critical", run, "--model", "digits-cnn") == 2
    assert "the run in" in capsys.readouterr().err


def test_unknown_study_is_a_usage_error(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "nonsense", "--run", str(run)]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_overwriting_the_run_deletes_its_studies(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    _make_run(factory, out)
    assert _study("critical", out, "--k", "2", "--random", "2") == 0
    assert (out / "studies" / "critical").is_dir()
    assert (
        main(
            [
                "run",
                "--model",
                f"{factory}:model",
                "--data",
                f"{factory}:data",
                "--budget",
                "100",
                "--k",
                "3",
                "--out",
                str(out),
                "--overwrite",
                "--no-progress",
            ]
        )
        == 0
    )
    assert not (out / "studies").exists()
    assert "Critical units against baselines" not in _headings(out / "report.html")


def test_damaged_studies_do_not_stop_the_report(tmp_path: Path) -> None:
    good = tmp_path / "studies" / "critical"
    good.mkdir(parents=True)
    (good / "section.json").write_text(
        json.dumps(
            {
                "heading": "Critical",
                "text": "t",
                "figures": [{"file": "gone.png", "caption": "c"}],
                "table": [{"a": 1}],
            }
        )
    )
    bad = tmp_path / "studies" / "classes"
    bad.mkdir()
    (bad / "section.json").write_text("{not json")
    sections = study_sections(tmp_path)
    assert [s.heading for s in sections] == ["Critical", "Study classes"]
    assert isinstance(sections[0], Section)
    assert sections[0].figures == []
    assert "gone.png is missing" in sections[0].text
    assert "Cannot read" in sections[1].text


def test_every_study_is_offered_by_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "--help"]) == 0
    text = capsys.readouterr().out
    for name in STUDIES:
        assert name in text


def test_report_with_studies_renders_in_a_browser(run: Path, tmp_path: Path) -> None:
    browser_or_skip()
    assert _study("critical", run, "--k", "3", "--random", "2") == 0
    page = run / "report.html"
    check = check_page(page, tmp_path / "studies.png", page.read_text().count("<img"))
    assert not check.problems, check.problems
    assert "Critical units against baselines" in check.headings


def test_adversarial_values_the_attack_and_checks_transfer(
    run: Path, factory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _study(
        "adversarial", run, "--k", "3", "--steps", "5", "--epsilon", "0.5", "--step-size", "0.2",
        "--sources", f"{factory}:model",
    )  # fmt: skip
    assert code == 0
    folder = run / "studies" / "adversarial"
    with open(folder / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["removed"] for row in rows] == ["0", "1", "2", "3"]
    assert f"transfer from {factory}:model" in rows[0]
    headline = json.loads((folder / "study.json").read_text())["headline"]
    assert headline["epsilon"] == 0.5 and headline["steps"] == 5
    settings = json.loads((folder / "study.json").read_text())["settings"]
    assert settings["step_size"] == 0.2
    assert len(headline["removed"]) == 3
    assert -1.0 <= headline["rank_correlation"] <= 1.0
    # Count 0 is the full model's accuracy on the held-out half of the run's data.
    assert float(rows[0]["clean accuracy"]) == pytest.approx(_held_out_accuracy(run), abs=1e-12)
    assert "Adversarial repair" in _headings(run / "report.html")


def _held_out_accuracy(run: Path) -> float:
    from neuronshapley.applications.fairness import split_in_two
    from neuronshapley.workflows.runs import game_from_run

    game, _, _ = game_from_run(run)
    _, held_out = split_in_two(game.data, seed=0)
    return float(game.with_data(held_out).value_without([]))


def test_adversarial_refuses_an_unknown_source(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _study("adversarial", run, "--sources", "no-such-model") == 2
    assert "--sources: 'no-such-model'" in capsys.readouterr().err


def test_dropout_values_the_other_model_once(
    factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    _make_run(factory, out)
    assert _study("dropout", out, "--other", f"{factory}:model", "--k", "3") == 0
    other = out / "studies" / "dropout" / "other-run"
    assert json.loads((other / "run.json").read_text())["status"] == "complete"
    made = (other / "result.npz").stat().st_mtime_ns
    with open(out / "studies" / "dropout" / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == [f"{factory}:model", f"{factory}:model (compared)"]
    # Same settings: the other model's values are reused, not computed again.
    assert _study("dropout", out, "--other", f"{factory}:model", "--k", "3") == 0
    assert (other / "result.npz").stat().st_mtime_ns == made
    assert "Dropout effect" in _headings(out / "report.html")


def test_dropout_needs_another_model_for_a_model_without_sibling(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _study("dropout", run) == 2
    assert "pass --other" in capsys.readouterr().err


def test_units_draws_the_top_unit_of_each_layer(run: Path) -> None:
    assert _study("units", run, "--k", "5") == 0
    folder = run / "studies" / "units"
    headline = json.loads((folder / "study.json").read_text())["headline"]
    layers = [row["layer"] for row in headline["units"]]
    assert layers == ["0", "2"]  # the two conv layers of the tiny model, in network order
    assert sum(headline["top_k_per_layer"].values()) == 5
    for row in headline["units"]:
        stem = row["unit"].replace(":", "_")
        assert (folder / f"extremes_{stem}.png").is_file()
        assert (folder / f"maximized_{stem}.png").is_file()
    assert "What the top units see" in _headings(run / "report.html")


def test_repair_adds_its_section(run: Path, tmp_path: Path) -> None:
    assert (
        main(["repair", "--run", str(run), "--remove", "top:2", "--out", str(tmp_path / "m.pt")])
        == 0
    )
    section = json.loads((run / "studies" / "repair" / "section.json").read_text())
    assert len(section["table"]) == 2
    headings = _headings(run / "report.html")
    assert headings[-1] == "Repaired model"


def test_interactions_values_the_pairs_of_the_top_units(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The top 2k units' pairs, the removal account and the orders, chosen on one half of the
    run's examples and scored on both, in the run's report."""
    import numpy as np

    import neuronshapley as ns
    from neuronshapley.applications.fairness import split_in_two
    from neuronshapley.applications.interactions import values_after_removal
    from neuronshapley.workflows.runs import game_from_run
    from neuronshapley.workflows.studies import INTERACTIONS_VALUES_BUDGET

    assert _study("interactions", run, "--k", "3", "--budget", "300") == 0
    folder = run / "studies" / "interactions"
    assert {p.name for p in folder.iterdir()} == {
        "interactions.png",
        "interaction_removal.png",
        "interaction_removal_held_out.png",
        "section.json",
        "study.json",
        "table.csv",
    }
    headline = json.loads((folder / "study.json").read_text())["headline"]
    run_game, _, _ = game_from_run(run)
    choice, held = split_in_two(run_game.data, seed=0)
    assert headline["n_choice_examples"] + headline["n_held_out_examples"] == len(run_game.data)
    game, held_game = run_game.with_data(choice), run_game.with_data(held)
    result = ns.permutation_shapley(
        game, max_evaluations=INTERACTIONS_VALUES_BUDGET, antithetic=True, seed=0
    )
    assert headline["values_evaluations"] == result.n_evaluations
    top = [game.player_names[i] for i in result.top_indices(6)]
    assert headline["players"] == top
    # 300 evaluations buy 2 permutations of 2 m^2 = 72 evaluations for m = 6 units.
    assert (headline["n_permutations"], headline["n_evaluations"]) == (4, 4 * 72)
    with open(folder / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 * 5 // 2
    values = [float(row["interaction"]) for row in rows]
    assert values == sorted(values)  # most redundant first
    # The account's cost is the game's own drop, and the pairwise account is its formula.
    coalition = np.ones(game.n_players, dtype=bool)
    coalition[[game.player_names.index(name) for name in top[:3]]] = False
    full, without = game.value(np.stack([np.ones_like(coalition), coalition]))
    last = headline["account"][-1]
    assert last["removed"] == 3
    assert last["cost"] == pytest.approx(full - without, abs=1e-12)
    assert last["pairwise account"] == pytest.approx(
        last["sum of leave-one-out costs"] - last["pairs inside"], abs=1e-12
    )
    orders = headline["orders"]
    assert set(orders) == {
        "Shapley value, highest first",
        "leave-one-out cost",
        "pairwise model",
        "greedy on the game, top 6",
    }
    assert orders["Shapley value, highest first"]["order"] == top[:3]
    # Greedy picks the worst removal at every step among the top 6: never above Shapley's first.
    greedy = orders["greedy on the game, top 6"]["values"]
    assert greedy[1] <= orders["Shapley value, highest first"]["values"][1] + 1e-12
    # Every order is scored again on the held-out half, which chose nothing.
    for rule, order in orders.items():
        again = values_after_removal(held_game, order["order"], rule).values
        assert order["held_out_values"] == pytest.approx(again.tolist(), abs=1e-12)
    assert "Interactions between the top units" in _headings(run / "report.html")
    assert "Most redundant" in capsys.readouterr().out
