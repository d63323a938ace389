"""A Neuron Shapley run on disk: the job behind ``neuronshapley run`` and ``show``.

A run directory holds:

- ``run.json``: the configuration, the status (``running``, ``interrupted``, ``complete``) and
  the headline numbers;
- ``checkpoint/``: the estimator's state, for ``--resume``;
- ``result.json`` + ``result.npz``: the :class:`~neuronshapley.ShapleyResult`;
- ``values.csv``: unit, layer, value, stderr, interval and samples of every unit;
- PNG plots and ``report.html``, a self-contained summary page;
- ``studies/<name>/``: studies run on the values (:mod:`neuronshapley.workflows.studies`),
  each a section of ``report.html``. A run that changes its values (``overwrite``,
  ``resume``) deletes them.

A directory that holds a different run is never overwritten without ``overwrite=True``.
"""

import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuronshapley._internal.files import atomic_write, json_text, jsonable
from neuronshapley.estimators import ShapleyResult, tmab_shapley
from neuronshapley.estimators.progress import ProgressCallback

RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoint"
STUDIES_DIR = "studies"
RUN_FORMAT = 1
# Files a run writes; --overwrite removes these and nothing else.
_OUTPUTS = (
    RUN_FILE,
    "result.json",
    "result.npz",
    "values.csv",
    "report.html",
    "value_histogram.png",
    "values_by_layer.png",
    "top_units_by_layer.png",
    "removal_curve.png",
)


class RunError(Exception):
    """A mistake in a run's configuration or directory, reported to the user in one line."""


