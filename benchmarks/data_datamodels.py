"""LDS against the number of models, beside influence functions and Data Shapley (issue 15).

Scikit-learn's digits (pixels / 16): the first 300 as training points, the next 50 as test
examples; subsets of half the training points (subset j from ``SeedSequence(0,
spawn_key=(j,))``, the held-out ones from their own keys), output the correct-class margin
(true-class logit minus the largest other). Two models:

- softmax (logistic) regression, ``LogisticRegression(C=1, max_iter=2000)``: objective
  ``sum_S CE + ||W||^2 / 2`` (intercept free). 2,000 subsets and 200 held-out subsets, saved
  under ``runs/bench-datamodels``; datamodels fitted on the first k of them.
- an MLP 64-8-10 (tanh, float64): objective ``sum_S CE + (0.3 / 2) ||theta||^2``, full-batch
  L-BFGS (``fit_lbfgs``, to a gradient of 1e-5 or 5,000 iterations) from the same seed-0
  initialisation for every subset, so its output is a function of the subset. 200 subsets and
  40 held-out subsets (the first 40 of the regression's), saved under
  ``runs/bench-datamodels-mlp``: what ``make data``'s time allows.

Beside the datamodels, scored by ``neuronshapley.data.datamodels.lds`` on the same held-out
subsets and outputs:

- influence on the margin: the model trained on all 300 points (the same objective and start,
  to a gradient of 1e-8), ``influence`` (exact Hessian) with the margin as the test function, so
  ``I(x_i, z)`` is d margin_z / d epsilon for up-weighting ``x_i`` by epsilon; a subset S is
  the full set with the others removed (epsilon = -1/n each), so the prediction is
  ``margin_z(N) - sum_{i not in S} I / n``, i.e. ``sum_{i in S} I(x_i, z) / n`` up to a constant.
- influence on the test loss: the usual ``I(x_i, z)`` of the cross-entropy of z; a lower loss
  stands for a larger margin, so the attribution is ``-I / n`` (a first-order proxy: both
  move together but not in proportion).
- Data Shapley: a ``DataGame`` per test example whose metric is that example's margin (the
  empty set's margin is 0, what the objective's minimiser, all weights 0, gives), valued by
  ``tmc_shapley`` with truncation off; the 50 games walk the same seeded permutations, so
  one fit per coalition serves them all (fits cached in ``runs/bench-datamodels-shapley-*``);
  2 permutations (599 fits, V(N) included) for the regression, 1 (300 fits) for the MLP.
  ``LogisticRegression`` cannot fit a one-class coalition, so the regression's games, and its
  influence, use the same objective in torch (L-BFGS from zero to a gradient of 1e-5; the
  intercept ``b = 10 beta`` with ``beta`` under the weight decay, so the intercept's penalty
  is 1% of the weights', a stand-in for scikit-learn's free intercept, which would make a
  one-class coalition's margins infinite); the benchmark prints how far its margins are from
  scikit-learn's on 5 held-out subsets.

The LDS of the mean margin scores the mean of each method's attributions over the test
examples against the mean held-out margin (for Data Shapley that equals TMC-Shapley of the
mean margin on the same permutations: the estimate is linear in the metric).

Run: ``.venv/bin/python -m benchmarks.data_datamodels [k ...]`` (the regression's counts;
results in docs/data.md). One torch thread.
"""

import hashlib
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from torch import nn

from neuronshapley._internal.files import atomic_write
from neuronshapley._internal.fingerprint import digest
from neuronshapley.data import DataGame, tmc_shapley
from neuronshapley.data.datamodels import (
    DatamodelResult,
    TrainedSubsets,
    correct_class_margin,
    fit_datamodels,
    lds,
    train_subsets,
)
from neuronshapley.data.influence import cross_entropy, influence

N_TRAIN, N_TEST, N_HELDOUT = 300, 50, 200
COUNTS = (125, 250, 500, 1000, 2000)
N_CLASSES = 10
C = 1.0  # LogisticRegression's C: the penalty on ||W||^2 / 2 is 1 / C
BIAS_SCALE = 10.0
MLP_HIDDEN, MLP_PENALTY = 8, 0.3
MLP_COUNTS, MLP_HELDOUT = (100, 200), 40
# Data Shapley's permutations (299 fits each): about the fits of a datamodels row; more
# do not fit the time make data has left.
PERMUTATIONS = {"logistic": 2, "mlp": 1}
DAMPINGS = (0.0, 1e-5, 1e-4, 1e-3)


