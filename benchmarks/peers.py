"""Neuron Shapley against its peers, in one process, on the same game.

Every method gets the same ``NeuronGame`` (``benchmarks.games``) as a callable ``bool[k, n] ->
float[k]`` and is run with several seeds. A method's *curve* is its estimate as a function of the
coalition evaluations it has spent:

- ours (``permutation_shapley``, ``truncated_shapley``, ``tmab_shapley``): one run per seed up to
  the largest budget, its estimate read after every round (``progress``);
- Captum's ``ShapleyValueSampling`` on the unit-gate function: Captum averages the marginals of
  ``n_samples`` permutations, so a run of ``n_samples = a + b`` is the weighted mean of a run
  of ``a`` and one of ``b``; the curve adds chunks of ``CAPTUM_CHUNK`` permutations (each its own
  ``attribute`` call, seeded) and reads the running mean after every chunk;
- shapiq's approximators cannot be continued, so each is run once per budget of a doubling grid.

Each point is scored against the cached reference: precision@k of the top-k set, epsilon-
precision@k (a returned unit counts when its reference value is within ``epsilon`` of the
reference k-th value), and Spearman's rank correlation of all values.
"""

import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import neuronshapley as ns
from neuronshapley.applications.adversarial import spearman_correlation

CAPTUM_CHUNK = 2  # permutations per Captum call: the curve's resolution


@dataclass
class Point:
    """A method's estimate after spending ``evaluations`` coalitions."""

    evaluations: int
    forward_examples: int
    seconds: float
    values: np.ndarray


