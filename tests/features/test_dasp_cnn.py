"""DASP through the layers its original code never supported, end to end against exact values.

Two small CNNs, a Conv1d and a Conv2d one, with strided, padded and dilated convolutions,
BatchNorm in eval mode with non-trivial running statistics (and affine weights), LeakyReLU and
ReLU, max and average pooling: 12 players (single positions, or 2x2 image patches), so the
Shapley values are exact by enumeration of the 4,096 coalitions.

Three checks, from exact to approximate:

- **The sizes where DASP is exact.** At coalition sizes k = 0 and k = N - 1 the first layer's
  variance is zero (the finite-population factor k (M - k) / (M - 1), M = N - 1, vanishes), so
  DASP with ``n_sizes=2`` must equal ``((v({i}) - v({})) + (v(N) - v(N - i))) / 2`` computed by
  the network itself, through every layer. A wrong stride, padding, dilation, BatchNorm or pool
  breaks the equality, which the sabotaged rules below show.
- **Proposition 1 on the same architectures without their nonlinearities**: all sizes, exact.
- **The variances**: with all sizes DASP is an approximation (Gaussian, independent), so its
  error against exact is only bounded by what it was measured to be on these networks
  (normalised RMSE 0.11 and 0.09 averaged over eight inputs; the bound asked is 0.2), and a
  variance path that is cut (the mean-field forward) or wrong in a layer must do clearly worse
  (at least 1.5 times the error; measured 2.3 to 4.1 times).

The networks run in float64, so the exact checks hold to rounding (measured 5e-15).
"""

import importlib
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

import neuronshapley as ns
from neuronshapley.features import FeatureGame, dasp, image_patches

# ``neuronshapley.features.dasp`` is the function (re-exported); the module holds the rules.
dasp_module = importlib.import_module("neuronshapley.features.dasp")

N_EXAMPLES = 8


def batch_norm(layer: nn.Module, generator: torch.Generator) -> nn.Module:
    """Running statistics far from (0, 1): small variances make the scale 2-5, so a variance
    that is not scaled by its square is visibly wrong."""
    with torch.no_grad():
        layer.running_mean.uniform_(-1, 1, generator=generator)
        layer.running_var.uniform_(0.05, 0.3, generator=generator)
        layer.weight.uniform_(0.5, 2, generator=generator)
        layer.bias.uniform_(-0.5, 0.5, generator=generator)
    return layer


def conv2d_net(nonlinear: bool = True) -> nn.Module:
    """(1, 6, 8) -> stride 2, padding 1 -> (4, 3, 4) -> dilation 2, padding 2 -> (6, 3, 4) ->
    max pool 2 -> (6, 1, 2) -> 1x1 conv -> average pool 2, stride 1, padding 1 (no padded
    cells counted) -> (6, 2, 3) -> 36 -> 8 -> 3."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)

    def act(module: nn.Module) -> nn.Module:
        return module if nonlinear else nn.Identity()

    return (
        nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=2, padding=1),
            batch_norm(nn.BatchNorm2d(4), generator),
            act(nn.LeakyReLU(0.1)),
            nn.Conv2d(4, 6, 3, padding=2, dilation=2),
            act(nn.ReLU()),
            nn.MaxPool2d(2) if nonlinear else nn.AvgPool2d(2),
            nn.Conv2d(6, 6, 1),
            act(nn.LeakyReLU(0.2)),
            nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
            nn.Flatten(),
            nn.Linear(36, 8),
            batch_norm(nn.BatchNorm1d(8), generator),
            act(nn.ReLU()),
            nn.Linear(8, 3),
        )
        .double()
        .eval()
    )


def conv1d_net(nonlinear: bool = True) -> nn.Module:
    """(1, 12) -> stride 2, padding 2, dilation 2 -> (4, 6) -> padding 1 -> (6, 6) -> max pool 2
    -> (6, 3) -> average pool 2, stride 1, padding 1 -> (6, 4) -> 24 -> 8 -> 3."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)

    def act(module: nn.Module) -> nn.Module:
        return module if nonlinear else nn.Identity()

    return (
        nn.Sequential(
            nn.Conv1d(1, 4, 3, stride=2, padding=2, dilation=2),
            batch_norm(nn.BatchNorm1d(4), generator),
            act(nn.LeakyReLU(0.1)),
            nn.Conv1d(4, 6, 3, padding=1),
            act(nn.ReLU()),
            nn.MaxPool1d(2) if nonlinear else nn.AvgPool1d(2),
            nn.AvgPool1d(2, stride=1, padding=1, count_include_pad=False),
            nn.Flatten(),
            nn.Linear(24, 8),
            batch_norm(nn.BatchNorm1d(8), generator),
            act(nn.LeakyReLU(0.1)),
            nn.Linear(8, 3),
        )
        .double()
        .eval()
    )


