"""Block reuse on MiniLM: masked permutation-walk throughput with and without it.

The 72 attention heads of the bundled encoder (``ns.zoo.load("minilm")``, 6 blocks of 12 heads)
valued on a subset of the MEN words. Each walk is the 73 coalitions of one random permutation
(empty to full), answered in ``NeuronGame.value`` calls of ``batch`` consecutive coalitions, as
the permutation estimators ask for them. The same walks go through the game with block reuse
and through the same game with ``reuse_prefixes=False``, alternating by walk so that a change of
the machine's load hits both; the values must agree.

    .venv/bin/python -m benchmarks.block_reuse --n-words 100 --walks 2
"""

import argparse
import os
import time

import numpy as np
import torch

import neuronshapley as ns


def walk(n_players: int, rng: np.random.Generator) -> np.ndarray:
    """The ``n_players + 1`` coalitions of one permutation walk, from the empty one."""
    rows = np.zeros((n_players + 1, n_players), dtype=bool)
    for step, player in enumerate(rng.permutation(n_players), start=1):
        rows[step:, player] = True
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-words", type=int, default=100)
    parser.add_argument("--walks", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    model, words = ns.zoo.load("minilm")
    data = words.game_data("MEN", n_words=arguments.n_words)
    units = ns.units.attention_heads(model)
    games = {
        "block reuse": ns.NeuronGame(model, units, **data),
        "plain": ns.NeuronGame(model, units, reuse_prefixes=False, **data),
    }
    assert games["block reuse"].blocks is not None and games["plain"].blocks is None
    n_players = games["plain"].n_players
    print(
        f"MiniLM, {n_players} heads, {len(games['plain'].data)} words, {arguments.walks} walks "
        f"of {n_players + 1} coalitions in calls of {arguments.batch}, "
        f"{arguments.threads} torch thread(s), load {os.getloadavg()[0]:.2f}"
    )
    rng = np.random.default_rng(0)
    seconds = dict.fromkeys(games, 0.0)
    values: dict[str, list[np.ndarray]] = {name: [] for name in games}
    for game in games.values():  # warm-up: first-call allocations, not measured
        game.value(walk(n_players, np.random.default_rng(99))[: arguments.batch])
    for index in range(arguments.walks):
        rows = walk(n_players, rng)
        order = list(games) if index % 2 == 0 else list(games)[::-1]
        for name in order:
            start = time.perf_counter()
            for first in range(0, len(rows), arguments.batch):
                values[name].append(games[name].value(rows[first : first + arguments.batch]))
            seconds[name] += time.perf_counter() - start
    difference = np.abs(
        np.concatenate(values["block reuse"]) - np.concatenate(values["plain"])
    ).max()
    n_evaluations = arguments.walks * (n_players + 1)
    for name in games:
        print(
            f"{name:12s} {n_evaluations} evaluations in {seconds[name]:.1f} s: "
            f"{n_evaluations / seconds[name]:.2f} evaluations/s"
        )
    print(
        f"speed-up {seconds['plain'] / seconds['block reuse']:.2f}x; largest value difference "
        f"{difference:.2e}; load now {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
