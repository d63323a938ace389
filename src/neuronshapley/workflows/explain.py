"""``neuronshapley explain``: attributions of a model's test examples to their input features,
by one or several methods, written to a directory.

The model is a bundled one or a user's ``path/to/file.py:function`` (as for ``run``: it returns
an ``nn.Module`` or a ``(module, Bundle)`` pair; the file's code is run), and the examples come
from the bundled data, the pair's ``Bundle`` or a ``--data`` factory (a ``Bundle`` or
``{"data": x or (x, y), "reference": x}``). Removed features take the baseline: zero, the
per-feature mean of the reference split, or a background set of its rows (the value is the mean
output over them).

The directory holds ``attributions.npz`` (inputs, targets, each method's values per player and
per feature), ``attributions.csv`` (one row per example, method and player), ``heatmaps.png``
(the examples in rows, the methods in columns), ``agreement.csv`` with two or more methods (the
Spearman rank correlation between each pair, over the examples), ``report.html`` and
``explain.json`` (the settings), each written atomically and listed in ``manifest.json``.
Everything is checked before any model is loaded or trained: an unknown model or method, a bad
``--examples``, ``exact`` on too many players, an ``--out`` that is a file or holds someone
else's files. A directory holding an explanation is replaced only with ``overwrite``, and then
only the files ours (listed in its manifest, unchanged since) are deleted.

Also here: :func:`closed_loops`, the bundled TCAV example (the concept "closed loops", images
of 0, 6, 8 and 9, scored for each digit at the digits CNN's second block).
"""

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from neuronshapley import zoo
from neuronshapley._internal.files import atomic_write, json_text
from neuronshapley._internal.specs import file_digest, is_spec
from neuronshapley.estimators import exact_shapley, permutation_shapley
from neuronshapley.features import FeatureGame, attribute, dasp, image_patches
from neuronshapley.features.tcav import TCAVResult, tcav
from neuronshapley.report.attribution import heatmap_grid
from neuronshapley.report.html import Section, figure_to_png, render_html
from neuronshapley.results.result import ShapleyResult
from neuronshapley.workflows.manifest import delete_ours, record_files
from neuronshapley.workflows.runs import (
    RunError,
    check_output_directory,
    load_factory,
    load_model,
)

# Command-line name -> what runs it.
METHODS = (
    "dasp",
    "exact",
    "sampling",
    "ig",
    "saliency",
    "deeplift",
    "input_x_gradient",
    "kernel_shap",
)
COMPARE = ("dasp", "sampling", "ig", "saliency", "deeplift")
_CAPTUM_NAMES = {"ig": "integrated_gradients"}
EXACT_LIMIT = 25
RECORD_FILE = "explain.json"
FILES = (
    "attributions.npz",
    "attributions.csv",
    "agreement.csv",
    "heatmaps.png",
    "report.html",
    RECORD_FILE,
)
_MAX_EXAMPLES = 100
BASELINES = ("zero", "mean", "background")


@dataclass(frozen=True)
class ExplainOptions:
    """What ``neuronshapley explain`` does.

    Attributes:
        model: A bundled model (``zoo.available()``) or ``path/to/file.py:function`` returning an
            ``nn.Module`` or a ``(module, Bundle)`` pair (its code is run).
        data: ``None`` (the bundled model's or the pair's data) or ``path/to/file.py:function``
            returning a ``Bundle`` or ``{"data": x or (x, y), "reference": x}``.
        examples: Test examples, e.g. ``"0-9"`` or ``"0,3,7-9"``.
        methods: The methods, in order (two or more add the agreement table).
        out: The directory written.
        patch: With an int, square patches of this side are the players (images only).
        samples: Permutations of ``sampling`` (antithetic pairs count as two).
        sizes: Coalition sizes of ``dasp`` (evenly spaced; ``None``: all). Default 8: with all
            64 sizes of the digits a DASP example took 21 s on a busy core, with 8 about 3 s.
        steps: Integration steps of ``ig``.
        seed: Seed of the sampling methods (and of the background rows drawn).
        overwrite: Replace an explanation already in ``out``.
        baseline: What a removed feature becomes: ``"zero"``, ``"mean"`` (per feature, over
            the reference split) or ``"background"`` (``background`` rows of the reference
            split drawn with ``seed``; every method's cost is multiplied by their number).
        background: Rows of the background set.
    """

    model: str
    examples: str
    methods: tuple[str, ...]
    out: Path
    patch: int | None = None
    samples: int = 64
    sizes: int | None = 8
    steps: int = 50
    seed: int = 0
    overwrite: bool = False
    data: str | None = None
    baseline: str = "zero"
    background: int = 16


