"""Noisy-label detection and point removal on UCI Adult, per data-valuation method (issue 15).

Protocol (OpenDataVal's, Jiang et al. 2023): per seed, ``N_TRAIN`` training points drawn from
Adult's train split and ``N_TEST`` test points from its test split; the labels of ``NOISE`` of
the training points flipped; every training point valued by each method against the test
points; the lowest-valued flagged as noisy. The learner is scikit-learn's L2 logistic
regression (liblinear, C = 1). Reported per method, mean +- sd over the seeds: the F1 of
flagging as many points as were flipped, the F1 of OpenDataVal's rule (the lower cluster of
the exact 1-d 2-means of the values), the AUC, the model fits and the seconds; and the
point-removal curves (test accuracy after removing 0 .. 50% of the points, lowest-valued or
highest-valued first), drawn to docs/figures/data/removal.png.

Methods: TMC-Shapley, Beta(16, 1) Shapley, Data Banzhaf (MSR), leave-one-out (all on one
``DataGame``), KNN-Shapley (K = 10, closed form), and influence functions on the same
objective in torch (softmax regression, weight decay 1 / (C n), exact Hessian): the predicted
change of the summed test loss when a point is removed ("influence (test)") and the
self-influence I(x, x) ("self-influence"); Data-OOB (Kwon & Zou 2023, 1,000 bootstrap models)
of a random forest (decision trees, the paper's) and of the benchmark's logistic regression
(OpenDataVal's way: the prediction model bagged); TMAB for the k = (number flipped) lowest
values (``harmful_points``) and TMC-Shapley on the same budget of model fits
(``--tmab-evaluations``); and random values.

Run: ``.venv/bin/python -m benchmarks.data_noisy`` (results in docs/data.md);
``--seeds 0`` and ``--n-train 100`` for a quick look; the issue's size, without the costly
TMC, Beta Shapley and TMAB: ``--n-train 1000 --noise 0.2 --no-slow``, with them on fewer walks:
``--tmc-permutations 50 --beta-permutations 50``. ``--methods oob tmab random`` runs only
those rows (names: ``tmc beta banzhaf loo knn influence oob tmab random``).
"""

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from neuronshapley.data import (
    DataGame,
    beta_shapley,
    data_banzhaf,
    data_oob,
    harmful_points,
    knn_shapley,
    tmc_shapley,
)
from neuronshapley.data.detection import (
    detection_auc,
    f1_at_count,
    flip_labels,
    removal_curve,
    two_means_f1,
)
from neuronshapley.data.influence import influence
from neuronshapley.data.loo import fit_lbfgs
from neuronshapley.data.semivalues import leave_one_out_values
from neuronshapley.report.data import removal_curves
from neuronshapley.report.html import figure_to_png
from neuronshapley.zoo.datasets import adult

N_TRAIN, N_TEST, NOISE = 200, 500, 0.1
C = 1.0
TMC_PERMUTATIONS = 100
BETA_PERMUTATIONS = 200
BANZHAF_SAMPLES = 2000
KNN_K = 10
OOB_MODELS = 1000
TMAB_EVALUATIONS = 10_000
REMOVAL_FRACTIONS = np.linspace(0.0, 0.5, 11)
FIGURE = Path("docs/figures/data/removal.png")


def learner() -> LogisticRegression:
    return LogisticRegression(C=C, solver="liblinear")


def sample(seed: int, n_train: int) -> tuple[np.ndarray, ...]:
    bundle = adult()
    rng = np.random.default_rng(seed)
    train = rng.choice(len(bundle.train.x), size=n_train, replace=False)
    test = rng.choice(len(bundle.test.x), size=N_TEST, replace=False)
    x, y = bundle.train.x.numpy()[train], bundle.train.y.numpy()[train]
    x_test, y_test = bundle.test.x.numpy()[test], bundle.test.y.numpy()[test]
    return x.astype(np.float64), y, x_test.astype(np.float64), y_test


def influence_values(
    x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """(test influence, self-influence, seconds) of softmax regression on liblinear's
    objective: mean loss + (1 / (2 C n)) ||theta||^2."""
    started = time.perf_counter()
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 2).double()
    weight_decay = 1.0 / (C * len(x))
    train = (torch.tensor(x), torch.tensor(y))
    fit_lbfgs(model, train, weight_decay=weight_decay, max_iter=2000)
    result = influence(
        model, train, (torch.tensor(x_test), torch.tensor(y_test)), weight_decay=weight_decay
    )
    # Removing a helpful point raises the test loss: its predicted change is the value.
    test_value = result.loo_estimate().sum(axis=1)
    assert result.self_influence is not None
    return test_value, result.self_influence, time.perf_counter() - started


