"""DASP's first probabilistic layer: the exact moments of a first-layer pre-activation under a
random coalition of k players drawn without replacement from the N - 1 others, checked against
10,000 sampled coalitions at several k (as the DASP supplement does)."""

import numpy as np
import pytest
import torch
from torch import nn

from neuronshapley.features.dasp import _first_layer, first_layer_moments

N_SAMPLES = 10_000


def moments_at(layer, x, reference, player, k):
    """The mean and variance DASP gives player ``player``'s coalitions of size k (without it)."""
    n = x.numel()
    base, _, mu, spread = first_layer_moments(layer, [], x, reference, torch.arange(n), n)
    return base[0] + k * mu[player], k * spread[player] * (n - 1 - k) / (n - 2)


def sampled_moments(layer, x, reference, player, k, rng):
    """Mean, variance and standard errors of the pre-activations over sampled coalitions."""
    n = x.numel()
    others = np.delete(np.arange(n), player)
    keys = rng.random((N_SAMPLES, n - 1)).argsort(axis=1)[:, :k]
    masks = np.zeros((N_SAMPLES, n), dtype=bool)
    np.put_along_axis(masks, others[keys], True, axis=1)
    mask = torch.from_numpy(masks).reshape(N_SAMPLES, *x.shape)
    z = _first_layer(layer, torch.where(mask, x, reference), bias=True)
    mean, var = z.mean(0), z.var(0)
    fourth = (z - mean).pow(4).mean(0)
    return mean, var, (var / N_SAMPLES).sqrt(), ((fourth - var.square()) / N_SAMPLES).sqrt()


LAYERS = {
    "linear": (lambda: nn.Linear(12, 5), (12,)),
    "conv1d": (lambda: nn.Conv1d(1, 3, 3, stride=2, padding=2, dilation=2), (1, 12)),
    "conv2d": (lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1), (2, 4, 4)),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("k", [1, 4, 9])
def test_first_layer_moments_match_10000_sampled_coalitions(kind: str, k: int) -> None:
    torch.manual_seed(3)
    make, shape = LAYERS[kind]
    layer = make().double()
    x, reference = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    player = 2
    with torch.no_grad():
        mean, var = moments_at(layer, x, reference, player, k)
        mc_mean, mc_var, se_mean, se_var = sampled_moments(
            layer, x, reference, player, k, np.random.default_rng(k)
        )
    # Five standard errors of the Monte Carlo estimates (plus rounding for outputs whose
    # receptive field holds no sampled player: there both sides are exact).
    assert torch.all((mean - mc_mean).abs() <= 5 * se_mean + 1e-9)
    assert torch.all((var - mc_var).abs() <= 5 * se_var + 1e-9)


def test_the_finite_population_factor_makes_the_full_coalition_deterministic() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(6, 2).double()
    x, reference = torch.randn(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
    with torch.no_grad():
        mean, var = moments_at(layer, x, reference, player=0, k=5)
        others_only = torch.where(torch.arange(6) == 0, reference, x)
        expected = layer(others_only)
    torch.testing.assert_close(mean, expected)
    torch.testing.assert_close(var, torch.zeros(2, dtype=torch.float64))
