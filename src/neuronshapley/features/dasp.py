"""Deep Approximate Shapley Propagation (DASP; Ancona, Öztireli & Gross, ICML 2019).

The Shapley value of feature i is the mean over coalition sizes k = 0 .. N-1 of
E[f(S + i) - f(S)], S a uniformly random coalition of k of the other N - 1 players (eq. 4 of the
paper). DASP replaces each expectation by one *probabilistic* pass: the random coalition induces
a distribution on the first layer's pre-activations, approximated by independent Gaussians with
the exact mean and variance (below), whose moments are then propagated through the network
(Lightweight Probabilistic Deep Networks, Gast & Roth 2018). On a linear model the propagation is
exact and DASP returns the Shapley values (the supplement's Proposition 1).

**The first probabilistic layer.** A feature outside S takes its baseline value r, so a
first-layer pre-activation (an output of a Linear layer, or one output channel at one position
of a convolution) is ``z_j = c_j + sum_p a_jp s_p`` with ``c_j`` the layer on the baseline,
``s_p`` the indicator of player p in S and ``a_jp`` the layer (without bias) applied to
``(x - r)`` restricted to player p's features. S is k players drawn without replacement from
the population of the M = N - 1 players other than i, so (sampling without replacement)

    E[z_j] = c_j + k * mu_j,    Var[z_j] = k * s2_j * (M - k) / (M - 1),

with ``mu_j`` and ``s2_j`` the mean and (population) variance of ``a_jp`` over the M players
p != i. The factor (M - k)/(M - 1) is the finite-population correction the authors confirmed in
their issue #2 (written there as (N - k)/(N - 1) for a population of N). With S + i the mean
gains ``a_ji`` and the variance is the same. For a convolution, an output's receptive field
holds only some players: the others have ``a_jp = 0`` and stay in the population, so the moments
are exact for a coalition drawn over all N players, whatever the stride, padding or dilation.
``a`` is computed as the layer applied to one masked copy of ``x - r`` per player
(N x first-layer outputs numbers), which also makes groups of features exact.

**Propagation.** Independent Gaussians through Linear and Conv1d/Conv2d (mean through the
layer, variance through the squared weights), ReLU and LeakyReLU (rectified-Gaussian moments),
MaxPool1d/2d (Clark's moments of the max of two Gaussians, applied recursively over the window;
exact for windows of two), AvgPool1d/2d, BatchNorm1d/2d in eval mode, Flatten, Dropout (eval:
identity) and Identity, inside ``nn.Sequential`` containers. Covariances are dropped, as in
the paper.
"""

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from neuronshapley._internal.validation import check_int
from neuronshapley.features.game import FeatureGame
from neuronshapley.results.result import ShapleyResult

_OWNER = "dasp"
_MEMORY_BUDGET = 64 * 2**20

Moments = tuple[torch.Tensor, torch.Tensor]

SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.ReLU,
    nn.LeakyReLU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.Flatten,
    nn.Dropout,
    nn.Identity,
    nn.Sequential,
)
_FIRST_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_SHAPE_ONLY = (nn.Flatten, nn.Dropout, nn.Identity)


class UnsupportedLayerError(ValueError):
    """A layer DASP cannot propagate moments through (named, with the supported list)."""


