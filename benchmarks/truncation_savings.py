"""How much early truncation saves on each bundled model (issue 18: where networks die).

For every bundled model: its ``NeuronGame`` as the peer benchmark builds one (accuracy, ablation to
the mean over the reference split, the first ``--examples`` test examples), and
``truncated_shapley`` with the paper's rule (relative threshold 0.1, patience 5) on ``--walks``
permutations. A walk that never truncates evaluates n - 1 coalitions (n units); the saving is the
share of those a walk did not need. Also reported: how far into the walk the network died (the
removed fraction at truncation, the ``mean_removed_fraction_at_truncation`` diagnostic).

    .venv/bin/python -m benchmarks.truncation_savings [--walks 8] [--examples 360]

The models are trained (deterministically) on first use and cached; the wide ones take minutes.
"""

import argparse
import time

import torch

import neuronshapley as ns
from benchmarks.run import table


def measure(name: str, walks: int, examples: int) -> dict[str, object]:
    """One row: the savings of truncation on bundled model ``name``."""
    model, data = ns.zoo.load(name)
    test = data.test.subset(torch.arange(min(examples, len(data.test))))
    game = ns.NeuronGame(model, data=test, reference=data.reference)
    n = game.n_players
    started = time.perf_counter()
    result = ns.truncated_shapley(
        game, n_permutations=walks, truncation=0.1, seed=0, walks_per_task=None
    )
    seconds = time.perf_counter() - started
    per_walk = (result.n_evaluations - 2) / walks
    fraction = result.diagnostics.get("mean_removed_fraction_at_truncation")
    return {
        "model": name,
        "units": n,
        "V(N)": round(float(result.diagnostics["v_full"]), 4),
        "V(empty)": round(float(result.diagnostics["v_empty"]), 4),
        "walks truncated": f"{result.diagnostics['n_walks_truncated']} of {walks}",
        "died at (removed fraction)": "-" if fraction is None else f"{float(fraction):.2f}",
        "evaluations per walk": round(per_walk, 1),
        "saved": f"{1 - per_walk / (n - 1):.0%}",
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walks", type=int, default=8)
    parser.add_argument("--examples", type=int, default=360)
    parser.add_argument("--models", nargs="+", default=ns.zoo.available())
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(name, args.walks, args.examples) for name in args.models]
    print(table(rows))


if __name__ == "__main__":
    main()
