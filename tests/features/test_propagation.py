"""Each moment-propagation rule of DASP against Monte Carlo moments of Gaussian inputs.

Inputs are independent Gaussians with given means and variances; 20,000 samples go through the
layer itself. Layers that are linear in their input (Linear, Conv, AvgPool, BatchNorm) and the
rectifiers and a max over two are exact under independence, so the propagated moments must lie
within five Monte Carlo standard errors of the sampled ones.
"""

import pytest
import torch
from torch import nn

from neuronshapley.features.dasp import propagate

N_SAMPLES = 20_000


def batch_norm() -> nn.Module:
    layer = nn.BatchNorm2d(3)
    layer.running_mean.uniform_(-1, 1)
    layer.running_var.uniform_(0.5, 2)
    nn.init.uniform_(layer.weight, 0.5, 2)
    nn.init.uniform_(layer.bias, -1, 1)
    return layer.eval()


LAYERS = {
    "linear": (lambda: nn.Linear(6, 4), (6,)),
    "conv1d": (lambda: nn.Conv1d(2, 3, 3, stride=2, padding=1, dilation=2), (2, 9)),
    "conv2d": (lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1, dilation=1), (2, 5, 5)),
    "relu": (nn.ReLU, (8,)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), (8,)),
    "maxpool1d_pairs": (lambda: nn.MaxPool1d(2), (2, 8)),
    "maxpool2d_pairs_padded": (lambda: nn.MaxPool2d((1, 2), padding=(0, 1)), (2, 3, 3)),
    "avgpool1d": (lambda: nn.AvgPool1d(3, stride=2, padding=1), (2, 7)),
    "avgpool2d_no_pad_count": (
        lambda: nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        (2, 3, 3),
    ),
    "batchnorm2d": (batch_norm, (3, 2, 2)),
    "batchnorm1d": (lambda: nn.BatchNorm1d(4).eval(), (4,)),
    "flatten": (nn.Flatten, (2, 3)),
    "dropout_in_eval": (lambda: nn.Dropout(0.5).eval(), (5,)),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_propagated_moments_match_monte_carlo(kind: str) -> None:
    torch.manual_seed(1)
    make, shape = LAYERS[kind]
    layer = make().double().eval()
    mean = torch.randn(1, *shape, dtype=torch.float64)
    var = torch.rand(1, *shape, dtype=torch.float64) * 2 + 0.1
    with torch.no_grad():
        out_mean, out_var = propagate([layer], (mean, var))
        samples = layer(mean + var.sqrt() * torch.randn(N_SAMPLES, *shape, dtype=torch.float64))
    mc_mean, mc_var = samples.mean(0), samples.var(0)
    se_mean = (mc_var / N_SAMPLES).sqrt()
    se_var = (((samples - mc_mean).pow(4).mean(0) - mc_var.square()) / N_SAMPLES).sqrt()
    assert out_mean.shape == (1, *samples.shape[1:])
    assert torch.all((out_mean[0] - mc_mean).abs() <= 5 * se_mean + 1e-12)
    assert torch.all((out_var[0] - mc_var).abs() <= 5 * se_var + 1e-12)


def test_zero_variance_propagates_the_plain_forward_pass() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 2)
    ).double()
    x = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    mean, var = propagate(list(model), (x, torch.zeros_like(x)))
    torch.testing.assert_close(mean, model(x).detach())
    torch.testing.assert_close(var, torch.zeros_like(var))
