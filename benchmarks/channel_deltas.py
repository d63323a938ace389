"""Channel deltas (``units/channel_deltas.py``): whole permutation walks with and without them.

On each benchmark game (``benchmarks.games``) and adult-mlp (2,000 test examples), ``--walks``
permutation walks (empty to full), answered in ``NeuronGame.value`` calls of 64 consecutive
coalitions as the permutation estimators ask for them, with one torch thread. Each walk runs
through the game with channel deltas and through the same game
without them (prefix reuse alone), alternating, so that a change of the machine's load hits
both; the values of the two must agree to float32 rounding. Deltas are forced on every hooked
convolution and ``Linear`` after the first (``MIN_MACS_PER_INPUT = 0``), to show where they pay;
the column "by default" names the layers a game uses them on (those wide enough,
``pays_for_deltas``). ``--examples 360`` also runs digits-cnn-wide on all 360 digits test
examples (the peer benchmark uses 180).

Run ``python -m benchmarks.channel_deltas [--walks 2] [--examples 360]``; the table in
docs/efficiency.md says which arguments it is from.
"""

import argparse
import time

import numpy as np
import torch

import neuronshapley as ns
from benchmarks import games
from benchmarks.run import table
from neuronshapley.units import channel_deltas

BATCH = 64
DEFAULT_MIN_MACS = channel_deltas.MIN_MACS_PER_INPUT


def walk(n_players: int, seed: int) -> np.ndarray:
    """The n + 1 coalitions of one permutation walk, from the empty set to the full one."""
    order = np.random.default_rng(seed).permutation(n_players)
    ranks = np.empty(n_players, dtype=np.intp)
    ranks[order] = np.arange(n_players)
    return ranks[None, :] < np.arange(n_players + 1)[:, None]


def timed(game: ns.NeuronGame, coalitions: np.ndarray) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    values = np.concatenate(
        [game.value(coalitions[i : i + BATCH]) for i in range(0, len(coalitions), BATCH)]
    )
    return values, time.perf_counter() - started


def row(name: str, game: ns.NeuronGame, walks: int) -> dict[str, object]:
    with_deltas = game._delta_modules
    seconds = {True: 0.0, False: 0.0}
    largest = 0.0
    n = 0
    for seed in range(walks):
        coalitions = walk(game.n_players, seed)
        values = {}
        for on in (True, False) if seed % 2 == 0 else (False, True):
            game._delta_modules = with_deltas if on else {}
            values[on], spent = timed(game, coalitions)
            seconds[on] += spent
        game._delta_modules = with_deltas
        largest = max(largest, float(np.abs(values[True] - values[False]).max()))
        n += len(coalitions)
    return {
        "game": name,
        "units": game.n_players,
        "examples": len(game.data),
        "layers on deltas": ", ".join(game.layers[i].path for i in with_deltas) or "none",
        "by default": ", ".join(
            game.layers[i].path
            for i, module in with_deltas.items()
            if module.weight.numel() // module.weight.shape[1] >= DEFAULT_MIN_MACS
        )
        or "none",
        "ms per coalition, deltas": round(seconds[True] / n * 1e3, 1),
        "prefix reuse alone": round(seconds[False] / n * 1e3, 1),
        "speed-up": f"{seconds[False] / seconds[True]:.2f}x",
        "largest value difference": f"{largest:.1e}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walks", type=int, default=2)
    parser.add_argument("--examples", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    channel_deltas.MIN_MACS_PER_INPUT = 0
    rows = [row(name, games.build(name), args.walks) for name in games.GAMES]
    model, data = ns.zoo.load("adult-mlp")  # a narrow MLP (64 + 64), as in benchmarks.adapter
    adult = ns.NeuronGame(model, data=data.test.subset(range(2000)), reference=data.reference)
    rows.append(row("adult-mlp", adult, args.walks))
    if args.examples is not None:
        model, data = ns.zoo.load("digits-cnn-wide")
        test = data.test.subset(torch.arange(args.examples))
        game = ns.NeuronGame(model, data=test, reference=data.reference)
        rows.append(row("digits-cnn-wide", game, args.walks))
    print(table(rows))


if __name__ == "__main__":
    main()