@dataclass(frozen=True)
class Explanation:
    """What was written: the files, and per method its cost and the agreement between methods."""

    out: Path
    files: list[str]
    examples: list[int]
    targets: list[int]
    costs: dict[str, float]
    agreement: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def parse_methods(text: str) -> tuple[str, ...]:
    """``"dasp,ig"`` as a tuple of known method names, in order, without repeats."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in METHODS]
    if not names or unknown:
        raise RunError(
            f"--method must be one or more of {', '.join(METHODS)} (comma-separated). "
            f"Got {text!r} instead."
        )
    return names


def parse_examples(text: str, available: int) -> list[int]:
    """``"0-9"``, ``"4"`` or ``"0,3,7-9"`` as indices into a test split of ``available``."""
    chosen: list[int] = []
    rule = (
        f"--examples must be indices or ranges into the {available} test examples, e.g. 0-9 or "
        f"0,3,7-9 (at most {_MAX_EXAMPLES})"
    )
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high) if high else int(low)
            if first > last:
                raise ValueError
            chosen.extend(range(first, last + 1))
    except ValueError:
        raise RunError(f"{rule}. Got {text!r} instead.") from None
    outside = [i for i in chosen if not 0 <= i < available]
    if outside:
        raise RunError(f"{rule}. Got {text!r}, which holds {outside[0]}.")
    chosen = list(dict.fromkeys(chosen))
    if len(chosen) > _MAX_EXAMPLES:
        raise RunError(f"{rule}. Got {len(chosen)} examples.")
    return chosen


def explain(options: ExplainOptions, log: Callable[[str], None] = lambda line: None) -> Explanation:
    """Check everything, then compute each method on each example and write the directory."""
    started = time.perf_counter()
    user_model = is_spec(options.model)
    if not user_model and options.model not in zoo.available():
        raise RunError(
            f"--model must be one of the bundled models: {', '.join(zoo.available())}, or "
            f"path/to/file.py:function. Got {options.model!r} instead."
        )
    if options.baseline not in BASELINES:
        raise RunError(
            f"--baseline must be one of {', '.join(BASELINES)}. Got {options.baseline!r} instead."
        )
    if options.data is not None and not is_spec(options.data):
        raise RunError(f"--data must be 'path/to/file.py:function'. Got {options.data!r} instead.")
    out = Path(options.out)
    _check_directory(out, options.overwrite)
    model: Any = None
    if user_model:
        log(f"loading {options.model}")
        model, bundle, _ = load_model(options.model)  # runs the file's code
    else:
        bundle = zoo.load_data(options.model) if options.data is None else None
    if options.data is not None:
        bundle = load_factory(options.data, "data")
    test_x, test_y, reference = _data(bundle, options)
    examples = parse_examples(options.examples, len(test_x))
    shape = tuple(test_x.shape[1:])
    groups = _groups(shape, options.patch)
    n_players = int(np.prod(shape)) if groups is None else len(np.unique(groups))
    if "exact" in options.methods and n_players > EXACT_LIMIT:
        raise RunError(
            f"--method exact enumerates 2^n coalitions and allows at most {EXACT_LIMIT} players; "
            f"{options.model} has {n_players} input features. Use sampling or dasp, or group "
            "pixels with --patch N."
        )
    baseline = _baseline(options, reference, shape)

    if model is None:
        log(f"loading {options.model}")
        model, _ = zoo.load(options.model)
    inputs = test_x[examples]
    values: dict[str, list[np.ndarray]] = {m: [] for m in options.methods}
    costs: dict[str, list[float]] = {m: [] for m in options.methods}
    targets: list[int] = []
    names: list[str] = []
    owner_of = np.zeros(0, dtype=np.int64)
    for row, x in zip(examples, inputs, strict=True):
        try:
            game = FeatureGame(model, x, baseline=baseline, groups=groups)
        except (ValueError, TypeError) as error:
            raise RunError(f"--model {options.model} on its example {row}: {error}") from error
        targets.append(game.target)
        names, owner_of = game.player_names, game.players.owner_of
        for method in options.methods:
            result = _run(method, model, x, game, groups, baseline, options)
            values[method].append(result.values)
            costs[method].append(float(result.diagnostics.get("network_evaluations", 0)))
        log(f"example {row}: class {int(test_y[row])}, explained class {game.target}")

    per_player = {m: np.stack(v) for m, v in values.items()}
    maps = {m: v[:, owner_of].reshape(len(examples), *shape) for m, v in per_player.items()}
    agreement = _agreement(per_player)
    labels = [int(test_y[i]) for i in examples]
    written = _write(
        out,
        options,
        examples,
        labels,
        targets,
        inputs.numpy(),
        names,
        per_player,
        maps,
        costs,
        agreement,
    )
    return Explanation(
        out=out,
        files=written,
        examples=examples,
        targets=targets,
        costs={m: float(np.median(c)) for m, c in costs.items()},
        agreement=agreement,
        seconds=time.perf_counter() - started,
    )


def _check_directory(out: Path, overwrite: bool) -> None:
    check_output_directory(
        out,
        overwrite,
        record=RECORD_FILE,
        files=FILES,
        noun="explanation",
        command="neuronshapley explain",
    )


def _data(bundle: Any, options: ExplainOptions) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """The test inputs, their labels (-1 where there are none) and the reference inputs (or
    ``None``) of a Bundle or a ``{"data": ..., "reference": ...}`` dict."""
    from neuronshapley.pytorch.data import Bundle

    source = f"--data {options.data}" if options.data else f"--model {options.model}"
    if bundle is None:
        raise RunError(
            f"--model {options.model} gave no data: return (model, Bundle) from it or pass "
            "--data path/to/file.py:function."
        )
    y: Any
    if isinstance(bundle, Bundle):
        x, y, reference = bundle.test.x, bundle.test.y, bundle.reference.x
    elif isinstance(bundle, dict) and "data" in bundle:
        data = bundle["data"]
        x, y = data if isinstance(data, tuple) and len(data) == 2 else (data, -1)
        reference = bundle.get("reference")
    else:
        raise RunError(
            f"{source} must give a Bundle or a dict {{'data': x or (x, y), 'reference': x}}. "
            f"Got {type(bundle).__name__} instead."
        )
    if not isinstance(x, torch.Tensor):
        raise RunError(
            f"{source}: explain needs its inputs as one tensor (n_examples, ...). Got "
            f"{type(x).__name__} instead."
        )
    if isinstance(y, int):  # no labels
        y = torch.full((len(x),), y, dtype=torch.int64)
    if not isinstance(y, torch.Tensor) or y.shape != (len(x),):
        raise RunError(f"{source}: the labels must be a tensor of shape ({len(x)},).")
    return x, y, reference


def _baseline(options: ExplainOptions, reference: Any, shape: tuple[int, ...]) -> Any:
    """``"zero"``, the reference's per-feature mean, or ``background`` of its rows."""
    if options.baseline == "zero":
        return "zero"
    if not isinstance(reference, torch.Tensor) or tuple(reference.shape[1:]) != shape:
        raise RunError(
            f"--baseline {options.baseline} needs reference inputs shaped like the examples "
            f"(n, {', '.join(map(str, shape))}): a Bundle's reference split or the 'reference' "
            "of a --data dict. Use --baseline zero."
        )
    if options.baseline == "mean":
        return reference.double().mean(dim=0)
    if options.background < 1:
        raise RunError(f"--background must be at least 1. Got {options.background}.")
    generator = torch.Generator().manual_seed(options.seed)
    rows = torch.randperm(len(reference), generator=generator)[: options.background]
    return reference[rows]


