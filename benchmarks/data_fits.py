"""Model fits per second of a DataGame: worker processes (``n_jobs``) and warm starts (issue 15).

On UCI Adult (the noisy-label benchmark's sampling, ``benchmarks/data_noisy.py``: seed 0,
500 test points), one TMC-Shapley run of fixed permutations per row (``tmc_shapley(game,
n_permutations=P, seed=0, walks_per_task=None)``, tolerance 0.01), with L2 logistic regression
(C = 1): liblinear (the benchmarks' learner, which cannot warm start) and lbfgs (``tol`` 1e-4),
cold and warm, on one worker and on two. Per row: the model fits, the wall seconds of the run
(the least of ``--repeats`` runs on the same game; the workers' start-up is the "start"
column, paid once per game), fits per second, the CPU seconds of this process and its workers
(the load moves them less than the wall seconds), and the largest difference of the Shapley
values from the same learner's cold run on one worker (0: bit for bit). Every row runs with
one OpenMP and one BLAS thread per process (``threadpool_limits(1)``, mirrored in the
workers): two lbfgs threads spin many times slower when the cores are shared. The load
average is printed before and after each row, since the timings depend on what else the
machine runs. Then, for warm starts, how many of 128 coalitions get another value warm than
cold with lbfgs at ``tol`` 1e-4 and 1e-6, and the CPU seconds of their fits.

Run: ``.venv/bin/python -m benchmarks.data_fits`` (results in docs/data.md);
``--n-train 200 --permutations 4`` for a quick look.
"""

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import threadpoolctl
import torch
from sklearn.linear_model import LogisticRegression

from benchmarks.data_noisy import sample
from neuronshapley.data import DataGame, tmc_shapley


def learners() -> dict[str, tuple[Any, bool]]:
    """Name -> (learner, whether a warm start applies)."""
    return {
        "liblinear": (LogisticRegression(C=1.0, solver="liblinear"), False),
        "lbfgs": (LogisticRegression(C=1.0, solver="lbfgs", tol=1e-4, max_iter=1000), True),
    }


def load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def cpu_seconds(game: DataGame) -> float:
    """CPU seconds of this process and of the game's workers so far (Linux' /proc)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for pid in getattr(game._pool, "_processes", None) or ():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def run(
    data: tuple[np.ndarray, ...],
    learner: Any,
    n_jobs: int,
    warm: bool,
    permutations: int,
    repeats: int,
) -> dict[str, Any]:
    game = DataGame(*data, fit=learner, n_jobs=n_jobs, warm_start=warm)
    started = time.perf_counter()
    # Two fits: the workers start here (and the warm starts' model is fitted), not in the run.
    game.value(np.ones((2, game.n_players), dtype=bool))
    start_seconds = time.perf_counter() - started
    seconds, cpu, values, fits = [], [], None, 0
    for _ in range(repeats):
        before = game.n_fits
        started, cpu_started = time.perf_counter(), cpu_seconds(game)
        # Whole rounds as tasks: the engine's default cuts them by the measured cost of a fit,
        # which the load moves, and another cut truncates other walks (other values).
        result = tmc_shapley(
            game, tolerance=0.01, n_permutations=permutations, seed=0, walks_per_task=None
        )
        seconds.append(time.perf_counter() - started)
        cpu.append(cpu_seconds(game) - cpu_started)
        fits = game.n_fits - before
        if values is not None and not np.array_equal(values, result.values):
            raise RuntimeError("two runs of the same game and seed differ")
        values = result.values
    return {
        "start": start_seconds,
        "seconds": min(seconds),
        "cpu": min(cpu),
        "fits": fits,
        "values": values,
    }


def warm_agreement(n_train: int, tol: float) -> str:
    """A table row: how many of 128 coalitions (50-100% of the points, like TMC's walks from
    the full set) get another V warm than cold with lbfgs at ``tol``, the largest difference,
    and the CPU seconds of the 128 fits cold and warm."""
    data = sample(0, n_train)
    rng = np.random.default_rng(1)
    coalitions = rng.random((128, n_train)) < rng.uniform(0.5, 1.0, (128, 1))
    learner = LogisticRegression(C=1.0, tol=tol, max_iter=1000)
    values, cpu = {}, {}
    for warm in (False, True):
        game = DataGame(*data, fit=learner, warm_start=warm)
        game.value(coalitions[:1])  # the warm starts' model, fitted once, not timed
        started = time.process_time()
        values[warm] = game.value(coalitions)
        cpu[warm] = time.process_time() - started
    diff = np.abs(values[True] - values[False])
    return (
        f"| {n_train} | {tol:g} | {int((diff > 0).sum())} of 128 | {diff.max():.3g} | "
        f"{cpu[False]:.2f} / {cpu[True]:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--permutations", type=int, default=8)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average (1, 5, 15 min) before: {load()}; {os.cpu_count()} CPUs\n")
    columns = "learner | n_train | warm start | n_jobs | start (s) | fits | seconds | fits/s"
    print(f"| {columns} | CPU s | max abs diff | load (1 min) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with threadpoolctl.threadpool_limits(1):
        for n_train in args.n_train:
            data = sample(0, n_train)
            for name, (learner, can_warm) in learners().items():
                reference = None
                for warm in (False, True) if can_warm else (False,):
                    for n_jobs in args.jobs:
                        row = run(data, learner, n_jobs, warm, args.permutations, args.repeats)
                        if reference is None:
                            reference = row["values"]
                        diff = float(np.abs(row["values"] - reference).max())
                        print(
                            f"| {name} | {n_train} | {'yes' if warm else 'no'} | {n_jobs} | "
                            f"{row['start']:.1f} | {row['fits']:,} | {row['seconds']:.1f} | "
                            f"{row['fits'] / row['seconds']:.0f} | {row['cpu']:.1f} | "
                            f"{diff:.2g} | {os.getloadavg()[0]:.1f} |",
                            flush=True,
                        )
    print(f"\nload average after: {load()}; TMC: {args.permutations} permutations, seed 0")
    print("\nWarm against cold starts, lbfgs, V of 128 coalitions:\n")
    print("| n_train | tol | coalitions whose V differs | largest difference | CPU s cold / warm |")
    print("| --- | --- | --- | --- | --- |")
    with threadpoolctl.threadpool_limits(1):
        for n_train in args.n_train:
            for tol in (1e-4, 1e-6):
                print(warm_agreement(n_train, tol), flush=True)
    print(f"\nload average after: {load()}")


if __name__ == "__main__":
    main()
