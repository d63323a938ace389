"""The gradient family and Captum's own Shapley estimators, on the game of ``FeatureGame``.

One function, :func:`attribute`, runs a named method of Captum (Kokhlikyan et al. 2020) on the
same model, example, baseline, target and groups as :class:`~neuronshapley.features.FeatureGame`
and :func:`~neuronshapley.features.dasp`, and returns the same ``ShapleyResult``, so every method
can be set beside exact values, sampling and DASP. Nothing of Captum is reimplemented here: this
module checks the input once (through ``FeatureGame``), hands Captum the tensors, sums feature
attributions into groups, and counts the cost.

- ``"saliency"``: the gradient of the target output at x (Simonyan et al. 2014), signed.
- ``"input_x_gradient"``: x times that gradient (Shrikumar et al. 2016). Like Captum's, it
  ignores the baseline (it is the Taylor term of f(x) - f(0)).
- ``"integrated_gradients"``: the path integral of the gradient from the baseline to x
  (Sundararajan et al. 2017), ``n_steps`` Gauss-Legendre points; complete in the limit.
- ``"deeplift"``: DeepLIFT with the Rescale rule (Shrikumar et al. 2017); it sums exactly to
  f(x) - f(baseline) ("summation-to-delta").
- ``"shapley_sampling"``: Captum's ``ShapleyValueSampling``, ``n_samples`` random permutations.
- ``"kernel_shap"``: Captum's ``KernelShap`` (Lundberg & Lee 2017), ``n_samples`` coalitions.

With a background set of m baselines each method runs once per row and the attributions are
averaged, as ``FeatureGame`` averages the output (the Shapley value is linear in the game).
Groups of features: the gradient methods' attributions are summed over each group; Captum's two
Shapley estimators take the groups as their ``feature_mask`` (each group one player).
"""

import contextlib
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from neuronshapley._internal.optional import require
from neuronshapley._internal.validation import check_choice, check_int
from neuronshapley.features.game import FeatureGame
from neuronshapley.features.inputs import evaluation_mode
from neuronshapley.results.result import ShapleyResult

_OWNER = "attribute"
GRADIENT_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "deeplift")
SAMPLING_METHODS = ("shapley_sampling", "kernel_shap")
METHODS = GRADIENT_METHODS + SAMPLING_METHODS
# Captum's defaults are 25 for both; KernelSHAP's regression needs more coalitions than players.
_DEFAULT_SAMPLES = {"shapley_sampling": 25, "kernel_shap": 512}
# Perturbed inputs per forward pass for Captum's Shapley estimators.
_PER_PASS = 256