SLOW = ("TMC-Shapley", "Beta(16,1)-Shapley", "TMAB bottom-k", "TMC-Shapley (TMAB's budget)")
# Short names for --methods, each the rows it runs.
METHODS = {
    "tmc": ("TMC-Shapley",),
    "beta": ("Beta(16,1)-Shapley",),
    "banzhaf": ("Data Banzhaf",),
    "loo": ("leave-one-out",),
    "knn": ("KNN-Shapley",),
    "influence": ("influence (test)", "self-influence"),
    "oob": ("Data-OOB (forest)", "Data-OOB (logistic)"),
    "tmab": ("TMAB bottom-k", "TMC-Shapley (TMAB's budget)"),
    "random": ("random",),
}


def run_seed(
    seed: int,
    n_train: int,
    noise: float,
    slow: bool,
    permutations: tuple[int, int],
    rows: set[str],
    tmab_evaluations: int,
    n_jobs: int = 1,
) -> dict[str, dict[str, Any]]:
    tmc_permutations, beta_permutations = permutations
    x, y_clean, x_test, y_test = sample(seed, n_train)
    y, flipped = flip_labels(y_clean, noise, seed=seed)
    # With n_jobs > 1 the methods on the game fit their batches in worker processes: the same
    # values bit for bit (DataGame's parallel fits).
    game = DataGame(x, y, x_test, y_test, fit=learner(), n_jobs=n_jobs)
    methods: dict[str, Callable[[], tuple[np.ndarray, int]]] = {}

    def on_game(estimate: Callable[[], Any]) -> Callable[[], tuple[np.ndarray, int]]:
        def run() -> tuple[np.ndarray, int]:
            before = game.n_fits
            return estimate().values, game.n_fits - before

        return run

    methods["TMC-Shapley"] = on_game(
        lambda: tmc_shapley(
            game, tolerance=0.01, n_permutations=tmc_permutations, seed=seed, value_range=2.0
        )
    )
    methods["Beta(16,1)-Shapley"] = on_game(
        lambda: beta_shapley(game, n_permutations=beta_permutations, seed=seed, tail=1e-3)
    )
    methods["Data Banzhaf"] = on_game(
        lambda: data_banzhaf(game, n_samples=BANZHAF_SAMPLES, seed=seed)
    )
    methods["leave-one-out"] = on_game(lambda: leave_one_out_values(game))
    methods["KNN-Shapley"] = lambda: (
        knn_shapley(x, y, x_test, y_test, k=KNN_K).values,
        0,
    )

    def oob(fit: Any) -> Callable[[], tuple[np.ndarray, int]]:
        def run() -> tuple[np.ndarray, int]:
            result = data_oob(x, y, fit=fit, n_models=OOB_MODELS, seed=seed)
            return result.values, result.n_evaluations

        return run

    methods["Data-OOB (forest)"] = oob(None)
    methods["Data-OOB (logistic)"] = oob(learner())
    tmab_state: dict[str, Any] = {}

    def tmab() -> Any:
        result = harmful_points(
            game, len(flipped), tolerance=0.01, max_evaluations=tmab_evaluations, seed=seed
        )
        tmab_state["undecided"] = int(result.diagnostics["n_undecided"])
        tmab_state["halfwidth"] = float(np.median(result.ci_high - result.ci_low) / 2.0)
        tmab_state["threshold"] = float(result.diagnostics["thresholds"]["bottom"])
        return result

    methods["TMAB bottom-k"] = on_game(tmab)
    methods["TMC-Shapley (TMAB's budget)"] = on_game(
        lambda: tmc_shapley(
            game, tolerance=0.01, max_evaluations=tmab_evaluations, seed=seed, value_range=2.0
        )
    )
    out: dict[str, dict[str, Any]] = {}
    for name, method in methods.items():
        if (name in SLOW and not slow) or name not in rows:
            continue
        started = time.perf_counter()
        values, fits = method()
        out[name] = {"values": values, "fits": fits, "seconds": time.perf_counter() - started}
    if tmab_state:
        out["TMAB bottom-k"].update(tmab_state)
    if "influence (test)" in rows:
        test_value, self_value, seconds = influence_values(x, y, x_test, y_test)
        out["influence (test)"] = {"values": test_value, "fits": 1, "seconds": seconds}
        out["self-influence"] = {"values": self_value, "fits": 1, "seconds": seconds}
    if "random" in rows:
        out["random"] = {
            "values": np.random.default_rng(10_000 + seed).random(len(x)),
            "fits": 0,
            "seconds": 0.0,
        }
    counts = np.round(REMOVAL_FRACTIONS * len(x)).astype(int)
    curve_game = DataGame(x, y, x_test, y_test, fit=learner())
    for result in out.values():
        values = result["values"]
        result["f1_count"] = f1_at_count(values, flipped)
        result["f1_two_means"] = two_means_f1(values, flipped)
        result["auc"] = detection_auc(values, flipped)
        order = np.argsort(values, kind="stable")
        result["lowest_first"] = removal_curve(curve_game, order, counts)
        result["highest_first"] = removal_curve(curve_game, order[::-1], counts)
    return out


