"""The paper's applications run on a run directory: the job behind ``neuronshapley study``.

A study reads a run (its model, data, ablation and values;
:mod:`neuronshapley.workflows.runs`), computes what it needs with the functions of
:mod:`neuronshapley.applications`, and writes ``studies/<name>/`` inside the run directory:

- ``study.json``: the settings and the headline numbers;
- ``table.csv``: the study's table;
- PNG figures;
- ``section.json``: what the run's ``report.html`` shows for the study (heading, text, figure
  files with captions, table).

The run's ``report.html`` is then written again, with one section per study present, so one page
holds the run and everything studied on it. Studies are independent: each can be run (again) in
any order.
"""

import csv
import io
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from neuronshapley._internal.files import atomic_write, json_default
from neuronshapley._internal.specs import is_spec
from neuronshapley.estimators import ShapleyResult
from neuronshapley.estimators.progress import ProgressCallback
from neuronshapley.report.html import figure_to_png
from neuronshapley.workflows.manifest import MANIFEST_FILE, read_manifest, record_files
from neuronshapley.workflows.pages import REPORT_ORDER as REPORT_ORDER
from neuronshapley.workflows.pages import SECTION_FILE, STUDIES_DIR, write_report
from neuronshapley.workflows.pages import STUDIES as STUDIES
from neuronshapley.workflows.pages import study_sections as study_sections
from neuronshapley.workflows.runs import (
    RUN_FILE,
    RunConfig,
    RunError,
    execute,
    game_from_run,
    read_run,
    resolved_config,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from neuronshapley.applications.heads import HeadsStudy

STUDY_FILE = "study.json"
STUDY_FORMAT = 1
DEFAULT_BUDGET = 3000
HEADS_BUDGET = 2 + 12 * 71
"""Evaluations of the heads study's run when none is given: V(N), V(empty) and 12 permutation
walks of 71 evaluations each (72 heads). Measured on 2 free CPU cores with block reuse: 687 s of
sampling (0.80 s per evaluation), then 3.5 minutes of outputs, removals and held-out scoring:
the whole study in 15 min 23 s (docs/studies.md)."""
INTERACTIONS_BUDGET = 20 * 2 * 20**2
"""Evaluations of the interactions study's estimate when none is given: 20 permutations of the
top 20 units' 190 pairs (2 m^2 = 800 evaluations each); about 4 minutes on digits-cnn."""
INTERACTION_CHUNKS = 5
"""Independent seeds the interactions study merges (their spread gives sums of pairs an error)."""
INTERACTIONS_VALUES_BUDGET = 4000
"""Evaluations of the interactions study's own values on its choice half (antithetic walks):
about 25 walks of digits-cnn's 160 units, enough to rank its top 20 roughly."""
HEADS_SECONDS = 1000.0
"""Seconds of sampling the heads study's run stops at when not told otherwise, on a slower or
busier machine than that (the values then rest on fewer walks, which the study says), so that
the study still ends in about 30 minutes."""


@dataclass(frozen=True)
class StudyOptions:
    """Settings of a study; each study reads the ones it needs.

    Attributes:
        k: Units removed (critical: 20; classes: 10 per class; the others: 10). ``None`` for
            the study's default.
        budget: Coalition evaluations of every Shapley estimate the study makes itself (per
            class for ``classes``).
        seed: Seed of the estimates, random draws and splits.
        n_random: Random draws per point of the removal curves.
        classes: Classes of the ``classes`` study; ``None`` for every class.
        other: The model the ``dropout`` study compares with: a run directory, a bundled
            model or ``path/to/file.py:function``; ``None`` for the bundled ``<model>-dropout``
            of a bundled model.
        epsilon: L-infinity radius of the ``adversarial`` study's attack; ``None`` for its
            default.
        steps: PGD steps of the ``adversarial`` study.
        step_size: PGD step size of the ``adversarial`` study; ``None`` for its default.
        sources: Comma-separated models whose attacks the ``adversarial`` study transfers
            (bundled names or ``path/to/file.py:function``); ``"none"`` for none; ``None`` for
            the other bundled models trained on the same data.
        seconds: Seconds of sampling of the run a study makes with ``--model`` (``None``: no
            limit, or :data:`HEADS_SECONDS` for ``heads``).
    """

    k: int | None = None
    budget: int = DEFAULT_BUDGET
    seed: int = 0
    n_random: int = 10
    classes: tuple[int, ...] | None = None
    other: str | None = None
    epsilon: float | None = None
    steps: int = 20
    step_size: float | None = None
    sources: str | None = None
    seconds: float | None = None


@dataclass
class StudyOutput:
    """What a study produced: a report section, its figures and headline numbers.

    Attributes:
        heading: The report section's heading.
        text: Plain text; blank lines separate paragraphs.
        figures: ``(file stem, caption, figure)`` triples.
        table: Rows of the study's table.
        headline: Numbers worth reading without the page (kept in ``study.json``).
    """

    heading: str
    text: str
    figures: list[tuple[str, str, "Figure"]] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)
    headline: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudiedRun:
    """The run a study works on.

    Attributes:
        directory: The run directory.
        game: Its ``NeuronGame``, rebuilt.
        result: Its values.
        config: Its configuration.
    """

    directory: Path
    game: Any
    result: ShapleyResult
    config: RunConfig


StudyFunction = Callable[[StudiedRun, StudyOptions, ProgressCallback | None], StudyOutput]


