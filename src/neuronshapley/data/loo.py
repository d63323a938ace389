"""Leave-one-out retraining: what influence functions approximate (Koh & Liang 2017, §5.1).

The protocol: train to convergence on the objective ``(1/n) sum_j w_j loss(x_j) + (weight_decay
/ 2) ||theta||^2`` with every ``w_j = 1``; for each removed point set its weight to 0, retrain
from the optimum (full-batch L-BFGS, strong Wolfe line search), and record the change of each
test loss. Keeping the ``1/n`` (not ``1/(n-1)``) makes the removal exactly the perturbation
``epsilon = -1/n`` of Theorem 10.1.2, so the change is compared with ``-I(x, z) / n``.

For non-convex models Koh & Liang also retrain from scratch: ``leave_one_out_from_scratch``
fits the full and the reduced objective from the same seeded initialisations, one pair per
seed, so that the change it records is the removal's, not the initialisation's.
"""

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from neuronshapley._internal.validation import check_float, check_int
from neuronshapley.data.influence import LossFunction, _pair, cross_entropy

OWNER = "leave_one_out"


def fit_lbfgs(
    model: nn.Module,
    train: tuple[Any, Any],
    *,
    loss: LossFunction = cross_entropy,
    weight_decay: float = 0.0,
    weights: torch.Tensor | None = None,
    max_iter: int = 500,
    tolerance: float = 1e-10,
) -> float:
    """Minimise ``(1/n) sum_j w_j loss(x_j) + (weight_decay / 2) ||theta||^2`` in place.

    Full-batch L-BFGS with a strong Wolfe line search, from the model's current parameters.

    Args:
        model: The model (its trainable parameters are changed in place).
        train: ``(x, y)``.
        loss: Per-example loss ``loss(outputs, targets) -> (n,)``. Default: cross-entropy.
        weight_decay: L2 coefficient. Default 0.
        weights: One weight per example. Default: all 1.
        max_iter: L-BFGS iterations at most. Default 500.
        tolerance: Stop when the gradient's largest entry is at most this. Default 1e-10.

    Returns:
        The largest entry of the objective's gradient at the end (how converged it is).
    """
    max_iter = int(check_int(max_iter, "max_iter", "fit_lbfgs", min_value=1))  # type: ignore[arg-type]
    dtype = next(model.parameters()).dtype
    x, y = _pair(train, "train", dtype, next(model.parameters()).device)
    w = torch.ones(len(x), dtype=dtype) if weights is None else weights.to(dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=tolerance,
        tolerance_change=1e-20,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = (w * loss(model(x), y)).sum() / len(x)
        value = value + 0.5 * weight_decay * sum((p * p).sum() for p in params)
        value.backward()
        return value

    optimizer.step(closure)
    closure()
    return max(float(p.grad.abs().max()) for p in params if p.grad is not None)


def leave_one_out(
    model: nn.Module,
    train: tuple[Any, Any],
    test: tuple[Any, Any],
    indices: Sequence[int],
    *,
    loss: LossFunction = cross_entropy,
    weight_decay: float = 0.0,
    max_iter: int = 500,
    tolerance: float = 1e-10,
) -> NDArray[np.float64]:
    """Change of each test loss when each of ``indices`` is removed and the model retrained.

    Args:
        model: A model trained to the optimum of the full objective (see the module notes); it
            is copied, never changed.
        train: ``(x, y)``.
        test: ``(x, y)``.
        indices: The training points to remove, one at a time.
        loss: Per-example loss. Default: cross-entropy.
        weight_decay: L2 coefficient of the objective. Default 0.
        max_iter: L-BFGS iterations per retraining. Default 500.
        tolerance: Gradient tolerance of each retraining. Default 1e-10.

    Returns:
        ``loss(z_j; theta_{-i}) - loss(z_j; theta*)``, shape ``(len(indices), n_test)``.
    """
    check_float(weight_decay, "weight_decay", OWNER, low=0.0)
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    x_train, y_train = _pair(train, "train", dtype, device)
    x_test, y_test = _pair(test, "test", dtype, device)
    n = len(x_train)
    rows = [int(check_int(i, "indices", OWNER, min_value=0, max_value=n - 1)) for i in indices]  # type: ignore[arg-type]
    with torch.no_grad():
        before = loss(model(x_test), y_test)
    changes = np.empty((len(rows), len(x_test)))
    for k, i in enumerate(rows):
        retrained = copy.deepcopy(model)
        weights = torch.ones(n, dtype=dtype)
        weights[i] = 0.0
        fit_lbfgs(
            retrained,
            (x_train, y_train),
            loss=loss,
            weight_decay=weight_decay,
            weights=weights,
            max_iter=max_iter,
            tolerance=tolerance,
        )
        with torch.no_grad():
            changes[k] = (loss(retrained(x_test), y_test) - before).cpu().numpy()
    return changes


def leave_one_out_from_scratch(
    make_model: Callable[[], nn.Module],
    train: tuple[Any, Any],
    test: tuple[Any, Any],
    indices: Sequence[int],
    seeds: Sequence[int],
    *,
    loss: LossFunction = cross_entropy,
    weight_decay: float = 0.0,
    max_iter: int = 500,
    tolerance: float = 1e-10,
) -> NDArray[np.float64]:
    """Change of each test loss when each of ``indices`` is removed, retraining from scratch.

    For every seed, ``torch.manual_seed(seed)`` then ``make_model()`` gives the initialisation;
    the full objective and each reduced one (the removed point's weight set to 0, the ``1/n``
    kept, as in ``leave_one_out``) are fitted from that same initialisation with ``fit_lbfgs``.
    A non-convex model can land in another minimum per seed, so average over seeds and read
    their spread as the protocol's noise.

    Args:
        make_model: Builds a fresh model (its parameters drawn from torch's global generator).
        train: ``(x, y)``.
        test: ``(x, y)``.
        indices: The training points to remove, one at a time.
        seeds: The seeds, one full fit and ``len(indices)`` reduced fits each.
        loss: Per-example loss. Default: cross-entropy.
        weight_decay: L2 coefficient of the objective. Default 0.
        max_iter: L-BFGS iterations per fit. Default 500.
        tolerance: Gradient tolerance of each fit. Default 1e-10.

    Returns:
        ``loss(z_j; theta_{-i, s}) - loss(z_j; theta_s)``, shape
        ``(len(seeds), len(indices), n_test)``.
    """
    owner = "leave_one_out_from_scratch"
    if not callable(make_model):
        raise TypeError(
            f"The 'make_model' parameter of {owner} must be a callable returning a "
            f"torch.nn.Module. Got {type(make_model).__name__} instead."
        )
    check_float(weight_decay, "weight_decay", owner, low=0.0)
    seed_list = [int(check_int(s, "seeds", owner, min_value=0)) for s in seeds]  # type: ignore[arg-type]
    if not seed_list:
        raise ValueError(f"The 'seeds' parameter of {owner} must hold at least one seed. Got [].")

    def fresh(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = make_model()
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"The 'make_model' parameter of {owner} must return a torch.nn.Module. "
                f"Got {type(model).__name__} instead."
            )
        return model

    probe = fresh(seed_list[0])
    dtype = next(probe.parameters()).dtype
    device = next(probe.parameters()).device
    x_train, y_train = _pair(train, "train", dtype, device)
    x_test, y_test = _pair(test, "test", dtype, device)
    n = len(x_train)
    rows = [int(check_int(i, "indices", owner, min_value=0, max_value=n - 1)) for i in indices]  # type: ignore[arg-type]
    fit = {"loss": loss, "weight_decay": weight_decay, "max_iter": max_iter, "tolerance": tolerance}
    changes = np.empty((len(seed_list), len(rows), len(x_test)))
    for s, seed in enumerate(seed_list):
        full = fresh(seed)
        fit_lbfgs(full, (x_train, y_train), **fit)  # type: ignore[arg-type]
        with torch.no_grad():
            before = loss(full(x_test), y_test)
        for k, i in enumerate(rows):
            reduced = fresh(seed)
            weights = torch.ones(n, dtype=dtype, device=device)
            weights[i] = 0.0
            fit_lbfgs(reduced, (x_train, y_train), weights=weights, **fit)  # type: ignore[arg-type]
            with torch.no_grad():
                changes[s, k] = (loss(reduced(x_test), y_test) - before).cpu().numpy()
    return changes