NETS = {
    "conv2d": (conv2d_net, (1, 6, 8), image_patches((1, 6, 8), 2)),
    "conv1d": (conv1d_net, (1, 12), None),
}


def inputs(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(
        N_EXAMPLES, *shape, generator=torch.Generator().manual_seed(100), dtype=torch.float64
    )


def end_sizes_value(game: FeatureGame) -> np.ndarray:
    """((v({i}) - v({})) + (v(N) - v(N - i))) / 2 for every player i, by the network."""
    n = game.n_players
    alone, without = np.eye(n, dtype=bool), ~np.eye(n, dtype=bool)
    ends = np.array([[False] * n, [True] * n])
    v_alone, v_without, (v_empty, v_full) = game.value(alone), game.value(without), game.value(ends)
    return ((v_alone - v_empty) + (v_full - v_without)) / 2


def end_sizes_error(net: nn.Module, shape: tuple[int, ...], groups: object) -> float:
    """The largest gap between DASP at k in {0, N - 1} and the network's own value, over the
    examples, relative to the largest value."""
    gaps, scale = [], []
    for x in inputs(shape):
        game = FeatureGame(net, x, target=0, groups=groups)
        truth = end_sizes_value(game)
        approx = dasp(net, x, target=0, groups=groups, n_sizes=2)
        assert approx.params["sizes"] == [0, game.n_players - 1]
        gaps.append(np.abs(approx.values - truth).max())
        scale.append(np.abs(truth).max())
    return float(max(gaps) / max(scale))


def normalised_rmse(net: nn.Module, shape: tuple[int, ...], groups: object) -> float:
    """DASP (all sizes) against exact: RMSE / root mean square of exact, averaged over inputs."""
    errors = []
    for x in inputs(shape):
        truth = ns.exact_shapley(FeatureGame(net, x, target=0, groups=groups)).values
        approx = dasp(net, x, target=0, groups=groups).values
        errors.append(np.sqrt(np.mean((approx - truth) ** 2) / np.mean(truth**2)))
    return float(np.mean(errors))


Rule = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def sabotage(monkeypatch: pytest.MonkeyPatch, kinds: tuple[type, ...], rule: Rule) -> None:
    for kind in kinds:
        monkeypatch.setitem(dasp_module._RULES, kind, rule)


def one_sided_padding(module, mean, var):  # type: ignore[no-untyped-def]
    """A convolution whose padding all goes to the start (the output keeps its shape)."""
    convolve = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d
    pad: list[int] = []
    for p in reversed(module.padding):
        pad += [2 * p, 0]
    weight = module.weight.double()
    args = (module.stride, 0, module.dilation, module.groups)
    return (
        convolve(F.pad(mean, pad), weight, module.bias.double(), *args),
        convolve(F.pad(var, pad), weight.square(), None, *args),
    )


def batch_norm_without_running_variance(module, mean, var):  # type: ignore[no-untyped-def]
    """BatchNorm that subtracts the running mean but forgets to divide by the running sd."""
    shape = (1, -1) + (1,) * (mean.dim() - 2)
    weight, bias = module.weight.double().reshape(shape), module.bias.double().reshape(shape)
    return (mean - module.running_mean.double().reshape(shape)) * weight + bias, var * weight**2


def stride_at_offset_one(layer, x, bias):  # type: ignore[no-untyped-def]
    """The first layer's windows start one step late: the stride-1 output at 1, 1 + s, ...
    (the same shape on these inputs)."""
    weight = layer.weight.double()
    b = layer.bias.double() if bias else None
    convolve = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
    dense = convolve(x, weight, b, 1, layer.padding, layer.dilation, layer.groups)
    if isinstance(layer, nn.Conv1d):
        return dense[..., 1 :: layer.stride[0]]
    return dense[..., 1 :: layer.stride[0], 1 :: layer.stride[1]]


MEAN_SABOTAGES: dict[str, tuple[tuple[type, ...], Rule]] = {
    "BatchNorm as identity": ((nn.BatchNorm1d, nn.BatchNorm2d), lambda m, mu, v: (mu, v)),
    "BatchNorm without running variance": (
        (nn.BatchNorm1d, nn.BatchNorm2d),
        batch_norm_without_running_variance,
    ),
    "padding on one side": ((nn.Conv1d, nn.Conv2d), one_sided_padding),
    "LeakyReLU as ReLU": ((nn.LeakyReLU,), dasp_module._relu),
}

VARIANCE_SABOTAGES: dict[str, tuple[tuple[type, ...], Rule]] = {
    "variances dropped (mean-field forward)": (
        (nn.ReLU, nn.LeakyReLU),
        lambda m, mu, v: (m(mu), torch.zeros_like(v)),
    ),
    "convolution variance through |w|": (
        (nn.Conv1d, nn.Conv2d),
        lambda m, mu, v: (dasp_module._conv(m, mu, v)[0], dasp_module._conv(m, mu, v)[1].sqrt()),
    ),
}


@pytest.mark.parametrize("name", list(NETS))
def test_dasp_at_the_end_sizes_is_the_network_itself(name: str) -> None:
    """Zero variance at k = 0 and N - 1: every layer's mean rule must be the layer itself
    (measured: 5e-15 of the largest value)."""
    build, shape, groups = NETS[name]
    assert end_sizes_error(build(), shape, groups) < 1e-10


@pytest.mark.parametrize("sabotaged", list(MEAN_SABOTAGES))
@pytest.mark.parametrize("name", list(NETS))
def test_a_wrong_layer_breaks_the_end_sizes_check(
    name: str, sabotaged: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above has the power to see a broken padding, BatchNorm or LeakyReLU (measured
    gaps 0.44 to 1.43 of the largest value; a wrong first-layer stride 1.0 and 1.4)."""
    build, shape, groups = NETS[name]
    sabotage(monkeypatch, *MEAN_SABOTAGES[sabotaged])
    assert end_sizes_error(build(), shape, groups) > 1e-2


@pytest.mark.parametrize("name", list(NETS))
def test_a_first_layer_with_a_wrong_stride_breaks_the_end_sizes_check(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    build, shape, groups = NETS[name]
    monkeypatch.setattr(dasp_module, "_first_layer", stride_at_offset_one)
    assert end_sizes_error(build(), shape, groups) > 1e-2


@pytest.mark.parametrize("name", list(NETS))
def test_dasp_is_exact_on_the_same_layers_without_nonlinearities(name: str) -> None:
    """Proposition 1 of the supplement, with strides, padding, dilation, BatchNorm and average
    pooling in the way."""
    build, shape, groups = NETS[name]
    net = build(nonlinear=False)
    for x in inputs(shape)[:3]:
        truth = ns.exact_shapley(FeatureGame(net, x, target=1, groups=groups)).values
        approx = dasp(net, x, target=1, groups=groups).values
        np.testing.assert_allclose(approx, truth, rtol=0, atol=1e-10 * np.abs(truth).max())


@pytest.mark.parametrize("name", list(NETS))
def test_dasp_approximates_exact_values_and_its_variances_matter(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Measured normalised RMSE: conv2d 0.106, conv1d 0.086; the variance-less forward 0.356
    and 0.198, the convolution with |w| for w^2 0.433 and 0.272."""
    build, shape, groups = NETS[name]
    net = build()
    error = normalised_rmse(net, shape, groups)
    assert error < 0.2
    for kinds, rule in VARIANCE_SABOTAGES.values():
        with monkeypatch.context() as patch:
            sabotage(patch, kinds, rule)
            assert normalised_rmse(net, shape, groups) > 1.5 * error
