"""DASP and permutation sampling against exact Shapley values of input features (issue 14).

An MLP (13-32-32-3, ReLU) is trained deterministically on scikit-learn's wine data (13
features, standardised; seed 0, full-batch Adam, a few seconds). For 20 test examples, the game
is ``FeatureGame(model, x, baseline="zero")`` (zero = the training mean after standardising) on
the predicted class's logit; exact values by enumerating the 2^13 coalitions. Each method is
scored per example by Spearman's rank correlation and the RMSE against exact, reported as the
median and interquartile range over the examples, with its cost in network evaluations.

Run: ``.venv/bin/python -m benchmarks.attribution`` (results in docs/attribution.md).
"""

import time

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

import neuronshapley as ns
from neuronshapley.features import FeatureGame, attribute, dasp
from neuronshapley.workflows.explain import closed_loops

N_EXAMPLES = 20
GRADIENT_LABELS = {
    "saliency": "saliency",
    "input_x_gradient": "gradient x input",
    "integrated_gradients": "Integrated Gradients, 50 steps",
    "deeplift": "DeepLIFT (Rescale)",
    "shapley_sampling": "Captum ShapleyValueSampling, 25 permutations",
    "kernel_shap": "Captum KernelSHAP, 512 coalitions",
}


def wine_mlp() -> tuple[nn.Module, torch.Tensor, float]:
    """The trained MLP, its test inputs and its test accuracy."""
    x, y = load_wine(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y
    )
    scaler = StandardScaler().fit(x_train)
    x_train_t = torch.tensor(scaler.transform(x_train), dtype=torch.float32)
    x_test_t = torch.tensor(scaler.transform(x_test), dtype=torch.float32)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3)
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    targets = torch.tensor(y_train)
    for _ in range(200):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x_train_t), targets).backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test_t).argmax(1).numpy() == y_test).mean()
    return model, x_test_t, float(accuracy)


def scores(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    return float(spearmanr(estimate, truth).statistic), float(
        np.sqrt(np.mean((estimate - truth) ** 2))
    )


def summary(values: list[float]) -> str:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return f"{median:.3f} [{q1:.3f}, {q3:.3f}]"


def main() -> None:
    torch.set_num_threads(1)
    started = time.perf_counter()
    model, x_test, accuracy = wine_mlp()
    print(
        f"wine MLP: test accuracy {accuracy:.3f}, trained in {time.perf_counter() - started:.1f} s"
    )
    methods: dict[str, tuple[list[float], list[float], list[float]]] = {}
    completeness: list[float] = []

    def record(name: str, estimate: np.ndarray, truth: np.ndarray, cost: float) -> None:
        rho, rmse = scores(estimate, truth)
        entry = methods.setdefault(name, ([], [], []))
        entry[0].append(rho)
        entry[1].append(rmse)
        entry[2].append(cost)

    for x in x_test[:N_EXAMPLES]:
        game = FeatureGame(model, x)
        truth = ns.exact_shapley(game).values
        for n_sizes in (None, 5):
            result = dasp(model, x, n_sizes=n_sizes)
            label = "DASP, all 13 sizes" if n_sizes is None else f"DASP, {n_sizes} sizes"
            record(label, result.values, truth, result.diagnostics["network_evaluations"])
        for n_permutations in (4, 48, 480):
            result = ns.permutation_shapley(game, n_permutations=n_permutations, seed=0)
            record(
                f"permutation, {n_permutations} permutations",
                result.values,
                truth,
                result.n_evaluations,
            )
            result = ns.permutation_shapley(
                game, n_permutations=n_permutations, antithetic=True, seed=0
            )
            record(
                f"antithetic, {n_permutations} permutations",
                result.values,
                truth,
                result.n_evaluations,
            )
        for method, label in GRADIENT_LABELS.items():
            result = attribute(method, model, x)
            record(label, result.values, truth, result.diagnostics["network_evaluations"])
            if method == "integrated_gradients":
                completeness.append(abs(result.diagnostics["completeness_error"]))
    print(f"\n{N_EXAMPLES} test examples; median [IQR] over examples\n")
    print("| method | Spearman vs exact | RMSE vs exact | network evaluations per example |")
    print("|---|---|---|---|")
    for name, (rho, rmse, cost) in methods.items():
        print(f"| {name} | {summary(rho)} | {summary(rmse)} | {np.median(cost):.0f} |")
    print(f"\nIG (50 steps) |completeness error|: median {np.median(completeness):.4f}")
    loops = closed_loops()
    print(f"\nTCAV, concept 'closed loops' (0, 6, 8, 9) at digits-cnn {loops.layer}, 20 runs\n")
    print("| class | TCAV score | random CAVs | p | significant |")
    print("|---|---|---|---|---|")
    for row in loops.rows():
        print(
            f"| {row['class']} | {row['tcav_score']:.2f} | {row['random_score']:.2f} | "
            f"{row['p_value']:.1g} | {'yes' if row['significant'] else 'no'} |"
        )
    print(f"\nexact: 8192 evaluations per example; wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
