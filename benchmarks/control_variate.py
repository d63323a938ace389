"""Issue 18, "variance reduction": the linearised network as a control variate on a unit game.

The game is the peer benchmark's (``benchmarks.games``: accuracy, mean ablation, the 360 digits
test examples, mnist1d-cnn's first 300, digits-cnn-wide's first 180): ``--game digits-cnn`` (the
default, 160 filters), ``digits-mlp-wide`` (1,024 neurons) or ``digits-cnn-wide`` (1,152
filters).
The surrogate is ``ns.units.linearized_game(game)``: the logits linearised in the unit masks
around the full model (attribution patching), scored with the game's accuracy or with
``"soft_accuracy"`` (a smoothed accuracy). ``control_variate_shapley`` walks the same orders on
both; its diagnostics give, per unit, the variance of the adjusted samples against plain
permutation sampling's on the same walks (``variance_ratio``). Reported:

- the correlation of the game's and the surrogate's marginals, and the variance ratio (median,
  quartiles, and pooled over units: sum of variances, the ratio of the sums of squared errors);
  the same for the top 20 units of the cached reference, or where it is stale (a model trained
  on another machine) of the run itself (the units a ranking needs);
- game evaluations for the same standard error, relative to plain sampling (1 / pooled ratio),
  and the same in time, counting the surrogate's walks (the Jacobian's one-off cost aside);
- where the cached reference (1,000 permutations) is of this model: the sum over units of
  (estimate - reference)^2 minus the reference's own variance, for the adjusted and the plain
  estimate of the same walks (noisy: one seed);
- antithetic walks alone (pair means against single walks, per evaluation) and with the
  control variate on top;
- truncated walks (``truncated_shapley``'s rule, relative threshold 0.1, patience 5) alone and
  with the control variate on top: per evaluation against whole walks, the plain truncated
  samples' variance and the adjusted ones' (the truncation's bias shows in the error against the
  reference only).

The game's values are cached by coalition inside this run, so runs with the same seed share
their game evaluations (the accuracy and soft-accuracy surrogates walk the same orders; the
antithetic run's first walks of each pair are the plain run's first walks).

Run ``python -m benchmarks.control_variate [--game digits-cnn] [--permutations 48] [--seed 0]``
(digits-cnn: under a minute on an idle 2-core machine, 7 minutes at a load of 5-6;
digits-mlp-wide: a walk of 1,025 evaluations costs 7-13 s at a load of 1.5-11, and 64 walks
took 15 minutes); the figures in docs/efficiency.md say which arguments they are from.
"""

import argparse
import os
import time
from typing import Any

import numpy as np
import torch

import neuronshapley as ns
from benchmarks import games
from neuronshapley.games.base import BaseGame
from neuronshapley.typing import CoalitionMatrix, GameValues
from neuronshapley.units import NeuronGame
from neuronshapley.units.linearized import LinearizedGame, linearized_game, soft_accuracy


def build(name: str) -> tuple[NeuronGame, dict[str, Any] | None]:
    """The game ``name`` and its cached reference (``None`` where stale or there is none)."""
    game = games.build(name)
    return game, games.reference(name, game, compute=False)


class CachedGame(BaseGame):
    """The game with its values remembered by coalition (this benchmark only), and the
    seconds spent evaluating new ones."""

    def __init__(self, game: NeuronGame) -> None:
        super().__init__(game.n_players, game.player_names)
        self.game = game
        self.cache: dict[bytes, float] = {}
        self.seconds = 0.0
        self.new = 0

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        keys = [np.packbits(row).tobytes() for row in coalitions]
        missing = [i for i, key in enumerate(keys) if key not in self.cache]
        if missing:
            started = time.perf_counter()
            values = self.game.value(coalitions[missing])
            self.seconds += time.perf_counter() - started
            self.new += len(missing)
            for i, value in zip(missing, values, strict=True):
                self.cache[keys[i]] = float(value)
        return np.array([self.cache[key] for key in keys])

    def fingerprint(self) -> str:
        return self.game.fingerprint()


def summary(result: ns.ShapleyResult, top: np.ndarray) -> dict[str, Any]:
    """Correlation and variance ratios of one run, over all units and the top ones."""
    diagnostics = result.diagnostics
    plain = np.asarray(diagnostics["plain_variance"])
    adjusted = result.variance
    correlation = np.asarray(diagnostics["correlation"])
    ratio = np.asarray(diagnostics["variance_ratio"])
    live = plain > 0  # dead units: no variance to reduce
    return {
        "correlation": float(np.median(correlation[live])),
        "ratio_quartiles": np.percentile(ratio[live], [25, 50, 75]).tolist(),
        "pooled": float(adjusted.sum() / plain.sum()),
        "pooled_top": float(adjusted[top].sum() / plain[top].sum()),
        "plain_variance_sum": float(plain.sum()),
        "live": int(live.sum()),
    }


