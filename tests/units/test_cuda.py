"""NeuronGame on a CUDA GPU gives the CPU's values (skipped where no GPU is available)."""

from typing import Any

import numpy as np
import pytest
import torch

from neuronshapley.units import NeuronGame, channel_deltas
from tests.units._models import (
    Snapshot,
    fitted,
    images,
    mean_logit_0,
    random_coalitions,
    walk_batch,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA GPU: torch.cuda.is_available() is False on this machine",
    ),
]


def both(**options: Any) -> tuple[NeuronGame, NeuronGame]:
    model = fitted("cnn")
    data, reference = images(40, seed=1), images(30, seed=2)[0]
    cpu = NeuronGame(model, data=data, reference=reference, **options)
    snapshot = Snapshot(model)
    gpu = NeuronGame(model, data=data, reference=reference, device="cuda", **options)
    snapshot.assert_untouched()  # the model was copied to the GPU, not moved
    assert gpu.model is not model and gpu.device.type == "cuda"
    return cpu, gpu


@pytest.mark.parametrize("metric", ["accuracy", "neg_cross_entropy", mean_logit_0])
@pytest.mark.parametrize("reuse_prefixes", [True, False])
def test_cuda_values_match_the_cpu(metric: Any, reuse_prefixes: bool) -> None:
    cpu, gpu = both(metric=metric, reuse_prefixes=reuse_prefixes, memory_budget=2**20)
    coalitions = random_coalitions(50, cpu.n_players, seed=0)
    np.testing.assert_allclose(gpu.value(coalitions), cpu.value(coalitions), atol=1e-5)


def test_cuda_values_in_contexts_match_the_cpu() -> None:
    cpu, gpu = both(examples_per_walk=16, data_seed=3)
    coalitions = random_coalitions(30, cpu.n_players, seed=1)
    contexts = np.repeat(np.arange(3), 10)
    np.testing.assert_allclose(
        gpu.value_in_contexts(coalitions, contexts),
        cpu.value_in_contexts(coalitions, contexts),
        atol=1e-5,
    )


def test_cuda_game_has_the_cpu_fingerprint() -> None:
    cpu, gpu = both()
    assert gpu.fingerprint() == cpu.fingerprint()


def test_cuda_memory_budget_beyond_the_gpu() -> None:
    with pytest.raises(ValueError, match=r"'memory_budget' .* memory available on cuda:"):
        both(memory_budget=2**62)


@pytest.mark.parametrize("tf32", [False, True])
def test_cuda_walk_batches_match_the_cpu_with_channel_deltas(
    tf32: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without TF32, conv2 runs on channel deltas on the GPU as on the CPU; with it (cuDNN's
    # default) the deltas would round too coarsely and the layer runs the plain way.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    monkeypatch.setattr(channel_deltas, "MIN_MACS_PER_INPUT", 0)  # the tiny conv2 too
    cpu, gpu = both(metric="neg_cross_entropy")
    n = cpu.n_players
    batches = [walk_batch(n, seed=seed, start=2, count=3) for seed in range(4)]
    for coalitions in [*batches, walk_batch(n, seed=0, start=0, count=n + 1)]:
        np.testing.assert_allclose(gpu.value(coalitions), cpu.value(coalitions), atol=1e-5)
