"""Issue 18, "decide players as early as the evidence allows": where TMAB's evaluations go.

On each game of the peer benchmark (``benchmarks.games``), ``tmab_shapley`` as the benchmark's
tuned TMAB runs it (top 10, truncation 0.1, the anytime-valid bound, tol = 3 reference standard
errors, the peer budget), with its ``progress`` callback recording after every round how many
players are still undecided and how many evaluations the run has spent. Reported per game:

- the round and the evaluations at which the first player was decided, and at which half were;
- the share of the budget spent in rounds that sampled fewer than all, and fewer than half of
  the players;
- evaluations per walk in the first round and in the last (a walk over few undecided players
  costs about two evaluations per player, one over all n + 1, less where it is truncated);
- the range R the bound used (the observed range of the marginals), the median half-width of
  the intervals at the end, and the 10th value: a player is decided once its interval, within
  tol, clears the threshold between the 10th and 11th values.

    .venv/bin/python -m benchmarks.tmab_rounds [--games digits-cnn ...] [--seed 0]

One torch thread; under a minute per game on an idle core. The figures in docs/efficiency.md say
when they were measured.
"""

import argparse
import os
import time
from typing import Any

import numpy as np
import torch

import neuronshapley as ns
from benchmarks import games, peers
from benchmarks.run import table


def measure(name: str, seed: int) -> dict[str, Any]:
    """One row: the rounds of tuned TMAB on peer game ``name``."""
    game = games.build(name)
    reference = games.reference(name, game, compute=False)
    if reference is None:
        raise SystemExit(f"{name}: no cached reference for these weights (benchmarks.games)")
    budget = peers.FULL[name].budget
    rounds: list[tuple[int, int, int]] = []  # (evaluations, walks, undecided) after each round
    started = time.perf_counter()
    result = ns.tmab_shapley(
        game,
        k=10,
        truncation=0.1,
        bound="anytime",
        tol=peers.tight_epsilon(reference),
        max_evaluations=budget,
        seed=seed,
        progress=lambda p: rounds.append(
            (
                p.n_evaluations,
                p.n_permutations,
                game.n_players if p.n_undecided is None else p.n_undecided,
            )
        ),
    )
    seconds = time.perf_counter() - started
    n = game.n_players
    evaluations = np.array([r[0] for r in rounds])
    walks = np.array([r[1] for r in rounds])
    undecided = np.array([r[2] for r in rounds])
    # A round's evaluations, and how many players it sampled (those undecided before it).
    spent = np.diff(evaluations, prepend=2)
    sampled = np.concatenate(([n], undecided[:-1]))
    per_walk = spent / np.maximum(np.diff(walks, prepend=0), 1)

    def first_round(condition: np.ndarray) -> str:
        hits = np.flatnonzero(condition)
        if not hits.size:
            return "never"
        return f"round {hits[0] + 1} ({evaluations[hits[0]]:,} evaluations)"

    total = evaluations[-1]
    return {
        "game": name,
        "units": n,
        "rounds": len(rounds),
        "evaluations": int(total),
        "first decided": first_round(undecided < n),
        "half decided": first_round(undecided <= n // 2),
        "undecided at the end": int(undecided[-1]),
        "budget in rounds sampling < n": f"{spent[sampled < n].sum() / total:.0%}",
        "budget in rounds sampling <= n/2": f"{spent[sampled <= n // 2].sum() / total:.0%}",
        "evaluations per walk, first / last round": f"{per_walk[0]:.0f} / {per_walk[-1]:.0f}",
        # What the bound had to beat: its half-width against the gap to the k-th value.
        "range R used": f"{float(result.diagnostics['value_range_used']):.3f}",
        "median half-width": f"{float(np.median(result.ci_high - result.ci_low)) / 2:.4f}",
        "10th value": f"{float(np.sort(result.values)[::-1][9]):.4f}",
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", nargs="+", default=list(peers.FULL), choices=list(games.GAMES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.1f}")
    rows = [measure(name, args.seed) for name in args.games]
    print(table(rows))


if __name__ == "__main__":
    main()
