"""LDS against the number of models: Datamodels for digits logistic regression (issue 15).

``.venv/bin/python -m benchmarks.data_datamodels`` trains the largest number of models once
(saved under ``runs/bench-datamodels`` so a rerun resumes) and fits the datamodels on the first
``k`` of them for each ``k``; the held-out subsets are the same for every row.
"""

import sys
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from neuronshapley.data.datamodels import fit_datamodels, train_subsets

N_TRAIN, N_TEST, N_HELDOUT = 300, 50, 200
COUNTS = (125, 250, 500, 1000, 2000)


def main(counts: tuple[int, ...] = COUNTS, directory: str = "runs/bench-datamodels") -> None:
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    x_train, y_train = x[:N_TRAIN], y[:N_TRAIN]
    x_test, y_test = x[N_TRAIN : N_TRAIN + N_TEST], y[N_TRAIN : N_TRAIN + N_TEST]
    learner = LogisticRegression(C=1.0, max_iter=2000)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trained = train_subsets(
            x_train,
            y_train,
            x_test,
            y_test,
            fit=learner,
            fraction=0.5,
            n_models=max(counts),
            n_heldout=N_HELDOUT,
            seed=0,
            directory=directory,
        )
    print(f"trained {trained.n_trained} models in {time.perf_counter() - start:.0f} s", flush=True)
    print(
        "| models | LDS | LDS (min over test) | median alpha | nonzero weights per test | lasso s |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
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


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or COUNTS)
