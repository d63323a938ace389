"""Issue 17's coverage cells: what each interval rule's intervals are worth, against the truth.

For each game, ``permutation_shapley`` walks ``--permutations`` permutations per seed; every
rule's intervals are then computed from the same samples (a rule changes the intervals, not
the samples). Against the exact values: per-player coverage (each player's fraction of seeds
whose interval covers its value; mean and worst player), simultaneous coverage (the fraction
of seeds where every player is covered) and the half-width relative to the true standard
error (the spread of the estimates over the seeds). Every game is given its valid marginal
range R, so the finite-sample rules are tested on what they promise.

Run ``python -m benchmarks.coverage [--seeds N] [--permutations T]``; the figures are in
docs/statistics.md, and tests/estimators/test_coverage.py keeps the claims with fewer seeds.
"""

import argparse
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import neuronshapley as ns
from neuronshapley.games import SOUM, AirportGame, Game, GloveGame, WeightedVotingGame, sparse_soum
from neuronshapley.results.bounds import IntervalRule
from neuronshapley.typing import CoalitionMatrix, GameValues

DELTA = 0.1

# (bound, union_bound): every rule the library prints, and what it claims.
RULES: dict[str, IntervalRule] = {
    "bernstein": IntervalRule("bernstein", DELTA),
    "bernstein, union": IntervalRule("bernstein", DELTA, union_bound=True),
    "anytime": IntervalRule("anytime", DELTA),
    "normal": IntervalRule("normal", DELTA),
    "normal, union": IntervalRule("normal", DELTA, union_bound=True),
}


class LookupGame(ns.games.BaseGame):
    """A game of at most ~16 players given by the value of every coalition (bit-indexed)."""

    def __init__(self, values: GameValues, player_names: list[str]) -> None:
        super().__init__(len(player_names), player_names)
        self.table = np.asarray(values, dtype=np.float64)
        self.weights = 1 << np.arange(self.n_players)

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        return self.table[coalitions.astype(np.int64) @ self.weights]


@functools.cache
def neuron_game(n_units: int = 12) -> tuple[LookupGame, float]:
    """The first ``n_units`` filters of digits-cnn's conv1 (accuracy on its test split), every
    coalition evaluated once: values by enumeration, and R = 2 (accuracy's marginals)."""
    model, data = ns.zoo.load("digits-cnn")
    game = ns.NeuronGame(
        model, data=data.test, units=f"conv1:0-{n_units - 1}", reference=data.reference
    )
    codes = np.arange(2**n_units)
    coalitions = (codes[:, None] >> np.arange(n_units)) & 1 == 1
    values = np.concatenate(
        [game.value(coalitions[start : start + 512]) for start in range(0, len(codes), 512)]
    )
    marginal_range = game.marginal_range()
    assert marginal_range is not None
    return LookupGame(values, game.player_names), marginal_range


def soum(n_players: int, seed: int) -> tuple[SOUM, float]:
    """2n unanimity terms of 1 to 4 random players, standard normal coefficients."""
    rng = np.random.default_rng(seed)
    basis = [
        sorted(rng.choice(n_players, size=rng.integers(1, 5), replace=False).tolist())
        for _ in range(2 * n_players)
    ]
    game = SOUM.from_basis(n_players, basis, rng.normal(0.0, 1.0, len(basis)).tolist())
    return game, game.marginal_range()


