"""Issue 17, item 4: truncation's bias, before and after (docs/statistics.md, "Truncation").

Run ``python -m benchmarks.truncation [--seeds N]`` (also part of ``python -m
benchmarks.statistics``). The games and the run helper are shared with
tests/estimators/test_truncation_guarantees.py.
"""

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import neuronshapley as ns
from neuronshapley.games import SOUM
from neuronshapley.results.bounds import IntervalRule

DELTA = 0.1
N_PERMUTATIONS = 200


def signed_soum() -> SOUM:
    """20 players, 30 terms of order 1-3 with Normal(0, 1) coefficients (``SOUM(20, 30,
    seed=2)``): marginals of either sign, V(N) = -2.8, V(empty) = 0."""
    return SOUM(20, 30, seed=2)


def monotone_soum() -> SOUM:
    """The same terms with |coefficients|: a monotone game (adding a player never lowers the
    value), the case where the tails' bound holds."""
    game = signed_soum()
    return SOUM.from_basis(20, game.basis, np.abs(game.coefficients))


GAMES: dict[str, Callable[[], SOUM]] = {"signed": signed_soum, "monotone": monotone_soum}


@dataclass
class Runs:
    """``truncated_shapley`` over seeds: per seed and player, values, standard errors, the
    interval as printed before issue 17 (the rule's around the values) and as printed now."""

    values: np.ndarray
    stderr: np.ndarray
    plain_low: np.ndarray
    plain_high: np.ndarray
    low: np.ndarray
    high: np.ndarray
    evaluations: np.ndarray
    seconds: float

    def bias_in_standard_errors(self, truth: np.ndarray) -> float:
        """Largest |mean over seeds - truth| over players, in units of one run's standard
        error (the audit's measure: how far a single run's interval is off)."""
        bias = np.abs(self.values.mean(axis=0) - truth)
        return float(np.max(bias / np.maximum(self.stderr.mean(axis=0), 1e-12)))

    def mean_off_in_its_standard_errors(self, truth: np.ndarray) -> np.ndarray:
        """Per player, |mean over seeds - truth| over the standard error of that mean (0 for a
        player off by rounding only, such as a null player's sums of +-0 marginals)."""
        spread = self.values.std(axis=0, ddof=1) / np.sqrt(len(self.values))
        bias = np.abs(self.values.mean(axis=0) - truth)
        return np.where(bias <= 1e-12, 0.0, bias / np.maximum(spread, 1e-300))

    def misses(self, truth: np.ndarray, *, plain: bool) -> np.ndarray:
        """Per player, the seeds whose interval misses the true value (by more than rounding:
        a null player's marginals are +-1e-17, not 0, and so are its interval's ends)."""
        low, high = (self.plain_low, self.plain_high) if plain else (self.low, self.high)
        return np.sum((truth < low - 1e-12) | (truth > high + 1e-12), axis=0)


def truncation_runs(
    make_game: Callable[[], SOUM],
    seeds: range,
    *,
    truncation: float | None = 0.1,
    continue_probability: float | None = None,
    bound: str = "normal",
    n_permutations: int = N_PERMUTATIONS,
) -> Runs:
    rows: dict[str, list[np.ndarray]] = {
        key: [] for key in ("values", "stderr", "plain_low", "plain_high", "low", "high")
    }
    evaluations, started = [], time.perf_counter()
    rule = IntervalRule(bound, DELTA, None)
    for seed in seeds:
        result = ns.truncated_shapley(
            make_game(),
            n_permutations=n_permutations,
            truncation=truncation,
            continue_probability=continue_probability,
            bound=bound,
            delta=DELTA,
            seed=seed,
        )
        half, _ = rule.halfwidth(result.stats())
        rows["values"].append(result.values)
        rows["stderr"].append(result.stderr)
        rows["plain_low"].append(result.values - half)
        rows["plain_high"].append(result.values + half)
        rows["low"].append(result.ci_low)
        rows["high"].append(result.ci_high)
        evaluations.append(result.n_evaluations)
    arrays = {key: np.array(value) for key, value in rows.items()}
    return Runs(**arrays, evaluations=np.array(evaluations), seconds=time.perf_counter() - started)


def report(seeds: range) -> None:
    """The rows of docs/statistics.md's truncation table."""
    n = len(seeds)
    for name, make_game in GAMES.items():
        truth = make_game().shapley_values()
        untruncated = truncation_runs(make_game, seeds, truncation=None)
        full_cost = untruncated.evaluations.mean()
        for label, p in (("plain", None), ("p=0.5", 0.5), ("p=0.2", 0.2)):
            runs = truncation_runs(make_game, seeds, continue_probability=p)
            saved = 1.0 - runs.evaluations.mean() / full_cost
            plain = runs.misses(truth, plain=True)
            now = runs.misses(truth, plain=False)
            print(
                f"{name:8s} {label:6s} bias {runs.bias_in_standard_errors(truth):5.1f} se "
                f"(mean over seeds off by up to "
                f"{runs.mean_off_in_its_standard_errors(truth).max():5.1f} of its se); "
                f"normal coverage before {1 - plain.sum() / (n * len(truth)):.3f} "
                f"(worst player {1 - plain.max() / n:.2f}), printed now "
                f"{1 - now.sum() / (n * len(truth)):.3f} (worst {1 - now.max() / n:.2f}); "
                f"evaluations {runs.evaluations.mean():,.0f} of {full_cost:,.0f} "
                f"untruncated ({100 * saved:.1f}% saved; {runs.seconds:.0f} s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=200)
    report(range(parser.parse_args().seeds))


if __name__ == "__main__":
    main()
