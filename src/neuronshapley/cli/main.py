"""The ``neuronshapley`` command: value the units of a network, inspect saved runs.

- ``neuronshapley run`` computes the Neuron Shapley values of a model's units with TMAB-Shapley
  (Algorithm 1 of Ghorbani & Zou 2020) and writes a run directory (see
  :mod:`neuronshapley.workflows.runs`).
- ``neuronshapley demo`` is ``run`` on the bundled ``digits-cnn``, the main job in one word.
- ``neuronshapley show DIR`` prints a run (or a result saved with ``ShapleyResult.save``).
- ``neuronshapley study NAME --run DIR`` runs one of the paper's applications on a run (see
  :mod:`neuronshapley.workflows.studies`) and adds its section to the run's report; with
  ``--model`` it first makes the run.
- ``neuronshapley repair`` and ``unit`` export a repaired model and show what a unit sees.
- ``neuronshapley data`` values the training points of a bundled dataset by one method (see
  :mod:`neuronshapley.workflows.data`).
- ``neuronshapley synthetic`` runs TMAB on a synthetic game with known values and checks it.

User mistakes (a bad number, a missing directory) print one line to stderr and exit with code 2;
tracebacks are kept for bugs.
"""

import argparse
import math
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TextIO

import numpy as np

from neuronshapley.estimators import Progress, ShapleyResult

USAGE_ERROR = 2
# The default --walks-per-task under --backend ray: TMAB's rounds of 8 permutations become 8 tasks.
RAY_WALKS_PER_TASK = 1
# The demo table stays readable for any k; precision still counts all k.
_MAX_DEMO_ROWS = 25
_STOP_REASONS = {
    "interrupted": "Ctrl-C or SIGTERM; --resume continues",
    "separated": "no player left undecided",
    "max_evaluations": "evaluation budget spent",
    "max_seconds": "time budget spent",
}


class UsageError(Exception):
    """A mistake in the command line or its files: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors become :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message.rstrip('.')} (see '{self.prog} --help')")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting ints ``>= minimum``; the message names rule and value."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an int >= {minimum}. Got {text!r} instead."
            ) from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}. Got {number} instead.")
        return number

    parse.__name__ = f"int >= {minimum}"
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``neuronshapley``."""
    parser = _Parser(
        prog="neuronshapley",
        description="Find the players (units of a network) with the largest Shapley values.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "synthetic",
        help="run TMAB-Shapley on a synthetic game with known values and check it",
        description=(
            "Run tmab_shapley on sparse_soum, a game with k large Shapley values among many "
            "small ones whose exact values are known, and compare its top k with the truth "
            "(and, with --compare, its cost with plain Monte Carlo)."
        ),
    )
    demo.add_argument(
        "--players",
        metavar="N",
        type=_int_at_least(1),
        default=2000,
        help="players (default: 2000)",
    )
    demo.add_argument(
        "--k",
        metavar="N",
        type=_int_at_least(1),
        default=20,
        help="size of the top set (default: 20)",
    )
    demo.add_argument(
        "--seed",
        metavar="N",
        type=_int_at_least(0),
        default=0,
        help="game and sampling seed (default: 0)",
    )
    demo.add_argument("--out", metavar="DIR", help="save the TMAB result into this directory")
    demo.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run plain Monte Carlo with the same stopping rule (default: on)",
    )

    for name in ("run", "demo"):
        _add_run_arguments(commands, name)

    repair = commands.add_parser(
        "repair",
        help="write a standalone model with some units of a run removed",
        description=(
            "Remove units of a run's model and save a standalone model: ablations are folded "
            "into the weights where that is exact, else the module is wrapped (Ablated). Reload "
            "it with neuronshapley.applications.repair.load_repaired; no hooks are involved."
        ),
    )
    repair.add_argument("--run", metavar="DIR", required=True, help="a run directory")
    repair.add_argument(
        "--remove",
        metavar="SPEC",
        default="top:10",
        help="top:N, bottom:N, negative:N (the N most negative values) or a comma-separated "
        "list of unit names (default: top:10)",
    )
    repair.add_argument(
        "--out", metavar="FILE", help="where to save the model (default: DIR/repaired.pt)"
    )

    unit = commands.add_parser(
        "unit",
        help="show what a unit of a run responds to",
        description=(
            "Plot the examples that activate a unit most and least, and an input found by "
            "gradient ascent (with jitter and blur) that maximises its activation."
        ),
    )
    unit.add_argument("--run", metavar="DIR", required=True, help="a run directory")
    unit.add_argument("--unit", required=True, help="the unit, e.g. conv1:2")
    unit.add_argument(
        "--k", metavar="N", type=_int_at_least(1), default=8, help="examples per side (default: 8)"
    )
    unit.add_argument(
        "--out", metavar="DIR", help="where to write the PNGs (default: DIR/units/<unit>)"
    )

    _add_study_arguments(commands)
    _add_explain_arguments(commands)
    _add_data_arguments(commands)

    show = commands.add_parser(
        "show",
        help="print a run's summary and top units (or a saved ShapleyResult)",
        description=(
            "Print a run directory written by 'neuronshapley run' (its headline numbers) or a "
            "ShapleyResult saved with ShapleyResult.save: a summary and the top/bottom units."
        ),
    )
    show.add_argument("directory", metavar="DIR", help="directory holding result.json/.npz")
    show.add_argument(
        "--top",
        metavar="N",
        type=_int_at_least(0),
        default=None,
        help="rows of largest values (default: the run's k; 10 for a saved ShapleyResult)",
    )
    show.add_argument(
        "--bottom",
        metavar="N",
        type=_int_at_least(0),
        default=0,
        help="rows of smallest values (default: 0)",
    )
    show.add_argument("--csv", metavar="FILE", help="also write every player's row to FILE")
    return parser


