"""Influence past the exact method's reach: dattri's Arnoldi against CG and leave-one-out.

An MLP 64-256-128-10 with tanh (50,826 parameters: H would be 50,826 x 50,826, 20 GB in
float64, so ``method="exact"`` refuses it) on scikit-learn's digits (pixels / 16, float64, one
torch thread): the first 300 digits as training points, the summed cross-entropy of 10 test
points (digits 1,500-1,509) as the test loss, weight decay 1e-3. Trained from seed 0 by
full-batch L-BFGS (to a gradient of 1e-8 or 3,000 iterations). Influence by
``method="cg"`` (relative residual 1e-6) and ``method="dattri-arnoldi"`` at ranks 50, 100 and
200 (``2 * rank`` Arnoldi steps), each at the first damping of 0, 1e-4, 1e-3 that CG finds
positive definite. The predicted change of the test loss is -I/n summed over the test points.

Removed points (30): the 10 largest |prediction| of CG, the 10 largest of Arnoldi at the
largest rank (so neither method chooses alone), and random ones (seed 1) to fill 30; the
change of the test loss after each removal by retraining from the optimum (``leave_one_out``,
L-BFGS, at most 500 iterations, tolerance 1e-8). The table gives Pearson / Spearman against
that change, and against CG's prediction over all 300 x 10 pairs.

Run: ``.venv/bin/python -m benchmarks.data_influence_dattri`` (results in docs/data.md).
"""

import time

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.datasets import load_digits
from torch import nn

from neuronshapley.data.influence import InfluenceResult, influence
from neuronshapley.data.loo import fit_lbfgs, leave_one_out

N_TRAIN, N_TEST = 300, 10
WEIGHT_DECAY = 1e-3
RANKS = (50, 100, 200)
N_REMOVED, N_TOP = 30, 10
FIT_ITER, RETRAIN_ITER, TOLERANCE = 3_000, 500, 1e-8
DAMPINGS = (0.0, 1e-4, 1e-3)


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 128), nn.Tanh(), nn.Linear(128, 10)
    ).double()


def correlation(a: np.ndarray, b: np.ndarray) -> str:
    return f"{pearsonr(a, b)[0]:.2f} / {spearmanr(a, b)[0]:.2f}"


def main() -> None:
    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    train = (torch.tensor(x[:N_TRAIN]), torch.tensor(y[:N_TRAIN]))
    test = (torch.tensor(x[1500 : 1500 + N_TEST]), torch.tensor(y[1500 : 1500 + N_TEST]))
    torch.manual_seed(0)
    model = mlp()
    n_params = sum(p.numel() for p in model.parameters())
    clock = time.perf_counter()
    gradient = fit_lbfgs(
        model, train, weight_decay=WEIGHT_DECAY, max_iter=FIT_ITER, tolerance=TOLERANCE
    )
    print(
        f"{n_params:,} parameters, fitted to a gradient of {gradient:.1e} in "
        f"{time.perf_counter() - clock:.0f} s"
    )
    options = {"weight_decay": WEIGHT_DECAY, "self_influence": False}
    for damping in DAMPINGS:  # the first that CG finds positive definite
        try:
            cg = influence(model, train, test, method="cg", tol=1e-6, damping=damping, **options)
            break
        except ValueError as error:
            print(f"  cg: {error}")
    else:
        raise ValueError(f"no damping in {DAMPINGS} makes the Hessian positive definite")
    results: dict[str, InfluenceResult] = {"cg": cg}
    for rank in RANKS:
        results[f"dattri-arnoldi, rank {rank}"] = influence(
            model, train, test, method="dattri-arnoldi", rank=rank, damping=damping, **options
        )

    predictions = {name: r.loo_estimate().sum(axis=1) for name, r in results.items()}
    largest = predictions[f"dattri-arnoldi, rank {RANKS[-1]}"]
    chosen = set(np.argsort(-np.abs(predictions["cg"]))[:N_TOP].tolist())
    chosen |= set(np.argsort(-np.abs(largest))[:N_TOP].tolist())
    rest = np.setdiff1d(np.arange(N_TRAIN), sorted(chosen))
    drawn = np.random.default_rng(1).choice(rest, size=N_REMOVED - len(chosen), replace=False)
    removed = sorted(chosen | set(drawn.tolist()))
    clock = time.perf_counter()
    retrained = leave_one_out(
        model,
        train,
        test,
        removed,
        weight_decay=WEIGHT_DECAY,
        max_iter=RETRAIN_ITER,
        tolerance=TOLERANCE,
    ).sum(axis=1)
    loo_seconds = time.perf_counter() - clock

    print(f"damping {damping:g}; {len(removed)} removed points")
    print(
        "| method | vs leave-one-out (Pearson / Spearman) | vs CG, all pairs | HVPs | seconds "
        "| relative residual | kept eigenvalues |"
    )
    print("| --- " * 7 + "|")
    for name, result in results.items():
        against_cg = correlation(result.matrix.ravel(), cg.matrix.ravel())
        kept = (
            f"{result.depth} in [{result.eigenvalues[0]:.2g}, {result.eigenvalues[1]:.2g}]"
            if result.eigenvalues is not None
            else "—"
        )
        print(
            f"| {name} | {correlation(predictions[name][removed], retrained)} | {against_cg} | "
            f"{result.n_hvp:,} | {result.seconds:.1f} | {result.residual:.1e} | {kept} |"
        )
    print(f"| leave-one-out | 1 | — | — | {loo_seconds:.0f} ({len(removed)} retrainings) | — | — |")
    slope = np.polyfit(predictions["cg"][removed], retrained, 1)[0]
    print(
        f"median |change| {np.median(np.abs(retrained)):.1e}, median |-I/n| (cg) "
        f"{np.median(np.abs(predictions['cg'][removed])):.1e}, slope change/cg {slope:.2f}"
    )


if __name__ == "__main__":
    main()
