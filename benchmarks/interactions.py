"""The interactions study on digits-cnn: do redundant units explain the removal curve?

1. Shapley values of the 160 units by permutation sampling (``--shapley-permutations``); the top
   20 are the players of the study.
2. Their 190 pairwise Shapley interactions inside the whole 160-unit game, by
   ``permutation_interactions`` (``--permutations``, in ``--chunks`` independent seeds so that
   sums of pairs get a standard error from the spread between chunks).
3. The pairwise (2-additive) account of removing the Shapley top k (``applications.interactions``):
   the measured cost ``V(N) - V(N \\ T)`` against the sum of the Shapley values, the sum of the
   leave-one-out costs, and leave-one-out minus the interactions inside ``T``.
4. Removal orders for 1..10 units: Shapley, leave-one-out, greedy on the pairwise model, greedy on
   the game among the top 20 and among all 160 units.

The game is the peer benchmark's (``benchmarks.games``: accuracy on the 360 digits test images,
ablation to the mean). shapiq's interaction approximators estimate every pair of the game and
cannot be restricted to the chosen 20, so they are not run here (the estimator's module docstring
gives the cost); ``tests/estimators/test_interactions.py`` checks them against ours on small
games. Run with ``python -m benchmarks.interactions``; figures go to docs/figures/studies/, the
results to benchmarks/results/interactions/. ``--quick``: 8 units, a few permutations.
"""

import argparse
import time
from dataclasses import replace
from functools import reduce
from pathlib import Path

import numpy as np
import torch

import neuronshapley as ns
from benchmarks import games
from neuronshapley.applications.interactions import (
    greedy_removal_order,
    leave_one_out_costs,
    pairwise_removal_order,
    total_interactions,
    values_after_removal,
)
from neuronshapley.estimators.interactions import permutation_interactions
from neuronshapley.report.interactions import plot_interaction_matrix, plot_removal_orders
from neuronshapley.results.interactions import InteractionResult

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures" / "studies"
RESULTS = ROOT / "benchmarks" / "results" / "interactions"


