"""Convergence of input-feature attributions on the bundled CNNs (issue 14).

For a few test examples of ``digits-cnn`` (64 pixels, Conv2d first), ``mnist1d-cnn`` (40
positions, Conv1d first) and ``digits-bn-strided`` (a CNN trained here on the same digits with
the layers DASP's own code never supported: BatchNorm in eval mode after every convolution, a
stride-2 and a dilated convolution, LeakyReLU, average pooling), every pixel or position is a
player of ``FeatureGame(model, x)`` (zero baseline, the predicted class's logit); no grouping
is needed at these sizes. The reference is
antithetic permutation sampling with 1,024 permutations (64,514 evaluations on digits) at a seed
no other run uses. Against it, each method's RMSE and Spearman rank correlation, with its cost in
network evaluations as the DASP paper counts them: one forward of one input is one evaluation
(a probabilistic pass of DASP is two, means and variances; gradient methods count their forward
inputs, the backward passes are not counted).

- DASP at several ``n_sizes`` (one point each; all sizes is its best and dearest),
- permutation and antithetic sampling of our engine at 1 to 256 permutations,
- Captum's ShapleyValueSampling and KernelSHAP at several sample counts,
- saliency, gradient x input, Integrated Gradients (50 steps) and DeepLIFT (single points).

Spearman is taken over the players whose input differs from the baseline: a pixel at the
baseline (49% of the digits' pixels are 0) is a null player whose value is 0 for every
Shapley estimator, and the ties would lift every rank correlation alike. RMSE is over all
players, in logit units.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from torch import nn

import neuronshapley as ns
from neuronshapley import zoo
from neuronshapley.features import FeatureGame, attribute, dasp
from neuronshapley.zoo.training import TrainingRecipe, accuracy, train

BN_STRIDED = "digits-bn-strided"
MODELS = ("digits-cnn", "mnist1d-cnn", BN_STRIDED)
REFERENCE_PERMUTATIONS = 1024
REFERENCE_SEED = 1_000_003  # no other run here uses it: the reference's noise is independent
PERMUTATIONS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# None is every size (N of them); the others are evenly spaced.
DASP_SIZES: tuple[int | None, ...] = (2, 4, 8, 16, None)
CAPTUM_PERMUTATIONS = (1, 4, 16, 64)
KERNEL_COALITIONS = (256, 1024, 4096)
GRADIENTS = {
    "saliency": "saliency",
    "input_x_gradient": "gradient x input",
    "integrated_gradients": "Integrated Gradients (50 steps)",
    "deeplift": "DeepLIFT",
}
# The heat maps set DASP with 8 sizes beside permutation sampling at about its cost.
HEATMAP_DASP_SIZES = 8


@dataclass
class Study:
    """What one model's study measured: per (method, setting), per example."""

    model: str
    n_players: int
    examples: list[int]
    inputs: np.ndarray
    rmse: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    spearman: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    evaluations: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    maps: dict[str, list[np.ndarray]] = field(default_factory=dict)
    reference_stderr: list[float] = field(default_factory=list)
    reference_rms: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0

    def record(
        self,
        method: str,
        setting: str,
        values: np.ndarray,
        truth: np.ndarray,
        moved: np.ndarray,
        evaluations: float,
        seconds: float,
    ) -> None:
        key = (method, setting)
        rho = spearmanr(values[moved], truth[moved]).statistic
        self.spearman.setdefault(key, []).append(float(rho))
        self.rmse.setdefault(key, []).append(float(np.sqrt(np.mean((values - truth) ** 2))))
        self.evaluations.setdefault(key, []).append(float(evaluations))
        self.seconds.setdefault(key, []).append(seconds)

    def curves(self) -> dict[str, list[tuple[float, float, float]]]:
        """Method -> (mean evaluations, mean RMSE, mean Spearman) per setting, by cost."""
        out: dict[str, list[tuple[float, float, float]]] = {}
        for method, setting in self.rmse:
            key = (method, setting)
            out.setdefault(method, []).append(
                (
                    float(np.mean(self.evaluations[key])),
                    float(np.mean(self.rmse[key])),
                    float(np.mean(self.spearman[key])),
                )
            )
        return {method: sorted(points) for method, points in out.items()}


