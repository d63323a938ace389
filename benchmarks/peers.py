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
import pickle
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


def rounds(counter: Counter, run: Callable[..., ns.ShapleyResult]) -> list[Point]:
    """The estimate after every round of ``run`` (one of our estimators, given ``progress``),
    and what it returns (a budget stop mid-round included) as its last point."""
    points: list[Point] = []
    result = run(progress=lambda progress: points.append(counter.point(progress.values)))
    if not points or points[-1].evaluations < result.n_evaluations:
        points.append(counter.point(result.values))
    return points


def ours(estimator: str, **options: Any) -> Runner:
    """One of our estimators, its estimate read after every round."""

    def run(counter: Counter, seed: int, budget: int) -> Iterator[Point]:
        estimate = getattr(ns, estimator)
        yield from rounds(
            counter,
            lambda **reporting: estimate(
                counter.game, max_evaluations=budget, seed=seed, **options, **reporting
            ),
        )

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


def control_variate(antithetic: bool, truncation: float | None = None) -> Runner:
    """Our control variate (issue 18): the linearised network scored by a soft accuracy
    (``ns.units.linearized_game``) with one coefficient for every unit (``pooled``: per-unit
    ones, fitted on a few walks, lost the variance reduction to their own noise here). One run
    per seed up to the budget, its estimate read after every round (``progress``; the estimate
    after w walks is what a run of w walks returns), from the first that holds 4 samples (two
    folds of two). ``truncation``: the game's walks truncated as ``truncated_shapley``'s are.
    Only the game's evaluations count; the surrogate's Jacobian and walks are in the seconds."""

    def run(counter: Counter, seed: int, budget: int) -> Iterator[Point]:
        game = counter.game
        surrogate = ns.units.linearized_game(game, metric="soft_accuracy")  # in the seconds
        yield from rounds(
            counter,
            lambda **reporting: ns.control_variate_shapley(
                game,
                surrogate,
                max_evaluations=budget,
                antithetic=antithetic,
                truncation=truncation,
                pooled=True,
                seed=seed,
                **reporting,
            ),
        )

    return run


@dataclass(frozen=True)
class Method:
    name: str
    family: str  # "ours", "captum" or "shapiq"
    runner: Runner
    # The budgets its curve is read at: a fine grid where one run gives the whole curve or a run
    # per budget is cheap, doubling where each budget is a run of its own and costly (shapiq).
    grid: Callable[[int], list[int]] = field(default=lambda budget: anytime_grid(budget))
    cost: str = "walks"  # "walks" (coalitions in walk order) or "random" coalitions


def methods(grid: list[int], k: int, epsilon: float) -> list[Method]:
    """Every method of the benchmark; ``grid`` is the shapiq budget grid.

    TMAB runs twice: as in the paper (empirical Bernstein intervals, tol 1e-3), and tuned to the
    question the benchmark asks (a unit within ``epsilon`` of the threshold counts as decided)
    with the library's default bound, the anytime-valid one. (Earlier runs used normal intervals
    here; TMAB refuses them since issue 17: they had no guarantee and broke its top k.)
    """

    def from_shapiq(approximator: str, cost: str = "walks") -> Method:
        # Each budget is a run of its own (shapiq cannot continue one): the doubling grid. A
        # lambda, because METHOD_NAMES calls this at import, before the grids are defined.
        return Method(
            f"shapiq {approximator}",
            "shapiq",
            shapiq(approximator, grid),
            cost=cost,
            grid=lambda budget: doubling_grid(budget),
        )

    return [
        Method("captum ShapleyValueSampling", "captum", captum),
        from_shapiq("PermutationSamplingSV"),
        from_shapiq("KernelSHAP", cost="random"),
        from_shapiq("SVARM", cost="random"),
        Method("ours permutation", "ours", ours("permutation_shapley")),
        Method("ours permutation antithetic", "ours", ours("permutation_shapley", antithetic=True)),
        Method("ours truncated", "ours", ours("truncated_shapley", truncation=0.1)),
        Method("ours control variate", "ours", control_variate(antithetic=False)),
        Method("ours control variate antithetic", "ours", control_variate(antithetic=True)),
        Method(
            "ours control variate truncated",
            "ours",
            control_variate(antithetic=False, truncation=0.1),
        ),
        Method(
            "ours TMAB (paper)",
            "ours",
            ours("tmab_shapley", k=k, truncation=0.1, bound="bernstein"),
        ),
        Method(
            "ours TMAB (anytime, tol=eps)",
            "ours",
            ours("tmab_shapley", k=k, truncation=0.1, bound="anytime", tol=epsilon),
        ),
    ]