class SoftmaxRegression(nn.Module):
    """``x W^T + BIAS_SCALE * beta``: weight decay on beta is 1/BIAS_SCALE^2 of it on b."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(N_CLASSES, 64, dtype=torch.float64))
        self.beta = nn.Parameter(torch.zeros(N_CLASSES, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + BIAS_SCALE * self.beta


@dataclass(frozen=True)
class Fitted:
    """A trained torch model with what ``correct_class_margin`` and ``DataGame`` call."""

    model: nn.Module
    gradient: float  # the objective's largest gradient entry at the end
    classes_ = np.arange(N_CLASSES)

    def decision_function(self, x: Any) -> np.ndarray:
        with torch.no_grad():
            return self.model(torch.as_tensor(np.asarray(x, dtype=np.float64))).numpy()

    def __call__(self, x: Any) -> np.ndarray:
        return self.decision_function(x)


@dataclass(frozen=True)
class TorchLearner:
    """``fit(x, y)``: minimise ``sum CE + (penalty / 2) ||theta||^2`` from a fixed start.

    ``fit_lbfgs`` minimises the mean loss, so its weight decay is ``penalty / len(x)``; the
    same sum form as scikit-learn's makes the full set's objective the one influence uses.
    """

    kind: str  # "logistic" or "mlp"
    penalty: float
    tolerance: float
    max_iter: int

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        # What train_subsets and DataGame fingerprint a learner by.
        return asdict(self)

    def make(self) -> nn.Module:
        if self.kind == "logistic":
            return SoftmaxRegression()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return nn.Sequential(
                nn.Linear(64, MLP_HIDDEN), nn.Tanh(), nn.Linear(MLP_HIDDEN, N_CLASSES)
            ).double()

    def __call__(self, x: Any, y: Any) -> Fitted:
        from neuronshapley.data.loo import fit_lbfgs

        model = self.make()
        if len(x) == 0:  # the penalty alone: its minimiser is every weight 0
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.zero_()
            return Fitted(model, 0.0)
        gradient = fit_lbfgs(
            model,
            (torch.as_tensor(np.asarray(x, dtype=np.float64)), torch.as_tensor(np.asarray(y))),
            weight_decay=self.penalty / len(x),
            max_iter=self.max_iter,
            tolerance=self.tolerance,
        )
        return Fitted(model, gradient)


# Gradient 1e-5: scikit-learn's own default (tol 1e-4) leaves its margins about 1e-2 from the
# minimiser's, and Data Shapley's coalitions must each cost well under a second.
LOGISTIC = TorchLearner("logistic", penalty=1 / C, tolerance=1e-5, max_iter=500)
MLP = TorchLearner("mlp", penalty=MLP_PENALTY, tolerance=1e-5, max_iter=5000)


def margin_or_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for a target below N_CLASSES; for ``N_CLASSES + c``, the margin of class c.

    ``influence`` takes one function for the training losses (the Hessian) and the test
    points; coding the test targets lets the same call give the margin's and the loss's
    influence (training targets are plain classes, so the Hessian is cross-entropy's).
    """
    is_margin = targets >= N_CLASSES
    label = torch.where(is_margin, targets - N_CLASSES, targets)
    true = torch.arange(N_CLASSES) == label[:, None]
    margin = (outputs * true).sum(dim=1) - outputs.masked_fill(true, -torch.inf).amax(dim=1)
    return torch.where(is_margin, margin, cross_entropy(outputs, label))