def within(matrix: np.ndarray, rows: np.ndarray, cols: np.ndarray | None = None) -> float:
    """Sum over the pairs inside ``rows`` (each once), or between ``rows`` and ``cols``."""
    if cols is None:
        return float(matrix[np.ix_(rows, rows)].sum() / 2.0)
    return float(matrix[np.ix_(rows, cols)].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapley-permutations", type=int, default=40)
    parser.add_argument("--permutations", type=int, default=30)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--remove", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.shapley_permutations, args.permutations, args.chunks = 4, 4, 2
        args.units, args.remove = 8, 4
    torch.set_num_threads(1)
    started = time.perf_counter()
    game = games.build("digits-cnn")
    names = game.player_names
    k, m = args.remove, args.units

    clock = time.perf_counter()
    shapley = ns.permutation_shapley(game, n_permutations=args.shapley_permutations, seed=0)
    shapley_seconds = time.perf_counter() - clock
    top = shapley.top_indices(m)
    top_names = [names[i] for i in top]
    print(
        f"Shapley: {shapley.n_evaluations:,} evaluations in {shapley_seconds:.0f} s; top {m}: "
        f"values {shapley.values[top[0]]:.4f} .. {shapley.values[top[-1]]:.4f}, median stderr "
        f"{np.median(shapley.stderr[top]):.4f}; sum of all values {shapley.values.sum():.4f}"
    )

    clock = time.perf_counter()
    per_chunk = args.permutations // args.chunks
    chunks = [
        permutation_interactions(game, players=top_names, n_permutations=per_chunk, seed=seed)
        for seed in range(args.chunks)
    ]
    interactions = reduce(InteractionResult.merge, chunks)
    interaction_seconds = time.perf_counter() - clock
    interactions.save(RESULTS / "top")
    shapley.save(RESULTS / "shapley")
    values = interactions.values
    upper = values[np.triu_indices(m, k=1)]
    z = values / np.where(interactions.stderr > 0, interactions.stderr, np.inf)
    z_upper = z[np.triu_indices(m, k=1)]
    n_pairs = len(upper)
    bonferroni = 3.66  # z for a two-sided 0.05 / 190
    print(
        f"\nInteractions of the top {m} ({n_pairs} pairs): {interactions.n_evaluations:,} "
        f"evaluations ({args.chunks} chunks x {per_chunk} permutations) in "
        f"{interaction_seconds:.0f} s, {interaction_seconds / interactions.n_evaluations * 1e3:.1f}"
        f" ms per evaluation"
    )
    print(
        f"negative pairs {np.sum(upper < 0)}/{n_pairs}; mean {upper.mean():+.5f}; median stderr "
        f"{np.median(interactions.stderr[np.triu_indices(m, k=1)]):.5f}; |z| > 1.96: "
        f"{np.sum(z_upper < -1.96)} negative, {np.sum(z_upper > 1.96)} positive; |z| > "
        f"{bonferroni} (Bonferroni over the pairs): {np.sum(z_upper < -bonferroni)} negative, "
        f"{np.sum(z_upper > bonferroni)} positive"
    )
    for pair in interactions.pairs()[:5]:
        print(
            f"  most redundant: {pair.first} x {pair.second}: {pair.value:+.4f} ± {pair.stderr:.4f}"
        )
    for pair in interactions.pairs("-value")[:3]:
        print(
            f"  most synergistic: {pair.first} x {pair.second}: "
            f"{pair.value:+.4f} ± {pair.stderr:.4f}"
        )

    # Sums of pairs, with a standard error from the spread between the independent chunks.
    first, rest = np.arange(k), np.arange(k, m)

    def with_error(statistic: str) -> str:
        parts = [
            within(c.values, first) if statistic == "inside" else within(c.values, first, rest)
            for c in chunks
        ]
        return f"{np.mean(parts):+.4f} ± {np.std(parts, ddof=1) / np.sqrt(len(parts)):.4f}"

    costs = leave_one_out_costs(game, top_names)
    totals = total_interactions(game, top_names)  # exact: sum over all 159 others
    shapley_order = values_after_removal(game, top_names[:k], "Shapley value, highest first")
    full = shapley_order.values[0]
    print(f"\nV(N) = {full:.4f}. The Shapley top {k}, one unit at a time:")
    print(
        "| unit | Shapley value | leave-one-out cost | alone: V({i}) - V(∅) | "
        f"sum of I_ij over all others | over the top {m} |"
    )
    print("|---|---|---|---|---|---|")
    for a in range(k):
        print(
            f"| {top_names[a]} | {shapley.values[top[a]]:.4f} | {costs[a]:.4f} | "
            f"{costs[a] - totals[a]:.4f} | {totals[a]:+.4f} | {values[a].sum():+.4f} |"
        )
    print("\nRemoving the Shapley top k, and the pairwise (2-additive) account of its cost:")
    print(
        "| k | cost V(N) - V(N \\ T) | sum of Shapley values | + half the pairs across T "
        "(pairwise) | sum of leave-one-out | - pairs inside T (pairwise) | pairs inside T | "
        "pairs across T |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in range(1, k + 1):
        removed = np.arange(size)
        cost = full - shapley_order.values[size]
        inside = within(values, removed)
        across = float(totals[:size].sum()) - 2.0 * inside
        phi = float(shapley.values[top[:size]].sum())
        loo = float(costs[:size].sum())
        print(
            f"| {size} | {cost:.4f} | {phi:.4f} | {phi + across / 2:.4f} | {loo:.4f} | "
            f"{loo - inside:.4f} | {inside:+.4f} | {across:+.4f} |"
        )
    print(
        f"top {k}, spread between chunks: pairs inside {with_error('inside')}; pairs with the "
        f"next {m - k} {with_error('between')}"
    )

    clock = time.perf_counter()
    orders = [
        shapley_order,
        values_after_removal(
            game, [top_names[i] for i in np.argsort(-costs, kind="stable")[:k]], "leave-one-out"
        ),
        values_after_removal(
            game,
            pairwise_removal_order(costs, interactions, k),
            "pairwise model (leave-one-out - interactions)",
        ),
        replace(
            greedy_removal_order(game, k, candidates=top_names),
            rule=f"greedy on the game, top {m}",
        ),
        replace(greedy_removal_order(game, k), rule="greedy on the game, all units"),
    ]
    order_seconds = time.perf_counter() - clock
    print(f"\nAccuracy after removing 1..{k} units ({order_seconds:.0f} s for the orders):")
    print("| order | evaluations | " + " | ".join(str(c) for c in range(1, k + 1)) + " |")
    print("|---|---|" + "---|" * k)
    for order in orders:
        row = " | ".join(f"{v:.3f}" for v in order.values[1:])
        print(f"| {order.rule} | {order.n_evaluations:,} | {row} |")
    for order in orders[2:]:
        print(f"{order.rule}: {', '.join(order.order)}")

    if not args.quick:
        FIGURES.mkdir(parents=True, exist_ok=True)
        title = (
            f"Interactions of the top {m} units of digits-cnn "
            f"({interactions.params['n_permutations']} permutations)"
        )
        plot_interaction_matrix(interactions, title=title).savefig(
            FIGURES / "interactions.png", dpi=110
        )
        plot_removal_orders(orders, metric="accuracy").savefig(
            FIGURES / "interaction_removal.png", dpi=110
        )
    print(f"\nwall time {time.perf_counter() - started:.0f} s, torch threads 1")


if __name__ == "__main__":
    main()