def sparse(n_players: int, seed: int) -> tuple[SOUM, float]:
    game = sparse_soum(n_players, n_large=10, n_basis=n_players // 2, seed=seed)
    return game, game.marginal_range()


GAMES: dict[str, Callable[[], tuple[Game, float]]] = {
    "SOUM (20)": lambda: soum(20, seed=0),
    "SOUM (30)": lambda: soum(30, seed=1),
    "airport (20)": lambda: (
        AirportGame([*np.linspace(0.05, 0.7, 17).round(4), 0.8, 0.9, 1.0]),
        1.0,
    ),
    "voting (21)": lambda: (
        WeightedVotingGame(
            [45, 30, 22, 10, 9, 8, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 2, 1, 1, 1], quota=90
        ),
        1.0,
    ),
    "glove (10+12)": lambda: (GloveGame(10, 12), 1.0),
    "sparse SOUM (200)": lambda: sparse(200, seed=2),
    "digits-cnn conv1:0-11": neuron_game,
}


@dataclass(frozen=True)
class Coverage:
    """One rule on one game, over the seeds (the module docstring defines each figure)."""

    per_player_mean: float
    per_player_worst: float
    simultaneous: float
    width_over_se: float


def exact_values(game: Game) -> np.ndarray:
    closed = getattr(game, "shapley_values", None)
    return closed() if callable(closed) else ns.exact_shapley(game).values


def measure(
    game: Game, value_range: float, seeds: range, n_permutations: int
) -> dict[str, Coverage]:
    """Coverage of every rule in :data:`RULES` on ``game`` (its range ``value_range``)."""
    truth = exact_values(game)
    estimates: list[np.ndarray] = []
    covered: dict[str, list[np.ndarray]] = {name: [] for name in RULES}
    halves: dict[str, list[np.ndarray]] = {name: [] for name in RULES}
    for seed in seeds:
        result = ns.permutation_shapley(
            game, n_permutations=n_permutations, seed=seed, value_range=value_range
        )
        stats = result.stats()
        estimates.append(result.values)
        for name, rule in RULES.items():
            rule = IntervalRule(rule.bound, rule.delta, value_range, rule.union_bound)
            half, _ = rule.halfwidth(stats)
            halves[name].append(half)
            covered[name].append(np.abs(result.values - truth) <= half)
    true_se = np.std(np.array(estimates), axis=0, ddof=1)
    out = {}
    for name in RULES:
        hits = np.array(covered[name])  # (seeds, players)
        # The median over players: a player whose marginal hardly varies has a tiny true
        # standard error, and a finite-sample width that cannot shrink below R ln(1/delta) / t.
        spread = true_se > 0
        ratio = np.median(np.mean(np.array(halves[name])[:, spread], axis=0) / true_se[spread])
        out[name] = Coverage(
            per_player_mean=float(hits.mean()),
            per_player_worst=float(hits.mean(axis=0).min()),
            simultaneous=float(hits.all(axis=1).mean()),
            width_over_se=float(ratio),
        )
    return out


# -- TMAB's top k on the same games ------------------------------------------------------------

# k per game (default 3): where the k-th and (k+1)-th values are apart (glove: the 10 scarcer
# left gloves; the 12 filters: 0.0039 against 0.0023, the 3rd and 4th are 0.0001 apart).
TOP_K = {"glove (10+12)": 10, "digits-cnn conv1:0-11": 6}


def tmab_cell(
    game: Game, value_range: float, k: int, bound: str, seeds: range, tol: float = 1e-3
) -> tuple[int, float]:
    """(wrong runs, mean evaluations) of ``tmab_shapley`` with ``bound`` and a valid range.

    Wrong: the run did not separate, or an excluded player's value exceeds a returned one's by
    more than 2 tol (what the anytime guarantee rules out)."""
    truth = exact_values(game)
    wrong, evaluations = 0, []
    for seed in seeds:
        result = ns.tmab_shapley(
            game, k=k, delta=DELTA, tol=tol, bound=bound, value_range=value_range, seed=seed
        )
        top = result.top_indices(k)
        rest = np.setdiff1d(np.arange(len(truth)), top)
        missed = bool(truth[rest].max() > truth[top].min() + 2 * tol)
        wrong += result.stop_reason != "separated" or missed
        evaluations.append(result.n_evaluations)
    return wrong, float(np.mean(evaluations))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--permutations", type=int, default=50)
    parser.add_argument("--tmab-seeds", type=int, default=100)
    args = parser.parse_args()
    print(
        f"| Game | Rule | Per player (mean) | Per player (worst) | Simultaneous | "
        f"Half-width / true SE |  ({args.seeds} seeds, {args.permutations} permutations, "
        f"nominal {1 - DELTA:g})"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, make in GAMES.items():
        started = time.perf_counter()
        game, value_range = make()
        cells = measure(game, value_range, range(args.seeds), args.permutations)
        for rule, cell in cells.items():
            print(
                f"| {name} | {rule} | {cell.per_player_mean:.3f} | {cell.per_player_worst:.3f} | "
                f"{cell.simultaneous:.3f} | {cell.width_over_se:.1f} |",
                flush=True,
            )
        print(f"<!-- {name}: {time.perf_counter() - started:.0f} s -->", flush=True)
    seeds = range(args.tmab_seeds)
    print()
    print(f"| Game | k | Bound | Wrong top k (of {len(seeds)}) | Mean evaluations |")
    print("| --- | --- | --- | --- | --- |")
    for name, make in GAMES.items():
        game, value_range = make()
        k = TOP_K.get(name, 3)
        for bound in ("bernstein", "anytime"):
            started = time.perf_counter()
            wrong, evaluations = tmab_cell(game, value_range, k, bound, seeds)
            print(
                f"| {name} | {k} | {bound} | {wrong} | {evaluations:,.0f} |  "
                f"<!-- {time.perf_counter() - started:.0f} s -->",
                flush=True,
            )


if __name__ == "__main__":
    main()