def _add_study_arguments(commands: Any) -> None:
    from neuronshapley.workflows.studies import (
        DEFAULT_BUDGET,
        HEADS_BUDGET,
        HEADS_SECONDS,
        INTERACTIONS_BUDGET,
        STUDIES,
    )

    study = commands.add_parser(
        "study",
        help="run one of the paper's applications on a run and add it to the run's report",
        description=(
            "Run a study of Ghorbani & Zou (2020), section 4, on a run directory: critical "
            "(the top units against baselines, and the reverse curve), classes (units each "
            "class needs), fairness (remove the units that hurt the worst group; data with "
            "groups, e.g. adult-mlp), units (what the top unit of each layer responds to), "
            "adversarial (value the units for a targeted PGD attack's "
            "success, remove the most used ones, and check attacks not used for the values), "
            "dropout (the values and removal curves of the model against the same model trained "
            "with dropout: --other), heads (the attention heads of the pretrained encoder "
            "minilm on word similarity: their values, removal, the repaired encoder on held-out "
            "benchmarks, and attention entropy beside the values), interactions (the pairwise "
            "Shapley interactions of the top 2k units, and removal orders that use them). "
            "Writes DIR/studies/NAME/ "
            "(study.json, table.csv, PNG figures) and adds a section to DIR/report.html. With "
            "--model and a DIR that holds no run yet, the run is made first (TMAB, truncation "
            "0.1, --budget evaluations; for heads: every head, no truncation)."
        ),
    )
    study.add_argument("name", metavar="NAME", choices=STUDIES, help=", ".join(STUDIES))
    study.add_argument(
        "--run", metavar="DIR", help="the run directory (default with --model: runs/MODEL)"
    )
    study.add_argument(
        "--model",
        help="make the run first with this model if DIR holds none (a bundled model or "
        "path/to/file.py:function, as for 'run')",
    )
    study.add_argument(
        "--budget",
        metavar="N",
        type=_int_at_least(2),
        help="coalition evaluations of each Shapley estimate the study makes (per class for "
        f"'classes'), and of the run made with --model (default: {DEFAULT_BUDGET:,}; for "
        f"heads: {HEADS_BUDGET:,}; the interactions estimate: {INTERACTIONS_BUDGET:,})",
    )
    study.add_argument(
        "--seconds",
        metavar="S",
        type=_float_in(0.0, None),
        help="seconds of sampling of the run made with --model, whichever of --budget and "
        f"--seconds comes first (default: no limit; for heads: {HEADS_SECONDS:,.0f})",
    )
    study.add_argument(
        "--k",
        metavar="N",
        type=_int_at_least(1),
        help="units removed (default: 20 for critical and units, 10 for the others)",
    )
    study.add_argument(
        "--classes",
        metavar="LIST",
        type=_class_list,
        help="classes of the 'classes' study, e.g. 0,3,8 (default: every class)",
    )
    study.add_argument(
        "--epsilon",
        metavar="X",
        type=_float_in(0.0, None),
        help="L-infinity radius of the 'adversarial' study's PGD attack, in input units "
        "(default: 0.3, for inputs in [0, 1])",
    )
    study.add_argument(
        "--steps",
        metavar="N",
        type=_int_at_least(1),
        default=20,
        help="PGD steps of the 'adversarial' study (default: 20)",
    )
    study.add_argument(
        "--step-size",
        metavar="X",
        type=_float_in(0.0, None),
        help="PGD step size of the 'adversarial' study (default: 2.5 x epsilon / steps)",
    )
    study.add_argument(
        "--sources",
        metavar="LIST",
        help="models whose PGD attacks are transferred in the 'adversarial' study's black-box "
        "check: comma-separated bundled models or path/to/file.py:function (default: the "
        "other bundled models trained on the same data; 'none' for none)",
    )
    study.add_argument(
        "--other",
        metavar="MODEL",
        help="the model the 'dropout' study compares with: a run directory, a bundled model or "
        "path/to/file.py:function, valued with the run's settings and --budget (default: the "
        "bundled <model>-dropout)",
    )
    study.add_argument(
        "--random",
        metavar="N",
        type=_int_at_least(1),
        default=10,
        help="random draws per point of the removal curves (default: 10)",
    )
    study.add_argument(
        "--seed", metavar="N", type=_int_at_least(0), default=0, help="seed (default: 0)"
    )
    study.add_argument(
        "--no-progress", action="store_true", help="do not show the live progress bar"
    )


def _class_list(text: str) -> tuple[int, ...]:
    try:
        classes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated class numbers, e.g. 0,3,8. Got {text!r} instead."
        ) from None
    if not classes or min(classes) < 0:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated class numbers >= 0, e.g. 0,3,8. Got {text!r} instead."
        )
    return classes


def _float_in(low: float, high: float | None) -> Callable[[str], float]:
    """An argparse ``type`` accepting floats in ``(low, high)`` (``high`` None: unbounded)."""
    rule = f"a number in ({low:g}, {high:g})" if high is not None else f"a number > {low:g}"

    def parse(text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule}. Got {text!r} instead.") from None
        if not (number > low and (high is None or number < high)) or not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"must be {rule} (finite). Got {text} instead.")
        return number

    parse.__name__ = rule
    return parse


# The bundled default of `neuronshapley demo`: sized to finish in about a minute on 2 cores.
DEMO_MODEL = "digits-cnn"
DEMO_OUT = "demo-run"
DEMO_BUDGET = 5_000
DEFAULT_TRUNCATION = 0.1


def _truncation(text: str) -> float | None:
    """``--truncation``: a number in [0, 1); 0 or 'off' turns truncation off."""
    if text.strip().lower() in ("off", "none", "0"):
        return None
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number in [0, 1) or 'off'. Got {text!r} instead."
        ) from None
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1) or 'off'. Got {text}.")
    return number or None


def _value_range(text: str) -> float | str:
    """``--value-range``: 'metric', 'observed' or a number R > 0."""
    from neuronshapley.workflows.runs import RunError, check_value_range

    try:
        return check_value_range(text.strip().lower())
    except RunError:
        raise argparse.ArgumentTypeError(
            f"must be 'metric', 'observed' or a number R > 0. Got {text!r} instead."
        ) from None