@dataclass(frozen=True)
class RunConfig:
    """What a run computes. All fields but the budgets and the device identify the run.

    Attributes:
        model: A bundled model name (``ns.zoo.available()``) or ``"path/to/file.py:factory"``,
            a function returning an ``nn.Module``.
        data: ``None`` for a bundled model's own data, or ``"path/to/file.py:factory"``
            returning a ``Bundle``, or a dict with ``"data"`` and ``"reference"``.
        units: Comma-separated module-name patterns, or ``None`` for every conv filter (or
            every hidden neuron of a model without convolutions).
        metric: A metric name (see ``ns.metrics``).
        ablation: ``"mean"``, ``"channel_mean"`` or ``"zero"``.
        k: Size of the top set TMAB separates.
        delta: Failure probability of each confidence interval.
        tol: Tolerance of the separation.
        truncation: Early truncation threshold (relative), or ``None``.
        budget: Maximum coalition evaluations, or ``None``.
        max_seconds: Maximum seconds of sampling in this call, or ``None``.
        device: ``"cpu"``, ``"cuda"``, ... or ``None`` for the model's device.
        seed: Seed of the permutations and the random removals.
        n_random: Random draws per point of the removal curve.
    """

    model: str
    data: str | None = None
    units: str | None = None
    metric: str = "accuracy"
    ablation: str = "mean"
    k: int = 10
    delta: float = 0.05
    tol: float = 1e-3
    truncation: float | None = None
    budget: int | None = None
    max_seconds: float | None = None
    device: str | None = None
    seed: int = 0
    n_random: int = 10

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues."""
        fields = dataclasses.asdict(self)
        for name in ("budget", "max_seconds", "device"):
            fields.pop(name)
        return fields


def load_factory(spec: str, what: str) -> Any:
    """Call the function named by ``"path/to/file.py:function"`` and return what it returns."""
    path_text, _, name = spec.rpartition(":")
    if not path_text or not name or not path_text.endswith(".py"):
        raise RunError(
            f"--{what} must be a bundled name or 'path/to/file.py:function'. Got {spec!r}."
        )
    path = Path(path_text)
    if not path.is_file():
        raise RunError(f"--{what}: the file {path} does not exist.")
    module_name = f"_neuronshapley_user_{what}_{abs(hash(path.resolve()))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise RunError(f"--{what}: cannot import {path} as a Python file.")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as error:
        raise RunError(
            f"--{what}: importing {path} raised {type(error).__name__}: {error}"
        ) from error
    factory = getattr(module, name, None)
    if not callable(factory):
        names = [n for n in vars(module) if callable(vars(module)[n]) and not n.startswith("_")]
        raise RunError(
            f"--{what}: {path} has no function {name!r}. "
            f"Functions there: {', '.join(names) or 'none'}."
        )
    try:
        return factory()
    except Exception as error:
        raise RunError(f"--{what}: {spec} raised {type(error).__name__}: {error}") from error


def is_factory(spec: str) -> bool:
    """Whether a model spec names ``path/to/file.py:function`` (else a bundled model)."""
    return ":" in spec and spec.rsplit(":", 1)[0].endswith(".py")


def load_model(spec: str) -> tuple[Any, Any, str]:
    """The model a spec names, the data it brings (or ``None``) and where it came from.

    Args:
        spec: A bundled model name or ``path/to/file.py:function`` returning an ``nn.Module``
            or a ``(module, bundle)`` pair.
    """
    from torch import nn

    from neuronshapley import zoo

    bundle: Any = None
    if is_factory(spec):
        made = load_factory(spec, "model")
        model, bundle = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
        source = f"model from {spec}"
    else:
        if spec not in zoo.available():
            raise RunError(
                f"--model {spec!r} is neither a bundled model "
                f"({', '.join(zoo.available())}) nor 'path/to/file.py:function'."
            )
        model, bundle = zoo.load(spec)
        source = f"bundled model {spec}"
    if not isinstance(model, nn.Module):
        raise RunError(f"--model {spec} gave a {type(model).__name__}, not a torch.nn.Module.")
    return model, bundle, source


def load_model_and_data(config: RunConfig) -> tuple[Any, Any, Any, str]:
    """The model, evaluation data, reference data and a description of where they came from."""
    from neuronshapley.pytorch.data import Bundle

    model, bundle, source = load_model(config.model)
    if config.data is not None:
        bundle = load_factory(config.data, "data")
        source += f", data from {config.data}"
    if isinstance(bundle, Bundle):
        return model, bundle.test, bundle.reference, source
    if isinstance(bundle, dict) and "data" in bundle:
        return model, bundle["data"], bundle.get("reference"), source
    raise RunError(
        f"--model {config.model} brings no data: pass --data path/to/file.py:function returning "
        "a ns.Bundle or a dict {'data': (x, y), 'reference': x_reference}."
    )


def prepare_directory(out: Path, config: RunConfig, *, resume: bool, overwrite: bool) -> None:
    """Check that ``out`` may receive this run; clear our old outputs with ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a directory.")
    record = out / RUN_FILE
    if resume:
        if not record.is_file():
            raise RunError(f"--resume: {out} holds no run to resume (no {RUN_FILE}).")
        saved = read_run(out)
        if saved.get("config", {}).get("identity") != jsonable(config.identity()):
            differences = _differences(
                saved.get("config", {}).get("identity", {}), config.identity()
            )
            raise RunError(
                f"--resume: the run in {out} was made with other settings ({differences}); "
                "resume it with the same settings, or start anew with --overwrite."
            )
        if not (out / CHECKPOINT_DIR / "state.json").is_file():
            raise RunError(f"--resume: {out} has no checkpoint to continue from.")
        # The values are about to change: studies of the old ones would be stale.
        shutil.rmtree(out / STUDIES_DIR, ignore_errors=True)
        return
    if out.is_dir() and any(out.iterdir()):
        if not record.is_file():
            raise RunError(
                f"--out {out} is not empty and is not a neuronshapley run; choose another "
                "directory."
            )
        if not overwrite:
            raise RunError(
                f"--out {out} already holds a run; pass --resume to continue it or --overwrite to "
                "replace it."
            )
        for name in _OUTPUTS:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
        shutil.rmtree(out / STUDIES_DIR, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def read_run(out: Path) -> dict[str, Any]:
    """The ``run.json`` of a run directory."""
    try:
        record = json.loads((out / RUN_FILE).read_text())
    except (OSError, ValueError) as error:
        raise RunError(f"cannot read {out / RUN_FILE}: {error}") from None
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
        raise RunError(f"{out / RUN_FILE} is not a neuronshapley run record.")
    return record


def write_run(out: Path, record: dict[str, Any]) -> None:
    atomic_write(out / RUN_FILE, json_text(record).encode())


def execute(
    config: RunConfig,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] = print,
    on_game: Callable[[list[str]], None] | None = None,
) -> dict[str, Any]:
    """Run Neuron Shapley (TMAB) as configured and write the run directory ``out``.

    Args:
        config: What to compute.
        out: The run directory.
        resume: Continue the run in ``out`` from its checkpoint. Default False.
        overwrite: Replace the run in ``out``. Default False.
        progress: Called after every round of the estimator. Default None.
        log: Where one-line messages go. Default ``print``.
        on_game: Called with the unit names once the game is built. Default None.

    Returns:
        The run record written to ``run.json`` (configuration, status, headline numbers).
    """
    from neuronshapley.applications.removal import removal_curve

    directory = Path(out)
    prepare_directory(directory, config, resume=resume, overwrite=overwrite)
    started = time.perf_counter()
    model, data, reference, source = load_model_and_data(config)
    game = build_game(config, model, data, reference)
    if config.k >= game.n_players:
        raise RunError(
            f"--k {config.k} must be smaller than the number of units ({game.n_players})."
        )
    log(f"{source}: {game!r}")
    if on_game is not None:
        on_game(game.player_names)
    record: dict[str, Any] = {
        "format": RUN_FORMAT,
        "status": "running",
        "config": {"identity": config.identity(), **dataclasses.asdict(config)},
        "source": source,
        "n_units": game.n_players,
        "layers": {layer.path: len(layer.indices) for layer in game.layers},
    }
    write_run(directory, record)
    try:
        result = tmab_shapley(
            game,
            k=config.k,
            delta=config.delta,
            tol=config.tol,
            truncation=config.truncation,
            max_evaluations=config.budget,
            max_seconds=config.max_seconds,
            seed=config.seed,
            checkpoint=directory / CHECKPOINT_DIR,
            checkpoint_every=30.0,
            resume=directory / CHECKPOINT_DIR if resume else None,
            progress=progress,
        )
    except (ValueError, FileNotFoundError) as error:
        if resume:
            raise RunError(
                f"--resume: cannot continue from {directory / CHECKPOINT_DIR}: {error}"
            ) from error
        raise
    result.save(directory)
    finish = _outputs(directory, game, result, config, removal_curve)
    record.update(
        status="interrupted" if result.stop_reason == "interrupted" else "complete",
        stop_reason=result.stop_reason,
        n_evaluations=result.n_evaluations,
        n_forward_examples=game.n_forward_examples,
        sampling_seconds=result.elapsed_seconds,
        wall_seconds=time.perf_counter() - started,
        **finish,
    )
    write_run(directory, record)
    return record


