"""Masked evaluation throughput of NeuronGame on the bundled models, against the plain model.

For each model: 32 coalitions (each unit kept with probability 1/2) evaluated by one
``NeuronGame.value`` call, against the plain model run on the same 32 tiled copies of the
evaluation examples under ``torch.inference_mode``; best of ``repeats`` timings each.
"""

import time
from collections.abc import Callable

import numpy as np
import torch

import neuronshapley as ns

MODELS = ("digits-cnn", "mnist1d-cnn", "adult-mlp")
N_COALITIONS = 32


def _best(function: Callable[..., object], argument: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(argument)
        times.append(time.perf_counter() - started)
    return min(times)


def rows(repeats: int = 5, adult_examples: int = 2000) -> list[dict[str, object]]:
    """One row per bundled model: ms per coalition, examples/s masked and plain, their ratio."""
    out: list[dict[str, object]] = []
    for name in MODELS:
        model, data = ns.zoo.load(name)
        test = data.test if name != "adult-mlp" else data.test.subset(range(adult_examples))
        game = ns.NeuronGame(model, data=test, reference=data.reference)
        coalitions = np.random.default_rng(0).random((N_COALITIONS, game.n_players)) < 0.5
        game.value(coalitions)  # warm up
        masked = _best(game.value, coalitions, repeats)
        tiled = test.x.repeat((N_COALITIONS,) + (1,) * (test.x.dim() - 1))
        with torch.inference_mode():
            model(tiled)
            plain = _best(model, tiled, repeats)
        examples = N_COALITIONS * len(test)
        out.append(
            {
                "model": name,
                "units": game.n_players,
                "examples per coalition": len(test),
                "ms per coalition": masked * 1e3 / N_COALITIONS,
                "masked examples/s": round(examples / masked),
                "plain examples/s": round(examples / plain),
                "masked / plain": plain / masked,
            }
        )
    return out