def reference_check(
    result: ns.ShapleyResult, reference: dict[str, Any] | None
) -> tuple[float, float] | None:
    """Sum of (estimate - reference)^2 minus the reference's variance: adjusted, plain."""
    if reference is None:
        return None
    values = np.asarray(reference["values"])
    noise = float((np.asarray(reference["stderr"]) ** 2).sum())
    plain = np.asarray(result.diagnostics["plain_values"])
    return (
        float(((result.values - values) ** 2).sum()) - noise,
        float(((plain - values) ** 2).sum()) - noise,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", choices=sorted(games.GAMES), default="digits-cnn")
    parser.add_argument("--permutations", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    m = args.permutations
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    game, reference = build(args.game)
    started = time.perf_counter()
    accuracy = linearized_game(game)
    jacobian_seconds = time.perf_counter() - started
    soft = LinearizedGame(game, accuracy.outputs, accuracy.jacobian, 0.0, soft_accuracy())
    cached = CachedGame(game)
    runs = {}
    for name, surrogate, antithetic, truncation in (
        ("accuracy", accuracy, False, None),
        ("soft_accuracy", soft, False, None),
        ("soft_accuracy, antithetic", soft, True, None),
        ("soft_accuracy, truncated", soft, False, 0.1),
    ):
        before_seconds, before_new = cached.seconds, cached.new
        result = ns.control_variate_shapley(
            cached,
            surrogate,
            m,
            antithetic=antithetic,
            truncation=truncation,
            seed=args.seed,
            # Truncation shares batches among walks: small ones waste less past a death.
            batch_size=1024 if truncation is None else 64,
        )
        runs[name] = (result, cached.seconds - before_seconds, cached.new - before_new)
    # The cost of a walk on each game, from the first run (every coalition new there).
    first, game_seconds, new = runs["accuracy"]
    # The top 20 of the reference, or (a reference of other weights is stale) of this run.
    ranked = first.values if reference is None else np.asarray(reference["values"])
    top = np.argsort(ranked)[::-1][:20]
    game_per_walk = game_seconds / m
    surrogate_walks = int(first.params["surrogate_permutations"]) + m
    surrogate_per_walk = float(first.diagnostics["surrogate_seconds"]) / surrogate_walks
    print(
        f"{args.game} ({game.n_players} units), {m} walks (seed {args.seed}): Jacobian "
        f"{jacobian_seconds:.1f} s ({jacobian_seconds / game_per_walk:.1f} game walks); a walk "
        f"costs {game_per_walk:.2f} s on the game, {surrogate_per_walk * 1e3:.1f} ms on the "
        f"surrogate ({game_per_walk / surrogate_per_walk:.0f}x less); {new:,} game evaluations"
    )
    print(
        "| surrogate | median corr. | variance ratio (quartiles) | pooled | pooled, top 20 | "
        "game evaluations for the same s.e. | time for the same s.e. | "
        "sum sq. error vs reference: adjusted / plain |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    plain_single = summary(first, top)["plain_variance_sum"]
    for name, (result, _, _) in runs.items():
        row = summary(result, top)
        # The surrogate's walks (paired and alone) priced against the game's.
        extra = surrogate_walks * surrogate_per_walk / (m * game_per_walk)
        check = reference_check(result, reference)
        checked = "n/a" if check is None else f"{check[0]:.2e} / {check[1]:.2e}"
        quartiles = ", ".join(f"{q:.2f}" for q in row["ratio_quartiles"])
        print(
            f"| {name} | {row['correlation']:.2f} | {quartiles} | {row['pooled']:.2f} | "
            f"{row['pooled_top']:.2f} | {1 / row['pooled']:.2f}x fewer | "
            f"{1 / (row['pooled'] * (1 + extra)):.2f}x less | {checked} |"
        )
        if result.params["antithetic"]:
            # A pair's mean costs two walks: per walk its variance counts twice.
            alone = 2 * row["plain_variance_sum"] / plain_single
            print(
                f"antithetic alone: {1 / alone:.2f}x fewer evaluations than single walks; with "
                f"the control variate on top: {1 / (alone * row['pooled']):.2f}x"
            )
        if result.params["truncation"] is not None:
            # Per evaluation: a truncated walk costs less than a whole one.
            cost = (result.n_evaluations - 2) / (first.n_evaluations - 2)
            alone = cost * row["plain_variance_sum"] / plain_single
            print(
                f"truncated alone: {cost:.2f} of a whole walk's evaluations "
                f"({result.diagnostics['n_walks_truncated']} of {m} walks truncated), "
                f"{1 / alone:.2f}x fewer evaluations than whole walks for the same variance "
                f"(bias aside); with the control variate on top: "
                f"{1 / (alone * row['pooled']):.2f}x"
            )
    surrogate_seconds = sum(float(r.diagnostics["surrogate_seconds"]) for r, _, _ in runs.values())
    print(
        f"seconds: {time.perf_counter() - started:.0f} in all: the game {cached.seconds:.0f} "
        f"({cached.new:,} evaluations), the surrogates {surrogate_seconds:.0f} ({len(runs)} runs, "
        f"{len(runs) * surrogate_walks} walks), the Jacobian {jacobian_seconds:.1f}; load average "
        f"{os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