METHOD_NAMES = tuple(method.name for method in methods([], k=10, epsilon=0.0))
CAPTUM = METHOD_NAMES[0]


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
    return float(np.mean(reference[top(values, k)] >= kth_value(reference, k) - epsilon))


def kth_value(reference: np.ndarray, k: int) -> float:
    return float(np.sort(reference)[::-1][k - 1])


def n_hits(reference: np.ndarray, k: int, epsilon: float) -> int:
    """How many units count as hits of the top k at ``epsilon``."""
    return int(np.sum(reference >= kth_value(reference, k) - epsilon))


SCORE_KEYS = ("p@10", "p@20", "eps-p@10", "eps-p@20", "1ex-p@10", "spearman")


def scores(
    values: np.ndarray, reference: np.ndarray, epsilon: float, example: float
) -> dict[str, float]:
    """The scores of one estimate: ``eps-`` at ``epsilon``, ``1ex-`` at one test example."""
    return {
        "p@10": precision_at(values, reference, 10),
        "p@20": precision_at(values, reference, 20),
        "eps-p@10": epsilon_precision_at(values, reference, 10, epsilon),
        "eps-p@20": epsilon_precision_at(values, reference, 20, epsilon),
        "1ex-p@10": epsilon_precision_at(values, reference, 10, example),
        "spearman": spearman_correlation(values, reference),
    }


def at_budget(points: list[Point], budget: int) -> Point | None:
    """The last point that spent at most ``budget`` evaluations (an anytime curve's state)."""
    before = [point for point in points if point.evaluations <= budget]
    return before[-1] if before else None


# -- the runs: one task per game, method and seed ----------------------------------------------


def anytime_grid(budget: int, start: int = 250) -> list[int]:
    """Budgets 250, 350, 500, 700, 1000, ... (about x1.41 apart), and ``budget`` itself."""
    grid, value = [], float(start)
    while value < budget * 0.95:
        grid.append(int(round(value, -1)))
        value *= 2**0.5
    return [*grid, budget]


def doubling_grid(budget: int, start: int = 250) -> list[int]:
    """Budgets 250, 500, 1000, ... and ``budget`` itself."""
    grid, value = [], start
    while value < budget * 0.95:
        grid.append(value)
        value *= 2
    return [*grid, budget]


def method_grid(method: Method, budget: int) -> list[int]:
    """The budgets a method's curve is read at."""
    return method.grid(budget)


@dataclass(frozen=True)
class Plan:
    """How far one game is pushed: the budget of the walk-based methods, of the random-coalition
    ones, the seeds, and the budget of Captum's timing run on the plain masked forward."""

    budget: int
    random_budget: int
    n_seeds: int
    only: tuple[str, ...] | None = None  # the methods to run (default all)
    plain_budget: int = 1_000


@dataclass(frozen=True)
class Task:
    """One method, one seed, on one game; ``plain_forward``: the game without prefix reuse."""

    game: str
    method: str
    seed: int
    budget: int
    plain_forward: bool = False


def tasks(name: str, plan: Plan) -> list[Task]:
    """Every run of game ``name``: each method with each seed, and Captum's timing run."""
    out = []
    for method in methods([], k=10, epsilon=0.0):
        if plan.only is not None and method.name not in plan.only:
            continue
        budget = plan.budget if method.cost == "walks" else plan.random_budget
        out += [Task(name, method.name, seed, budget) for seed in range(plan.n_seeds)]
    out.append(Task(name, CAPTUM, 0, plan.plain_budget, plain_forward=True))
    return out


def tight_epsilon(reference: dict[str, Any]) -> float:
    """3 x the reference's median standard error.

    The reference resolves differences of about 3 standard errors: a unit closer than that to
    the k-th value cannot be told apart from it, so it counts as a hit.
    """
    return float(3 * np.median(reference["stderr"]))


_GAMES: dict[tuple[str, bool], tuple[ns.NeuronGame, dict[str, Any]]] = {}


