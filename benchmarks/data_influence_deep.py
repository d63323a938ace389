"""Influence functions against leave-one-out retraining on a small MLP and a small CNN (issue 15).

Koh & Liang's two protocols for non-convex models, on scikit-learn's digits (pixels / 16,
float64, one torch thread): the first 200 digits as training points, the summed
cross-entropy of 10 test points (digits 1,500-1,509) as the test loss, weight decay 1e-3.
Each model is trained from seed 0 with full-batch L-BFGS (to a gradient of 1e-8 or 3,000
iterations); exact influence (damping 0 if the Hessian is positive definite there, else the
first of 1e-5, 1e-4, 1e-3 that makes it so, printed) predicts the change of the test loss,
-I/n summed over the test points, for 30 removed training points: the 15 with the largest |predicted
change| and 15 more drawn at random (seed 1) from the rest. Leave-one-out by
(a) retraining from the optimum (L-BFGS, at most 500 iterations, the same tolerance), and
(b) retraining from scratch, full and reduced objective from the same initialisation, for
seeds 0, 1, 2 (``leave_one_out_from_scratch``), averaged over seeds.

"Noise" is the seed-to-seed standard deviation of protocol (b)'s change for one point, its
median over the points, divided by the median |mean change|; "loss sd" is the standard
deviation of the full model's test loss across the 3 seeds, against the same median effect.

Run: ``.venv/bin/python -m benchmarks.data_influence_deep`` (results in docs/data.md).
"""

import time
from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.datasets import load_digits
from torch import nn

from neuronshapley.data.influence import cross_entropy, influence
from neuronshapley.data.loo import fit_lbfgs, leave_one_out, leave_one_out_from_scratch

N_TRAIN, N_TEST = 200, 10
WEIGHT_DECAY = 1e-3
N_TOP, N_RANDOM = 15, 15
SEEDS = (0, 1, 2)
FIT_ITER, RETRAIN_ITER, TOLERANCE = 3_000, 500, 1e-8
DAMPINGS = (0.0, 1e-5, 1e-4, 1e-3)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)).double()


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 6, 3, padding=1),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 10),
    ).double()


def removed_points(predicted: np.ndarray) -> list[int]:
    top = np.argsort(-np.abs(predicted))[:N_TOP]
    rest = np.setdiff1d(np.arange(len(predicted)), top)
    drawn = np.random.default_rng(1).choice(rest, size=N_RANDOM, replace=False)
    return sorted(int(i) for i in np.concatenate([top, drawn]))


def study(name: str, make_model: Callable[[], nn.Module], train: tuple, test: tuple) -> None:
    started = time.perf_counter()
    torch.manual_seed(SEEDS[0])
    model = make_model()
    n_params = sum(p.numel() for p in model.parameters())
    gradient = fit_lbfgs(
        model, train, weight_decay=WEIGHT_DECAY, max_iter=FIT_ITER, tolerance=TOLERANCE
    )
    for damping in DAMPINGS:  # the first that makes H + damping I positive definite
        try:
            result = influence(
                model,
                train,
                test,
                weight_decay=WEIGHT_DECAY,
                damping=damping,
                self_influence=False,
            )
            break
        except ValueError as error:
            print(f"  {name}: {error}")
    else:
        raise ValueError(f"{name}: no damping in {DAMPINGS} makes the Hessian positive definite")
    predicted_all = result.loo_estimate().sum(axis=1)
    removed = removed_points(predicted_all)
    predicted = predicted_all[removed]
    influence_seconds = result.seconds

    clock = time.perf_counter()
    warm = leave_one_out(
        model,
        train,
        test,
        removed,
        weight_decay=WEIGHT_DECAY,
        max_iter=RETRAIN_ITER,
        tolerance=TOLERANCE,
    ).sum(axis=1)
    warm_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    scratch_all = leave_one_out_from_scratch(
        make_model,
        train,
        test,
        removed,
        SEEDS,
        weight_decay=WEIGHT_DECAY,
        max_iter=FIT_ITER,
        tolerance=TOLERANCE,
    ).sum(axis=2)
    scratch_seconds = time.perf_counter() - clock
    scratch = scratch_all.mean(axis=0)

    losses = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        fitted = make_model()
        fit_lbfgs(fitted, train, weight_decay=WEIGHT_DECAY, max_iter=FIT_ITER, tolerance=TOLERANCE)
        with torch.no_grad():
            losses.append(float(cross_entropy(fitted(test[0]), test[1]).sum()))
    effect = float(np.median(np.abs(scratch)))
    noise = float(np.median(scratch_all.std(axis=0, ddof=1))) / effect
    loss_sd = float(np.std(losses, ddof=1)) / effect
    top = np.isin(removed, np.argsort(-np.abs(predicted_all))[:N_TOP])

    def agreement(actual: np.ndarray, rows: np.ndarray) -> str:
        return (
            f"{pearsonr(predicted[rows], actual[rows])[0]:.2f} / "
            f"{spearmanr(predicted[rows], actual[rows])[0]:.2f}"
        )

    everything = np.ones(len(removed), dtype=bool)
    print(
        f"| {name} | {n_params:,} | {gradient:.0e} | {damping:g} | "
        f"{agreement(warm, everything)} | {agreement(warm, top)} | "
        f"{agreement(scratch, everything)} | {agreement(scratch, top)} | "
        f"{agreement(scratch_all[0], everything)} | "
        f"{effect:.1e} | {noise:.2f} | {loss_sd:.1f} | "
        f"{influence_seconds:.1f} / {warm_seconds:.0f} / {scratch_seconds:.0f} / "
        f"{time.perf_counter() - started:.0f} |"
    )
    print(
        f"  {name}: median |-I/n| {np.median(np.abs(predicted)):.1e}, median |warm| "
        f"{np.median(np.abs(warm)):.1e}, slope warm/pred "
        f"{np.polyfit(predicted, warm, 1)[0]:.2f}, slope scratch/pred "
        f"{np.polyfit(predicted, scratch, 1)[0]:.2f}, full-model test loss per seed "
        f"{', '.join(f'{v:.3f}' for v in losses)}"
    )


def main() -> None:
    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    train = (torch.tensor(x[:N_TRAIN]), torch.tensor(y[:N_TRAIN]))
    test = (torch.tensor(x[1500 : 1500 + N_TEST]), torch.tensor(y[1500 : 1500 + N_TEST]))
    print(
        "| model | parameters | gradient | damping | (a) all | (a) top 15 | (b) all | "
        "(b) top 15 | (b) seed 0 only | median effect | noise | loss sd | seconds "
        "(influence / a / b / total) |"
    )
    print("| --- " * 14 + "|")
    study("MLP 64-16-10 (tanh)", mlp, train, test)
    study("CNN conv3x3x6-pool-10 (tanh)", cnn, train, test)


if __name__ == "__main__":
    main()