def _add_run_arguments(commands: Any, name: str) -> None:
    demo = name == "demo"
    parser = commands.add_parser(
        name,
        help=(
            f"run on the bundled {DEMO_MODEL} and write {DEMO_OUT}/ (the main job, one word)"
            if demo
            else "compute the Neuron Shapley values of a model's units and write a run directory"
        ),
        description=(
            "Value every unit (conv filter, neuron, attention head) of a model with TMAB-Shapley "
            "(Ghorbani & Zou 2020): the metric on the evaluation data when the other units output "
            "their mean. Writes values.csv, result.json/.npz, PNG plots, report.html and "
            "run.json into --out, with a checkpoint that --resume continues (also after Ctrl-C)."
        ),
    )
    parser.add_argument(
        "--model",
        default=DEMO_MODEL if demo else None,
        required=not demo,
        help=(
            "a bundled model (digits-cnn, mnist1d-cnn, adult-mlp, ...) or "
            "path/to/file.py:function returning an nn.Module (or (module, Bundle))"
            + (f" (default: {DEMO_MODEL})" if demo else "")
        ),
    )
    parser.add_argument(
        "--data",
        help=(
            "path/to/file.py:function returning a ns.Bundle or {'data': (x, y), 'reference': x}"
            ", optionally with 'metric', 'forward' and 'output' (any other key is an error); "
            "data may be a dict of tensors (tokenized inputs, no labels) "
            "(default: the bundled model's test split, with its reference split for the means)"
        ),
    )
    parser.add_argument(
        "--units",
        help="comma-separated module patterns, e.g. 'conv*' or 'conv2,fc1:0-9'; "
        "'heads:encoder.layer.*.attention' for attention heads, 'mlp:encoder.layer.*' for MLP "
        "neurons (default: every conv filter; every hidden neuron of a model without "
        "convolutions; the attention heads for --model minilm)",
    )
    parser.add_argument(
        "--metric",
        default="accuracy",
        help="accuracy, neg_cross_entropy, recall:<class>, mean_group_recall, "
        "worst_group_accuracy, or path/to/file.py:function returning a metric: "
        "metric(outputs) -> float (label-free, on the whole evaluation set) or "
        "metric(logits, targets, batch) -> float (default: accuracy, or the --data factory's "
        "'metric')",
    )
    parser.add_argument(
        "--forward",
        metavar="FILE.py:FUNCTION",
        help="a function returning forward(model, inputs) -> result: how a batch is passed to "
        "the model (default: model(**inputs) for a dict, model(inputs) for a tensor)",
    )
    parser.add_argument(
        "--output",
        metavar="FILE.py:FUNCTION",
        help="a function returning output(result, inputs) -> tensor: what the metric sees "
        "(default: the result, its .logits, else its .last_hidden_state)",
    )
    parser.add_argument(
        "--ablation",
        default=None,
        choices=("mean", "channel_mean", "token_mean", "zero"),
        help="what a removed unit outputs (default: mean, its mean map on the reference split; "
        "token_mean: one mean over the reference's non-padding tokens, for sequences of "
        "varying length, the default for --model minilm)",
    )
    parser.add_argument(
        "--k",
        metavar="N",
        type=_int_at_least(1),
        default=10,
        help="top units to separate (default: 10)",
    )
    parser.add_argument(
        "--side",
        choices=("top", "bottom", "both"),
        default="top",
        help="which units to separate: the k highest values (top, default), the k most "
        "negative (bottom: the units whose removal should help) or both",
    )
    parser.add_argument(
        "--delta",
        metavar="P",
        type=_float_in(0.0, 1.0),
        default=0.05,
        help="failure probability of each confidence interval (default: 0.05)",
    )
    parser.add_argument(
        "--value-range",
        metavar="R",
        type=_value_range,
        default="metric",
        help="width R of an interval holding every marginal contribution, for intervals that "
        "hold as printed: 'metric' takes the one the metric declares (accuracy, recall: 2), "
        "'observed' the range of the samples seen (a heuristic, no guarantee), or a number "
        "(default: metric)",
    )
    parser.add_argument(
        "--tol",
        metavar="X",
        type=_float_in(0.0, None),
        default=1e-3,
        help="values closer than this to the top-k threshold count as ties (default: 0.001)",
    )
    parser.add_argument(
        "--truncation",
        metavar="X",
        type=_truncation,
        default=DEFAULT_TRUNCATION,
        help="end a permutation once the network keeps at most this fraction of its gain over "
        f"the empty network; 'off' to walk every permutation to the end "
        f"(default: {DEFAULT_TRUNCATION}, as in the paper)",
    )
    parser.add_argument(
        "--continue-probability",
        metavar="P",
        type=_float_in(0.0, 1.0),
        default=None,
        help="with truncation, make it unbiased for any model: each permutation goes on past "
        "its truncation point with probability P and weights what follows by 1/P (default: "
        "plain truncation, whose intervals are widened by what it can hide, valid only when "
        "removing units never raises the metric)",
    )
    parser.add_argument(
        "--budget",
        metavar="N",
        type=_int_at_least(2),
        default=DEMO_BUDGET if demo else None,
        help="maximum coalition evaluations"
        + (f" (default: {DEMO_BUDGET:,})" if demo else " (default: until separated)"),
    )
    parser.add_argument(
        "--max-seconds",
        metavar="S",
        type=_float_in(0.0, None),
        default=None,
        help="maximum seconds of sampling in this call (default: no limit)",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: the model's device)")
    parser.add_argument(
        "--memory-budget",
        metavar="MIB",
        type=_int_at_least(1),
        default=None,
        help="MiB of activations one forward pass may hold (default: 64 on CPU, 512 on a GPU; "
        "1024 for --model minilm, which runs 3x faster in such passes); how the work is cut, "
        "not what it computes: a resumed run may change it",
    )
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="where the permutations are walked: in this process, or on Ray workers "
        "(pip install 'neuronshapley[ray]'; default: local). The values equal a local run's "
        "with the same --walks-per-task, bit for bit, whatever the number of workers",
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        type=_int_at_least(1),
        help="Ray workers, one CPU each (default: every CPU of the cluster)",
    )
    parser.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="a running Ray cluster's head, from 'ray start --head --port 6379' (default: start "
        "Ray on this machine for the run)",
    )
    parser.add_argument(
        "--walks-per-task",
        metavar="K",
        type=_int_at_least(1),
        help=f"permutations per task; part of the run (a resumed run keeps it). Default: "
        f"{RAY_WALKS_PER_TASK} with --backend ray (each round's 8 permutations go to up to 8 "
        "workers); locally whole rounds, or tasks of about a minute where a round would take "
        "longer (a model that costs seconds per evaluation); pass the same K to compare a "
        "local run with a Ray one",
    )
    parser.add_argument(
        "--seed", metavar="N", type=_int_at_least(0), default=0, help="seed (default: 0)"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=DEMO_OUT if demo else None,
        required=not demo,
        help="run directory" + (f" (default: {DEMO_OUT})" if demo else ""),
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        default=demo,
        help="replace the run in --out" + (" (default for demo)" if demo else ""),
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="do not show the live progress bar"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``neuronshapley`` command; return its exit code (0 on success, 2 on misuse).

    Args:
        argv: The arguments after the program name. Default ``None``: ``sys.argv[1:]``.
    """
    parser = build_parser()
    try:
        with _sigterm_as_ctrl_c():
            return _dispatch(parser, argv)
    except UsageError as error:
        print(error, file=sys.stderr)
        return USAGE_ERROR
    except SystemExit as stop:  # --help
        return stop.code if isinstance(stop.code, int) else 0
    except KeyboardInterrupt:  # outside the sampling, which handles it itself
        print("neuronshapley: interrupted", file=sys.stderr)
        return 130


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """Turn SIGTERM into ``KeyboardInterrupt`` for the command, so a kill is handled as Ctrl-C.

    The sampling ends cleanly (outputs written, status "interrupted", ``--resume`` continues);
    the previous handler is put back afterwards. Only the main thread may set handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _dispatch(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    if args.command in ("run", "demo"):
        return _run(args, sys.stdout)
    if args.command == "repair":
        return _repair(args, sys.stdout)
    if args.command == "unit":
        return _unit(args, sys.stdout)
    if args.command == "synthetic":
        return _demo(args, sys.stdout)
    if args.command == "show":
        return _show(args, sys.stdout)
    if args.command == "study":
        return _study(args, sys.stdout)
    if args.command == "explain":
        return _explain_command(args, sys.stdout)
    if args.command == "data":
        return _data_command(args, sys.stdout)
    raise UsageError(
        "neuronshapley: error: choose a command: run, demo, show, study, explain, data, repair, "
        "unit or synthetic (see 'neuronshapley --help')"
    )


# -- demo ----------------------------------------------------------------------------------------
def _demo(args: argparse.Namespace, out: TextIO) -> int:
    players, k, seed = args.players, args.k, args.seed
    prog = "neuronshapley synthetic"
    if players < k + 5:
        raise UsageError(
            f"{prog}: error: --players must be at least --k + 5 = {k + 5} (the game has k large "
            f"values and 5 runners-up). Got --players {players} with --k {k}."
        )
    target = Path(args.out) if args.out is not None else None
    if target is not None and target.exists() and not target.is_dir():
        raise UsageError(f"{prog}: error: --out must be a directory; {target} is a file.")

    from neuronshapley.workflows.synthetic import synthetic_check

    print("neuronshapley synthetic: TMAB-Shapley on a game with known Shapley values", file=out)
    print(
        f"  game: sparse_soum(n_players={players}, n_large={k}, seed={seed})",
        file=out,
    )
    print(f"Running tmab_shapley(k={k}, delta=0.05, tol=1e-3, seed={seed}) ...", file=out)
    check = synthetic_check(players, k, seed, compare=args.compare)
    result, truth, true_top, hits = check.result, check.truth, check.true_top, check.hits
    found = result.top(k)
    interval = f"{100 * (1 - 0.05):g}% interval"
    rows = [("rank", "player", "estimate", interval, "true value", f"in true top-{k}")]
    for row in found[:_MAX_DEMO_ROWS]:
        rows.append(
            (
                str(row.rank),
                row.name,
                f"{row.value:.4f}",
                f"[{row.ci_low:.4f}, {row.ci_high:.4f}]",
                f"{truth[row.player_index]:.4f}",
                "yes" if row.player_index in true_top else "NO",
            )
        )
    print(file=out)
    _print_table(rows, out, right=(True, False, True, False, True, False))
    if len(found) > _MAX_DEMO_ROWS:
        print(
            f"  ... {len(found) - _MAX_DEMO_ROWS} more rows (save with --out, then 'show')",
            file=out,
        )
    print(file=out)
    print(f"Precision of the top-{k}: {hits}/{k} = {hits / k:.2f}", file=out)
    print(f"Evaluations: {result.n_evaluations:,}", file=out)
    print(f"Stop reason: {result.stop_reason} ({_explain(result.stop_reason)})", file=out)
    print(f"Elapsed: {result.elapsed_seconds:.2f} s", file=out)

    plain = check.plain
    if plain is not None:
        print(file=out)
        print("Plain Monte Carlo, same stopping rule (adaptive=False):", file=out)
        plain_hits = check.plain_hits
        print(
            f"Evaluations: {plain.n_evaluations:,} (stopped: {plain.stop_reason}, "
            f"{plain.elapsed_seconds:.2f} s), precision {plain_hits / k:.2f}",
            file=out,
        )
        ratio = result.n_evaluations / plain.n_evaluations
        print(
            f"Evaluation ratio TMAB / plain: {ratio:.3f} ({1 / ratio:.1f}x fewer evaluations)",
            file=out,
        )

    if target is not None:
        try:
            saved = result.save(target)
        except OSError as error:
            raise UsageError(f"{prog}: error: cannot save into --out {target}: {error}") from None
        print(file=out)
        print(
            f"Saved the TMAB result to {saved}/ (result.json + result.npz); "
            f"view it with: neuronshapley show {saved}",
            file=out,
        )
    return 0


def _side_words(side: str, k: int) -> str:
    """The units TMAB separates, in words: "top 10", "bottom 10", "top and bottom 10"."""
    return {"top": f"top {k}", "bottom": f"bottom {k}"}.get(side, f"top and bottom {k}")


def _explain(stop_reason: str) -> str:
    return _STOP_REASONS.get(stop_reason, "see the estimator's docs")


# -- run ------------------------------------------------------------------------------------------
def _run(args: argparse.Namespace, out: TextIO) -> int:
    from neuronshapley.pytorch.metrics import MetricError
    from neuronshapley.workflows.runs import (
        RunConfig,
        RunError,
        execute,
        load_result,
        model_default,
    )

    prog = f"neuronshapley {args.command}"
    if args.resume and args.overwrite and args.command == "run":
        raise UsageError(f"{prog}: error: --resume and --overwrite exclude each other.")
    backend = _backend(args, prog)
    config = RunConfig(
        model=args.model,
        data=args.data,
        units=args.units or model_default(args.model, "units"),
        metric=args.metric,
        ablation=args.ablation or model_default(args.model, "ablation") or "mean",
        k=args.k,
        delta=args.delta,
        tol=args.tol,
        side=args.side,
        value_range=args.value_range,
        truncation=args.truncation,
        continue_probability=args.continue_probability,
        budget=args.budget,
        max_seconds=args.max_seconds,
        device=args.device,
        seed=args.seed,
        walks_per_task=_walks_per_task(args, prog),
        memory_budget=_memory_budget(args),
        forward=args.forward,
        output=args.output,
    )
    print(
        f"{prog}: Neuron Shapley (TMAB, {_side_words(config.side, config.k)}) -> {args.out}/",
        file=out,
        flush=True,
    )
    with _progress_display(out, enabled=not args.no_progress, k=config.k) as (progress, names):
        try:
            record = execute(
                config,
                args.out,
                resume=args.resume,
                overwrite=args.overwrite and not args.resume,
                progress=progress,
                log=lambda line: print(f"  {line}", file=out, flush=True),
                on_game=names,
                backend=backend,
            )
            result = load_result(args.out, record)
        except (RunError, ConnectionError) as error:
            raise UsageError(f"{prog}: error: {error}") from None
        except MetricError as error:  # the user's metric raised while the run sampled
            raise UsageError(
                f"{prog}: error: {error}. The run stopped there; fix the metric and make the "
                "run again with --overwrite."
            ) from None
    _print_run(record, result, Path(args.out), out)
    return 0


def _backend(args: argparse.Namespace, prog: str) -> Any:
    """The backend the options ask for (``None``: this process); checked before any work."""
    if args.backend == "local":
        for option, value in (("--workers", args.workers), ("--address", args.address)):
            if value is not None:
                raise UsageError(f"{prog}: error: {option} needs --backend ray.")
        return None
    from neuronshapley.backends import RayBackend

    try:
        backend = RayBackend(workers=args.workers, address=args.address)
        backend.check_address()
    except (ValueError, TypeError, ConnectionError, ImportError) as error:
        message = str(error).replace("The 'address' parameter of RayBackend", "--address")
        message = message.replace("The 'workers' parameter of RayBackend", "--workers")
        raise UsageError(f"{prog}: error: {message}") from None
    return backend


def _memory_budget(args: argparse.Namespace) -> int | None:
    """--memory-budget in bytes, else the model's default (``None``: NeuronGame's)."""
    from neuronshapley.workflows.runs import model_default

    if args.memory_budget is not None:
        return int(args.memory_budget) << 20
    default: int | None = model_default(args.model, "memory_budget")
    return default


def _walks_per_task(args: argparse.Namespace, prog: str) -> int | None:
    """--walks-per-task, else the resumed run's, else the backend's default."""
    if args.walks_per_task is not None:
        return int(args.walks_per_task)
    if args.resume:
        from neuronshapley.workflows.runs import RunError, read_run, run_config

        try:
            return run_config(read_run(Path(args.out))).walks_per_task
        except RunError:
            pass  # execute says what is wrong with the directory
    return RAY_WALKS_PER_TASK if args.backend == "ray" else None


def _print_run(
    record: dict[str, Any],
    result: ShapleyResult | None,
    directory: Path,
    out: TextIO,
    *,
    top: int | None = None,
    bottom: int = 0,
) -> None:
    metric = record.get("metric", "metric")
    k = record["config"]["k"]
    side = record["config"].get("side", "top")  # runs made before --side: the top
    if top is None and side != "top":  # the units TMAB separated, unless told otherwise
        top, bottom = (0 if side == "bottom" else k), max(bottom, k)
    print(file=out)
    reason = record.get("stop_reason") or "?"
    print(f"Status: {record['status']}, stopped on {reason} ({_explain(reason)})", file=out)
    print(
        f"Evaluations: {record.get('n_evaluations', 0):,} coalitions "
        f"({record.get('n_forward_examples', 0):,} example forward passes) in "
        f"{record.get('sampling_seconds', 0.0):.1f} s of sampling, "
        f"{record.get('wall_seconds', 0.0):.1f} s in all",
        file=out,
    )
    if "full" in record:
        print(f"{metric} of the full model:         {record['full']:.4f}", file=out)
        print(f"{metric} without the top {k} units:   {record['without_top_k']:.4f}", file=out)
        print(
            f"{metric} without {k} random units:   {record['without_random_k_mean']:.4f} "
            f"± {record['without_random_k_std']:.4f} ({record['config']['n_random']} draws)",
            file=out,
        )
    if result is not None:
        print(f"Intervals: {result.interval_guarantee}", file=out)
        undecided = result.diagnostics.get("n_undecided")
        if isinstance(undecided, int):
            print(
                f"Decided: {result.n_players - undecided} of {result.n_players} units in or out "
                f"of the {_side_words(side, k)}"
                + (
                    f"; {undecided} undecided (their intervals still straddle the threshold: "
                    "more evaluations, a larger --tol, or a smaller --value-range you know to be "
                    "valid would decide them)"
                    if undecided
                    else ""
                )
                + (
                    # TMAB decides on the samples; plain truncation's widening is not in them.
                    ", decided on the truncated game's values (the printed intervals add the "
                    "truncation bias bound)"
                    if result.params.get("truncation_bias") == "bounded"
                    else ""
                ),
                file=out,
            )
        groups = result.groups or [""] * result.n_players  # none in results saved before 0.1
        for label, ranked in (
            ("Top", result.top(k if top is None else top)),
            ("Bottom", result.bottom(bottom)),
        ):
            if not ranked:
                continue
            print(file=out)
            print(f"{label} {len(ranked)} units (of {result.n_players}):", file=out)
            rows = [("rank", "unit", "layer", "value", "interval", "samples")]
            for row in ranked:
                rows.append(
                    (
                        str(row.rank),
                        row.name,
                        groups[row.player_index],
                        f"{row.value:.4f}",
                        f"[{row.ci_low:.4f}, {row.ci_high:.4f}]",
                        f"{int(result.n_samples[row.player_index]):,}",
                    )
                )
            _print_table(rows, out, right=(True, False, False, True, False, True))
    print(file=out)
    report = directory / "report.html"
    if report.is_file():
        print(f"Report: {report}   Values: {directory / 'values.csv'}", file=out)
    if record["status"] == "interrupted":
        print(f"Interrupted: continue with --resume --out {directory}", file=out)
    print(f"Show again with: neuronshapley show {directory}", file=out)


@contextmanager
def _progress_display(
    out: TextIO, *, enabled: bool, k: int
) -> Iterator[tuple[Callable[[Progress], None] | None, Callable[[Sequence[str]], None]]]:
    """A live progress bar (rich): evaluations, undecided units, current top-k, time."""
    names: list[str] = []

    def set_names(player_names: Sequence[str]) -> None:
        names[:] = player_names

    if not enabled:
        yield None, set_names
        return
    try:
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar
    except ImportError:  # the cli extra is missing: fall back to a line every few seconds
        last = [0.0]

        def plain(progress: Progress) -> None:
            if progress.elapsed_seconds - last[0] >= 5.0:
                last[0] = progress.elapsed_seconds
                print(f"  {_progress_line(progress, names, k)}", file=out, flush=True)

        yield plain, set_names
        return
    console = Console(file=out)
    bar = Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
        console=console,
        transient=False,
    )
    with bar:
        task = bar.add_task("sampling", total=None, status="", eta="?")

        def update(progress: Progress) -> None:
            total, done = _budget_fraction(progress)
            eta = "?"
            if total is not None and done > 0:
                eta = f"{progress.elapsed_seconds * (1 - done) / done:.0f}s"
            bar.update(
                task,
                total=1.0 if total is not None else None,
                completed=done,
                status=_progress_line(progress, names, k),
                eta=eta,
            )

        yield update, set_names


def _budget_fraction(progress: Progress) -> tuple[float | None, float]:
    fractions = []
    if progress.max_evaluations:
        fractions.append(progress.n_evaluations / progress.max_evaluations)
    if progress.max_seconds:
        fractions.append(progress.elapsed_seconds / progress.max_seconds)
    if not fractions:
        return None, 0.0
    return 1.0, min(max(fractions), 1.0)


def _progress_line(progress: Progress, names: Sequence[str], k: int) -> str:
    undecided = "" if progress.n_undecided is None else f"{progress.n_undecided} undecided, "
    top = np.argsort(-progress.values, kind="stable")[: min(k, 3)]
    leaders = ", ".join(names[i] if i < len(names) else str(i) for i in top)
    return f"{progress.n_evaluations:,} evals, {_per_evaluation(progress)}{undecided}top: {leaders}"


def _per_evaluation(progress: Progress) -> str:
    """Seconds per evaluation (over a resumed run), the cost that sizes a budget."""
    if progress.n_evaluations <= 0:
        return ""
    seconds = progress.elapsed_seconds / progress.n_evaluations
    return f"{seconds:.3g} s/eval, " if seconds >= 0.01 else f"{seconds * 1000:.3g} ms/eval, "


# -- explain -------------------------------------------------------------------------------------
def _add_explain_arguments(commands: Any) -> None:
    explain = commands.add_parser(
        "explain",
        help="attribute a model's test examples to their input features",
        description=(
            "Attributions of test examples to their input features (pixels, positions, columns) "
            "by DASP, exact enumeration, permutation sampling or Captum's gradient methods: "
            "NPZ + CSV, heat maps (PNG) and an HTML page in --out; with two or more methods "
            "(or --compare) the agreement between them (Spearman)."
        ),
    )
    explain.add_argument(
        "--model",
        required=True,
        help="a bundled model (e.g. digits-cnn) or path/to/file.py:function returning an "
        "nn.Module or (module, Bundle)",
    )
    explain.add_argument(
        "--data",
        metavar="FILE.py:FUNCTION",
        help="a function returning a ns.Bundle or {'data': x or (x, y), 'reference': x}: the "
        "examples (its test split) and the reference inputs of --baseline mean/background "
        "(default: the bundled model's data, or the Bundle --model returns)",
    )
    explain.add_argument(
        "--baseline",
        choices=("zero", "mean", "background"),
        default="zero",
        help="what a removed feature becomes: zero, the per-feature mean of the reference "
        "inputs, or a background set of their rows (default: zero)",
    )
    explain.add_argument(
        "--background",
        metavar="N",
        type=_int_at_least(1),
        default=16,
        help="rows of the background set, drawn with --seed; every method's cost is multiplied "
        "by N (default: 16)",
    )
    explain.add_argument(
        "--examples", default="0-9", help="test examples, e.g. 0-9 or 0,3,7-9 (default: 0-9)"
    )
    explain.add_argument(
        "--method",
        default="dasp",
        help="dasp, exact, sampling, ig, saliency, deeplift, input_x_gradient or kernel_shap; "
        "several comma-separated (default: dasp)",
    )
    explain.add_argument(
        "--compare",
        action="store_true",
        help="run dasp, sampling, ig, saliency and deeplift (plus --method) and compare them",
    )
    explain.add_argument("--out", metavar="DIR", required=True, help="the directory to write")
    explain.add_argument(
        "--patch", metavar="N", type=_int_at_least(1), help="N x N pixel patches as players"
    )
    explain.add_argument(
        "--samples",
        metavar="N",
        type=_int_at_least(2),
        default=64,
        help="permutations for sampling (default: 64)",
    )
    explain.add_argument(
        "--sizes",
        metavar="N",
        type=_int_at_least(1),
        default=8,
        help="coalition sizes for dasp (default: 8)",
    )
    explain.add_argument(
        "--steps", metavar="N", type=_int_at_least(2), default=50, help="steps for ig (default: 50)"
    )
    explain.add_argument(
        "--seed", metavar="N", type=_int_at_least(0), default=0, help="sampling seed (default: 0)"
    )
    explain.add_argument(
        "--overwrite", action="store_true", help="replace an explanation already in --out"
    )


def _explain_command(args: argparse.Namespace, out: TextIO) -> int:
    from neuronshapley.workflows.explain import COMPARE, ExplainOptions, explain, parse_methods
    from neuronshapley.workflows.runs import RunError

    prog = "neuronshapley explain"
    try:
        methods = parse_methods(args.method)
        if args.compare:
            methods = tuple(dict.fromkeys([*methods, *COMPARE]))
        options = ExplainOptions(
            model=args.model,
            examples=args.examples,
            methods=methods,
            out=Path(args.out),
            patch=args.patch,
            samples=args.samples,
            sizes=args.sizes,
            steps=args.steps,
            seed=args.seed,
            overwrite=args.overwrite,
            data=args.data,
            baseline=args.baseline,
            background=args.background,
        )
        done = explain(options, log=lambda line: print(f"  {line}", file=out, flush=True))
    except RunError as error:
        raise UsageError(f"{prog}: error: {error}") from None
    rows = [["method", "evaluations/example"]]
    rows += [[method, f"{cost:,.0f}"] for method, cost in done.costs.items()]
    _print_table(rows, out, right=[False, True])
    if done.agreement:
        print(file=out)
        rows = [["methods", "Spearman (median)"]]
        rows += [
            [f"{row['method_a']} / {row['method_b']}", f"{row['spearman_median']:.3f}"]
            for row in done.agreement
        ]
        _print_table(rows, out, right=[False, True])
    print(f"Wrote {done.out}/: {', '.join(done.files)} ({done.seconds:.0f} s)", file=out)
    return 0


# -- data ----------------------------------------------------------------------------------------
def _add_data_arguments(commands: Any) -> None:
    from neuronshapley.workflows.data import DATA_CONTRACT, DATASETS, METHODS, MODELS, OWN_MODEL

    data = commands.add_parser(
        "data",
        help="value the training points of a dataset (bundled, or yours) for a learner",
        description=(
            "Values of a dataset's training points (a bundled one, or --data file.py:function) "
            "for a learner (a logistic regression, or --model file.py:function), by one "
            "method, optionally after flipping a share of the labels (then the F1 and AUC of "
            "flagging the lowest-valued as flipped): values.csv, result.json + result.npz "
            "(what 'neuronshapley show' reads), report.html (the values, the lowest-valued "
            "points, the detection scores and point-removal curves) and data.json in --out. "
            "A spec's file is run; data.json keeps its path and SHA-256, and --resume refuses "
            "a file changed since."
        ),
    )
    data.add_argument("--dataset", default=None, help=f"{', '.join(DATASETS)} (default: adult)")
    data.add_argument(
        "--data",
        metavar="FILE.py:FUNCTION",
        default=None,
        help=f"your points instead of --dataset: the function returns {DATA_CONTRACT}",
    )
    data.add_argument(
        "--model",
        default=None,
        help=f"{', '.join(MODELS)}: another name for --dataset (with the logistic regression); "
        "or FILE.py:FUNCTION returning your learner: a scikit-learn classifier (cloned per "
        "coalition) or a callable fit(x, y) -> predict (not for "
        f"{' or '.join(OWN_MODEL)}, which value the points for a model of their own; "
        "datamodels needs decision_function). Default: the logistic regression",
    )
    data.add_argument("--method", required=True, help=", ".join(METHODS))
    data.add_argument("--out", metavar="DIR", required=True, help="the directory to write")
    data.add_argument(
        "--n-train",
        metavar="N",
        type=_int_at_least(2),
        default=None,
        help="training points valued, drawn at random (default: 200 of a bundled dataset, all "
        "of --data's)",
    )
    data.add_argument(
        "--n-test",
        metavar="N",
        type=_int_at_least(2),
        default=None,
        help="test points, drawn at random (default: 500 of a bundled dataset, all of --data's)",
    )
    data.add_argument(
        "--noise", metavar="P", type=float, default=0.0, help="share of labels flipped (default: 0)"
    )
    data.add_argument(
        "--permutations",
        metavar="N",
        type=_int_at_least(2),
        default=100,
        help="permutations of tmc and beta (default: 100)",
    )
    data.add_argument(
        "--samples",
        metavar="N",
        type=_int_at_least(2),
        default=2000,
        help="coalitions of banzhaf (default: 2000)",
    )
    data.add_argument(
        "--k", metavar="N", type=_int_at_least(1), default=10, help="knn's K (default: 10)"
    )
    data.add_argument(
        "--models",
        metavar="N",
        type=_int_at_least(1),
        default=1000,
        help="bootstrap models of oob; models trained on random halves for datamodels, "
        "beside 100 held-out ones for its LDS (default: 1000)",
    )
    data.add_argument(
        "--seed", metavar="N", type=_int_at_least(0), default=0, help="seed (default: 0)"
    )
    data.add_argument(
        "--show",
        metavar="N",
        type=_int_at_least(0),
        default=10,
        help="lowest-valued points printed (default: 10)",
    )
    data.add_argument(
        "--budget",
        metavar="N",
        type=_int_at_least(1),
        default=None,
        help="coalitions tmc, beta or banzhaf may evaluate (a fit each, bar one-class ones), "
        "over a resumed valuation (default: no limit)",
    )
    data.add_argument(
        "--max-seconds",
        metavar="S",
        type=_float_in(0.0, None),
        default=None,
        help="seconds of sampling tmc, beta or banzhaf may spend in this call (default: no limit)",
    )
    data.add_argument(
        "--resume",
        action="store_true",
        help="continue the tmc, beta or banzhaf valuation in --out from its checkpoint (Ctrl-C, "
        "a budget or --max-seconds leave one) to the result of an uninterrupted one, or the "
        "datamodels one from the subsets it trained (saved 50 at a time); --permutations, "
        "--samples, --models, --budget and --max-seconds may grow. The other methods are not "
        "resumable: they start again",
    )
    data.add_argument("--overwrite", action="store_true", help="replace a valuation in --out")
    data.add_argument(
        "--no-progress",
        action="store_true",
        help="do not show the live progress bar (shown for tmc, beta and banzhaf; the others "
        "report none)",
    )


def _data_command(args: argparse.Namespace, out: TextIO) -> int:
    from neuronshapley._internal.specs import is_spec
    from neuronshapley.workflows.data import (
        MODELS,
        REPORT_FILE,
        SAMPLED,
        DataOptions,
        scores_text,
        value_training_data,
    )
    from neuronshapley.workflows.runs import RunError

    prog = "neuronshapley data"
    dataset, learner = args.dataset, None
    if args.model is not None and is_spec(args.model):
        learner = args.model
    elif args.model is not None:
        if args.model not in MODELS:
            raise UsageError(
                f"{prog}: error: --model must be one of {', '.join(MODELS)} or "
                f"path/to/file.py:function. Got {args.model!r} instead."
            )
        if args.data is not None:
            raise UsageError(
                f"{prog}: error: --model {args.model} is the {MODELS[args.model]} dataset; it "
                f"contradicts --data {args.data} (give your learner as --model "
                "path/to/file.py:function, or leave --model out for the logistic regression)."
            )
        if dataset is not None and dataset != MODELS[args.model]:
            raise UsageError(
                f"{prog}: error: --model {args.model} is the {MODELS[args.model]} dataset; it "
                f"contradicts --dataset {dataset} (pass one of them)."
            )
        dataset = MODELS[args.model]
    options = DataOptions(
        dataset=dataset,
        data=args.data,
        model=learner,
        method=args.method,
        out=Path(args.out),
        n_train=args.n_train,
        n_test=args.n_test,
        noise=args.noise,
        seed=args.seed,
        permutations=args.permutations,
        samples=args.samples,
        k=args.k,
        models=args.models,
        overwrite=args.overwrite,
        resume=args.resume,
        budget=args.budget,
        max_seconds=args.max_seconds,
    )
    # Only the walked methods report progress; an empty bar for the others would say nothing.
    shown = not args.no_progress and args.method in SAMPLED
    with _progress_display(out, enabled=shown, k=3) as (progress, names):
        try:
            done = value_training_data(
                options,
                log=lambda line: print(f"  {line}", file=out, flush=True),
                progress=progress,
                on_game=names,
            )
        except RunError as error:
            raise UsageError(f"{prog}: error: {error}") from None
    order = np.argsort(done.values, kind="stable")[: args.show]
    if len(order):
        print(f"Lowest-valued training points ({args.method}):", file=out)
        rows = [["rank", "point", "train index", "label", "flipped", "value"]]
        rows += [
            [
                str(rank),
                str(point),
                str(done.indices[point]),
                str(done.labels[point]),
                "yes" if done.flipped[point] else "",
                f"{done.values[point]:.4g}",
            ]
            for rank, point in enumerate(order, start=1)
        ]
        _print_table(rows, out, right=[True, True, True, True, False, True])
    if done.scores:
        print(f"Flagging the lowest-valued as flipped: {scores_text(done.scores)}", file=out)
    print(
        f"Wrote {done.out}/: {', '.join(_file_list(done.files))} ({done.fits:,} fits, "
        f"{done.seconds:.1f} s)",
        file=out,
    )
    if REPORT_FILE in done.files:
        print(f"Report: {done.out / REPORT_FILE}", file=out)
    if done.status == "interrupted":
        print(f"Interrupted: continue with --resume --out {done.out}", file=out)
    elif done.stop_reason in ("max_evaluations", "max_seconds"):
        print(
            f"Stopped on {done.stop_reason} ({_explain(done.stop_reason)}) before the "
            + ("--samples were drawn" if args.method == "banzhaf" else "--permutations were walked")
            + f": continue with --resume --out {done.out} and a larger budget",
            file=out,
        )
    print(f"Show again with: neuronshapley show {done.out}", file=out)
    return 0


def _file_list(files: Sequence[str]) -> list[str]:
    """The files written, a folder of several (datamodels' blocks) as one entry."""
    folders = Counter(name.split("/", 1)[0] for name in files if "/" in name)
    listed, seen = [], set()
    for name in files:
        folder = name.split("/", 1)[0]
        if "/" not in name or folders[folder] == 1:
            listed.append(name)
        elif folder not in seen:
            seen.add(folder)
            listed.append(f"{folder}/ ({folders[folder]} files)")
    return listed


# -- study ---------------------------------------------------------------------------------------
def _study(args: argparse.Namespace, out: TextIO) -> int:
    from neuronshapley._internal.specs import is_spec
    from neuronshapley.workflows.runs import RunError
    from neuronshapley.workflows.studies import (
        DEFAULT_BUDGET,
        INTERACTIONS_BUDGET,
        StudyOptions,
        ensure_run,
        run_study,
    )

    prog = f"neuronshapley study {args.name}"
    if args.run is None and (args.model is None or is_spec(args.model)):
        raise UsageError(
            f"{prog}: error: --run DIR is required (it may be left out with a bundled --model, "
            "whose run is then runs/MODEL)."
        )
    directory = Path(args.run) if args.run is not None else Path("runs") / args.model
    # The heads study's run has its own default budget (workflows.studies.HEADS_BUDGET).
    run_budget = args.budget if args.name == "heads" else args.budget or DEFAULT_BUDGET
    try:
        if args.model is not None and not (directory / "run.json").is_file():
            print(f"{prog}: making the run {directory}/ first", file=out, flush=True)
        with _progress_display(out, enabled=not args.no_progress, k=10) as (progress, names):
            ensure_run(
                directory,
                args.model,
                budget=run_budget,
                seed=args.seed,
                truncation=DEFAULT_TRUNCATION,
                progress=progress,
                log=lambda line: print(f"  {line}", file=out, flush=True),
                on_game=names,
                study=args.name,
                seconds=args.seconds,
            )
        default = INTERACTIONS_BUDGET if args.name == "interactions" else DEFAULT_BUDGET
        options = StudyOptions(
            k=args.k,
            budget=args.budget or default,
            seed=args.seed,
            n_random=args.random,
            classes=args.classes,
            other=args.other,
            epsilon=args.epsilon,
            steps=args.steps,
            step_size=args.step_size,
            sources=args.sources,
            seconds=args.seconds,
        )
        print(f"{prog}: on {directory}/", file=out, flush=True)
        with _progress_display(out, enabled=not args.no_progress, k=args.k or 10) as (
            progress,
            _,
        ):
            record = run_study(args.name, directory, options, progress=progress)
    except RunError as error:
        raise UsageError(f"{prog}: error: {error}") from None
    print(file=out)
    print(record["text"], file=out)
    print(file=out)
    print(
        f"Wrote {directory / 'studies' / args.name}/ and {directory / 'report.html'} "
        f"({record['seconds']:.0f} s)",
        file=out,
    )
    return 0


# -- repair and unit ------------------------------------------------------------------------------
def _repair(args: argparse.Namespace, out: TextIO) -> int:
    from neuronshapley.workflows.exports import repair_run
    from neuronshapley.workflows.runs import RunError

    prog = "neuronshapley repair"
    try:
        done = repair_run(args.run, args.remove, args.out)
    except RunError as error:
        raise UsageError(f"{prog}: error: {error}") from None
    print(f"Removed {len(done.removed)} units: {', '.join(done.removed)}", file=out)
    print(
        f"{done.metric} on the run's data: {done.before:.4f} before, {done.after:.4f} after",
        file=out,
    )
    print(
        f"Saved {done.target} (load with neuronshapley.applications.repair.load_repaired)",
        file=out,
    )
    print(f"Added the 'Repaired model' section to {Path(args.run) / 'report.html'}", file=out)
    return 0


def _unit(args: argparse.Namespace, out: TextIO) -> int:
    from neuronshapley.workflows.exports import draw_unit
    from neuronshapley.workflows.runs import RunError

    prog = "neuronshapley unit"
    try:
        view = draw_unit(args.run, args.unit, args.k, args.out)
    except RunError as error:
        raise UsageError(f"{prog}: error: {error}") from None
    print(f"{args.unit}: most active examples {view.most_active}", file=out)
    print(f"{args.unit}: least active examples {view.least_active}", file=out)
    print(f"Wrote {', '.join(str(path) for path in view.files)}", file=out)
    return 0


# -- show ----------------------------------------------------------------------------------------
def _show(args: argparse.Namespace, out: TextIO) -> int:
    prog = "neuronshapley show"
    directory = Path(args.directory)
    if not directory.is_dir():
        raise UsageError(f"{prog}: error: DIR must be a directory; {directory} does not exist.")
    from neuronshapley.workflows.runs import RUN_FILE, RunError, load_result, read_run

    record = None
    try:
        if (directory / RUN_FILE).is_file():
            record = read_run(directory)
        result = load_result(directory, record)
        if result is not None:
            for option, count in (("--top", args.top), ("--bottom", args.bottom)):
                if count is not None and count > result.n_players:
                    raise RunError(
                        f"{option} must be at most the number of players ({result.n_players}). "
                        f"Got {count} instead."
                    )
    except RunError as error:
        raise UsageError(f"{prog}: error: {error}") from None
    if record is not None:
        print(f"Run in {directory}: {record.get('source', record['config']['model'])}", file=out)
        _print_run(record, result, directory, out, top=args.top, bottom=args.bottom)
        if result is not None:
            _write_csv(result, args.csv, prog, out)
        elif args.csv is not None:
            raise UsageError(f"{prog}: error: --csv: the run in {directory} has no values yet.")
        return 0
    if result is None:  # only a run record can say "no values yet"
        raise UsageError(f"{prog}: error: {directory} holds no values.")
    top = 10 if args.top is None else args.top
    print(repr(result), file=out)
    for label, ranked in (
        (f"Top {top}", result.top(top)),
        (f"Bottom {args.bottom}", result.bottom(args.bottom)),
    ):
        if not ranked:
            continue
        print(file=out)
        print(f"{label} (of {result.n_players} players):", file=out)
        rows = [("rank", "player", "value", "stderr", "interval", "samples")]
        for row in ranked:
            i = row.player_index
            rows.append(
                (
                    str(row.rank),
                    row.name,
                    f"{row.value:.5g}",
                    f"{result.stderr[i]:.3g}",
                    f"[{row.ci_low:.5g}, {row.ci_high:.5g}]",
                    f"{int(result.n_samples[i]):,}",
                )
            )
        _print_table(rows, out, right=(True, False, True, True, False, True))
    _write_csv(result, args.csv, prog, out)
    return 0


def _write_csv(result: ShapleyResult, path: str | None, prog: str, out: TextIO) -> None:
    if path is None:
        return
    try:
        result.to_csv(path)
    except OSError as error:
        raise UsageError(f"{prog}: error: cannot write --csv {path}: {error}") from None
    print(file=out)
    print(f"Wrote {result.n_players} rows to {path}", file=out)


def _print_table(rows: Sequence[Sequence[str]], out: TextIO, right: Sequence[bool]) -> None:
    """Print ``rows`` (the first is the header) in aligned columns."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(row, widths, right, strict=True)
        ]
        print("  " + "  ".join(cells).rstrip(), file=out)