def _game(name: str, plain_forward: bool) -> tuple[ns.NeuronGame, dict[str, Any]]:
    """The game and its reference, built once per worker process."""
    from benchmarks import games

    if (name, plain_forward) not in _GAMES:
        game = games.build(name, reuse_prefixes=not plain_forward)
        reference = games.reference(name, game)
        assert reference is not None
        _GAMES[name, plain_forward] = game, reference
    return _GAMES[name, plain_forward]


def run_task(task: Task) -> tuple[list[Point], float]:
    """Run one task (in a worker process, one torch thread): the points its curve is read at
    (the last one within each budget of the method's grid, and the last), and its seconds."""
    started = time.perf_counter()
    torch.set_num_threads(1)
    game, reference = _game(task.game, task.plain_forward)
    grid = doubling_grid(task.budget)
    method = next(
        m for m in methods(grid, k=10, epsilon=tight_epsilon(reference)) if m.name == task.method
    )
    points = list(method.runner(Counter(game), task.seed, task.budget))
    kept = {id(at_budget(points, budget)) for budget in method_grid(method, task.budget)}
    return [p for p in points[:-1] if id(p) in kept] + points[-1:], time.perf_counter() - started


# -- one game's curves --------------------------------------------------------------------------


@dataclass
class Comparison:
    """All methods' curves on one game."""

    game: str
    n_players: int
    n_examples: int
    plan: Plan
    reference: dict[str, Any]
    curves: dict[str, list[list[Point]]] = field(default_factory=dict)  # method -> seed -> points
    grids: dict[str, list[int]] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)
    plain_captum: list[Point] = field(default_factory=list)  # seed 0, no prefix reuse
    minutes: float = 0.0  # worker time spent on this game

    @property
    def epsilon(self) -> float:
        return tight_epsilon(self.reference)

    @property
    def example(self) -> float:
        """One test example of accuracy: the second epsilon."""
        return 1 / self.n_examples

    @property
    def seeds(self) -> int:
        return self.plan.n_seeds


def assemble(
    name: str, plan: Plan, results: dict[Task, list[Point]], seconds: dict[Task, float]
) -> Comparison:
    """Gather the tasks of game ``name`` into its ``Comparison``."""
    from benchmarks import games

    _, reference = _game(name, plain_forward=False)
    n_players = len(reference["values"])
    comparison = Comparison(name, n_players, games.GAMES[name].n_examples, plan, reference)
    comparison.plain_captum = next(
        points for task, points in results.items() if task.game == name and task.plain_forward
    )
    return add_runs(comparison, results, seconds)


def add_runs(
    comparison: Comparison, results: dict[Task, list[Point]], seconds: dict[Task, float]
) -> Comparison:
    """Add the curves of the tasks on the comparison's game (a method run again replaces its
    curves; the worker-minutes count every run), keeping the benchmark's order of methods."""
    name, plan = comparison.game, comparison.plan
    curves = dict(comparison.curves)
    for method in methods([], k=10, epsilon=0.0):
        runs = sorted(
            (task.seed, points)
            for task, points in results.items()
            if task.game == name and task.method == method.name and not task.plain_forward
        )
        if not runs:
            continue
        budget = plan.budget if method.cost == "walks" else plan.random_budget
        curves[method.name] = [points for _, points in runs]
        comparison.grids[method.name] = method_grid(method, budget)
        comparison.families[method.name] = method.family
    comparison.curves = {method: curves[method] for method in METHOD_NAMES if method in curves}
    comparison.minutes += sum(s for task, s in seconds.items() if task.game == name) / 60
    return comparison


def budgets_changed(kept: Plan, plan: Plan) -> list[str]:
    """What differs between the plan the kept curves were run with and ``plan``, but for which
    methods run: curves of other budgets or seeds cannot be read side by side."""
    fields = ("budget", "random_budget", "n_seeds", "plain_budget")
    return [
        f"{name} {getattr(kept, name):,} -> {getattr(plan, name):,}"
        for name in fields
        if getattr(kept, name) != getattr(plan, name)
    ]