def attribute(
    method: str,
    model: nn.Module,
    x: Any,
    baseline: Any = "zero",
    target: int | None = None,
    *,
    groups: Any = None,
    n_steps: int = 50,
    n_samples: int | None = None,
    seed: int = 0,
) -> ShapleyResult:
    """Attributions of ``x``'s features by a named Captum method, as a ``ShapleyResult``.

    Args:
        method: One of ``METHODS``: ``"saliency"``, ``"input_x_gradient"``,
            ``"integrated_gradients"``, ``"deeplift"``, ``"shapley_sampling"``,
            ``"kernel_shap"`` (see the module notes).
        model: The network, as for ``FeatureGame``. Evaluated in eval mode inside a context that
            restores every submodule's mode; its weights, gradients (``.grad``) and hooks are
            left as they came (Captum's DeepLIFT adds hooks for the call and removes them).
        x: One example without its batch axis.
        baseline: ``"zero"`` (default), a number, a tensor of x's shape or a background set
            ``(m, *x.shape)`` (the attributions are averaged over its rows).
        target: The output explained (its logit). Default ``None``: the predicted class.
        groups: Players as groups of features, as for ``FeatureGame``. Default ``None``.
        n_steps: Integration points of ``integrated_gradients``. Default 50.
        n_samples: Permutations of ``shapley_sampling`` (default 25) or coalitions of
            ``kernel_shap`` (default 512). Default ``None``: those defaults.
        seed: Seeds Captum's sampling (inside ``torch.random.fork_rng``, so the global random
            state is left as it was). Default 0.

    Returns:
        A ``ShapleyResult`` with ``estimator=method``, zero standard errors, ``params`` (the
        method's settings, target, baseline kind) and ``diagnostics``:
        ``network_evaluations`` (inputs pushed forward through the model, counted by a hook
        for the call), ``gradient_calls`` (inputs whose gradient was taken: 1 for saliency and
        input x gradient, ``n_steps`` for IG, 1 for DeepLIFT's modified backward pass, per
        baseline row; 0 for the sampling methods) and ``completeness_error``: the sum of the
        values minus (f(x) - f(baseline)), which is 0 for an efficient attribution (exact
        Shapley values, DeepLIFT) and tends to 0 for IG as ``n_steps`` grows.

    Raises:
        ValueError: an unknown ``method``, bad ``n_steps``/``n_samples``, or a bad baseline,
            target or groups (as ``FeatureGame``).
        ImportError: Captum is not installed (``pip install 'neuronshapley[studies]'``).
    """
    started = time.perf_counter()
    check_choice(method, "method", _OWNER, METHODS)
    check_int(n_steps, "n_steps", _OWNER, min_value=2)
    check_int(n_samples, "n_samples", _OWNER, min_value=1, allow_none=True)
    check_int(seed, "seed", _OWNER, min_value=0)
    game = FeatureGame(model, x, baseline, target, groups)
    captum = require("captum.attr", "studies", f"the {method!r} attribution")
    samples = _DEFAULT_SAMPLES.get(method) if n_samples is None else n_samples
    mask = torch.from_numpy(game.players.owner_of).to(game.x.device).reshape(1, *game.x.shape)
    n_rows = 1 if method == "saliency" else len(game.background)
    counter = [0]
    total = torch.zeros(game.x.numel(), dtype=torch.float64)
    deltas: list[float] = []
    with (
        evaluation_mode(model),
        _counting(model, counter),
        torch.random.fork_rng(devices=[]),
        warnings.catch_warnings(),
    ):
        # Captum's DeepLIFT announces the hooks it sets for the call (and removes afterwards).
        warnings.filterwarnings(
            "ignore", message="Setting forward, backward hooks", category=UserWarning
        )
        torch.manual_seed(seed)
        for row in game.background[:n_rows]:
            inputs = game.x[None].clone().requires_grad_(method in GRADIENT_METHODS)
            attributions = _run(
                captum, method, model, inputs, row[None], game.target, mask, n_steps, samples
            )
            if isinstance(attributions, tuple):
                attributions, delta = attributions
                deltas.append(float(delta.sum()))
            total += attributions.detach().reshape(-1).double().cpu()
    per_feature = (total / n_rows).numpy()
    owner_of = game.players.owner_of
    if method in SAMPLING_METHODS:
        # Every feature of a group carries the group's value; read it at the first member.
        values = per_feature[[int(members[0]) for members in game.players.members]]
    else:
        values = np.bincount(owner_of, weights=per_feature, minlength=game.n_players)
    full, empty = game.value(np.array([[True] * game.n_players, [False] * game.n_players]))
    gradient_calls = {"integrated_gradients": n_steps}.get(method, 1) * n_rows
    result = ShapleyResult.from_values(
        values,
        game.player_names,
        groups=game.player_groups,
        estimator=method,
        params={
            "method": method,
            "target": game.target,
            "baseline": game.baseline_kind,
            "n_baseline_rows": len(game.background),
            **({"n_steps": n_steps} if method == "integrated_gradients" else {}),
            **({"n_samples": samples, "seed": seed} if method in SAMPLING_METHODS else {}),
        },
    )
    result.n_evaluations = counter[0]
    result.diagnostics = {
        "network_evaluations": counter[0],
        "gradient_calls": 0 if method in SAMPLING_METHODS else gradient_calls,
        "completeness_error": float(values.sum() - (full - empty)),
        "output_difference": float(full - empty),
    }
    if deltas:
        result.diagnostics["captum_delta"] = float(np.mean(deltas))
    if method in SAMPLING_METHODS:
        result.seed = seed
    result.stop_reason = "complete"
    result.game_fingerprint = game.fingerprint()
    result.elapsed_seconds = time.perf_counter() - started
    return result


def _run(
    captum: Any,
    method: str,
    model: nn.Module,
    inputs: torch.Tensor,
    baseline: torch.Tensor,
    target: int,
    mask: torch.Tensor,
    n_steps: int,
    n_samples: int | None,
) -> Any:
    """One Captum call on one input and one baseline row (with its delta where Captum has one)."""
    if method == "saliency":
        return captum.Saliency(model).attribute(inputs, target=target, abs=False)
    if method == "input_x_gradient":
        return captum.InputXGradient(model).attribute(inputs, target=target)
    if method == "integrated_gradients":
        return captum.IntegratedGradients(model).attribute(
            inputs, baseline, target=target, n_steps=n_steps, return_convergence_delta=True
        )
    if method == "deeplift":
        return captum.DeepLift(model).attribute(
            inputs, baseline, target=target, return_convergence_delta=True
        )
    estimator = (
        captum.ShapleyValueSampling(model)
        if method == "shapley_sampling"
        else captum.KernelShap(model)
    )
    with torch.no_grad():
        return estimator.attribute(
            inputs,
            baseline,
            target=target,
            feature_mask=mask,
            n_samples=n_samples,
            perturbations_per_eval=_PER_PASS,
        )


@contextlib.contextmanager
def _counting(model: nn.Module, counter: list[int]) -> Iterator[None]:
    """Count the inputs pushed through ``model`` (its batch sizes), with a hook for the call."""

    def count(_module: nn.Module, inputs: Any) -> None:
        if inputs and isinstance(inputs[0], torch.Tensor):
            counter[0] += len(inputs[0])

    handle = model.register_forward_pre_hook(count)
    try:
        yield
    finally:
        handle.remove()
