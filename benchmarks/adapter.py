"""Masked evaluation throughput of NeuronGame on the bundled models, against the plain model.

For each model, one ``NeuronGame.value`` call answers 32 coalitions: random ones (each unit kept
with probability 1/2) and 32 consecutive coalitions of a permutation walk (what the permutation
estimators, TMAB and Captum's sampler ask for), with prefix reuse on and off. Throughput is
coalitions x examples per second; the plain model runs on the same 32 tiled copies of the
evaluation examples under ``torch.inference_mode``, in batches of the size it runs fastest at
(among ``PLAIN_BATCHES`` and all at once: on CPU, batches that fall out of the caches run up to
2x slower). Best of ``repeats`` timings each, one torch thread.
"""

import time
from collections.abc import Callable

import numpy as np
import torch

import neuronshapley as ns

MODELS = ("digits-cnn", "mnist1d-cnn", "digits-mlp-wide", "adult-mlp")
N_COALITIONS = 32
PLAIN_BATCHES = (64, 256, 1024, 4096)


def _best(function: Callable[..., object], argument: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(argument)
        times.append(time.perf_counter() - started)
    return min(times)


def _fastest_plain(model: torch.nn.Module, tiled: torch.Tensor, repeats: int) -> tuple[float, int]:
    """Seconds for the plain model on ``tiled`` at its fastest batch size, and that size."""
    timings = {}
    with torch.inference_mode():
        for batch in [size for size in PLAIN_BATCHES if size < len(tiled)] + [len(tiled)]:

            def run(inputs: torch.Tensor, batch: int = batch) -> None:
                for part in inputs.split(batch):
                    model(part)

            run(tiled)  # warm up
            timings[batch] = _best(run, tiled, repeats)
    batch = min(timings, key=timings.__getitem__)
    return timings[batch], batch


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
            plain, plain_batch = _fastest_plain(model, tiled, repeats)
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
                    "plain batch": plain_batch,
                    "ms per coalition (walk, reuse)": timings["walk, reuse"] * 1e3 / N_COALITIONS,
                    **{f"{label} / plain": plain / seconds for label, seconds in timings.items()},
                }
            )
    finally:
        torch.set_num_threads(threads)
    return out
