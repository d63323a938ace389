"""The games the peer benchmark runs on, and their cached reference values.

Every method in ``benchmarks.peers`` is measured on the same ``NeuronGame``: a bundled model,
metric accuracy, ablation to the mean over the model's reference split, and a fixed slice of its
test split (the whole digits test split for ``digits-cnn`` and the 1,024-neuron
``digits-mlp-wide``; the first 300 of the 1,000 mnist1d test examples, and the first 180 digits
for the 1,152-filter ``digits-cnn-wide``, which keep a coalition affordable on 2 cores).

The reference is a long seeded run of plain permutation sampling on the same game. It takes tens
of minutes, so it is cached in ``benchmarks/reference/<model>.json`` together with the SHA-256 of
the model's weights and the game's settings: a model trained differently on another machine, or
a changed game, makes the cache stale and it is recomputed (``python -m benchmarks.games
--reference MODEL``).
"""

import argparse
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import neuronshapley as ns

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
REFERENCE_SEED = 20_201_121


@dataclass(frozen=True)
class BenchGame:
    """One game of the benchmark: which model, how many test examples, how long a reference."""

    model: str
    n_examples: int
    reference_permutations: int


GAMES = {
    "digits-cnn": BenchGame("digits-cnn", 360, 1000),
    "mnist1d-cnn": BenchGame("mnist1d-cnn", 300, 600),
    "digits-mlp-wide": BenchGame("digits-mlp-wide", 360, 200),
    # Half the digits test split: a coalition of the 1,152 filters costs about 9 times one of
    # digits-cnn per example, and the whole split would double the hours of its reference.
    "digits-cnn-wide": BenchGame("digits-cnn-wide", 180, 100),
}


def build(name: str, **options: Any) -> ns.NeuronGame:
    """The ``NeuronGame`` of benchmark game ``name``."""
    spec = GAMES[name]
    model, data = ns.zoo.load(spec.model)
    test = data.test.subset(torch.arange(spec.n_examples))
    return ns.NeuronGame(model, data=test, reference=data.reference, **options)


def weights_digest(game: ns.NeuronGame) -> str:
    """SHA-256 of the model's parameters and buffers, in order."""
    digest = hashlib.sha256()
    for name, tensor in game.model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def settings(name: str, game: ns.NeuronGame) -> dict[str, Any]:
    """What the reference depends on: a cache with other settings is stale."""
    return {
        **asdict(GAMES[name]),
        "weights_sha256": weights_digest(game),
        "metric": game.metric.name,
        "ablation": game.ablation,
        "seed": REFERENCE_SEED,
    }


def reference(name: str, game: ns.NeuronGame, *, compute: bool = True) -> dict[str, Any] | None:
    """The cached reference of game ``name`` (computed and cached if stale and ``compute``)."""
    path = REFERENCE_DIR / f"{name}.json"
    wanted = settings(name, game)
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached["settings"] == wanted:
            return cached
        print(f"{path.name}: the cached reference is stale (other weights or settings)")
    if not compute:
        return None
    print(f"computing the reference of {name}: {GAMES[name].reference_permutations} permutations")
    checkpoint = REFERENCE_DIR / f".{name}-checkpoint"
    result = ns.permutation_shapley(
        game,
        n_permutations=GAMES[name].reference_permutations,
        seed=REFERENCE_SEED,
        batch_size=64,
        checkpoint=checkpoint,
        resume=checkpoint if checkpoint.exists() else None,
    )
    cached = {
        "settings": wanted,
        "values": result.values.tolist(),
        "stderr": result.stderr.tolist(),
        "n_evaluations": result.n_evaluations,
        "seconds": result.elapsed_seconds,  # every run of it, when resumed from the checkpoint
        "torch_threads": torch.get_num_threads(),
    }
    REFERENCE_DIR.mkdir(exist_ok=True)
    path.write_text(json.dumps(cached, indent=1) + "\n")
    return cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", choices=sorted(GAMES), required=True)
    args = parser.parse_args()
    game = build(args.reference)
    cached = reference(args.reference, game)
    assert cached is not None
    stderr = np.asarray(cached["stderr"])
    print(f"{args.reference}: {cached['n_evaluations']:,} evaluations, {cached['seconds']:.0f} s")
    print(f"stderr: median {np.median(stderr):.2e}, max {stderr.max():.2e}")


if __name__ == "__main__":
    main()
