"""Issue 17's cells, re-measured: TMAB's wrong-top-k rate per bound, and the cut-budget mean.

Run ``python -m benchmarks.statistics [--seeds N]``; the figures are in docs/statistics.md.
The games and the run helpers are shared with tests/estimators/test_guarantees.py.
"""

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import neuronshapley as ns
from benchmarks import truncation
from neuronshapley.estimators.bandit import TopKRace
from neuronshapley.estimators.driver import run_rounds, sampling_spec
from neuronshapley.estimators.options import Budget, Persistence, Sampling, Truncation
from neuronshapley.games import AirportGame, Game, WeightedVotingGame
from neuronshapley.results.bounds import IntervalRule

DELTA, K = 0.1, 3


class SquareGame(ns.games.BaseGame):
    """V(S) = |S|^2: every player's value is n (20 for 20 players); marginals 2|S| - 1."""

    def __init__(self, n_players: int = 20) -> None:
        super().__init__(n_players)

    def _value(self, coalitions: np.ndarray) -> np.ndarray:
        return coalitions.sum(axis=1).astype(np.float64) ** 2


def voting() -> WeightedVotingGame:
    """21 players; values 0.306, 0.172, 0.124 | 0.051, ...; marginals in [0, 1]."""
    weights = [45, 30, 22, 10, 9, 8, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 2, 1, 1, 1]
    return WeightedVotingGame(weights, quota=90)


def airport() -> AirportGame:
    """20 players; the top 3 apart by 0.1, 0.05, 0.033; marginals in [0, 1]."""
    return AirportGame([*np.linspace(0.05, 0.7, 17).round(4), 0.8, 0.9, 1.0])


GAMES: dict[str, Callable[[], Game]] = {"voting": voting, "airport": airport}


def tmab_with_rule(game: Game, rule: IntervalRule, seed: int, **options: Any) -> ns.ShapleyResult:
    """``tmab_shapley`` with any interval rule, ``normal`` included (which it refuses)."""
    owner = "tmab_shapley"
    spec = sampling_spec(
        owner,
        game,
        seed,
        None,
        sampling=Sampling.from_arguments(owner, False, 32, 8, None),
        interval=rule.check(owner),
        truncation=Truncation.from_arguments(owner, None, "relative", 5),
        budget=Budget.from_arguments(owner, None, options.get("max_evaluations"), None),
        persistence=Persistence.from_arguments(owner, None, 60.0, None),
    )
    race = TopKRace.from_arguments(owner, game.n_players, K, 1e-3, "top", "midpoint", True)
    return run_rounds(spec, lambda state: race.plan(state, spec.interval, 8))


def wrong_top_k(result: ns.ShapleyResult, truth: np.ndarray, tol: float = 1e-3) -> bool:
    """Whether an excluded player beats a returned one by more than 2 tol (what TMAB's
    guarantee rules out), or the run did not separate."""
    top = result.top_indices(K)
    rest = np.setdiff1d(np.arange(len(truth)), top)
    return result.stop_reason != "separated" or bool(truth[rest].max() > truth[top].min() + 2 * tol)


def tmab_cell(name: str, bound: str, seeds: range) -> tuple[int, float, float]:
    """(wrong runs, mean evaluations, seconds) of TMAB with ``bound`` over ``seeds``."""
    truth = GAMES[name]().shapley_values()
    wrong, evaluations, started = 0, [], time.perf_counter()
    for seed in seeds:
        result = tmab_with_rule(GAMES[name](), IntervalRule(bound, DELTA, 1.0), seed)
        wrong += wrong_top_k(result, truth)
        evaluations.append(result.n_evaluations)
    return wrong, float(np.mean(evaluations)), time.perf_counter() - started


def cut_budget_means(
    seeds: range, max_evaluations: int = 30, walks_per_task: int | None = None
) -> np.ndarray:
    """Per seed, the mean value of the players ``permutation_shapley`` measured on |S|^2 under
    ``max_evaluations`` (truth 20; NaN where no player was measured)."""
    means = []
    for seed in seeds:
        result = ns.permutation_shapley(
            SquareGame(), max_evaluations=max_evaluations, seed=seed, walks_per_task=walks_per_task
        )
        seen = result.n_samples > 0
        means.append(result.values[seen].mean() if seen.any() else np.nan)
    return np.array(means)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=200)
    seeds = range(parser.parse_args().seeds)
    for budget, walks_per_task in ((30, None), (30, 1), (500, None)):
        means = cut_budget_means(seeds, budget, walks_per_task)
        measured = means[~np.isnan(means)]
        spread = measured.std(ddof=1) / np.sqrt(len(measured)) if len(measured) > 1 else np.nan
        print(
            f"|S|^2, max_evaluations={budget}, walks_per_task={walks_per_task}: mean "
            f"{measured.mean() if len(measured) else np.nan:.4f} +- {spread:.4f} (truth 20), "
            f"{len(measured)} of {len(means)} seeds measured a player"
        )
    for name in GAMES:
        for bound in ("normal", "bernstein", "anytime"):
            wrong, evaluations, seconds = tmab_cell(name, bound, seeds)
            print(
                f"{name:8s} {bound:9s} wrong top-{K}: {wrong}/{len(seeds)}, "
                f"mean evaluations {evaluations:,.0f} ({seconds:.0f} s)"
            )
    truncation.report(seeds)  # truncation's bias, before and after (benchmarks/truncation.py)


if __name__ == "__main__":
    main()