def save(comparison: Comparison, directory: Path) -> Path:
    """Keep the raw curves, so that the report can be redone (another epsilon) without a run."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{comparison.game}.pickle"
    path.write_bytes(pickle.dumps(comparison))
    return path


def load(game: str, directory: Path) -> Comparison:
    loaded = pickle.loads((directory / f"{game}.pickle").read_bytes())
    assert isinstance(loaded, Comparison)
    return loaded


def curve_table(comparison: Comparison, method: str) -> list[dict[str, float]]:
    """Seed-averaged scores, example forwards and seconds at every budget of the method's grid."""
    reference = np.asarray(comparison.reference["values"])
    rows = []
    for budget in comparison.grids[method]:
        points = [at_budget(points, budget) for points in comparison.curves[method]]
        found = [point for point in points if point is not None]
        if len(found) < len(points):
            continue
        per_seed = [
            scores(p.values, reference, comparison.epsilon, comparison.example) for p in found
        ]
        row: dict[str, float] = {"budget": budget}
        row.update({key: float(np.mean([s[key] for s in per_seed])) for key in SCORE_KEYS})
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


def captum_level(comparison: Comparison, key: str) -> float:
    """The level Captum's curve ends at (seed-averaged, rounded down to 0.05), at most 0.9."""
    rows = curve_table(comparison, CAPTUM)
    return min(0.9, np.floor(rows[-1][key] * 20 + 1e-9) / 20)


def plain_captum_rate(comparison: Comparison) -> float:
    """Seconds per evaluation of Captum on the plain masked forward (its timing run)."""
    last = comparison.plain_captum[-1]
    return last.seconds / last.evaluations


def headline(comparison: Comparison, key: str, level: float) -> list[dict[str, object]]:
    """Evaluations and seconds until the seed-averaged ``key`` reaches ``level`` and stays there,
    with the ratios to Captum's: on the shared game, and (seconds) to Captum's evaluations at its
    measured rate on the plain masked forward."""
    rows_of = {method: curve_table(comparison, method) for method in comparison.curves}
    captum_hit = reaches(rows_of[CAPTUM], key, level)
    out: list[dict[str, object]] = []
    for method, rows in rows_of.items():
        hit = reaches(rows, key, level)
        row: dict[str, object] = {"method": method}
        budget = max(comparison.grids[method])
        ratios = ("vs Captum (evaluations)", "vs Captum (seconds)", "vs Captum plain (seconds)")
        if hit is None:
            row.update({"evaluations": f"> {budget:,}", "seconds": "-"})
            row.update(dict.fromkeys(ratios, "-"))
        elif captum_hit is None:
            row.update(evaluations=int(hit["evaluations"]), seconds=round(hit["seconds"], 1))
            last = rows_of[CAPTUM][-1]  # Captum never got there: its whole run is a lower bound
            plain = last["evaluations"] * plain_captum_rate(comparison)
            row[ratios[0]] = f">= {last['evaluations'] / hit['evaluations']:.1f}x"
            row[ratios[1]] = f">= {last['seconds'] / hit['seconds']:.1f}x"
            row[ratios[2]] = f">= {plain / hit['seconds']:.1f}x"
        else:
            row.update(evaluations=int(hit["evaluations"]), seconds=round(hit["seconds"], 1))
            plain = captum_hit["evaluations"] * plain_captum_rate(comparison)
            row[ratios[0]] = f"{captum_hit['evaluations'] / hit['evaluations']:.1f}x"
            row[ratios[1]] = f"{captum_hit['seconds'] / hit['seconds']:.1f}x"
            row[ratios[2]] = f"{plain / hit['seconds']:.1f}x"
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
                    **{key: round(row[key], 2 if key != "spearman" else 3) for key in SCORE_KEYS},
                }
            )
    return out


