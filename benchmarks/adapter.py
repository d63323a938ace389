"""Masked evaluation throughput of NeuronGame on the bundled models, against the plain model.

For each model, one ``NeuronGame.value`` call answers 32 coalitions: random ones (each unit kept
with probability 1/2) and 32 consecutive coalitions of a permutation walk (what the permutation
estimators, TMAB and Captum's sampler ask for), with prefix reuse on and off. Throughput is
coalitions x examples per second; the plain model runs on the same 32 tiled copies of the
evaluation examples under ``torch.inference_mode``. Best of ``repeats`` timings each, one torch
thread.
"""

import time
from collections.abc import Callable

import numpy as np
import torch

import neuronshapley as ns

MODELS = ("digits-cnn", "mnist1d-cnn", "digits-mlp-wide", "adult-mlp")
N_COALITIONS = 32


def _best(function: Callable[..., object], argument: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(argument)
        times.append(time.perf_counter() - started)
    return min(times)


def walk_batch(n_players: int, seed: int = 0) -> np.ndarray:
    """32 consecutive coalitions of a permutation walk, from a third of the way down."""
    ranks = np.random.default_rng(seed).permutation(n_players)
    start = n_players // 3
    return ranks[None, :] >= np.arange(start, start + N_COALITIONS)[:, None]


def rows(repeats: int = 5, adult_examples: int = 2000) -> list[dict[str, object]]:
    """One row per bundled model: ms per coalition and the masked / plain throughput ratios."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out: list[dict[str, object]] = []
    try:
        for name in MODELS:
            model, data = ns.zoo.load(name)
            test = data.test if name != "adult-mlp" else data.test.subset(range(adult_examples))
            reused = ns.NeuronGame(model, data=test, reference=data.reference)
            plain_game = ns.NeuronGame(
                model, data=test, reference=data.reference, reuse_prefixes=False
            )
            random = np.random.default_rng(0).random((N_COALITIONS, reused.n_players)) < 0.5
            walk = walk_batch(reused.n_players)
            tiled = test.x.repeat((N_COALITIONS,) + (1,) * (test.x.dim() - 1))
            with torch.inference_mode():
                model(tiled)
                plain = _best(model, tiled, repeats)
            timings = {}
            for label, game, coalitions in [
                ("random", plain_game, random),
                ("random, reuse", reused, random),
                ("walk", plain_game, walk),
                ("walk, reuse", reused, walk),
            ]:
                game.value(coalitions)  # warm up
                timings[label] = _best(game.value, coalitions, repeats)
            examples = N_COALITIONS * len(test)
            out.append(
                {
                    "model": name,
                    "units": reused.n_players,
                    "examples per coalition": len(test),
                    "plain examples/s": round(examples / plain),
                    "ms per coalition (walk, reuse)": timings["walk, reuse"] * 1e3 / N_COALITIONS,
                    **{f"{label} / plain": plain / seconds for label, seconds in timings.items()},
                }
            )
    finally:
        torch.set_num_threads(threads)
    return out
