"""Influence functions against leave-one-out retraining on softmax regression (issue 15).

Koh & Liang's protocol, as the issue sets it: L2-regularised softmax regression (float64) on
1,000 training points, trained to a gradient below 1e-10 with full-batch L-BFGS; 100 training
points removed one at a time (every tenth), each retrained from the optimum; the change of the
loss on 5 test points compared with -I/n for the exact, CG and LiSSA influences. The objective
keeps 1/n after a removal (the perturbation epsilon = -1/n of Theorem 10.1.2). One torch thread.

- ``--dataset digits`` (default): 64 -> 10 on the first 1,000 of scikit-learn's digits (pixels /
  16); the test points are digits 1,500-1,504.
- ``--dataset adult``: logistic regression as a 104 -> 2 softmax on the first 1,000 points of the
  bundled UCI Adult train split (``ns.zoo.load_data("adult")``: its 104 encoded features); the
  test points are the first 5 of its test split.

Run: ``.venv/bin/python -m benchmarks.data_influence [--dataset adult]`` (results in
docs/data.md).
"""

import argparse
import time

import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.datasets import load_digits

from neuronshapley.data.influence import influence
from neuronshapley.data.loo import fit_lbfgs, leave_one_out

N_TRAIN, N_TEST = 1_000, 5
REMOVED = list(range(0, N_TRAIN, 10))


def splits(dataset: str) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]:
    """The training points and the test points of ``dataset``, float64 inputs."""
    if dataset == "adult":
        import neuronshapley as ns

        bundle = ns.zoo.load_data("adult")
        train = (bundle.train.x[:N_TRAIN].double(), bundle.train.y[:N_TRAIN].long())
        return train, (bundle.test.x[:N_TEST].double(), bundle.test.y[:N_TEST].long())
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    train = (torch.tensor(x[:N_TRAIN]), torch.tensor(y[:N_TRAIN]))
    return train, (torch.tensor(x[1500 : 1500 + N_TEST]), torch.tensor(y[1500 : 1500 + N_TEST]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "adult"), default="digits")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, test = splits(args.dataset)
    n_features, n_classes = train[0].shape[1], int(train[1].max()) + 1
    print(f"{args.dataset}: {len(train[0])} training points, {n_features} features")
    print("| weight decay | method | Pearson | Spearman | HVPs | seconds | residual / bound |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for weight_decay in (1e-2, 1e-3):
        torch.manual_seed(0)
        model = torch.nn.Linear(n_features, n_classes).double()
        started = time.perf_counter()
        gradient = fit_lbfgs(model, train, weight_decay=weight_decay, max_iter=5000)
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        retrained = leave_one_out(model, train, test, REMOVED, weight_decay=weight_decay)
        loo_seconds = time.perf_counter() - started
        for method in ("exact", "cg", "lissa"):
            result = influence(
                model,
                train,
                test,
                weight_decay=weight_decay,
                method=method,
                self_influence=False,
            )
            predicted = result.loo_estimate()[REMOVED].ravel()
            pearson = pearsonr(predicted, retrained.ravel())[0]
            spearman = spearmanr(predicted, retrained.ravel())[0]
            extra = result.residual if result.residual is not None else result.error_estimate
            print(
                f"| {weight_decay:g} | {method} | {pearson:.4f} | {spearman:.4f} | "
                f"{result.n_hvp} | {result.seconds:.2f} | {extra:.1e} |"
            )
        print(
            f"| {weight_decay:g} | leave-one-out | 1 | 1 | - | {loo_seconds:.1f} "
            f"({len(REMOVED)} retrainings; first fit {fit_seconds:.1f} s, gradient "
            f"{gradient:.1e}) | - |"
        )


if __name__ == "__main__":
    main()