def timed(run: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = run(*args, **kwargs)
    return result, time.perf_counter() - started


def bn_strided_cnn() -> tuple[nn.Module, Any, float]:
    """A digits CNN with BatchNorm, a strided and a dilated convolution, LeakyReLU and average
    pooling, trained deterministically (seed 0, 10 epochs; seconds); its data and accuracy."""
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.LeakyReLU(0.1),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),  # 8x8 -> 4x4
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=2, dilation=2),  # 4x4 -> 4x4
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AvgPool2d(2),  # 4x4 -> 2x2
        nn.Flatten(),
        nn.Linear(256, 10),
    )
    data = zoo.load_data("digits-cnn")
    train(model, data.train, TrainingRecipe(epochs=10, batch_size=32, lr=3e-3), seed=0)
    return model, data, accuracy(model, data.test)


def study(name: str, n_examples: int, log: Any = print) -> Study:
    """Every method on the first ``n_examples`` test examples of model ``name`` (bundled, or
    ``BN_STRIDED`` trained here)."""
    started = time.perf_counter()
    if name == BN_STRIDED:
        model, data, test_accuracy = bn_strided_cnn()
        log(f"  {name}: test accuracy {test_accuracy:.3f}")
    else:
        model, data = zoo.load(name)
    x_test = data.test.x[:n_examples]
    result = Study(name, x_test[0].numel(), list(range(n_examples)), x_test.numpy())
    for index, x in enumerate(x_test):
        example_started = time.perf_counter()
        reference = one_example(result, model, x)
        log(
            f"  {name} example {index}: {time.perf_counter() - example_started:.1f} s "
            f"(reference {reference.n_evaluations:,} evaluations, "
            f"{reference.elapsed_seconds:.1f} s)"
        )
    result.wall_seconds = time.perf_counter() - started
    return result


def one_example(result: Study, model: Any, x: Any) -> Any:
    """Every method on one example, recorded in ``result``; returns the reference."""
    game = FeatureGame(model, x)
    n = game.n_players
    moved = (x.reshape(-1) != 0).numpy()
    reference = ns.permutation_shapley(
        game, n_permutations=REFERENCE_PERMUTATIONS, antithetic=True, seed=REFERENCE_SEED
    )
    truth = reference.values
    result.reference_stderr.append(float(np.sqrt(np.mean(reference.stderr**2))))
    result.reference_rms.append(float(np.sqrt(np.mean(truth**2))))
    result.maps.setdefault("reference", []).append(truth)

    def record(method: str, setting: str, out: Any, cost: float, seconds: float) -> None:
        result.record(method, setting, out.values, truth, moved, cost, seconds)

    for n_sizes in DASP_SIZES:
        out, seconds = timed(dasp, model, x, n_sizes=n_sizes)
        setting = f"{n if n_sizes is None else n_sizes} sizes"
        record("DASP", setting, out, out.diagnostics["network_evaluations"], seconds)
        if n_sizes == HEATMAP_DASP_SIZES:
            result.maps.setdefault("DASP", []).append(out.values)
    for antithetic in (False, True):
        method = "antithetic sampling" if antithetic else "permutation sampling"
        for count in PERMUTATIONS:
            if antithetic and count % 2:
                continue
            out, seconds = timed(
                ns.permutation_shapley,
                game,
                n_permutations=count,
                antithetic=antithetic,
                seed=0,
            )
            record(method, f"{count} permutations", out, out.n_evaluations, seconds)
            if not antithetic and count == heatmap_permutations(n):
                result.maps.setdefault("sampling", []).append(out.values)
    captum = [("Captum ShapleyValueSampling", "shapley_sampling", c) for c in CAPTUM_PERMUTATIONS]
    captum += [("Captum KernelSHAP", "kernel_shap", c) for c in KERNEL_COALITIONS]
    for label, method, count in captum:
        out, seconds = timed(attribute, method, model, x, n_samples=count)
        record(label, f"{count}", out, out.diagnostics["network_evaluations"], seconds)
    for method, label in GRADIENTS.items():
        out, seconds = timed(attribute, method, model, x)
        record(label, "", out, out.diagnostics["network_evaluations"], seconds)
        if method == "integrated_gradients":
            result.maps.setdefault("IG", []).append(out.values)
    return reference


