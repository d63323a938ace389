"""Issue 18, "compare players directly": the k-th against the (k+1)-th value, three ways.

At equal evaluations E per run, over ``--seeds`` seeds, the spread of the estimate of
s_k - s_(k+1) (the two players ranked k and k+1 by their exact values):

- ``direct``: ``difference_shapley(pairs=[(k, k+1)])``, Theorem 10.2.8's samples
  U(S + i) - U(S + j), 2 evaluations each (E / 2 samples);
- ``permutation``: the difference of the two values of one ``permutation_shapley`` run (every
  player's marginal per walk, about n evaluations per walk);
- ``pair walks``: permutation walks that sample only those two players (what a TMAB round costs
  once only they are undecided: C_q and C_(q+1) for each, 3 or 4 evaluations per walk, plus
  V(N) and V(empty) once); the difference of their means over the same walks.

Reported: the standard deviation over seeds, the bias (mean minus the exact difference, with its
own standard error), and the evaluations each method needs for the direct method's standard
error, relative to direct (variance x evaluations: > 1 means direct needs fewer). And all
values: ``anchored_shapley`` (anchor = the top player) against ``permutation_shapley``, the sum
over players of the squared error, at equal evaluations. With ``--race``: TMAB's top-k race
with the boundary decided by direct differences (``estimators.difference_race``) against
``tmab_shapley``.

Run ``python -m benchmarks.differences [--seeds 40]`` (a few minutes on one core); the figures
are in docs/efficiency.md.
"""

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import neuronshapley as ns
from benchmarks.statistics import airport, voting
from neuronshapley.estimators.difference_race import difference_race
from neuronshapley.estimators.options import Sampling
from neuronshapley.estimators.walks import Endpoints, Evaluator, Walker, WalkRange
from neuronshapley.games import Game


def soum() -> ns.games.SOUM:
    """20 players, 30 terms of order 1-3 (the game of benchmarks/truncation.py)."""
    return ns.games.SOUM(20, 30, seed=2)


def sparse() -> ns.games.SOUM:
    """``sparse_soum(2000)``, the game of TMAB's benchmark: top 20 from 1.0 to 0.56, then 0.5."""
    return ns.games.sparse_soum(n_players=2000, n_large=20, n_basis=500, seed=0)


# name -> (game, k, permutations per run: E = about that many full walks)
GAMES: dict[str, tuple[Callable[[], Game], int, int]] = {
    "airport (20)": (airport, 3, 20),
    "voting (21)": (voting, 3, 20),
    "SOUM (20)": (soum, 3, 20),
    "sparse_soum (2000)": (sparse, 20, 2),
}


def pair_walks(game: Game, pair: tuple[int, int], evaluations: int, seed: int) -> float:
    """s_i - s_j from walks that sample only i and j, within ``evaluations``."""
    sampled = np.zeros(game.n_players, dtype=bool)
    sampled[list(pair)] = True
    evaluator = Evaluator(game, max_evaluations=evaluations)
    ends = evaluator(np.array([np.ones(game.n_players, bool), np.zeros(game.n_players, bool)]))
    walker = Walker(
        evaluator,
        seed,
        Endpoints(float(ends[0]), float(ends[1])),
        Sampling.from_arguments("pair_walks", False, 32, 8),
        None,
    )
    # Walk in small ranges until the budget is spent; a range the budget cut is dropped.
    means = ns.estimators.RunningStats.zeros(game.n_players)
    first = 0
    while True:
        done = walker.walk(WalkRange(first, 8, sampled))
        if not done.complete:
            break
        means = means.merge(done.stats)
        first += 8
    return float(means.mean[pair[0]] - means.mean[pair[1]])


