"""The ``neuronshapley`` command: run the demo job, inspect saved results.

``neuronshapley demo`` runs TMAB-Shapley (Algorithm 1 of Ghorbani & Zou 2020) on the bundled
synthetic game, a sparse sum of unanimity games with known Shapley values, and checks the top k
it finds against the truth; until the PyTorch adapter exists, that is the main job.
``neuronshapley show DIR`` prints a result saved with ``ShapleyResult.save``.

User mistakes (a bad number, a missing directory) print one line to stderr and exit with code 2;
tracebacks are kept for bugs.
"""

import argparse
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

import numpy as np

from neuronshapley.estimators import ShapleyResult, tmab_shapley
from neuronshapley.games import sparse_soum

USAGE_ERROR = 2
# The demo table stays readable for any k; precision still counts all k.
_MAX_DEMO_ROWS = 25
_STOP_REASONS = {
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
        "demo",
        help="run TMAB-Shapley on the bundled synthetic game and check it against the truth",
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

    show = commands.add_parser(
        "show",
        help="print a result saved with ShapleyResult.save",
        description="Print a saved ShapleyResult: its summary and a table of top/bottom players.",
    )
    show.add_argument("directory", metavar="DIR", help="directory holding result.json/.npz")
    show.add_argument(
        "--top",
        metavar="N",
        type=_int_at_least(0),
        default=10,
        help="rows of largest values (default: 10)",
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``neuronshapley`` command; return its exit code (0 on success, 2 on misuse).

    Args:
        argv: The arguments after the program name. Default ``None``: ``sys.argv[1:]``.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "demo":
            return _demo(args, sys.stdout)
        if args.command == "show":
            return _show(args, sys.stdout)
        raise UsageError(
            "neuronshapley: error: choose a command, 'demo' or 'show' (see 'neuronshapley --help')"
        )
    except UsageError as error:
        print(error, file=sys.stderr)
        return USAGE_ERROR
    except SystemExit as stop:  # --help
        return stop.code if isinstance(stop.code, int) else 0


# -- demo ----------------------------------------------------------------------------------------
def _demo(args: argparse.Namespace, out: TextIO) -> int:
    players, k, seed = args.players, args.k, args.seed
    prog = "neuronshapley demo"
    if players < k + 5:
        raise UsageError(
            f"{prog}: error: --players must be at least --k + 5 = {k + 5} (the game has k large "
            f"values and 5 runners-up). Got --players {players} with --k {k}."
        )
    target = Path(args.out) if args.out is not None else None
    if target is not None and target.exists() and not target.is_dir():
        raise UsageError(f"{prog}: error: --out must be a directory; {target} is a file.")

    game = sparse_soum(n_players=players, n_large=k, seed=seed)
    truth = game.shapley_values()
    value_range = game.marginal_range()
    call = f"tmab_shapley(k={k}, delta=0.05, tol=1e-3, value_range={value_range:.4g}, seed={seed})"
    print(
        "neuronshapley demo: TMAB-Shapley on a synthetic game with known Shapley values", file=out
    )
    print(
        f"  game: sparse_soum(n_players={players}, n_large={k}, seed={seed}); "
        "the PyTorch adapter comes later",
        file=out,
    )
    print(f"Running {call} ...", file=out, flush=True)

    def run(adaptive: bool) -> ShapleyResult:
        return tmab_shapley(
            game,
            k=k,
            delta=0.05,
            tol=1e-3,
            value_range=value_range,
            seed=seed,
            adaptive=adaptive,
        )

    result = run(adaptive=True)
    true_top = set(np.argsort(-truth, kind="stable")[:k].tolist())
    found = result.top(k)
    hits = sum(row.player_index in true_top for row in found)
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

    if args.compare:
        print(file=out)
        print("Plain Monte Carlo, same stopping rule (adaptive=False) ...", file=out, flush=True)
        plain = run(adaptive=False)
        plain_hits = len(true_top.intersection(plain.top_indices(k).tolist()))
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


def _explain(stop_reason: str) -> str:
    return _STOP_REASONS.get(stop_reason, "see the estimator's docs")


# -- show ----------------------------------------------------------------------------------------
def _show(args: argparse.Namespace, out: TextIO) -> int:
    prog = "neuronshapley show"
    directory = Path(args.directory)
    if not directory.is_dir():
        raise UsageError(f"{prog}: error: DIR must be a directory; {directory} does not exist.")
    try:
        result = ShapleyResult.load(directory)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise UsageError(f"{prog}: error: cannot read {directory}: {error}") from None
    print(repr(result), file=out)
    for label, ranked in (
        (f"Top {args.top}", result.top(args.top)),
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
    if args.csv is not None:
        try:
            result.to_csv(args.csv)
        except OSError as error:
            raise UsageError(f"{prog}: error: cannot write --csv {args.csv}: {error}") from None
        print(file=out)
        print(f"Wrote {result.n_players} rows to {args.csv}", file=out)
    return 0


def _print_table(rows: Sequence[Sequence[str]], out: TextIO, right: Sequence[bool]) -> None:
    """Print ``rows`` (the first is the header) in aligned columns."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(row, widths, right, strict=True)
        ]
        print("  " + "  ".join(cells).rstrip(), file=out)
