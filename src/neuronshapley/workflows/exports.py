"""``neuronshapley repair`` and ``unit`` on a run directory: what they compute and write."""

from dataclasses import dataclass
from pathlib import Path

from neuronshapley.workflows.runs import RunError, game_from_run
from neuronshapley.workflows.studies import StudiedRun, StudyOutput, save_study


@dataclass(frozen=True)
class Repaired:
    """What ``repair`` did.

    Attributes:
        removed: The units removed.
        target: The model file written.
        metric: The run's metric name.
        before: The metric on the run's data before the removal.
        after: The metric after it.
    """

    removed: list[str]
    target: Path
    metric: str
    before: float
    after: float


def repair_run(run_dir: str | Path, remove: str, out: str | Path | None = None) -> Repaired:
    """Save a standalone model with units of a run removed; add a section to its report.

    Args:
        run_dir: The run directory.
        remove: ``top:N``, ``bottom:N``, ``negative:N`` or comma-separated unit names.
        out: The model file; default ``run_dir/repaired.pt``.

    Raises:
        RunError: For a damaged run, a selection that matches nothing, or a model that cannot
            be repaired.
    """
    from neuronshapley.applications.repair import repair, save_repaired, select_units

    run = Path(run_dir)
    game, result, config = game_from_run(run)
    spec = remove if ":" in remove.split(",")[0] else remove.split(",")
    try:
        removed = select_units(result, spec)
    except (ValueError, TypeError) as error:
        raise RunError(str(error)) from None
    if not removed:
        raise RunError(f"--remove {remove} selects no unit of {run}.")
    target = Path(out) if out else run / "repaired.pt"
    try:
        model = repair(game, removed)
    except ValueError as error:  # e.g. heads of an nn.MultiheadAttention
        raise RunError(str(error)) from None
    recipe = {
        "model": config.model,
        "removed": removed,
        "run": str(run),
        "metric": config.metric,
        "ablation": config.ablation,
    }
    save_repaired(model, target, recipe=recipe)
    before, after = game.value_without([]), game.value_without(removed)
    metric = game.metric.name
    values = dict(zip(result.player_names, result.values, strict=True))
    layer_of = dict(zip(game.player_names, game.unit_layers, strict=True))
    output = StudyOutput(
        heading="Repaired model",
        text=(
            f"{len(removed)} units removed and the model saved as {target} (reload it with "
            "neuronshapley.applications.repair.load_repaired: no hooks; ablations folded into "
            f"the weights where exact, else an Ablated wrapper). {metric} on the run's data: "
            f"{before:.4f} before, {after:.4f} after."
        ),
        table=[
            {"unit": name, "layer": layer_of[name], "value": float(values[name])}
            for name in removed
        ],
        headline={"removed": removed, "file": str(target), "before": before, "after": after},
    )
    save_study(
        StudiedRun(run, game, result, config),
        "repair",
        output,
        settings={"remove": removed, "out": str(target)},
        seconds=0.0,
    )
    return Repaired(removed, target, metric, before, after)


@dataclass(frozen=True)
class UnitView:
    """What ``unit`` wrote: the examples that activate the unit most and least, and the files."""

    most_active: list[int]
    least_active: list[int]
    files: list[Path]


def draw_unit(run_dir: str | Path, unit: str, k: int, out: str | Path | None = None) -> UnitView:
    """Plot the examples that activate ``unit`` most and least, and an input maximising it.

    Args:
        run_dir: The run directory.
        unit: The unit's name, e.g. ``"conv1:2"``.
        k: Examples per side.
        out: Where to write the PNGs; default ``run_dir/units/<unit>``.
    """
    from neuronshapley.applications import visualize
    from neuronshapley.report import figure_to_png
    from neuronshapley.report.units import plot_extremes, plot_maximized

    game, _, _ = game_from_run(run_dir)
    try:
        extremes = visualize.extreme_examples(game, unit, k=k)
    except (ValueError, TypeError) as error:
        raise RunError(str(error)) from None
    target = Path(out) if out else Path(run_dir) / "units" / unit.replace(":", "_")
    target.mkdir(parents=True, exist_ok=True)
    shape = tuple(game.data.x.shape[1:])
    maximized = visualize.maximize_activation(game, unit, shape, seed=0)
    figures = {
        "extremes.png": plot_extremes(extremes, game.data),
        "maximized.png": plot_maximized(maximized, title=f"{unit}: maximised"),
    }
    for name, figure in figures.items():
        (target / name).write_bytes(figure_to_png(figure))
    return UnitView(
        extremes.indices_top.tolist(),
        extremes.indices_bottom.tolist(),
        [target / name for name in figures],
    )
