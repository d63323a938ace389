"""The games the peer benchmark runs on, and their cached reference values.

Every method in ``benchmarks.peers`` is measured on the same ``NeuronGame``: a bundled model,
metric accuracy, ablation to the mean over the model's reference split, and a fixed slice of its
test split (the whole digits test split for ``digits-cnn`` and the 1,024-neuron
``digits-mlp-wide``; the first 300 of the 1,000 mnist1d test examples, and the first 180 digits
for the 1,152-filter ``digits-cnn-wide``, which keep a coalition affordable on 2 cores).

The reference is a long seeded run of plain permutation sampling on the same game. It takes tens
of minutes, so it is cached in ``benchmarks/reference/<model>.json`` together with the SHA-256 of
the model's weights, the game's settings and its values on 256 fixed probe coalitions. Other
settings make the cache stale. Other weights do too unless the game's values on the probes
agree (``same_game``). A stale reference is recomputed (``python -m benchmarks.games
--reference MODEL``).

The weights themselves are pinned too, in ``benchmarks/reference/<model>.pt``: training is
deterministic on one machine but not across CPUs. Adam amplifies the kernels' last-bit
differences (AVX2 against generic kernels on one machine: mnist1d-cnn's weights differ by up to
0.05, in float64 as much as in float32), and on a new machine two of the four games were no
longer the same game by their probes. With the weights pinned, every machine benchmarks the game
its reference was computed on.
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


def weights_path(name: str) -> Path:
    """Where the pinned weights of game ``name`` are."""
    return REFERENCE_DIR / f"{name}.pt"


def build(name: str, **options: Any) -> ns.NeuronGame:
    """The ``NeuronGame`` of benchmark game ``name``, on its pinned weights where there are."""
    spec = GAMES[name]
    model, data = ns.zoo.load(spec.model)
    if weights_path(name).is_file():
        model.load_state_dict(torch.load(weights_path(name), map_location="cpu", weights_only=True))
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


PROBE_SEED = 20_261_203
N_PROBES = 256


def probe_coalitions(n_players: int) -> np.ndarray:
    """Fixed coalitions the game is checked on: each player in with probability 1/2."""
    return np.random.default_rng(PROBE_SEED).random((N_PROBES, n_players)) < 0.5


def probe_values(game: ns.NeuronGame) -> list[float]:
    """The game's values on the probe coalitions."""
    return game.value(probe_coalitions(game.n_players)).tolist()


def same_game(
    cached: dict[str, Any], wanted: dict[str, Any], game: ns.NeuronGame
) -> tuple[bool, str]:
    """Whether ``game`` (of settings ``wanted``) is the game ``cached`` was computed on, though
    its weights differ; and why not.

    The bundled models are trained on first use; on another CPU their weights differ in the last
    bits, and so does their hash. What the reference depends on is the game's value function:
    it is the same game when its values on the cached probe coalitions agree, all but at most
    1 in 50 exactly and those within one test example (an example whose two top logits tie to
    float32 precision). Such a difference moves a Shapley value by about 1/50 of one example's
    accuracy at most, far below the reference's standard errors.
    """
    if any(cached["settings"].get(k) != v for k, v in wanted.items() if k != "weights_sha256"):
        return False, "other settings"
    if "probe" not in cached:
        return False, "other weights, and no probe values to compare the game on"
    values = np.asarray(probe_values(game))
    differ = np.abs(values - np.asarray(cached["probe"]))
    n_differ = int((differ > 0).sum())
    agree = bool(differ.max() <= 1 / len(game.data) + 1e-12 and n_differ <= len(values) // 50)
    return agree, (
        f"other weights; {n_differ} of {len(values)} probe coalitions differ, by at most "
        f"{differ.max():.4f}"
    )


def pin_weights(name: str, game: ns.NeuronGame) -> None:
    """Store ``game``'s weights as game ``name``'s pinned weights, unless some are pinned."""
    if not weights_path(name).is_file():
        REFERENCE_DIR.mkdir(exist_ok=True)
        torch.save(game.model.state_dict(), weights_path(name))
        print(f"{weights_path(name).name}: the weights of this game are pinned")


def reference(name: str, game: ns.NeuronGame, *, compute: bool = True) -> dict[str, Any] | None:
    """The cached reference of game ``name`` (computed and cached if stale and ``compute``).

    The weights of a game whose reference holds (or was just computed) are pinned if they are
    not yet (``pin_weights``).
    """
    path = REFERENCE_DIR / f"{name}.json"
    wanted = settings(name, game)
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached["settings"] == wanted:
            pin_weights(name, game)
            return cached
        agree, why = same_game(cached, wanted, game)
        if agree:
            print(f"{path.name}: the same game ({why}): the cached reference is kept")
            pin_weights(name, game)
            return cached
        print(f"{path.name}: the cached reference is stale ({why})")
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
        "probe": probe_values(game),
    }
    REFERENCE_DIR.mkdir(exist_ok=True)
    path.write_text(json.dumps(cached, indent=1) + "\n")
    pin_weights(name, game)
    return cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", choices=sorted(GAMES), required=True)
    parser.add_argument(
        "--add-probe",
        action="store_true",
        help="store the probe values in a cached reference of these very weights (one made "
        "before references kept them)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    game = build(args.reference)
    if args.add_probe:
        path = REFERENCE_DIR / f"{args.reference}.json"
        cached = json.loads(path.read_text())
        if cached["settings"] != settings(args.reference, game):
            raise SystemExit(f"{path.name} was computed on other weights or settings: no probe")
        cached["probe"] = probe_values(game)
        path.write_text(json.dumps(cached, indent=1) + "\n")
    cached = reference(args.reference, game)
    assert cached is not None
    stderr = np.asarray(cached["stderr"])
    print(f"{args.reference}: {cached['n_evaluations']:,} evaluations, {cached['seconds']:.0f} s")
    print(f"stderr: median {np.median(stderr):.2e}, max {stderr.max():.2e}")


if __name__ == "__main__":
    main()