def run_study(
    name: str,
    run_dir: str | Path,
    options: StudyOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run one study on a run directory and add its section to the run's report.

    Args:
        name: One of :data:`STUDIES`.
        run_dir: A directory written by ``neuronshapley run`` (or :func:`runs.execute`).
        options: The study's settings. Default ``StudyOptions()``.
        progress: Called after every round of the Shapley estimates the study makes. Default
            None.

    Returns:
        The record written to ``studies/<name>/study.json``.

    Raises:
        RunError: If the name is unknown, the directory holds no readable run, or the study
            does not apply to the run (e.g. fairness on data without groups).
    """
    if name not in _FUNCTIONS:
        raise RunError(f"unknown study {name!r}; choose one of {', '.join(STUDIES)}.")
    options = options or StudyOptions()
    started = time.perf_counter()
    game, result, config = game_from_run(run_dir)
    run = StudiedRun(Path(run_dir), game, result, config)
    output = _FUNCTIONS[name](run, options, progress)
    return save_study(
        run, name, output, settings=asdict(options), seconds=time.perf_counter() - started
    )


def save_study(
    run: StudiedRun, name: str, output: StudyOutput, *, settings: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """Write ``studies/<name>/`` of a run and the run's report with the study's section.

    Args:
        run: The run studied.
        name: The study's folder name.
        output: What the study produced.
        settings: Its settings (kept in ``study.json``).
        seconds: How long it took.

    Returns:
        The record written to ``study.json``.
    """
    folder = run.directory / STUDIES_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    figures = []
    for stem, caption, figure in output.figures:
        atomic_write(folder / f"{stem}.png", figure_to_png(figure))
        figures.append({"file": f"{stem}.png", "caption": caption})
    atomic_write(folder / "table.csv", _csv(output.table))
    section = {
        "heading": output.heading,
        "text": output.text,
        "figures": figures,
        "table": output.table,
    }
    atomic_write(folder / SECTION_FILE, _json(section))
    record = {
        "format": STUDY_FORMAT,
        "study": name,
        "settings": settings,
        "seconds": seconds,
        "headline": output.headline,
        "text": output.text,
    }
    atomic_write(folder / STUDY_FILE, _json(record))
    written = [folder / entry["file"] for entry in figures]
    written += [folder / "table.csv", folder / SECTION_FILE, folder / STUDY_FILE]
    for nested in folder.glob(f"*/{MANIFEST_FILE}"):  # a run made for the study (dropout)
        written += [nested.parent / name for name in read_manifest(nested.parent)]
        written.append(nested)
    record_files(run.directory, [path.relative_to(run.directory) for path in written])
    write_report(run.directory, run.game, run.result, run.config)
    return record


def study_run_config(
    study: str,
    model: str,
    *,
    budget: int | None,
    seed: int,
    truncation: float | None,
    seconds: float | None = None,
) -> RunConfig:
    """The run a study makes with ``--model`` when its directory holds none.

    The ``heads`` study values the attention heads of a pretrained encoder (``minilm``) on its
    valuing benchmark: every head a player, token means, passes of 1 GiB (the model's run
    defaults, ``zoo.RUN_DEFAULTS``), TMAB on both sides (the study removes the top and the most
    negative heads), no truncation (a truncated walk would
    give the heads late in it nothing, and the study looks for heads that hurt near the full
    model), 3 random draws on the run's own removal curve (the study draws its own), and by
    default :data:`HEADS_BUDGET` evaluations or :data:`HEADS_SECONDS` seconds, whichever comes
    first. Each walk is its own task (``walks_per_task=1``): a budget that ends inside a round
    of 8 walks then loses at most the walk it cuts (71 evaluations, a minute or so), not the
    whole round (a budget of 146 gave whole rounds no walk at all). The other studies: TMAB
    with ``truncation`` and ``budget``.
    """
    if study != "heads":
        return RunConfig(
            model=model, truncation=truncation, budget=budget, seed=seed, max_seconds=seconds
        )
    from neuronshapley import zoo

    if model not in zoo.pretrained():
        raise RunError(
            f"--model {model}: the heads study values the attention heads of a pretrained "
            f"encoder on word similarity; choose one of {', '.join(zoo.pretrained())}."
        )
    return RunConfig(
        model=model,
        units=zoo.RUN_DEFAULTS[model]["units"],
        ablation=zoo.RUN_DEFAULTS[model]["ablation"],
        truncation=None,
        budget=HEADS_BUDGET if budget is None else budget,
        max_seconds=HEADS_SECONDS if seconds is None else seconds,
        seed=seed,
        n_random=3,
        side="both",
        walks_per_task=1,
        memory_budget=zoo.RUN_DEFAULTS[model]["memory_budget"],
    )


def ensure_run(
    directory: str | Path,
    model: str | None,
    *,
    budget: int | None,
    seed: int,
    truncation: float | None,
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] = print,
    on_game: Callable[[list[str]], None] | None = None,
    study: str = "critical",
    seconds: float | None = None,
) -> bool:
    """Make sure ``directory`` holds a run to study; make it with ``model`` if it holds none.

    The run is made as :func:`study_run_config` says for ``study``; ``budget`` (evaluations)
    and ``seconds`` bound its sampling (``None``: the study's default).

    Returns:
        Whether the run was made now.

    Raises:
        RunError: If there is no run and no model, or the run there is of another model.
    """
    out = Path(directory)
    if (out / RUN_FILE).is_file():
        if model is not None:
            made_with = read_run(out)["config"]["model"]
            wanted = resolved_config(RunConfig(model=model)).model
            if made_with not in (model, wanted):
                raise RunError(
                    f"--model {model}: the run in {out} is of {made_with}; drop --model to "
                    "study it, or choose another --run directory."
                )
        return False
    if model is None:
        raise RunError(
            f"--run {out} holds no run; make one with 'neuronshapley run', or pass --model to "
            "make it first."
        )
    config = study_run_config(
        study, model, budget=budget, seed=seed, truncation=truncation, seconds=seconds
    )
    execute(config, out, progress=progress, log=log, on_game=on_game)
    return True


def _csv(rows: Sequence[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, default=json_default) + "\n").encode("utf-8")


def _fmt(value: float) -> str:
    return f"{value:.3f}"


def _counts(k: int) -> list[int]:
    """Numbers of units removed in a study's table: 0, 1, 2, 3, 5 and ``k`` (at most ``k``)."""
    return sorted({count for count in (0, 1, 2, 3, 5) if count <= k} | {k})


# -- critical units --------------------------------------------------------------------------------
def _critical(
    run: "StudiedRun", options: StudyOptions, progress: ProgressCallback | None
) -> StudyOutput:
    from neuronshapley.applications.critical import critical_units_study
    from neuronshapley.report.studies import plot_critical, plot_reverse

    game, result = run.game, run.result
    k = min(options.k or 20, game.n_players)
    study = critical_units_study(game, result, k=k, n_random=options.n_random, seed=options.seed)
    metric = game.metric.name
    table = study.table()
    after = {row["ranking"]: row[f"top {k}"] for row in table}
    baselines = {name: value for name, value in after.items() if name in study.scores}
    baselines.pop("shapley")
    best = min(baselines, key=baselines.__getitem__)
    random_mean, random_sd = after["random (mean)"], after["random (sd)"]
    text = (
        f"Section 4.1 of the paper: remove the units with the highest Shapley values and "
        f"compare with as many units ranked by simpler scores. {metric} of the full model: "
        f"{_fmt(study.full_value)}. After removing the top {k}: {_fmt(after['shapley'])} by "
        f"Shapley value, {_fmt(baselines[best])} by the best baseline ({best}), and "
        f"{_fmt(random_mean)} ± {_fmt(random_sd)} for {k} random units "
        f"({options.n_random} draws).\n\n"
        f"Reverse: the {study.units_before_drop} lowest-valued units (of {game.n_players}) can "
        f"be removed before {metric} falls more than {study.drop:g} below the full model."
    )
    return StudyOutput(
        heading="Critical units against baselines",
        text=text,
        figures=[
            (
                "critical",
                f"{metric} after removing each ranking's top units; grey: random units.",
                plot_critical(study),
            ),
            (
                "reverse",
                f"{metric} as the lowest-valued units are removed first.",
                plot_reverse(study),
            ),
        ],
        table=table,
        headline={
            "k": k,
            "full": study.full_value,
            "after_top_k": after,
            "best_baseline": best,
            "units_before_drop": study.units_before_drop,
        },
    )


# -- class-specific units --------------------------------------------------------------------------
def _classes(
    run: "StudiedRun", options: StudyOptions, progress: ProgressCallback | None
) -> StudyOutput:
    from neuronshapley.applications.classes import class_specific_units
    from neuronshapley.report.studies import plot_class_curves, plot_class_depth

    game, result, config = run.game, run.result, run.config
    present = sorted(int(c) for c in game.data.y.unique().tolist())
    classes = list(options.classes) if options.classes is not None else present
    missing = [c for c in classes if c not in present]
    if missing:
        raise RunError(
            f"--classes: the run's data has no example of class {missing[0]}; its classes are "
            f"{', '.join(map(str, present))}."
        )
    k = min(options.k or 10, game.n_players)
    study = class_specific_units(
        game,
        result,
        classes,
        k=k,
        max_evaluations=options.budget,
        truncation=config.truncation,
        n_random=options.n_random,
        seed=options.seed,
        progress=progress,
    )
    rows = study.table()
    recall_after = float(np.mean([entry.recall_after for entry in study.per_class]))
    recall_before = float(np.mean([entry.recall_before for entry in study.per_class]))
    accuracy_after = float(np.mean([entry.accuracy_after for entry in study.per_class]))
    overlap = float(np.mean([entry.overlap_with_global for entry in study.per_class]))
    depth = float(np.mean([entry.mean_depth for entry in study.per_class]))
    text = (
        f"Section 4.2 of the paper: value the units for the recall of one class (on that "
        f"class's examples, {options.budget:,} evaluations per class) and remove each class's "
        f"top {k}. Averaged over {len(classes)} classes: the class's recall falls from "
        f"{_fmt(recall_before)} to {_fmt(recall_after)}, while overall accuracy goes from "
        f"{_fmt(study.per_class[0].accuracy_before)} to {_fmt(accuracy_after)}. On average "
        f"{overlap:.1f} of a class's top {k} are among the global top {k}. Mean layer position "
        f"(0 = {study.layer_names[0]}): {depth:.2f} for the class-specific units, "
        f"{study.global_mean_depth:.2f} for the global ones."
    )
    return StudyOutput(
        heading="Class-specific units",
        text=text,
        figures=[
            (
                "class_curves",
                "Recall of each class as its own top units are removed (dashed: random units).",
                plot_class_curves(study),
            ),
            (
                "class_depth",
                "Mean layer of each class's top units; dashed: the global top units.",
                plot_class_depth(study),
            ),
        ],
        table=rows,
        headline={
            "k": k,
            "classes": classes,
            "mean_recall_before": float(recall_before),
            "mean_recall_after": float(recall_after),
            "mean_accuracy_after": float(accuracy_after),
            "mean_overlap_with_global": float(overlap),
            "class_mean_depth": float(depth),
            "global_mean_depth": study.global_mean_depth,
            "top_units": {str(entry.target_class): entry.top for entry in study.per_class},
        },
    )


# -- fairness ------------------------------------------------------------------------------------
def _fairness(
    run: "StudiedRun", options: StudyOptions, progress: ProgressCallback | None
) -> StudyOutput:
    from neuronshapley.applications.fairness import fairness_study, split_in_two
    from neuronshapley.estimators import permutation_shapley
    from neuronshapley.report.studies import plot_fairness

    game = run.game
    if game.data.groups is None:
        raise RunError(
            "the fairness study needs a group per example (e.g. --model adult-mlp, whose data "
            f"has sex x race groups); the data of this run ({game.data.name}) has none."
        )
    k = min(options.k or 10, game.n_players)
    values_half, held_out = split_in_two(game.data, seed=options.seed)
    fair_game = game.with_data(values_half, metric="mean_group_recall")
    values = permutation_shapley(
        fair_game, max_evaluations=options.budget, seed=options.seed, progress=progress
    )
    study = fairness_study(fair_game, values, held_out, counts=_counts(k))
    before, after = study.reports[0], study.reports[-1]
    worst = int(np.nanargmin(before.recall))
    group = before.group_names[worst]
    n_negative = int(np.sum(np.asarray(values.values) < 0))
    text = (
        f"Section 4.3 of the paper: value the units for the mean over groups of the recall of "
        f"the positive class, on one half of the data ({permutation_shapley.__name__}, "
        f"{values.n_evaluations:,} evaluations); remove the units with the most negative values "
        f"and report on the other half. {n_negative} units have a negative value. Removing "
        f"{after.n_removed}: mean group recall {_fmt(before.mean_group_recall)} → "
        f"{_fmt(after.mean_group_recall)}, recall gap {_fmt(before.recall_gap)} → "
        f"{_fmt(after.recall_gap)}, recall of the worst group ({group}) "
        f"{_fmt(before.recall[worst])} → {_fmt(after.recall[worst])}, overall accuracy "
        f"{_fmt(before.overall_accuracy)} → {_fmt(after.overall_accuracy)}."
    )
    return StudyOutput(
        heading="Fairness repair",
        text=text,
        figures=[
            (
                "fairness",
                "Held-out recall per group and overall accuracy as the most negative units go.",
                plot_fairness(study),
            )
        ],
        table=cast(list[dict[str, Any]], study.table()),
        headline={
            "removed": study.order,
            "negative_units": n_negative,
            "groups": list(before.group_names),
            "recall_before": before.recall,
            "recall_after": after.recall,
            "overall_accuracy_before": before.overall_accuracy,
            "overall_accuracy_after": after.overall_accuracy,
            "mean_group_recall_before": before.mean_group_recall,
            "mean_group_recall_after": after.mean_group_recall,
        },
    )


# -- adversarial ---------------------------------------------------------------------------------
def _adversarial(
    run: StudiedRun, options: StudyOptions, progress: ProgressCallback | None
) -> StudyOutput:
    from neuronshapley.applications.adversarial import DEFAULT_EPSILON, adversarial_study
    from neuronshapley.report.studies import plot_adversarial

    game, result = run.game, run.result
    sources = _sources(run.config, options.sources)
    k = min(options.k or 10, game.n_players)
    try:
        study = adversarial_study(
            game,
            result,
            epsilon=options.epsilon or DEFAULT_EPSILON,
            steps=options.steps,
            step_size=options.step_size,
            k=k,
            counts=_counts(k),
            max_evaluations=options.budget,
            truncation=run.config.truncation,
            sources=sources,
            seed=options.seed,
            progress=progress,
        )
    except ValueError as error:  # e.g. a source model with other classes
        raise RunError(str(error)) from error
    table = cast(list[dict[str, Any]], study.table())
    before, after = table[0], table[-1]
    transfer = [column for column in before if column.startswith("transfer from")]
    transfer_text = "".join(
        f" Transferred from {column[len('transfer from ') :]}: {_fmt(before[column])} → "
        f"{_fmt(after[column])}."
        for column in transfer
    )
    correlation = (
        "" if study.rank_correlation is None else f"{study.rank_correlation:.2f}"
    ) or "not computed"
    text = (
        f"Section 4.4 of the paper: a targeted L∞ PGD attack (ε = {study.epsilon:g}, "
        f"{study.steps} steps, random target classes) on half of the run's data; the units are "
        f"valued for its success rate ({study.result.n_evaluations:,} evaluations) and the "
        f"most used ones removed. Removing {after['removed']}: the attack's success on the "
        f"values half {_fmt(before['attack success (values half)'])} → "
        f"{_fmt(after['attack success (values half)'])}; the same attack on the held-out half "
        f"{_fmt(before['attack success (held-out)'])} → "
        f"{_fmt(after['attack success (held-out)'])}; clean accuracy "
        f"{_fmt(before['clean accuracy'])} → {_fmt(after['clean accuracy'])}.{transfer_text} "
        f"A white-box attack on the repaired model (it knows the {study.whitebox_removed} "
        f"removed units) still succeeds {_fmt(study.whitebox_success)}. Rank correlation "
        f"between the adversarial values and the run's values: {correlation} (paper: 0.3)."
    )
    return StudyOutput(
        heading="Adversarial repair",
        text=text,
        figures=[
            (
                "adversarial",
                "Attack success and clean accuracy as the units the attack uses most are removed.",
                plot_adversarial(study),
            )
        ],
        table=table,
        headline={
            "epsilon": study.epsilon,
            "steps": study.steps,
            "removed": study.order[: int(after["removed"])],
            "rank_correlation": study.rank_correlation,
            "whitebox_success": study.whitebox_success,
            "before": before,
            "after": after,
        },
    )


def _sources(config: RunConfig, spec: str | None) -> dict[str, Any]:
    """The models whose attacks are transferred: named, or the run's bundled siblings."""
    from neuronshapley import zoo
    from neuronshapley.workflows.runs import load_model

    if spec is not None and spec.strip().lower() == "none":
        return {}
    if spec is None:
        if config.model not in zoo.available() or config.data is not None:
            return {}
        dataset = zoo.describe(config.model)["recipe"]["dataset"]
        names = [
            name
            for name in zoo.available()
            if name != config.model and zoo.describe(name)["recipe"]["dataset"] == dataset
        ]
    else:
        names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in zoo.available() and not is_spec(name)]
    if unknown:
        raise RunError(
            f"--sources: {unknown[0]!r} is neither a bundled model "
            f"({', '.join(zoo.available())}) nor path/to/file.py:function."
        )
    return {name: load_model(name)[0] for name in names}


# -- dropout -------------------------------------------------------------------------------------
OTHER_RUN = "other-run"


def _dropout(
    run: "StudiedRun", options: StudyOptions, progress: ProgressCallback | None
) -> StudyOutput:
    from neuronshapley.applications.dropout import dropout_study
    from neuronshapley.report.studies import (
        plot_reverse_removal,
        plot_top_removal,
        plot_value_histograms,
    )

    game, result, config = run.game, run.result, run.config
    other_game, other_result, other_name = _other_model(run, options, progress)
    name = config.model
    if other_name == name:  # the same model (another run of it): keep both rows apart
        other_name = f"{other_name} (compared)"
    k = min(options.k or 20, game.n_players, other_game.n_players)
    study = dropout_study(
        {name: (game, result), other_name: (other_game, other_result)},
        k=k,
        n_random=options.n_random,
        seed=options.seed,
    )
    first, second = study.models[name], study.models[other_name]
    metric = game.metric.name
    text = (
        f"Section 4.4 of the paper (dropout effect): the same study on {name} and on "
        f"{other_name}. Spread of the values (sd): {first.value_sd:.4f} and "
        f"{second.value_sd:.4f}; fraction with |value| < {study.near_zero:.4g}: "
        f"{first.near_zero_fraction:.2f} and {second.near_zero_fraction:.2f}. {metric} after "
        f"removing the top {k}: {_fmt(float(first.top.ranked[-1]))} (from "
        f"{_fmt(first.full_value)}) and {_fmt(float(second.top.ranked[-1]))} (from "
        f"{_fmt(second.full_value)}). Lowest-valued units removable before {metric} falls "
        f"more than {study.drop:g}: {first.units_before_drop} of {first.n_units} and "
        f"{second.units_before_drop} of {second.n_units}."
    )
    return StudyOutput(
        heading="Dropout effect",
        text=text,
        figures=[
            ("histograms", "Distribution of each model's values.", plot_value_histograms(study)),
            (
                "top_removal",
                f"{metric} as each model's top units are removed; bands: random units.",
                plot_top_removal(study),
            ),
            (
                "reverse_removal",
                f"{metric} as each model's lowest-valued units are removed first.",
                plot_reverse_removal(study),
            ),
        ],
        table=study.table(),
        headline={"k": k, "near_zero": study.near_zero, "models": study.table()},
    )


def _other_model(
    run: StudiedRun, options: StudyOptions, progress: ProgressCallback | None
) -> tuple[Any, ShapleyResult, str]:
    """The model the dropout study compares with, its values and its name.

    A run directory is used as it is. A model is valued with the run's settings (its own
    budget: ``options.budget``) into ``studies/dropout/other-run/`` of the studied run, which
    later studies reuse while the settings match.
    """
    from neuronshapley import zoo

    config = run.config
    other = options.other
    if other is None:
        other = f"{config.model}-dropout"
        if other not in zoo.available():
            raise RunError(
                f"the dropout study compares {config.model} with a model trained with dropout: "
                "pass --other (a run directory, a bundled model or path/to/file.py:function)."
            )
    if (Path(other) / RUN_FILE).is_file():
        game, result, other_config = game_from_run(other)
        return game, result, other_config.model
    target = run.directory / STUDIES_DIR / "dropout" / OTHER_RUN
    other_config = RunConfig(
        model=other,
        data=config.data,
        units=config.units,
        metric=config.metric,
        ablation=config.ablation,
        k=config.k,
        delta=config.delta,
        tol=config.tol,
        side=config.side,
        value_range=config.value_range,
        truncation=config.truncation,
        continue_probability=config.continue_probability,
        budget=options.budget,
        device=config.device,
        seed=options.seed,
        walks_per_task=config.walks_per_task,
        forward=config.forward,
        output=config.output,
    )
    other_config = resolved_config(other_config)
    if not _finished_with(target, other_config):
        execute(other_config, target, overwrite=True, progress=progress, log=lambda line: None)
    game, result, _ = game_from_run(target)
    return game, result, other


def _finished_with(directory: Path, config: RunConfig) -> bool:
    """Whether ``directory`` holds a finished run with ``config``'s settings and budget."""
    if not (directory / RUN_FILE).is_file():
        return False
    try:
        saved = read_run(directory)
    except RunError:
        return False
    wanted = json.loads(_json(asdict(config)))
    return bool(
        saved.get("status") == "complete"
        and {name: saved["config"].get(name) for name in wanted} == wanted
    )


# -- what the top units see --------------------------------------------------------------------
def _units(
    run: StudiedRun, options: StudyOptions, progress: ProgressCallback | None
) -> StudyOutput:
    from neuronshapley.applications.visualize import extreme_examples, maximize_activation
    from neuronshapley.report.units import plot_extremes, plot_layer_distribution, plot_maximized

    game, result = run.game, run.result
    k = min(options.k or 20, game.n_players)
    layer_of = dict(zip(game.player_names, game.unit_layers, strict=True))
    best: dict[str, Any] = {}
    for row in result.top(game.n_players):  # highest first: the first seen is a layer's best
        best.setdefault(layer_of[row.name], row)
    shape = tuple(game.data.x.shape[1:])
    n_examples = min(5, len(game.data))
    figures = [
        (
            "layer_distribution",
            f"How many of the top {k} units each layer holds (the paper's figure 1, bottom).",
            plot_layer_distribution(result, game.unit_layers, k),
        )
    ]
    rows = []
    for layer in [layer.path for layer in game.layers if layer.path in best]:
        row = best[layer]
        extremes = extreme_examples(game, row.name, k=n_examples)
        stem = row.name.replace(":", "_").replace(".", "_")
        caption = (
            f"{row.name}, the highest-valued unit of {layer} (rank {row.rank}): the "
            f"{n_examples} examples that activate it most (top) and least (bottom)."
        )
        figures.append((f"extremes_{stem}", caption, plot_extremes(extremes, game.data)))
        maximized = maximize_activation(game, row.name, shape, seed=options.seed)
        caption = (
            f"{row.name}: an input that maximises its mean activation (gradient ascent with "
            "jitter and blur)."
        )
        title = f"{row.name}: maximised"
        figures.append((f"maximized_{stem}", caption, plot_maximized(maximized, title=title)))
        rows.append(
            {
                "layer": layer,
                "unit": row.name,
                "rank": row.rank,
                "value": row.value,
                "most active examples": " ".join(map(str, extremes.indices_top.tolist())),
                "least active examples": " ".join(map(str, extremes.indices_bottom.tolist())),
            }
        )
    counts = {layer.path: 0 for layer in game.layers}
    for row in result.top(k):
        counts[layer_of[row.name]] += 1
    text = (
        "Section 4.1 and figure 1 of the paper: what the critical units respond to. For the "
        "highest-valued unit of each layer, the examples of the run's data that activate it "
        "most and least, and an input found by gradient ascent. Top "
        f"{k} units per layer: "
        + ", ".join(f"{layer} {count}" for layer, count in counts.items())
        + ". 'neuronshapley unit --run DIR --unit NAME' draws any other unit."
    )
    return StudyOutput(
        heading="What the top units see",
        text=text,
        figures=figures,
        table=rows,
        headline={"k": k, "top_k_per_layer": counts, "units": rows},
    )


# -- attention heads of a pretrained encoder (issue 13) ------------------------------------------
def _heads(
    run: StudiedRun, options: StudyOptions, progress: ProgressCallback | None
) -> StudyOutput:
    from neuronshapley import zoo
    from neuronshapley.applications.heads import heads_study

    game, result, config = run.game, run.result, run.config
    if config.model not in zoo.pretrained() or config.data is not None:
        raise RunError(
            "the heads study needs a run of a pretrained encoder on its own benchmarks "
            f"(--model {' or '.join(zoo.pretrained())}, no --data); this run is of "
            f"{config.model}{'' if config.data is None else ' with --data ' + config.data}."
        )
    try:
        words = zoo.minilm.word_similarity()
        k = min(options.k or 10, game.n_players - 1)
        study = heads_study(
            game,
            result,
            {name: words.evaluation(name) for name in words.held_out},
            special_ids=words.special_ids,
            k=k,
            n_random=max(options.n_random, 2),
            seed=options.seed,
            valuing=words.valuing,
        )
    except (ImportError, ValueError) as error:
        raise RunError(str(error)) from error
    return _heads_output(study, result, words.valuing)


def _rho(value: float | None) -> str:
    return "undefined (all values equal)" if value is None else f"{value:+.2f}"


def _heads_output(study: "HeadsStudy", result: ShapleyResult, valuing: str) -> StudyOutput:
    from neuronshapley.report.studies import (
        plot_head_removal,
        plot_head_values,
        plot_values_against_attention,
    )

    k, scores, sd = study.k, study.scores, study.random_sd
    none, top, negative, random = study.removals
    full, empty = float(study.curves["highest first"][0]), float(study.curves["lowest first"][-1])
    n_walks = int(result.diagnostics.get("n_permutations", np.max(result.n_samples)))
    unused = int(result.diagnostics.get("n_evaluations_unused", 0))
    low, high = np.asarray(result.ci_low), np.asarray(result.ci_high)
    sign_known = int(np.sum((low > 0) | (high < 0)))

    def after(benchmark: str) -> str:
        row = scores[benchmark]
        return (
            f"{benchmark}: {_fmt(row[none])}; without the top {k} {_fmt(row[top])}, without the "
            f"{k} most negative {_fmt(row[negative])}, without {k} random "
            f"{_fmt(row[random])} ± {_fmt(sd[benchmark])}"
        )

    held_out = [name for name in scores if name != valuing]
    rho = study.rank_correlation
    text = (
        f"The {len(study.names)} attention heads valued for the Spearman correlation between "
        f"the cosine similarities of the words' embeddings and people's ratings on {valuing} "
        f"(V(N) = {_fmt(full)} with every head, V(∅) = {_fmt(empty)} with none), "
        f"{result.estimator}, {result.n_evaluations:,} evaluations: {n_walks} permutations of "
        f"the heads{f', and {unused} evaluations of one the budget cut' if unused else ''} "
        f"(stopped: {result.stop_reason})"
        + (". No permutation finished: every value is 0; raise --budget" if n_walks == 0 else "")
        + f". {sign_known} of "
        f"{len(study.names)} heads have an interval that excludes 0; {study.n_negative} have "
        f"a negative value. Top {k}: {', '.join(study.top)}. Most negative: "
        f"{', '.join(study.most_negative)}.\n\n"
        f"Spearman on the valuing benchmark, {after(valuing)} ({study.n_random} draws).\n\n"
        "Held out (never used for the values): "
        + "; ".join(after(name) for name in held_out)
        + ".\n\n"
        "Attention weights are not explanations: the rank correlation between the heads' "
        f"values and their mean attention entropy is {_rho(rho['entropy'])}, and with their "
        f"share of attention on content tokens (not [CLS], [SEP]) {_rho(rho['content share'])}."
    )
    return StudyOutput(
        heading="Attention heads of a pretrained encoder",
        text=text,
        figures=[
            ("head_values", f"Every head's value on {valuing}.", plot_head_values(study)),
            (
                "head_removal",
                f"Spearman on {valuing} as heads are removed; grey: random heads.",
                plot_head_removal(study),
            ),
            (
                "head_attention",
                "Each head's value against the mean entropy of its attention.",
                plot_values_against_attention(study),
            ),
        ],
        table=study.score_table(),
        headline={
            "k": k,
            "valuing": valuing,
            "full": full,
            "empty": empty,
            "n_evaluations": result.n_evaluations,
            "n_permutations": n_walks,
            "stop_reason": result.stop_reason,
            "sign_known": sign_known,
            "n_negative": study.n_negative,
            "top": study.top,
            "most_negative": study.most_negative,
            "scores": scores,
            "random_sd": sd,
            "n_random": study.n_random,
            "rank_correlation": rho,
            "curves": {"counts": study.counts, **study.curves},
            "heads": study.table(),
        },
    )


# -- interactions between the top units (issue 18) -----------------------------------------------
def _interactions(
    run: "StudiedRun", options: StudyOptions, progress: ProgressCallback | None
) -> StudyOutput:
    from neuronshapley.applications.fairness import split_in_two
    from neuronshapley.applications.interactions import (
        greedy_removal_order,
        leave_one_out_costs,
        pairwise_removal_order,
        values_after_removal,
    )
    from neuronshapley.estimators import permutation_shapley
    from neuronshapley.estimators.interactions import permutation_interactions
    from neuronshapley.report.interactions import plot_interaction_matrix, plot_removal_orders
    from neuronshapley.results.interactions import InteractionResult

    n = run.game.n_players
    if n < 3:
        raise RunError(f"the interactions study needs at least 3 units; the run has {n}.")
    if len(run.game.data) < 4:
        raise RunError(
            "the interactions study splits the run's examples in two (choices, held-out "
            f"scoring) and needs at least 4; the run has {len(run.game.data)}."
        )
    # Every choice (the values, the interactions, the leave-one-out costs, the greedy order) is
    # made on one half of the run's examples, and every order is also scored on the other
    # half, which none of them saw: greedy on the game fits the examples it is chosen on.
    choice_half, held_half = split_in_two(run.game.data, seed=options.seed)
    game = run.game.with_data(choice_half)
    held_game = run.game.with_data(held_half)
    result = permutation_shapley(
        game,
        max_evaluations=INTERACTIONS_VALUES_BUDGET,
        antithetic=True,
        seed=options.seed,
        progress=progress,
    )
    k = min(options.k or 10, n - 1)
    m = min(2 * k, n)
    names = list(game.player_names)
    top = [names[i] for i in result.top_indices(m)]
    # Independent seeds of 2 or more permutations each (the estimator's least), merged: the
    # spread between them gives sums of pairs an error.
    n_permutations = max(4, options.budget // (2 * m * m))
    n_chunks = min(INTERACTION_CHUNKS, n_permutations // 2)
    sizes = [n_permutations // n_chunks + (c < n_permutations % n_chunks) for c in range(n_chunks)]
    parts = [
        permutation_interactions(game, players=top, n_permutations=size, seed=options.seed + c)
        for c, size in enumerate(sizes)
    ]
    interactions = reduce(InteractionResult.merge, parts)
    pairs = interactions.pairs()
    upper = np.triu_indices(m, k=1)
    values, stderr = interactions.values[upper], interactions.stderr[upper]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(stderr > 0, values / stderr, 0.0)
    critical = float(statistics.NormalDist().inv_cdf(1 - 0.05 / (2 * len(values))))
    removed = np.arange(k)

    def inside(matrix: np.ndarray, size: int) -> float:
        return float(matrix[np.ix_(removed[:size], removed[:size])].sum() / 2.0)

    spread = np.std([inside(part.values, k) for part in parts], ddof=1) / np.sqrt(n_chunks)
    costs = leave_one_out_costs(game, top)
    shapley_order = values_after_removal(game, top[:k], "Shapley value, highest first")
    full = float(shapley_order.values[0])
    phi = np.asarray(result.values, dtype=np.float64)[result.top_indices(m)]
    account = [
        {
            "removed": size,
            "cost": full - float(shapley_order.values[size]),
            "sum of Shapley values": float(phi[:size].sum()),
            "sum of leave-one-out costs": float(costs[:size].sum()),
            "pairs inside": inside(interactions.values, size),
            "pairwise account": float(costs[:size].sum()) - inside(interactions.values, size),
        }
        for size in _counts(k)
        if size > 0
    ]
    loo_order = [top[i] for i in np.argsort(-costs, kind="stable")[:k]]
    orders = [
        shapley_order,
        values_after_removal(game, loo_order, "leave-one-out cost"),
        values_after_removal(
            game, pairwise_removal_order(costs, interactions, k), "pairwise model"
        ),
        replace(greedy_removal_order(game, k, candidates=top), rule=f"greedy on the game, top {m}"),
    ]
    held_out = [values_after_removal(held_game, order.order, order.rule) for order in orders]
    metric = game.metric.name
    last = account[-1]
    most_redundant, most_synergistic = pairs[0], pairs[-1]
    after = {order.rule: float(order.values[-1]) for order in orders}
    after_held = {order.rule: float(order.values[-1]) for order in held_out}
    text = (
        f"The run's {len(run.game.data)} examples split in two halves: the choice half "
        f"({len(choice_half)}) for every estimate and order below, the held-out half "
        f"({len(held_half)}) to score the orders. Values on the choice half: "
        f"{result.n_evaluations:,} evaluations of antithetic permutation sampling. "
        f"Pairwise Shapley interaction index (Grabisch & Roubens 1999; negative: redundant, "
        f"positive: synergistic) of the top {m} units by value, inside the whole {n}-unit game: "
        f"{len(values)} pairs from {n_permutations} permutations ({interactions.n_evaluations:,} "
        f"evaluations, {n_chunks} independent seeds). {int(np.sum(values < 0))} pairs are "
        f"negative; the median standard error is {np.median(stderr):.2g}. "
        f"{int(np.sum(np.abs(z) > 1.96))} pairs have a normal 95% interval that excludes 0 "
        f"({int(np.sum(z < -1.96))} redundant, {int(np.sum(z > 1.96))} synergistic; about "
        f"{0.05 * len(values):.1f} would by chance), {int(np.sum(np.abs(z) > critical))} after "
        f"a Bonferroni correction over the pairs (|z| > {critical:.2f}). Most redundant: "
        f"{most_redundant.first} x {most_redundant.second} ({most_redundant.value:+.3g} ± "
        f"{most_redundant.stderr:.2g}); most synergistic: {most_synergistic.first} x "
        f"{most_synergistic.second} ({most_synergistic.value:+.3g} ± "
        f"{most_synergistic.stderr:.2g}).\n\n"
        f"Removing the top {k} costs {last['cost']:.4f} of {metric} ({full:.4f} with every "
        f"unit), against {last['sum of Shapley values']:.4f} for the sum of their values and "
        f"{last['sum of leave-one-out costs']:.4f} for the sum of their leave-one-out costs. "
        f"The pairs inside the top {k} sum to {last['pairs inside']:+.4f} ± {spread:.4f} "
        f"(spread of the seeds); were the game pairwise (2-additive), the cost would be the "
        f"leave-one-out costs less those pairs, {last['pairwise account']:.4f}.\n\n"
        f"{metric} after removing {k} units, on the choice half (where every order was chosen, "
        "so greedy's curve is optimistic there): "
        + "; ".join(f"{rule} {value:.4f}" for rule, value in after.items())
        + f" (greedy: {orders[-1].n_evaluations:,} evaluations). On the held-out half "
        f"({float(held_out[0].values[0]):.4f} with every unit): "
        + "; ".join(f"{rule} {value:.4f}" for rule, value in after_held.items())
        + "."
    )
    table = [
        {
            "first": pair.first,
            "second": pair.second,
            "interaction": pair.value,
            "stderr": pair.stderr,
            "ci_low": pair.ci_low,
            "ci_high": pair.ci_high,
        }
        for pair in pairs
    ]
    return StudyOutput(
        heading="Interactions between the top units",
        text=text,
        figures=[
            (
                "interactions",
                (
                    f"Interactions of the top {m} units (blue: redundant, red: synergistic; "
                    "dots: normal 95% interval excludes 0)."
                ),
                plot_interaction_matrix(interactions),
            ),
            (
                "interaction_removal",
                f"{metric} on the choice half as units are removed in each order.",
                plot_removal_orders(orders, metric=metric),
            ),
            (
                "interaction_removal_held_out",
                f"{metric} on the held-out half, the same orders.",
                plot_removal_orders(
                    held_out, metric=metric, title=f"{metric} on the held-out half"
                ),
            ),
        ],
        table=table,
        headline={
            "k": k,
            "players": top,
            "n_permutations": n_permutations,
            "n_evaluations": interactions.n_evaluations,
            "n_significant": int(np.sum(np.abs(z) > 1.96)),
            "n_bonferroni": int(np.sum(np.abs(z) > critical)),
            "account": account,
            "inside_spread": float(spread),
            "orders": {
                order.rule: {
                    "order": order.order,
                    "values": order.values.tolist(),
                    "held_out_values": held.values.tolist(),
                    "n_evaluations": order.n_evaluations,
                }
                for order, held in zip(orders, held_out, strict=True)
            },
            "n_choice_examples": len(choice_half),
            "n_held_out_examples": len(held_half),
            "values_evaluations": result.n_evaluations,
        },
    )


_FUNCTIONS: dict[str, StudyFunction] = {
    "critical": _critical,
    "classes": _classes,
    "fairness": _fairness,
    "adversarial": _adversarial,
    "dropout": _dropout,
    "units": _units,
    "heads": _heads,
    "interactions": _interactions,
}