def dasp(
    model: nn.Module,
    x: Any,
    baseline: Any = "zero",
    target: int | None = None,
    n_sizes: int | None = None,
    *,
    groups: Any = None,
    memory_budget: int = _MEMORY_BUDGET,
) -> ShapleyResult:
    """Approximate Shapley values of the input features of ``x`` by DASP (Ancona et al. 2019).

    The game is :class:`~neuronshapley.features.FeatureGame` with ``output="logit"``: the value
    of player i is the mean over coalition sizes k of E[f(S + i)] - E[f(S)], each expectation one
    probabilistic pass (see the module notes for the first layer and the propagation rules).

    Args:
        model: An ``nn.Sequential`` (nested ones allowed) of the layers in
            ``SUPPORTED_LAYERS`` whose first layer with weights is Linear, Conv1d or Conv2d
            (Flatten, Dropout and Identity may come before it). Never modified.
        x: One example without its batch axis.
        baseline: ``"zero"`` (default), a number, a tensor of x's shape, or a background set
            ``(m, *x.shape)``: then the values are the mean of DASP's over the m baselines (the
            Shapley value is linear in the game, and the game is the mean of m games).
        target: The output explained. Default ``None``: the predicted class.
        n_sizes: How many coalition sizes k to average over: ``None`` (default) all N sizes
            0 .. N-1, or an int in [1, N] for that many sizes evenly spaced over 0 .. N-1
            (rounded to integers).
        groups: Players as groups of features, as for ``FeatureGame``. Default ``None``.
        memory_budget: Bytes of moments one batched pass may hold. Default 64 MiB.

    Returns:
        A ``ShapleyResult`` (``estimator="dasp"``, zero standard errors: DASP is deterministic
        but biased). ``params`` holds ``n_sizes``, the sizes used, the target and the baseline
        kind; ``diagnostics["network_evaluations"]`` the cost as the paper counts it: each
        probabilistic pass (one per player, size and with/without i, times the baseline rows)
        counts as two network evaluations, one for the means and one for the variances.
        ``n_evaluations`` is the same number.

    Raises:
        UnsupportedLayerError: a layer outside ``SUPPORTED_LAYERS`` (named, with its type), a
            model that is not an ``nn.Sequential``, a first layer that is not Linear or Conv.
        ValueError: bad ``baseline``, ``target``, ``groups`` or ``n_sizes`` (as FeatureGame).
    """
    started = time.perf_counter()
    layers = _layers(model)
    game = FeatureGame(model, x, baseline, target, groups)
    n_players = game.n_players
    n_sizes = check_int(
        n_sizes, "n_sizes", _OWNER, min_value=1, max_value=n_players, allow_none=True
    )
    check_int(memory_budget, "memory_budget", _OWNER, min_value=1)
    if n_sizes is None:
        sizes = np.arange(n_players)
    else:
        sizes = np.unique(np.round(np.linspace(0, n_players - 1, n_sizes)).astype(np.int64))
    pre, first, rest = _split_first(layers)
    values = np.zeros(n_players, dtype=np.float64)
    with torch.inference_mode():
        for row in game.background:
            values += _dasp_one_baseline(game, row, pre, first, rest, sizes, memory_budget)
    values /= len(game.background)
    passes = 2 * n_players * len(sizes) * len(game.background)
    result = ShapleyResult.from_values(
        values,
        game.player_names,
        groups=game.player_groups,
        estimator="dasp",
        params={
            "n_sizes": n_sizes,
            "sizes": sizes.tolist(),
            "target": game.target,
            "baseline": game.baseline_kind,
            "n_baseline_rows": len(game.background),
        },
    )
    result.n_evaluations = 2 * passes
    result.diagnostics = {
        "network_evaluations": 2 * passes,
        "probabilistic_passes": passes,
        "network_evaluations_per_player": 2 * passes / n_players,
    }
    result.stop_reason = "complete"
    result.game_fingerprint = game.fingerprint()
    result.elapsed_seconds = time.perf_counter() - started
    return result


# -- the model, layer by layer ---------------------------------------------------------------