def _groups(shape: tuple[int, ...], patch: int | None) -> np.ndarray | None:
    if patch is None:
        return None
    if len(shape) not in (2, 3):
        raise RunError(f"--patch needs image inputs (C, H, W); these have shape {shape}.")
    if patch > min(shape[-2:]):
        raise RunError(f"--patch must be at most the image side {min(shape[-2:])}. Got {patch}.")
    return image_patches(shape, patch)


def _run(
    method: str,
    model: Any,
    x: torch.Tensor,
    game: FeatureGame,
    groups: Any,
    baseline: Any,
    options: ExplainOptions,
) -> ShapleyResult:
    if method == "dasp":
        sizes = None if options.sizes is None else min(options.sizes, game.n_players)
        try:
            return dasp(model, x, baseline, target=game.target, n_sizes=sizes, groups=groups)
        except ValueError as error:  # a layer DASP cannot propagate, named
            raise RunError(f"--method dasp on --model {options.model}: {error}") from error
    if method == "exact":
        result = exact_shapley(game)
        result.diagnostics = {"network_evaluations": result.n_evaluations}
        return result
    if method == "sampling":
        result = permutation_shapley(
            game, n_permutations=options.samples, antithetic=True, seed=options.seed
        )
        result.diagnostics = {"network_evaluations": result.n_evaluations}
        return result
    return attribute(
        _CAPTUM_NAMES.get(method, method),
        model,
        x,
        baseline,
        target=game.target,
        groups=groups,
        n_steps=options.steps,
        seed=options.seed,
    )


