"""Block reuse on MiniLM: masked permutation-walk throughput with and without it.

The 72 attention heads of the bundled encoder (``ns.zoo.load("minilm")``, 6 blocks of 12 heads)
valued on a subset of the MEN words. Each walk is the 73 coalitions of one random permutation
(empty to full), answered in ``NeuronGame.value`` calls of ``batch`` consecutive coalitions, as
the permutation estimators ask for them. The same walks go through the game with block reuse
and through the same game with ``reuse_prefixes=False``, alternating by walk so that a change of
the machine's load hits both; the values must agree.

    .venv/bin/python -m benchmarks.block_reuse --n-words 100 --walks 3

``make bench`` runs it (:func:`measure`) into docs/benchmarks.md.
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


def measure(
    n_words: int | None = 100,
    walks: int = 3,
    batch: int = 32,
    threads: int = 1,
    memory_budget: int | None = None,
) -> dict[str, object]:
    """One row of the table: evaluations per second with and without block reuse
    (``n_words=None``: all 751 MEN words; ``memory_budget``: NeuronGame's, default 64 MiB)."""
    torch.set_num_threads(threads)
    model, words = ns.zoo.load("minilm")
    data = words.game_data("MEN", n_words=n_words)
    units = ns.units.attention_heads(model)
    games = {
        "block reuse": ns.NeuronGame(model, units, memory_budget=memory_budget, **data),
        "plain": ns.NeuronGame(
            model, units, reuse_prefixes=False, memory_budget=memory_budget, **data
        ),
    }
    if games["block reuse"].blocks is None or games["plain"].blocks is not None:
        raise RuntimeError("block reuse is not on for MiniLM: nothing to measure")
    n_players = games["plain"].n_players
    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    seconds = dict.fromkeys(games, 0.0)
    values: dict[str, list[np.ndarray]] = {name: [] for name in games}
    for game in games.values():  # warm-up: first-call allocations, not measured
        game.value(walk(n_players, np.random.default_rng(99))[:batch])
    for index in range(walks):
        rows = walk(n_players, rng)
        order = list(games) if index % 2 == 0 else list(games)[::-1]
        for name in order:
            start = time.perf_counter()
            for first in range(0, len(rows), batch):
                values[name].append(games[name].value(rows[first : first + batch]))
            seconds[name] += time.perf_counter() - start
    difference = np.abs(
        np.concatenate(values["block reuse"]) - np.concatenate(values["plain"])
    ).max()
    n_evaluations = walks * (n_players + 1)
    return {
        "words": len(games["plain"].data),
        "memory budget (MiB)": (memory_budget or 64 << 20) >> 20,
        "walks": walks,
        "calls of": batch,
        "load (1 min, before/after)": f"{load_before:.1f}/{os.getloadavg()[0]:.1f}",
        "plain evaluations/s": round(n_evaluations / seconds["plain"], 2),
        "block reuse evaluations/s": round(n_evaluations / seconds["block reuse"], 2),
        "speed-up": f"{seconds['plain'] / seconds['block reuse']:.2f}x",
        "largest value difference": float(difference),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-words", type=int, default=100, help="0: every MEN word")
    parser.add_argument("--walks", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-mib", type=int, default=None)
    arguments = parser.parse_args()
    row = measure(
        arguments.n_words or None,
        arguments.walks,
        arguments.batch,
        arguments.threads,
        None if arguments.memory_mib is None else arguments.memory_mib << 20,
    )
    for key, value in row.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