def _layers(model: Any) -> list[tuple[str, nn.Module]]:
    """The leaf layers of ``model`` in order, every one of them supported."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"The 'model' parameter of {_OWNER} must be a torch.nn.Module. "
            f"Got {type(model).__name__} instead."
        )
    leaves: list[tuple[str, nn.Module]] = []

    def visit(name: str, module: nn.Module) -> None:
        if isinstance(module, nn.Sequential):
            for child_name, child in module.named_children():
                visit(f"{name}.{child_name}" if name else child_name, child)
            return
        if type(module) not in SUPPORTED_LAYERS:
            shown = name or "the model itself"
            extra = (
                " (a custom Module: DASP reads a model layer by layer, so write it as an "
                "nn.Sequential)"
                if list(module.children())
                else ""
            )
            raise UnsupportedLayerError(
                f"dasp cannot propagate moments through layer {shown!r} of type "
                f"{type(module).__name__}{extra}. Supported layers: {_supported_names()}."
            )
        _check_layer(name, module)
        leaves.append((name, module))

    visit("", model)
    return leaves


def _supported_names() -> str:
    return ", ".join(kind.__name__ for kind in SUPPORTED_LAYERS)


def _check_layer(name: str, module: nn.Module) -> None:
    """Refuse the settings of a supported layer that the propagation does not handle."""
    problem = None
    if isinstance(module, nn.Conv1d | nn.Conv2d) and module.padding_mode != "zeros":
        problem = f"padding_mode={module.padding_mode!r} (only 'zeros')"
    elif isinstance(module, nn.MaxPool1d | nn.MaxPool2d) and (
        module.ceil_mode or module.return_indices
    ):
        problem = "ceil_mode=True or return_indices=True"
    elif isinstance(module, nn.AvgPool1d | nn.AvgPool2d) and (
        module.ceil_mode or getattr(module, "divisor_override", None) is not None
    ):
        problem = "ceil_mode=True or a divisor_override"
    elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d) and module.running_mean is None:
        problem = "no running statistics (track_running_stats=False uses each batch's own)"
    if problem is not None:
        raise UnsupportedLayerError(
            f"dasp cannot propagate moments through layer {name!r} of type "
            f"{type(module).__name__} with {problem}."
        )


def _split_first(
    layers: list[tuple[str, nn.Module]],
) -> tuple[list[nn.Module], nn.Module, list[nn.Module]]:
    """The shape-only layers before the first Linear/Conv, that layer, and the rest."""
    for position, (name, module) in enumerate(layers):
        if isinstance(module, _FIRST_LAYERS):
            return (
                [m for _, m in layers[:position]],
                module,
                [m for _, m in layers[position + 1 :]],
            )
        if not isinstance(module, _SHAPE_ONLY):
            raise UnsupportedLayerError(
                f"dasp needs a Linear, Conv1d or Conv2d layer first (only Flatten, Dropout and "
                f"Identity may come before it); layer {name!r} is {type(module).__name__}."
            )
    raise UnsupportedLayerError("dasp needs a model with a Linear, Conv1d or Conv2d layer.")


# -- the first probabilistic layer -----------------------------------------------------------


def _apply(modules: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for module in modules:
        x = x if isinstance(module, nn.Dropout | nn.Identity) else module(x)
    return x


def _dasp_one_baseline(
    game: FeatureGame,
    reference: torch.Tensor,
    pre: list[nn.Module],
    first: nn.Module,
    rest: list[nn.Module],
    sizes: np.ndarray[Any, Any],
    memory_budget: int,
) -> np.ndarray[Any, Any]:
    """DASP's values for one baseline row (float64 throughout)."""
    x = game.x.double()
    owner_of = torch.from_numpy(game.players.owner_of).to(x.device)
    base, contributions, mu, spread = first_layer_moments(
        first, pre, x, reference.double(), owner_of, game.n_players
    )
    n_players = game.n_players
    others = n_players - 1
    k = torch.as_tensor(sizes, dtype=torch.float64, device=x.device)
    finite = k * (others - k) / (others - 1) if others > 1 else torch.zeros_like(k)
    shape = (1, -1) + (1,) * (contributions.dim() - 1)
    k, finite = k.reshape(shape), finite.reshape(shape)
    width = int(np.prod(contributions.shape[1:]))
    per_row = 8 * 6 * max(width, _widest(rest, base))
    players_per_pass = max(1, memory_budget // (per_row * 2 * len(sizes)))
    values = np.empty(n_players, dtype=np.float64)
    for start in range(0, n_players, players_per_pass):
        chunk = slice(start, start + players_per_pass)
        mean_without = base + k * mu[chunk, None]  # (players, K, *J)
        var = finite * spread[chunk, None]
        mean_with = mean_without + contributions[chunk, None]
        means = torch.stack([mean_with, mean_without], dim=2).flatten(0, 2)
        variances = torch.stack([var, var], dim=2).flatten(0, 2)
        out, _ = propagate(rest, (means, variances))
        target = out.reshape(-1, len(sizes), 2, out.shape[-1])[..., game.target]
        values[chunk] = (target[:, :, 0] - target[:, :, 1]).mean(dim=1).cpu().numpy()
    return values


def first_layer_moments(
    first: nn.Module,
    pre: list[nn.Module],
    x: torch.Tensor,
    reference: torch.Tensor,
    owner_of: torch.Tensor,
    n_players: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the first layer's moments under a random coalition are made of (module notes).

    For a coalition of k players drawn from the N - 1 others than i, the pre-activations have
    mean ``base + k * mu[i]`` (plus ``contributions[i]`` with i) and variance
    ``k * (M - k) / (M - 1) * spread[i]``, M = N - 1.

    Args:
        first: The first Linear, Conv1d or Conv2d layer.
        pre: The shape-only layers before it.
        x: The example (float64, no batch axis).
        reference: The baseline row (float64, x's shape).
        owner_of: The player of each flat feature.
        n_players: N.

    Returns:
        ``base`` (1, *J): the layer on the baseline; ``contributions`` (N, *J): a_jp;
        ``mu`` and ``spread`` (N, *J): the mean and population variance of a_jp over p != i.
    """
    # One masked copy of x - r per player: (N, *x.shape).
    masks = owner_of[None, :] == torch.arange(n_players, device=x.device)[:, None]
    deltas = (masks * (x - reference).reshape(1, -1)).reshape(n_players, *x.shape)
    contributions = _first_layer(first, _apply(pre, deltas), bias=False)
    base = _first_layer(first, _apply(pre, reference[None]), bias=True)
    total, total_sq = contributions.sum(0), contributions.square().sum(0)
    others = n_players - 1
    if others > 0:
        mu = (total[None] - contributions) / others
        spread = ((total_sq[None] - contributions.square()) / others - mu.square()).clamp_min(0)
    else:
        mu = spread = torch.zeros_like(contributions)
    return base, contributions, mu, spread


def _widest(rest: list[nn.Module], base: torch.Tensor) -> int:
    """The largest per-row activation along the network (to size the passes)."""
    widest = int(np.prod(base.shape[1:]))
    mean, var = base, torch.zeros_like(base)
    for module in rest:
        mean, var = propagate([module], (mean, var))
        widest = max(widest, int(np.prod(mean.shape[1:])))
    return widest


def _first_layer(layer: Any, x: torch.Tensor, bias: bool) -> torch.Tensor:
    weight = layer.weight.detach().double()
    b = layer.bias.detach().double() if bias and layer.bias is not None else None
    if isinstance(layer, nn.Linear):
        return F.linear(x, weight, b)
    conv = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
    return conv(x, weight, b, layer.stride, layer.padding, layer.dilation, layer.groups)


# -- moment propagation ----------------------------------------------------------------------


def propagate(modules: list[nn.Module], moments: Moments) -> Moments:
    """Means and variances of independent Gaussians after ``modules`` (see the module notes).

    Args:
        modules: Supported layers (not containers), applied in order.
        moments: Means and variances of the input, the same shape ``(batch, ...)``, float64.
    """
    mean, var = moments
    for module in modules:
        rule = _RULES.get(type(module))
        if rule is None:
            raise UnsupportedLayerError(
                f"dasp cannot propagate moments through {type(module).__name__}. "
                f"Supported layers: {_supported_names()}."
            )
        mean, var = rule(module, mean, var)
    return mean, var


def _normal_pdf(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * z.square()) / math.sqrt(2 * math.pi)


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-z / math.sqrt(2))


def _relu_moments(mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E[max(X, 0)] and E[max(X, 0)^2] for X ~ N(mean, var) (the rectified Gaussian)."""
    std = var.sqrt()
    degenerate = std <= 1e-12 * (1 + mean.abs())
    safe = torch.where(degenerate, torch.ones_like(std), std)
    z = mean / safe
    cdf, pdf = _normal_cdf(z), _normal_pdf(z)
    first = mean * cdf + safe * pdf
    second = (mean.square() + var) * cdf + mean * safe * pdf
    relu = mean.clamp_min(0)
    return torch.where(degenerate, relu, first), torch.where(degenerate, relu.square(), second)


def _relu(module: Any, mean: torch.Tensor, var: torch.Tensor) -> Moments:
    first, second = _relu_moments(mean, var)
    return first, (second - first.square()).clamp_min(0)


def _leaky_relu(module: Any, mean: torch.Tensor, var: torch.Tensor) -> Moments:
    # y = relu(x) - a relu(-x); relu(x) relu(-x) = 0, so E[y^2] has no cross term.
    slope = float(module.negative_slope)
    up1, up2 = _relu_moments(mean, var)
    down1, down2 = _relu_moments(-mean, var)
    first = up1 - slope * down1
    return first, (up2 + slope**2 * down2 - first.square()).clamp_min(0)


def _linear(module: Any, mean: torch.Tensor, var: torch.Tensor) -> Moments:
    weight = module.weight.detach().double()
    bias = None if module.bias is None else module.bias.detach().double()
    return F.linear(mean, weight, bias), F.linear(var, weight.square())


def _conv(module: Any, mean: torch.Tensor, var: torch.Tensor) -> Moments:
    conv = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d
    weight = module.weight.detach().double()
    bias = None if module.bias is None else module.bias.detach().double()
    args = (module.stride, module.padding, module.dilation, module.groups)
    return conv(mean, weight, bias, *args), conv(var, weight.square(), None, *args)


def _batch_norm(module: Any, mean: torch.Tensor, var: torch.Tensor) -> Moments:
    running_mean = module.running_mean.double()
    running_var = module.running_var.double()
    scale = 1 / torch.sqrt(running_var + module.eps)
    shift = -running_mean * scale
    if module.affine:
        weight = module.weight.detach().double()
        scale, shift = scale * weight, shift * weight + module.bias.detach().double()
    shape = (1, -1) + (1,) * (mean.dim() - 2)
    scale, shift = scale.reshape(shape), shift.reshape(shape)
    return mean * scale + shift, var * scale.square()


def _avg_pool(module: Any, mean: torch.Tensor, var: torch.Tensor) -> Moments:
    two_d = isinstance(module, nn.AvgPool2d)
    pool = F.avg_pool2d if two_d else F.avg_pool1d
    kernel = _pair(module.kernel_size, two_d)
    args = (kernel, module.stride, module.padding)
    include_pad = bool(module.count_include_pad)
    out = pool(mean, *args, False, include_pad)
    # Var of (1/n) sum x_t is (1/n^2) sum v_t: the pooled variances divided once more by n.
    if include_pad:
        count: Any = float(np.prod(kernel))
    else:
        ones = torch.ones_like(var[:1])
        count = pool(ones, *args, False, True) * float(np.prod(kernel))
    return out, pool(var, *args, False, include_pad) / count


def _pair(value: Any, two_d: bool) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value, value) if two_d else (value,)
    return tuple(int(v) for v in value)


def _max_pool(module: Any, mean: torch.Tensor, var: torch.Tensor) -> Moments:
    two_d = isinstance(module, nn.MaxPool2d)
    kernel = _pair(module.kernel_size, two_d)
    stride = _pair(module.stride if module.stride is not None else kernel, two_d)
    padding = _pair(module.padding, two_d)
    dilation = _pair(module.dilation, two_d)
    if not two_d:  # a 1-d pool is a 2-d pool over a height of one
        mean, var = mean.unsqueeze(-2), var.unsqueeze(-2)
        kernel, stride, padding, dilation = (
            (1, *kernel),
            (1, *stride),
            (0, *padding),
            (1, *dilation),
        )
    batch, channels, height, width = mean.shape
    out_h = (height + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    size = kernel[0] * kernel[1]

    def windows(tensor: torch.Tensor) -> torch.Tensor:
        cols = F.unfold(tensor, kernel, dilation=dilation, padding=padding, stride=stride)
        return cols.reshape(tensor.shape[0], channels, size, -1)

    means, variances = windows(mean), windows(var)
    valid = windows(torch.ones_like(mean[:1])) > 0  # padded cells take no part in the max
    out_mean, out_var, seen = means[:, :, 0], variances[:, :, 0], valid[:, :, 0]
    for t in range(1, size):
        pair_mean, pair_var = _gaussian_max(out_mean, out_var, means[:, :, t], variances[:, :, t])
        use_new, keep_old = valid[:, :, t] & ~seen, ~valid[:, :, t]
        out_mean = torch.where(keep_old, out_mean, torch.where(use_new, means[:, :, t], pair_mean))
        out_var = torch.where(keep_old, out_var, torch.where(use_new, variances[:, :, t], pair_var))
        seen = seen | valid[:, :, t]
    out_mean = out_mean.reshape(batch, channels, out_h, out_w)
    out_var = out_var.reshape(batch, channels, out_h, out_w)
    if not two_d:
        out_mean, out_var = out_mean.squeeze(-2), out_var.squeeze(-2)
    return out_mean, out_var


def _gaussian_max(
    mean_a: torch.Tensor, var_a: torch.Tensor, mean_b: torch.Tensor, var_b: torch.Tensor
) -> Moments:
    """Mean and variance of max(A, B), A and B independent Gaussians (Clark 1961)."""
    theta = (var_a + var_b).sqrt()
    degenerate = theta <= 1e-12 * (1 + mean_a.abs() + mean_b.abs())
    safe = torch.where(degenerate, torch.ones_like(theta), theta)
    alpha = (mean_a - mean_b) / safe
    cdf, cdf_neg, pdf = _normal_cdf(alpha), _normal_cdf(-alpha), _normal_pdf(alpha)
    first = mean_a * cdf + mean_b * cdf_neg + safe * pdf
    second = (
        (mean_a.square() + var_a) * cdf
        + (mean_b.square() + var_b) * cdf_neg
        + (mean_a + mean_b) * safe * pdf
    )
    var = (second - first.square()).clamp_min(0)
    larger = mean_a >= mean_b
    return (
        torch.where(degenerate, torch.maximum(mean_a, mean_b), first),
        torch.where(degenerate, torch.where(larger, var_a, var_b), var),
    )


def _flatten(module: Any, mean: torch.Tensor, var: torch.Tensor) -> Moments:
    return module(mean), module(var)


def _identity(module: Any, mean: torch.Tensor, var: torch.Tensor) -> Moments:
    return mean, var


_RULES: dict[type[nn.Module], Callable[[Any, torch.Tensor, torch.Tensor], Moments]] = {
    nn.Linear: _linear,
    nn.Conv1d: _conv,
    nn.Conv2d: _conv,
    nn.ReLU: _relu,
    nn.LeakyReLU: _leaky_relu,
    nn.MaxPool1d: _max_pool,
    nn.MaxPool2d: _max_pool,
    nn.AvgPool1d: _avg_pool,
    nn.AvgPool2d: _avg_pool,
    nn.BatchNorm1d: _batch_norm,
    nn.BatchNorm2d: _batch_norm,
    nn.Flatten: _flatten,
    nn.Dropout: _identity,
    nn.Identity: _identity,
}