def plot(comparison: Comparison, path: Any) -> None:
    """precision@10 and the two eps-precision@10 against evaluations, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib import ticker

    panels = [
        ("p@10", "precision@10"),
        ("eps-p@10", f"eps-precision@10, eps = 3 se = {comparison.epsilon:.2g}"),
        ("1ex-p@10", f"eps-precision@10, eps = 1 example = {comparison.example:.2g}"),
    ]
    if not example_informative(comparison):
        panels = panels[:2]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.4), sharey=True)
    styles = {"captum": "--", "shapiq": ":", "ours": "-"}
    for method in comparison.curves:
        # Below 100 evaluations a run has not finished one walk of these games: not shown.
        rows = [row for row in curve_table(comparison, method) if row["evaluations"] >= 100]
        x = [row["evaluations"] for row in rows]
        for axis, (key, _) in zip(axes, panels, strict=True):
            axis.plot(
                x,
                [row[key] for row in rows],
                styles[comparison.families[method]],
                marker="o",
                markersize=3,
                label=method,
            )
    for axis, (_, title) in zip(axes, panels, strict=True):
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
        axis.xaxis.set_minor_formatter(ticker.NullFormatter())
        axis.set_xlabel("coalition evaluations")
        axis.set_title(title, fontsize=10)
        axis.axhline(0.9, color="grey", linewidth=0.8)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel(f"mean over {comparison.seeds} seeds")
    axes[1].legend(fontsize=7, loc="lower right")
    figure.suptitle(
        f"{comparison.game}: {comparison.n_players} units, {comparison.n_examples} examples"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# -- the plans ----------------------------------------------------------------------------------

# Sized so that `make bench` stays under 45 minutes on 2 cores: a digits-cnn coalition costs about
# 4 ms in walk order (one thread), an mnist1d-cnn one about 5 ms, a digits-mlp-wide one 2 ms;
# random coalitions cost 2-3 times more (no prefix to share).
FULL = {
    # TMAB as in the paper (the samples of truncated sampling: it decides no unit within 5,000
    # evaluations) is left out, which keeps `make bench` within its 45 minutes.
    "digits-cnn": Plan(
        budget=5_000,
        random_budget=500,
        n_seeds=5,
        only=tuple(name for name in METHOD_NAMES if name != "ours TMAB (paper)"),
        plain_budget=1_000,
    ),
    # shapiq's SVARM did not finish one run of at most 2,000 evaluations on 1,024 players in 11
    # minutes (its bookkeeping, not the game): left out here.
    "digits-mlp-wide": Plan(
        budget=10_000,
        random_budget=2_000,
        n_seeds=5,
        # Its antithetic pairs cost 2,046 evaluations, so the control variate's antithetic runs
        # (4 pairs at least) would have one point within the budget: left out too, and so is
        # TMAB as in the paper, which samples what truncated sampling does on every game here
        # (it decides no unit within these budgets), to keep `make bench` within its time.
        only=tuple(
            name
            for name in METHOD_NAMES
            if name not in ("shapiq SVARM", "ours control variate antithetic", "ours TMAB (paper)")
        ),
        plain_budget=4_200,  # two chunks of 2 permutations (2,050 evaluations each)
    ),
    "mnist1d-cnn": Plan(
        budget=3_000,
        random_budget=0,
        n_seeds=5,
        only=(
            CAPTUM,
            "shapiq PermutationSamplingSV",
            "ours permutation",
            "ours permutation antithetic",
            "ours truncated",
            "ours control variate",
            "ours control variate truncated",
            "ours TMAB (anytime, tol=eps)",
        ),
    ),
}
# digits-cnn-wide (1,152 filters, 180 test examples) on its own (`make bench-wide`): a coalition
# costs about 14 ms in walk order there, so five seeds of every method would take hours. Its
# methods: Captum and shapiq's permutation sampler, and ours with each lever that paid on the
# other games (antithetic walks, truncation, the control variate on truncated walks). TMAB
# samples what truncated sampling does within such budgets, and plain permutation sampling is
# Captum's estimator.
WIDE = {
    "digits-cnn-wide": Plan(
        budget=6_000,
        random_budget=0,
        n_seeds=5,
        only=(
            CAPTUM,
            "shapiq PermutationSamplingSV",
            "ours permutation antithetic",
            "ours truncated",
            "ours control variate truncated",
        ),
        plain_budget=2_400,  # Captum takes two permutations (2,306 evaluations) at a time
    )
}
QUICK = {"digits-cnn": Plan(budget=1_500, random_budget=250, n_seeds=2, plain_budget=500)}


def section(comparison: Comparison, figure_dir: Any, figure_link: str) -> str:
    """The Markdown section of one game (its figure written to ``figure_dir``)."""
    from benchmarks import games
    from benchmarks.run import table

    name, plan, reference = comparison.game, comparison.plan, comparison.reference
    figure = f"precision-{name}.png"
    plot(comparison, Path(figure_dir) / figure)
    ref_values = np.asarray(reference["values"])
    values = np.sort(ref_values)[::-1]
    stderr = np.asarray(reference["stderr"])
    spec = games.GAMES[name]
    budgets = sorted(b for b in {plan.random_budget, plan.budget // 4, plan.budget} if b > 0)
    hits_tight = n_hits(ref_values, 10, comparison.epsilon)
    hits_example = n_hits(ref_values, 10, comparison.example)
    level = captum_level(comparison, "eps-p@10")
    plain = comparison.plain_captum[-1]
    lines = [
        f"### {name}: {comparison.n_players} units, {spec.n_examples} test examples",
        "",
        f"Reference: {spec.reference_permutations} permutations of plain permutation sampling "
        f"({reference['n_evaluations']:,} evaluations, {reference['seconds'] / 60:.0f} min with "
        f"{reference['torch_threads']} torch thread(s), seed {games.REFERENCE_SEED}); standard "
        f"error median {np.median(stderr):.1e}, max {stderr.max():.1e}. Reference values ranked "
        "8 to 12: "
        + ", ".join(f"{v:.4f}" for v in values[7:12])
        + f"; ranked 20: {values[19]:.4f}.",
        "",
        (
            f"Two epsilons: **3 reference standard errors = {comparison.epsilon:.5f}** "
            f"({hits_tight} units count as hits of the top 10) and **one test example of accuracy "
            f"= {comparison.example:.4f}** ({hits_example} units count)."
        ),
        "",
        f"Budgets: {plan.budget:,} evaluations for the walk-based methods"
        + (
            f", {plan.random_budget:,} for KernelSHAP and SVARM (random coalitions)"
            if plan.random_budget
            else ""
        )
        + f"; {plan.n_seeds} seeds; one torch thread; {comparison.minutes:.1f} worker-minutes."
        + ("" if plan.only is None else f" Methods run here: {', '.join(m for m in plan.only)}."),
        "",
        (
            f"Captum on the plain masked forward (no prefix reuse, seed 0, {plain.evaluations:,} "
            f"evaluations): {plain_captum_rate(comparison) * 1e3:.1f} ms per evaluation, against "
            f"{rate(comparison, CAPTUM) * 1e3:.1f} ms on the shared game. The estimates are the "
            "same (so are the values of every coalition); only the time differs. The column *vs "
            "Captum plain* is Captum's evaluations to the level times that rate, over the "
            "method's seconds."
        ),
        "",
    ]
    if example_informative(comparison):
        lines += [
            (
                "**Headline, eps = one test example:** evaluations and seconds until the "
                "seed-averaged eps-precision@10 reaches 0.9 and stays there (on the method's "
                "budget grid):"
            ),
            "",
            table(headline(comparison, "1ex-p@10", 0.9)),
            "",
        ]
    else:
        lines += [
            (
                f"At eps = one test example, {hits_example} of {comparison.n_players} units are "
                "within eps of the 10th value, so that eps says nothing here."
            ),
            "",
        ]
    lines += [
        (
            f"**eps = 3 standard errors:** evaluations and seconds until the seed-averaged "
            f"eps-precision@10 reaches {level:.2f} and stays there ({level:.2f} is where Captum's "
            f"run ends, rounded down, at most 0.9):"
        ),
        "",
        table(headline(comparison, "eps-p@10", level)),
        "",
        (
            "Seed-averaged scores at a few budgets (the last point of each method within it; eps- "
            "at 3 standard errors, 1ex- at one test example):"
        ),
        "",
        table(budget_rows(comparison, budgets)),
        "",
        f"![precision@10 against evaluations on {name}]({figure_link}/{figure})",
        "",
    ]
    return "\n".join(lines)


def example_informative(comparison: Comparison) -> bool:
    """Whether eps = one test example still tells units apart: at most half count as hits."""
    reference = np.asarray(comparison.reference["values"])
    return n_hits(reference, 10, comparison.example) <= comparison.n_players // 2


def rate(comparison: Comparison, method: str) -> float:
    """Seconds per evaluation of ``method`` over its runs."""
    runs = [points[-1] for points in comparison.curves[method] if points]
    return sum(p.seconds for p in runs) / sum(p.evaluations for p in runs)