def boundary_rows(seeds: int) -> list[dict[str, Any]]:
    rows = []
    for name, (make, k, walks) in GAMES.items():
        game = make()
        truth = game.shapley_values()  # type: ignore[attr-defined]
        order = np.argsort(-truth, kind="stable")
        pair = (int(order[k - 1]), int(order[k]))
        exact = float(truth[pair[0]] - truth[pair[1]])
        evaluations = walks * (game.n_players - 1) + 2
        started = time.perf_counter()
        estimates: dict[str, list[float]] = {"direct": [], "permutation": [], "pair walks": []}
        for seed in range(seeds):
            direct = ns.difference_shapley(game, evaluations // 2, pairs=[pair], seed=seed)
            estimates["direct"].append(float(direct.differences[0]))
            full = ns.permutation_shapley(game, walks, seed=seed)
            estimates["permutation"].append(float(full.values[pair[0]] - full.values[pair[1]]))
            estimates["pair walks"].append(pair_walks(game, pair, evaluations, seed))
        direct_variance = float(np.var(estimates["direct"], ddof=1))
        for method, values in estimates.items():
            spread = float(np.std(values, ddof=1))
            rows.append(
                {
                    "game": name,
                    "k": k,
                    "exact": exact,
                    "evaluations": evaluations,
                    "method": method,
                    "sd": spread,
                    "bias": float(np.mean(values)) - exact,
                    "bias_se": spread / np.sqrt(seeds),
                    "relative_evaluations": spread**2 / direct_variance,
                }
            )
        print(f"  {name}: {time.perf_counter() - started:.0f} s", flush=True)
    return rows


def all_value_rows(seeds: int) -> list[dict[str, Any]]:
    """anchored_shapley against permutation_shapley: sum of squared errors over players.

    Anchored: half the budget to the anchor's marginals (2 evaluations each), half to the
    differences (1 + (n - 1) / H per set); "exact anchor": its value given, the whole budget
    to the differences, which isolates what the differences cost."""
    rows = []
    for name, (make, _, walks) in GAMES.items():
        game = make()
        truth = game.shapley_values()  # type: ignore[attr-defined]
        anchor = int(np.argmax(truth))
        n = game.n_players
        budget = 5 * walks * (n - 1) + 2
        per_set = 1.0 + (n - 1) / float(np.sum(1.0 / np.arange(1, n)))
        errors: dict[str, list[float]] = {}
        spent: dict[str, list[int]] = {}
        for seed in range(seeds):
            runs = {
                "permutation": ns.permutation_shapley(game, max_evaluations=budget, seed=seed),
                "anchored": ns.anchored_shapley(
                    game, anchor, int(budget / 2 / per_set), anchor_samples=budget // 4, seed=seed
                ),
                "anchored, exact anchor": ns.anchored_shapley(
                    game,
                    anchor,
                    int(budget / per_set),
                    anchor_value=float(truth[anchor]),
                    seed=seed,
                ),
            }
            for method, result in runs.items():
                errors.setdefault(method, []).append(float(np.sum((result.values - truth) ** 2)))
                spent.setdefault(method, []).append(result.n_evaluations)
        for method in errors:
            rows.append(
                {
                    "game": name,
                    "method": method,
                    "evaluations": float(np.mean(spent[method])),
                    "sum_squared_error": float(np.mean(errors[method])),
                }
            )
    return rows


# name -> (game, k, tol, seeds) for the race: TMAB at tol 1e-3 on the SOUM's k = 3 boundary
# (gap 0.0039) takes over 1.9 million evaluations (7 minutes), so the SOUM runs at 5e-3.
RACES: dict[str, tuple[Callable[[], Game], int, float, int]] = {
    "airport (20)": (airport, 3, 1e-3, 3),
    "voting (21)": (voting, 3, 1e-3, 3),
    "SOUM (20)": (soum, 3, 5e-3, 2),
}


def race_run(method: str, game: Game, k: int, tol: float, width: float, seed: int) -> Any:
    if method == "tmab_shapley":
        return ns.tmab_shapley(game, k, delta=0.1, tol=tol, value_range=width, seed=seed)
    max_pairs = int(method.rsplit("=", 1)[1])
    return difference_race(
        game, k, delta=0.1, tol=tol, value_range=width, max_pairs=max_pairs, seed=seed
    )


def race_rows() -> list[dict[str, Any]]:
    """``difference_race`` (max_pairs 0: no differences, 1, 4) against ``tmab_shapley``,
    delta = 0.1 and the true range R: mean evaluations to a separated top k."""
    rows = []
    for name, (make, k, tol, seeds) in RACES.items():
        game = make()
        truth = game.shapley_values()  # type: ignore[attr-defined]
        top = set(np.argsort(-truth)[:k].tolist())
        width = game.marginal_range() if isinstance(game, ns.games.SOUM) else 1.0
        methods = ["tmab_shapley"] + [f"race, max_pairs={m}" for m in (0, 1, 4)]
        for method in methods:
            results = [race_run(method, game, k, tol, width, seed) for seed in range(seeds)]
            rows.append(
                {
                    "game": f"{name}, k={k}, tol={tol:g}",
                    "method": method,
                    "evaluations": float(np.mean([r.n_evaluations for r in results])),
                    "pair_evaluations": float(
                        np.mean([r.diagnostics.get("pair_evaluations", 0) for r in results])
                    ),
                    "right": sum(
                        r.stop_reason == "separated" and set(r.top_indices(k).tolist()) == top
                        for r in results
                    ),
                    "seeds": seeds,
                }
            )
            print(f"  {rows[-1]}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--race", action="store_true", help="only the TMAB race (about 10 minutes)")
    args = parser.parse_args()
    if args.race:
        print("| game | method | mean evaluations | of which pairs | right top k |")
        print("| --- | --- | --- | --- | --- |")
        for row in race_rows():
            print(
                f"| {row['game']} | {row['method']} | {row['evaluations']:,.0f} | "
                f"{row['pair_evaluations']:,.0f} | {row['right']}/{row['seeds']} |"
            )
        return
    print(f"s_k - s_(k+1) at equal evaluations, {args.seeds} seeds")
    print("| game | k | exact | evaluations | method | sd | bias (se) | evals for same se |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in boundary_rows(args.seeds):
        print(
            f"| {row['game']} | {row['k']} | {row['exact']:.4f} | {row['evaluations']:,} | "
            f"{row['method']} | {row['sd']:.4f} | {row['bias']:+.4f} ({row['bias_se']:.4f}) | "
            f"{row['relative_evaluations']:.2f}x |"
        )
    print("\nAll values, sum over players of the squared error (mean over seeds)")
    print("| game | method | evaluations | sum of squared errors |")
    print("| --- | --- | --- | --- |")
    for row in all_value_rows(args.seeds):
        print(
            f"| {row['game']} | {row['method']} | {row['evaluations']:,.0f} | "
            f"{row['sum_squared_error']:.5f} |"
        )


if __name__ == "__main__":
    main()