def influence_attributions(learner: TorchLearner, data: tuple) -> tuple[Any, Any, str]:
    """Attributions ``(n_test, n_train)`` from influence on the margin and on the test loss."""
    x_train, y_train, x_test, y_test = data
    n = len(x_train)
    # The same objective from the same start, nearer its minimum (the theory assumes one).
    full = replace(learner, tolerance=1e-8, max_iter=5000)(x_train, y_train)
    train = (torch.as_tensor(x_train), torch.as_tensor(y_train))
    both = np.concatenate([x_test, x_test]), np.concatenate([y_test + N_CLASSES, y_test])
    test = (torch.as_tensor(both[0]), torch.as_tensor(both[1]))
    for damping in DAMPINGS:  # the first that makes H + damping I positive definite
        try:
            result = influence(
                full.model,
                train,
                test,
                loss=margin_or_loss,
                weight_decay=learner.penalty / n,
                damping=damping,
                self_influence=False,
            )
            break
        except ValueError as error:
            print(f"  {learner.kind}: {error}")
    else:
        raise ValueError(f"no damping in {DAMPINGS} makes the Hessian positive definite")
    on_margin = result.matrix[:, : len(x_test)].T / n
    on_loss = -result.matrix[:, len(x_test) :].T / n
    note = f"gradient {full.gradient:.0e}, damping {damping:g}, {result.seconds:.1f} s"
    return on_margin, on_loss, note


class CachedFits:
    """The learner as ``DataGame`` calls it, each coalition fitted once for all test examples.

    The margins of every fitted coalition are kept on disk (``path``), so a rerun refits
    nothing; the file carries a digest of the data and the learner.
    """

    def __init__(self, learner: TorchLearner, data: tuple, path: Path) -> None:
        self.learner, self.x_test, self.path = learner, data[2], path
        self.fingerprint = digest("bench-datamodels-shapley/1", learner.get_params(), *data)
        self.logits: dict[str, np.ndarray] = {}
        self.n_fits = self.n_unsaved = 0
        if path.exists():
            with np.load(path) as saved:
                if str(saved["fingerprint"]) != self.fingerprint:
                    raise ValueError(f"{path} belongs to another run; delete it.")
                self.logits = dict(zip(saved["keys"].tolist(), saved["logits"], strict=True))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return self.learner.get_params()

    def __call__(self, x: Any, y: Any) -> Any:
        key = hashlib.sha256(np.ascontiguousarray(x).tobytes() + y.tobytes()).hexdigest()
        if key not in self.logits:
            self.logits[key] = self.learner(x, y).decision_function(self.x_test)
            self.n_fits += 1
            self.n_unsaved += 1
            if self.n_unsaved >= 50:
                self.save()
        logits = self.logits[key]

        def predict(x_test: Any) -> np.ndarray:
            if not np.array_equal(x_test, self.x_test):
                raise ValueError("CachedFits predicts the benchmark's test examples only")
            return logits

        return predict

    def save(self) -> None:
        keys = list(self.logits)

        def write(file: Any) -> None:
            np.savez(
                file,
                keys=np.array(keys),
                logits=np.array([self.logits[k] for k in keys]),
                fingerprint=np.array(self.fingerprint),
            )

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, write)
        self.n_unsaved = 0


@dataclass(frozen=True)
class Margin:
    """DataGame metric: the correct-class margin of test example ``z``."""

    z: int

    def __call__(self, y_true: Any, logits: Any) -> float:
        row, label = np.asarray(logits)[self.z], int(np.asarray(y_true)[self.z])
        return float(row[label] - np.delete(row, label).max())


def data_shapley(learner: TorchLearner, data: tuple, n_permutations: int) -> tuple[Any, int]:
    """TMC-Shapley values ``(n_test, n_train)`` of each test example's margin; fits made."""
    cache = CachedFits(learner, data, Path(f"runs/bench-datamodels-shapley-{learner.kind}.npz"))
    values = []
    for z in range(len(data[2])):
        game = DataGame(*data, fit=cache, metric=Margin(z), degenerate="fit", empty_value=0.0)
        result = tmc_shapley(
            game,
            tolerance=None,
            n_permutations=n_permutations,
            n_walks=n_permutations,
            walks_per_task=None,
            seed=0,
        )
        values.append(result.values)
    cache.save()
    return np.array(values), len(cache.logits)