@dataclass
class Counter:
    """The game as a plain callable, counting what every method spends."""

    game: ns.NeuronGame
    # Where the count starts (set by reset).
    started: float = field(init=False)
    evaluations_before: int = field(init=False)
    examples_before: int = field(init=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.started = time.perf_counter()
        self.evaluations_before = self.game.n_evaluations
        self.examples_before = self.game.n_forward_examples

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        return self.game.value(np.atleast_2d(np.asarray(coalitions, dtype=bool)))

    def point(self, values: np.ndarray) -> Point:
        return Point(
            self.game.n_evaluations - self.evaluations_before,
            self.game.n_forward_examples - self.examples_before,
            time.perf_counter() - self.started,
            np.array(values, dtype=np.float64),
        )


Runner = Callable[[Counter, int, int], Iterator[Point]]


def ours(estimator: str, **options: Any) -> Runner:
    """One of our estimators, its estimate read after every round."""

    def run(counter: Counter, seed: int, budget: int) -> Iterator[Point]:
        points: list[Point] = []
        result = getattr(ns, estimator)(
            counter.game,
            max_evaluations=budget,
            seed=seed,
            progress=lambda progress: points.append(counter.point(progress.values)),
            **options,
        )
        # What the run returns (a budget stop mid-round included) is its last point.
        if not points or points[-1].evaluations < result.n_evaluations:
            points.append(counter.point(result.values))
        yield from points

    return run


def captum(counter: Counter, seed: int, budget: int) -> Iterator[Point]:
    """Captum's ShapleyValueSampling on the gate function, in chunks of permutations."""
    from captum.attr import ShapleyValueSampling

    n = counter.game.n_players

    def forward(gates: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(counter(gates.numpy() > 0.5))

    sampler = ShapleyValueSampling(forward)
    total = np.zeros(n)
    chunk = 0
    while counter.game.n_evaluations - counter.evaluations_before + CAPTUM_CHUNK * n < budget:
        torch.manual_seed(seed * 100_003 + chunk)
        attributions = sampler.attribute(
            torch.ones(1, n, dtype=torch.float64),
            baselines=torch.zeros(1, n, dtype=torch.float64),
            n_samples=CAPTUM_CHUNK,
            perturbations_per_eval=32,
            show_progress=False,
        )
        chunk += 1
        total += attributions[0].numpy()
        yield counter.point(total / chunk)


def shapiq(approximator: str, grid: list[int], **options: Any) -> Runner:
    """A shapiq approximator, run once per budget of ``grid`` up to the budget."""

    def run(counter: Counter, seed: int, budget: int) -> Iterator[Point]:
        import shapiq as shapiq_module

        n = counter.game.n_players
        for point_budget in (b for b in grid if b <= budget):
            counter.reset()
            method = getattr(shapiq_module, approximator)(n, random_state=seed, **options)
            # Monte Carlo approximators (SVARM) evaluate their coalitions in one call already.
            batching = "batch_size" in inspect.signature(method.approximate).parameters
            extra = {"batch_size": 32} if batching else {}
            result = method.approximate(point_budget, counter, **extra)
            yield counter.point(result.get_n_order_values(1))

    return run


@dataclass(frozen=True)
class Method:
    name: str
    family: str  # "ours", "captum" or "shapiq"
    runner: Runner
    anytime: bool = True  # one run gives the whole curve (else: one run per budget)
    cost: str = "walks"  # "walks" (coalitions in walk order) or "random" coalitions


def methods(grid: list[int], k: int, epsilon: float) -> list[Method]:
    """Every method of the benchmark; ``grid`` is the shapiq budget grid.

    TMAB runs twice: as in the paper (empirical Bernstein intervals, tol 1e-3), and tuned to the
    question the benchmark asks (normal intervals, a unit within ``epsilon`` of the threshold
    counts as decided).
    """
    return [
        Method("captum ShapleyValueSampling", "captum", captum),
        Method(
            "shapiq PermutationSamplingSV", "shapiq", shapiq("PermutationSamplingSV", grid), False
        ),
        Method("shapiq KernelSHAP", "shapiq", shapiq("KernelSHAP", grid), False, "random"),
        Method("shapiq SVARM", "shapiq", shapiq("SVARM", grid), False, "random"),
        Method("ours permutation", "ours", ours("permutation_shapley")),
        Method("ours permutation antithetic", "ours", ours("permutation_shapley", antithetic=True)),
        Method("ours truncated", "ours", ours("truncated_shapley", truncation=0.1)),
        Method("ours TMAB (paper)", "ours", ours("tmab_shapley", k=k, truncation=0.1)),
        Method(
            "ours TMAB (normal, tol=eps)",
            "ours",
            ours("tmab_shapley", k=k, truncation=0.1, bound="normal", tol=epsilon),
        ),
    ]


METHOD_NAMES = tuple(method.name for method in methods([], k=10, epsilon=0.0))


# -- scoring ----------------------------------------------------------------------------------


def top(values: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-values, kind="stable")[:k]


def precision_at(values: np.ndarray, reference: np.ndarray, k: int) -> float:
    """Share of the estimated top k that is in the reference top k."""
    return len(np.intersect1d(top(values, k), top(reference, k))) / k


def epsilon_precision_at(
    values: np.ndarray, reference: np.ndarray, k: int, epsilon: float
) -> float:
    """Share of the estimated top k whose reference value is within ``epsilon`` of the k-th."""
    kth = np.sort(reference)[::-1][k - 1]
    return float(np.mean(reference[top(values, k)] >= kth - epsilon))


def scores(values: np.ndarray, reference: np.ndarray, epsilon: float) -> dict[str, float]:
    return {
        "p@10": precision_at(values, reference, 10),
        "p@20": precision_at(values, reference, 20),
        "eps-p@10": epsilon_precision_at(values, reference, 10, epsilon),
        "eps-p@20": epsilon_precision_at(values, reference, 20, epsilon),
        "spearman": spearman_correlation(values, reference),
    }


def at_budget(points: list[Point], budget: int) -> Point | None:
    """The last point that spent at most ``budget`` evaluations (an anytime curve's state)."""
    before = [point for point in points if point.evaluations <= budget]
    return before[-1] if before else None


# -- the comparison ---------------------------------------------------------------------------


def anytime_grid(budget: int, start: int = 250) -> list[int]:
    """Budgets 250, 350, 500, 700, 1000, ... (about x1.41 apart) up to ``budget``."""
    grid, value = [], float(start)
    while value <= budget * 1.0001:
        grid.append(int(round(value, -1)))
        value *= 2**0.5
    return grid


def doubling_grid(budget: int, start: int = 250) -> list[int]:
    grid, value = [], start
    while value <= budget:
        grid.append(value)
        value *= 2
    return grid


@dataclass
class Comparison:
    """All methods' curves on one game."""

    game: str
    n_players: int
    n_examples: int
    budget: int
    seeds: list[int]
    epsilon: float
    reference: dict[str, Any]
    curves: dict[str, list[list[Point]]] = field(default_factory=dict)  # method -> seed -> points
    grids: dict[str, list[int]] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)


def compare(
    name: str,
    game: ns.NeuronGame,
    reference: dict[str, Any],
    *,
    budget: int,
    seeds: list[int],
    epsilon: float,
    random_budget: int | None = None,
    only: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> Comparison:
    """Run every method (or those named in ``only``) with every seed up to ``budget``.

    Methods that evaluate random coalitions (KernelSHAP, SVARM) gain nothing from prefix reuse
    and cost several times more per evaluation here; ``random_budget`` caps them.
    """
    from benchmarks.games import GAMES

    comparison = Comparison(
        name, game.n_players, GAMES[name].n_examples, budget, seeds, epsilon, reference
    )
    shapiq_grid = doubling_grid(budget)
    reference_values = np.asarray(reference["values"])
    for method in methods(shapiq_grid, k=10, epsilon=epsilon):
        if only is not None and method.name not in only:
            continue
        cap = budget if method.cost == "walks" or random_budget is None else random_budget
        comparison.families[method.name] = method.family
        grid = anytime_grid(cap) if method.anytime else doubling_grid(cap)
        comparison.grids[method.name] = grid
        per_seed = []
        for seed in seeds:
            counter = Counter(game)
            points = list(method.runner(counter, seed, cap))
            per_seed.append(points)
            if not points:
                log(f"{name} | {method.name} | seed {seed}: no estimate within the budget")
                continue
            last = points[-1]
            precision = epsilon_precision_at(last.values, reference_values, 10, epsilon)
            log(
                f"{name} | {method.name} | seed {seed}: {last.evaluations:,} evaluations in "
                f"{last.seconds:.1f} s, eps-p@10 {precision:.2f}"
            )
        comparison.curves[method.name] = per_seed
    return comparison


def curve_table(comparison: Comparison, method: str) -> list[dict[str, float]]:
    """Seed-averaged scores, example forwards and seconds at every budget of the method's grid."""
    reference = np.asarray(comparison.reference["values"])
    rows = []
    for budget in comparison.grids[method]:
        points = [at_budget(points, budget) for points in comparison.curves[method]]
        if any(point is None for point in points):
            continue
        found = [point for point in points if point is not None]
        row: dict[str, float] = {"budget": budget}
        for key in ("p@10", "p@20", "eps-p@10", "eps-p@20", "spearman"):
            row[key] = float(
                np.mean([scores(p.values, reference, comparison.epsilon)[key] for p in found])
            )
        row["evaluations"] = float(np.mean([p.evaluations for p in found]))
        row["forward_examples"] = float(np.mean([p.forward_examples for p in found]))
        row["seconds"] = float(np.mean([p.seconds for p in found]))
        rows.append(row)
    return rows


def reaches(
    rows: list[dict[str, float]], key: str = "eps-p@10", level: float = 0.9
) -> dict[str, float] | None:
    """The first row from which ``key`` stays at or above ``level``, or ``None``."""
    for i, row in enumerate(rows):
        if all(later[key] >= level for later in rows[i:]):
            return row
    return None


# -- the report -------------------------------------------------------------------------------


def headline(comparison: Comparison) -> list[dict[str, object]]:
    """Evaluations and seconds to a seed-averaged eps-precision@10 of 0.9, against Captum's."""
    captum_name = next(name for name, family in comparison.families.items() if family == "captum")
    rows_of = {method: curve_table(comparison, method) for method in comparison.curves}
    captum_hit = reaches(rows_of[captum_name])
    out: list[dict[str, object]] = []
    for method, rows in rows_of.items():
        hit = reaches(rows)
        row: dict[str, object] = {"method": method}
        if hit is None:
            row.update(evaluations=f"> {comparison.budget:,}", seconds="-")
            row.update({"vs Captum (evaluations)": "-", "vs Captum (seconds)": "-"})
        else:
            row.update(evaluations=int(hit["evaluations"]), seconds=round(hit["seconds"], 1))
            if captum_hit is None:
                # Captum never got there: its whole budget is a lower bound.
                last = rows_of[captum_name][-1]
                row["vs Captum (evaluations)"] = (
                    f">= {last['evaluations'] / hit['evaluations']:.1f}x"
                )
                row["vs Captum (seconds)"] = f">= {last['seconds'] / hit['seconds']:.1f}x"
            else:
                row["vs Captum (evaluations)"] = (
                    f"{captum_hit['evaluations'] / hit['evaluations']:.1f}x"
                )
                row["vs Captum (seconds)"] = f"{captum_hit['seconds'] / hit['seconds']:.1f}x"
        out.append(row)
    return out


def budget_rows(comparison: Comparison, budgets: list[int]) -> list[dict[str, object]]:
    """Every method's seed-averaged scores at a few budgets."""
    out: list[dict[str, object]] = []
    for budget in budgets:
        for method in comparison.curves:
            rows = [row for row in curve_table(comparison, method) if row["budget"] <= budget]
            if not rows:
                continue
            row = rows[-1]
            out.append(
                {
                    "budget": budget,
                    "method": method,
                    "evaluations": int(row["evaluations"]),
                    "example forwards": int(row["forward_examples"]),
                    "seconds": round(row["seconds"], 1),
                    "p@10": round(row["p@10"], 2),
                    "p@20": round(row["p@20"], 2),
                    "eps-p@10": round(row["eps-p@10"], 2),
                    "eps-p@20": round(row["eps-p@20"], 2),
                    "spearman": round(row["spearman"], 3),
                }
            )
    return out


def plot(comparison: Comparison, path: Any) -> None:
    """precision@10 and eps-precision@10 against evaluations, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    styles = {"captum": "--", "shapiq": ":", "ours": "-"}
    for method in comparison.curves:
        rows = curve_table(comparison, method)
        x = [row["evaluations"] for row in rows]
        for axis, key in zip(axes, ("p@10", "eps-p@10"), strict=True):
            axis.plot(
                x,
                [row[key] for row in rows],
                styles[comparison.families[method]],
                marker="o",
                markersize=3,
                label=method,
            )
    for axis, title in zip(
        axes, ("precision@10", f"eps-precision@10 (eps = {comparison.epsilon:g})"), strict=True
    ):
        axis.set_xscale("log")
        axis.set_xlabel("coalition evaluations")
        axis.set_title(title)
        axis.axhline(0.9, color="grey", linewidth=0.8)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel(f"mean over {len(comparison.seeds)} seeds")
    axes[1].legend(fontsize=7, loc="lower right")
    figure.suptitle(
        f"{comparison.game}: {comparison.n_players} units, {comparison.n_examples} examples"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- one game, start to end (run in a worker process by benchmarks.run) ----------------------


@dataclass(frozen=True)
class Plan:
    """How far one game is pushed: the budget of the walk-based methods, of the random-coalition
    ones, and the seeds."""

    budget: int
    random_budget: int
    n_seeds: int
    only: tuple[str, ...] | None = None  # the methods to run (default all)


# Sized so that `make bench` stays near 30 minutes on 2 cores: a digits-cnn coalition costs about
# 4.5 ms in walk order (one thread), an mnist1d-cnn one about 14 ms, a digits-mlp-wide one 2 ms;
# random coalitions cost 2-5 times more (no prefix to share).
FULL = {
    "digits-cnn": Plan(budget=8_000, random_budget=500, n_seeds=5),
    # shapiq's SVARM did not finish one run of at most 2,000 evaluations on 1,024 players in 11
    # minutes (its bookkeeping, not the game): left out here.
    "digits-mlp-wide": Plan(
        budget=12_000,
        random_budget=2_000,
        n_seeds=5,
        only=tuple(name for name in METHOD_NAMES if name != "shapiq SVARM"),
    ),
    "mnist1d-cnn": Plan(
        budget=3_000,
        random_budget=0,
        n_seeds=5,
        only=(
            "captum ShapleyValueSampling",
            "shapiq PermutationSamplingSV",
            "ours permutation",
            "ours TMAB (normal, tol=eps)",
        ),
    ),
}
QUICK = {"digits-cnn": Plan(budget=1_500, random_budget=250, n_seeds=2)}


def section(name: str, plan: Plan, figure_dir: Any, figure_link: str) -> str:
    """Run the comparison on game ``name`` and return its Markdown section (figure written)."""
    from benchmarks import games
    from benchmarks.run import table

    torch.set_num_threads(1)
    game = games.build(name)
    reference = games.reference(name, game)
    assert reference is not None
    # The reference resolves differences of about 3 standard errors: a unit closer than that to
    # the k-th value cannot be told apart from it, so it counts as a hit.
    epsilon = float(3 * np.median(reference["stderr"]))
    comparison = compare(
        name,
        game,
        reference,
        budget=plan.budget,
        seeds=list(range(plan.n_seeds)),
        epsilon=epsilon,
        random_budget=plan.random_budget,
        only=None if plan.only is None else list(plan.only),
    )
    figure = f"precision-{name}.png"
    plot(comparison, Path(figure_dir) / figure)
    values = np.sort(np.asarray(reference["values"]))[::-1]
    stderr = np.asarray(reference["stderr"])
    spec = games.GAMES[name]
    budgets = sorted(b for b in {plan.random_budget, plan.budget // 4, plan.budget} if b > 0)
    return "\n".join(
        [
            f"### {name}: {game.n_players} units, {spec.n_examples} test examples",
            "",
            f"Reference: {spec.reference_permutations} permutations of plain permutation "
            f"sampling ({reference['n_evaluations']:,} evaluations, "
            f"{reference['seconds'] / 60:.0f} min with {reference['torch_threads']} torch "
            f"thread(s), seed {games.REFERENCE_SEED}); standard error median "
            f"{np.median(stderr):.1e}, max {stderr.max():.1e}. Reference values ranked 8 to 12: "
            + ", ".join(f"{v:.4f}" for v in values[7:12])
            + f"; ranked 20: {values[19]:.4f}. epsilon = 3 x the median standard error = "
            f"{epsilon:.5f} (one test example of accuracy is {1 / spec.n_examples:.4f}).",
            "",
            (
                f"Budgets: {plan.budget:,} evaluations for the walk-based methods"
                + (
                    f", {plan.random_budget:,} for KernelSHAP and SVARM (random coalitions)"
                    if plan.random_budget
                    else ""
                )
                + f"; {plan.n_seeds} seeds; one torch thread."
                + ("" if plan.only is None else f" Methods run here: {', '.join(plan.only)}.")
            ),
            "",
            (
                "Evaluations and seconds until the seed-averaged eps-precision@10 reaches 0.9 and "
                "stays there (on the method's budget grid):"
            ),
            "",
            table(headline(comparison)),
            "",
            "Seed-averaged scores at a few budgets (the last point of each method within it):",
            "",
            table(budget_rows(comparison, budgets)),
            "",
            f"![precision@10 against evaluations on {name}]({figure_link}/{figure})",
            "",
        ]
    )