def _agreement(values: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Spearman's rank correlation of each pair of methods, per example: median, min, max."""
    rows = []
    methods = list(values)
    for i, first in enumerate(methods):
        for second in methods[i + 1 :]:
            rho = [
                float(spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else 0.0
                for a, b in zip(values[first], values[second], strict=True)
            ]
            rows.append(
                {
                    "method_a": first,
                    "method_b": second,
                    "spearman_median": round(float(np.median(rho)), 4),
                    "spearman_min": round(float(np.min(rho)), 4),
                    "spearman_max": round(float(np.max(rho)), 4),
                }
            )
    return rows


def _csv(rows: list[dict[str, Any]]) -> bytes:
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(row[key]) for key in header) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def _write(
    out: Path,
    options: ExplainOptions,
    examples: list[int],
    labels: list[int],
    targets: list[int],
    inputs: np.ndarray,
    names: list[str],
    per_player: dict[str, np.ndarray],
    maps: dict[str, np.ndarray],
    costs: dict[str, list[float]],
    agreement: list[dict[str, Any]],
) -> list[str]:
    if options.overwrite and out.is_dir():
        delete_ours(out)
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {
        "examples": np.array(examples),
        "labels": np.array(labels),
        "targets": np.array(targets),
        "inputs": inputs,
        "player_names": np.array(names),
    }
    for method in per_player:
        arrays[f"values_{method}"] = per_player[method]
        arrays[f"maps_{method}"] = maps[method]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    files = {"attributions.npz": buffer.getvalue()}
    rows = [
        {
            "example": example,
            "label": label,
            "target": target,
            "method": method,
            "player": name,
            "value": repr(float(per_player[method][i, p])),
        }
        for i, (example, label, target) in enumerate(zip(examples, labels, targets, strict=True))
        for method in per_player
        for p, name in enumerate(names)
    ]
    files["attributions.csv"] = _csv(rows)
    if agreement:
        files["agreement.csv"] = _csv(agreement)
    titles = [
        f"#{e}: {label}→{target}"
        for e, label, target in zip(examples, labels, targets, strict=True)
    ]
    figure = heatmap_grid(inputs, maps, titles)
    files["heatmaps.png"] = figure_to_png(figure)
    cost_rows = [
        {"method": m, "network evaluations per example (median)": f"{np.median(c):.0f}"}
        for m, c in costs.items()
    ]
    sections = [
        Section(
            "Heat maps",
            "Rows: the examples (index: true class → explained class, the predicted one). "
            "Red: the feature raises the explained logit, blue: lowers it; each map has its own "
            "symmetric scale.",
            figures=[("Attributions by method", files["heatmaps.png"])],
        ),
        Section("Cost", table=cost_rows),
    ]
    if agreement:
        sections.append(
            Section(
                "Agreement between methods",
                "Spearman's rank correlation of the attributions of each pair of methods, per "
                "example; median, min and max over the examples.",
                table=agreement,
            )
        )
    summary = [
        ("model", options.model),
        ("examples", options.examples),
        ("methods", ", ".join(options.methods)),
        (
            "players",
            f"{len(names)}"
            + (f" ({options.patch}x{options.patch} patches)" if options.patch else ""),
        ),
        ("baseline", _baseline_said(options)),
    ]
    files["report.html"] = render_html(
        title=f"Input attributions: {options.model}", summary=summary, sections=sections
    ).encode()
    record = {
        "command": "explain",
        "model": options.model,
        "model_sha256": file_digest(options.model),
        "data": options.data,
        "data_sha256": file_digest(options.data) if options.data else None,
        "baseline": options.baseline,
        "background": options.background if options.baseline == "background" else None,
        "examples": examples,
        "methods": list(options.methods),
        "patch": options.patch,
        "samples": options.samples,
        "sizes": options.sizes,
        "steps": options.steps,
        "seed": options.seed,
        "targets": targets,
        "files": sorted(files),
    }
    files[RECORD_FILE] = json_text(record).encode()
    for name, content in files.items():
        atomic_write(out / name, content)
    record_files(out, list(files))
    return sorted(files)


def _baseline_said(options: ExplainOptions) -> str:
    if options.baseline == "mean":
        return "the per-feature mean of the reference split"
    if options.baseline == "background":
        return f"{options.background} rows of the reference split (seed {options.seed})"
    return "zero"


def closed_loops(layer: str = "relu2", n_runs: int = 20, seed: int = 0) -> TCAVResult:
    """TCAV of the concept "closed loops" (training images of 0, 6, 8, 9) on ``digits-cnn``.

    Concept: the first 60 training images of 0, 6, 8 and 9; random counter-examples: 400
    training images of any digit (drawn with ``seed``); scored for each digit over the test
    split. At ``relu3`` (just before the linear head) the gradient is the same for every
    example, so the scores are 0 or 1 per run; ``relu2`` is the default for that reason.
    """
    model, data = zoo.load("digits-cnn")
    train, test = data.train, data.test
    labels = train.y.numpy()
    concept = train.x[np.isin(labels, [0, 6, 8, 9])][:60]
    drawn = np.random.default_rng(seed).permutation(len(labels))[:400]
    random = train.x[torch.from_numpy(drawn)]
    return tcav(
        model,
        layer,
        concept,
        random,
        test.x,
        test.y.numpy(),
        concept_name="closed loops",
        n_runs=n_runs,
        seed=seed,
    )


def read_record(out: Path) -> dict[str, Any]:
    """The settings an explanation was made with (``explain.json``)."""
    return dict(json.loads((Path(out) / RECORD_FILE).read_text()))