def mean_sd(numbers: list[float], digits: int = 2) -> str:
    if len(numbers) == 1:
        return f"{numbers[0]:.{digits}f}"
    return f"{np.mean(numbers):.{digits}f} ± {np.std(numbers, ddof=1):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=N_TRAIN)
    parser.add_argument("--noise", type=float, default=NOISE)
    parser.add_argument(
        "--no-slow",
        action="store_true",
        help="leave out TMC, Beta Shapley and TMAB (the costly ones)",
    )
    parser.add_argument("--tmc-permutations", type=int, default=TMC_PERMUTATIONS)
    parser.add_argument("--beta-permutations", type=int, default=BETA_PERMUTATIONS)
    parser.add_argument(
        "--tmab-evaluations",
        type=int,
        default=TMAB_EVALUATIONS,
        help="model fits for TMAB and for the TMC run on the same budget",
    )
    parser.add_argument(
        "--methods", nargs="+", choices=list(METHODS), default=list(METHODS), help="rows to run"
    )
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        help="worker processes for the game's fits (-1: one per CPU); the values do not "
        "change, the seconds fall only on free cores (docs/data.md, parallel fits)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    permutations = (args.tmc_permutations, args.beta_permutations)
    rows = {row for name in args.methods for row in METHODS[name]}
    runs = [
        run_seed(
            seed,
            args.n_train,
            args.noise,
            not args.no_slow,
            permutations,
            rows,
            args.tmab_evaluations,
            args.n_jobs,
        )
        for seed in args.seeds
    ]
    methods = list(runs[0])
    n_flipped = round(args.noise * args.n_train)
    print(
        f"Adult, {args.n_train} train ({n_flipped} flipped) / {N_TEST} test, seeds {args.seeds}, "
        f"logistic regression (liblinear, C={C:g}); permutations: TMC {permutations[0]}, "
        f"Beta {permutations[1]}; Data-OOB {OOB_MODELS} models; TMAB and TMC on "
        f"{args.tmab_evaluations:,} evaluations; mean ± sd over seeds\n"
    )
    print(
        "| method | F1 (flag as many as flipped) | F1 (2-means, OpenDataVal) | AUC | fits ", end=""
    )
    print("| seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for method in methods:
        rows = [run[method] for run in runs]
        fits = np.mean([r["fits"] for r in rows])
        print(
            f"| {method} | {mean_sd([r['f1_count'] for r in rows])} | "
            f"{mean_sd([r['f1_two_means'] for r in rows])} | {mean_sd([r['auc'] for r in rows])} | "
            f"{fits:,.0f} | {mean_sd([r['seconds'] for r in rows], 1)} |"
        )
    if "TMAB bottom-k" in methods:
        tmab_runs = [run["TMAB bottom-k"] for run in runs]
        print(
            f"\nTMAB: k = {n_flipped} (its F1 at count is the precision of its bottom k); per "
            f"seed, points still undecided of {args.n_train}: "
            f"{[r['undecided'] for r in tmab_runs]}; median interval half-width: "
            f"{[round(r['halfwidth'], 4) for r in tmab_runs]}; threshold: "
            f"{[round(r['threshold'], 4) for r in tmab_runs]}"
        )
    print("\nTest accuracy after removing a share of the points (mean over seeds)\n")
    header = " | ".join(f"{f:.0%}" for f in REMOVAL_FRACTIONS[::2])
    print(f"| method | order | {header} |")
    print("| --- | --- |" + " --- |" * len(REMOVAL_FRACTIONS[::2]))
    for method in methods:
        for order in ("lowest_first", "highest_first"):
            curve = np.mean([run[method][order] for run in runs], axis=0)[::2]
            cells = " | ".join(f"{a:.3f}" for a in curve)
            print(f"| {method} | {order.replace('_', ' ')} | {cells} |")
    figure = removal_curves(
        REMOVAL_FRACTIONS,
        {m: np.array([run[m]["lowest_first"] for run in runs]) for m in methods},
        {m: np.array([run[m]["highest_first"] for run in runs]) for m in methods},
    )
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    args.figure.write_bytes(figure_to_png(figure))
    print(f"\nfigure: {args.figure}; wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