def datamodels_table(trained: TrainedSubsets, counts: tuple[int, ...]) -> dict[int, Any]:
    print(
        "| models | LDS | LDS (min over test) | median alpha | nonzero weights per test | lasso s |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    results: dict[int, DatamodelResult] = {}
    for k in counts:
        start = time.perf_counter()
        result = fit_datamodels(
            trained.masks[:k],
            trained.outputs[:k],
            trained.heldout_masks,
            trained.heldout_outputs,
            fraction=0.5,
            seed=0,
        )
        seconds = time.perf_counter() - start
        nonzero = (result.weights != 0).sum(axis=1).mean()
        print(
            f"| {k:,} | {result.lds:.3f} | {result.lds_per_example.min():.3f} | "
            f"{np.median(result.alphas):.2g} | {nonzero:.0f} | {seconds:.1f} |",
            flush=True,
        )
        results[k] = result
    return results


def compare(
    name: str,
    learner: TorchLearner,
    data: tuple,
    trained: TrainedSubsets,
    results: dict[int, DatamodelResult],
) -> None:
    """Rows of the side-by-side: datamodels, influence (margin, loss), Data Shapley."""
    masks, outputs = trained.heldout_masks, trained.heldout_outputs
    rows: list[tuple[str, str, Any, float]] = []
    for k, result in results.items():
        rows.append((f"datamodels ({k:,} models)", f"{k:,}", result.weights, float("nan")))
    clock = time.process_time()
    on_margin, on_loss, note = influence_attributions(learner, data)
    seconds = time.process_time() - clock
    rows.append(("influence on the margin", "1", on_margin, seconds))
    rows.append(("influence on the test loss (-I)", "1", on_loss, seconds))
    clock = time.process_time()
    n_permutations = PERMUTATIONS[learner.kind]
    values, n_fits = data_shapley(learner, data, n_permutations)
    seconds = time.process_time() - clock
    label = f"Data Shapley (TMC, {n_permutations} permutation{'s' * (n_permutations > 1)})"
    rows.append((label, f"{n_fits:,}", values, seconds))
    print(f"{name}: influence at the full model ({note})")
    print("| model | attribution | models trained | LDS | LDS (min over test) | ", end="")
    print("LDS of the mean | CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    mean_output = outputs.mean(axis=1, keepdims=True)
    for label, fits, attributions, seconds in rows:
        per_example = lds(attributions, masks, outputs)
        of_mean = lds(attributions.mean(axis=0, keepdims=True), masks, mean_output)[0]
        cpu = "-" if np.isnan(seconds) else f"{seconds:.0f}"
        print(
            f"| {name} | {label} | {fits} | {per_example.mean():.3f} | "
            f"{per_example.min():.3f} | {of_mean:.3f} | {cpu} |",
            flush=True,
        )


def train(data: tuple, fit: Any, n_models: int, n_heldout: int, directory: str) -> TrainedSubsets:
    start = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trained = train_subsets(
            *data,
            fit=fit,
            fraction=0.5,
            n_models=n_models,
            n_heldout=n_heldout,
            seed=0,
            directory=directory,
        )
    print(
        f"trained {trained.n_trained} models ({time.process_time() - start:.0f} s CPU)",
        flush=True,
    )
    return trained


def main(counts: tuple[int, ...] = COUNTS) -> None:
    torch.set_num_threads(1)
    started, cpu = time.perf_counter(), time.process_time()
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    data = (
        x[:N_TRAIN],
        y[:N_TRAIN],
        x[N_TRAIN : N_TRAIN + N_TEST],
        y[N_TRAIN : N_TRAIN + N_TEST],
    )

    print("Softmax regression, LogisticRegression(C=1):")
    learner = LogisticRegression(C=C, max_iter=2000)
    trained = train(data, learner, max(counts), N_HELDOUT, "runs/bench-datamodels")
    results = datamodels_table(trained, counts)
    margins = np.array(
        [
            correct_class_margin(LOGISTIC(data[0][m], data[1][m]), data[2], data[3])
            for m in trained.heldout_masks[:5]
        ]
    )
    print(
        "torch softmax regression against scikit-learn on 5 held-out subsets: largest margin "
        f"difference {np.abs(margins - trained.heldout_outputs[:5]).max():.1e} (margins up to "
        f"{np.abs(trained.heldout_outputs).max():.1f})"
    )
    compare("softmax regression", LOGISTIC, data, trained, results)

    print(f"MLP 64-{MLP_HIDDEN}-10 (tanh):")
    trained = train(data, MLP, max(MLP_COUNTS), MLP_HELDOUT, "runs/bench-datamodels-mlp")
    results = datamodels_table(trained, MLP_COUNTS)
    compare(f"MLP 64-{MLP_HIDDEN}-10", MLP, data, trained, results)
    print(
        f"total {time.perf_counter() - started:.0f} s wall, {time.process_time() - cpu:.0f} s "
        f"CPU; load average at the end: {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or COUNTS)