def build_game(config: RunConfig, model: Any, data: Any, reference: Any) -> Any:
    """The ``NeuronGame`` a run computes values for; user mistakes become ``RunError``."""
    from neuronshapley.units import NeuronGame

    units = None if config.units is None else [u.strip() for u in config.units.split(",")]
    try:
        return NeuronGame(
            model,
            units,
            data=data,
            metric=config.metric,
            ablation=config.ablation,
            reference=reference,
            device=config.device,
        )
    except (ValueError, TypeError, RuntimeError) as error:
        raise RunError(str(error)) from error


def game_from_run(directory: str | os.PathLike[str]) -> tuple[Any, ShapleyResult, RunConfig]:
    """Rebuild the ``NeuronGame`` of a saved run, with its result and configuration."""
    out = Path(directory)
    if not (out / RUN_FILE).is_file():
        raise RunError(f"--run {out} is not a run directory (no {RUN_FILE}).")
    record = read_run(out)
    fields = {
        name: value
        for name, value in record["config"].items()
        if name in {field.name for field in dataclasses.fields(RunConfig)}
    }
    config = RunConfig(**fields)
    try:
        result = ShapleyResult.load(out)
    except (OSError, ValueError, KeyError) as error:
        raise RunError(f"--run {out} has no readable result: {error}") from None
    model, data, reference, _ = load_model_and_data(config)
    game = build_game(config, model, data, reference)
    if list(game.player_names) != list(result.player_names):
        raise RunError(f"--run {out}: the model's units no longer match the saved result.")
    return game, result, config


def _outputs(
    directory: Path, game: Any, result: ShapleyResult, config: RunConfig, removal_curve: Any
) -> dict[str, Any]:
    """Write values.csv, the plots and the HTML page; return the headline numbers."""
    from neuronshapley import report

    layers = game.unit_layers
    report.write_values_csv(directory / "values.csv", result, layers)
    top = [row.name for row in result.top(config.k)]
    curve = removal_curve(game, top, config.k, n_random=config.n_random, seed=config.seed)
    headline = {
        "metric": game.metric.name,
        "full": float(curve.ranked[0]),
        "without_top_k": float(curve.ranked[-1]),
        "without_random_k_mean": float(curve.random_mean[-1]),
        "without_random_k_std": float(curve.random_std[-1]),
        "top_units": top,
    }
    try:
        report.save_run_plots(directory, result, layers, curve, k=config.k)
        write_report(directory, game, result, config, curve)
        headline["report"] = "report.html"
    except ImportError as error:  # matplotlib missing: the numbers are still written
        headline["report"] = f"not written ({error})"
    return headline


def write_report(
    directory: str | os.PathLike[str],
    game: Any,
    result: ShapleyResult,
    config: RunConfig,
    curve: Any = None,
) -> Path:
    """Write the run's ``report.html``: its own sections, then one per study in ``studies/``.

    Args:
        directory: The run directory.
        game: The run's game.
        result: The run's values.
        config: The run's configuration.
        curve: The run's removal curve; default ``None`` computes it again (same seed, same
            curve).

    Returns:
        The page's path.
    """
    from neuronshapley import report
    from neuronshapley.applications.removal import removal_curve
    from neuronshapley.workflows.studies import study_sections

    out = Path(directory)
    top = [row.name for row in result.top(config.k)]
    if curve is None:
        curve = removal_curve(game, top, config.k, n_random=config.n_random, seed=config.seed)
    mean, std = float(curve.random_mean[-1]), float(curve.random_std[-1])
    summary = [
        ("Model", config.model),
        ("Metric", game.metric.name),
        ("Ablation", config.ablation),
        (f"{game.metric.name} of the full model", f"{curve.ranked[0]:.4f}"),
        (f"… without the top {config.k}", f"{curve.ranked[-1]:.4f}"),
        (
            f"… without {config.k} random units",
            f"{mean:.4f} ± {std:.4f} ({config.n_random} draws)",
        ),
    ]
    return report.run_report(
        out / "report.html",
        title=f"Neuron Shapley: {config.model}",
        result=result,
        layers=game.unit_layers,
        curve=curve,
        summary=summary,
        k=config.k,
        extra_sections=study_sections(out),
    )


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> str:
    current = jsonable(current)
    changed = [
        f"{name}: {saved.get(name)!r} then {current.get(name)!r}"
        for name in sorted(set(saved) | set(current))
        if saved.get(name) != current.get(name)
    ]
    return "; ".join(changed) or "unknown"