def heatmap_permutations(n_players: int) -> int:
    """The permutation count whose cost is nearest DASP's with ``HEATMAP_DASP_SIZES`` sizes."""
    dasp_cost = 4 * n_players * HEATMAP_DASP_SIZES
    return min(PERMUTATIONS, key=lambda count: abs(count * (n_players - 1) + 2 - dasp_cost))


def crossing(points: Sequence[tuple[float, float, float]], level: float, column: int) -> float:
    """The evaluations from which a curve reaches ``level`` and stays there (RMSE, column 1: at
    or below; Spearman, column 2: at or above), interpolated in log evaluations between the last
    point that misses it and the next; nan if its last point misses it."""
    good = [point[column] <= level if column == 1 else point[column] >= level for point in points]
    if not good or not good[-1]:
        return float("nan")
    last_miss = max((i for i, ok in enumerate(good) if not ok), default=-1)
    if last_miss < 0:
        return points[0][0]
    (x0, *s0), (x1, *s1) = points[last_miss], points[last_miss + 1]
    v0, v1 = s0[column - 1], s1[column - 1]
    t = (level - v0) / (v1 - v0)
    return float(np.exp(np.log(x0) + t * (np.log(x1) - np.log(x0))))


def table(result: Study) -> list[str]:
    """The markdown rows: every method and setting, mean [min, max] over the examples."""
    lines = [
        "| method | setting | network evaluations | RMSE | Spearman | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for key in result.rmse:
        method, setting = key
        rmse, rho = np.array(result.rmse[key]), np.array(result.spearman[key])
        lines.append(
            f"| {method} | {setting} | {np.mean(result.evaluations[key]):,.0f} | "
            f"{rmse.mean():.3f} [{rmse.min():.3f}, {rmse.max():.3f}] | "
            f"{rho.mean():.3f} [{rho.min():.3f}, {rho.max():.3f}] | "
            f"{np.mean(result.seconds[key]):.2f} |"
        )
    return lines


def crossings(result: Study) -> list[str]:
    """Where permutation and antithetic sampling reach DASP's best point, as a ratio of costs."""
    curves = result.curves()
    best = curves["DASP"][-1]  # all sizes
    lines = []
    for column, name in ((1, "RMSE"), (2, "Spearman")):
        for method in ("permutation sampling", "antithetic sampling"):
            reached = crossing(curves[method], best[column], column)
            ratio = reached / best[0]
            lines.append(
                f"{method} reaches DASP (all sizes, {best[0]:,.0f} evaluations)'s {name} "
                f"{best[column]:.3f} at {reached:,.0f} evaluations ({ratio:.2f}x)"
            )
    for column, name in ((1, "RMSE"), (2, "Spearman")):
        for dasp_point in curves["DASP"]:
            reached = crossing(curves["permutation sampling"], dasp_point[column], column)
            lines.append(
                f"  DASP at {dasp_point[0]:,.0f} evaluations: {name} {dasp_point[column]:.3f}; "
                f"permutation sampling gets there at {reached:,.0f} "
                f"({reached / dasp_point[0]:.2f}x)"
            )
    return lines


def heatmap_arrays(result: Study) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The inputs and the four maps (reference, DASP, sampling at DASP's cost, IG) shaped like
    the inputs, for the report's heat-map grid."""
    shape = result.inputs.shape
    n = result.n_players
    dasp_cost = 4 * n * HEATMAP_DASP_SIZES
    count = heatmap_permutations(n)
    labels = {
        "reference": f"reference\n{REFERENCE_PERMUTATIONS:,} antithetic",
        "DASP": f"DASP, {HEATMAP_DASP_SIZES} sizes\n{dasp_cost:,} ev.",
        "sampling": f"sampling, {count} perm.\n{count * (n - 1) + 2:,} ev.",
        "IG": "IG, 50 steps\n52 ev.",
    }
    maps = {labels[key]: np.stack(values).reshape(shape) for key, values in result.maps.items()}
    return result.inputs, maps
