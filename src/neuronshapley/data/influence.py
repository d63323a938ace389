"""Influence functions of training points on test losses (chapter §10.1, Koh & Liang 2017).

For a model trained to a minimum ``theta*`` of the objective

    L(theta) = (1/n) sum_i loss(x_i, theta) + (weight_decay / 2) ||theta||^2,

the influence of up-weighting a training point ``x`` on the loss of a test point ``z``
(Definition 10.1.1, Theorem 10.1.2) is

    I(x, z) = -grad loss(z)^T (H + damping I)^-1 grad loss(x),

with ``H`` the Hessian of ``L`` at ``theta*`` (the weight decay included). Removing ``x`` is the
perturbation ``epsilon = -1/n``, so the change of the test loss after leave-one-out retraining
of the objective ``(1/n) sum_{j != i} loss(x_j, theta) + (weight_decay / 2) ||theta||^2`` is
about ``-I(x, z) / n``. That is the convention the validation uses.

Three ways to apply ``(H + damping I)^-1``, all without a per-parameter loop:

- ``"exact"`` forms H (up to ``max_exact_params`` parameters) and diagonalises it;
- ``"cg"`` runs conjugate gradients on Hessian-vector products to a stated relative residual;
- ``"lissa"`` sums the chapter's series ``alpha sum_{i=0}^{r} (I - alpha (H + damping I))^i v``
  (Problem 10.1.3), with the truncation error bound of Problem 10.1.4;
- ``"dattri-arnoldi"`` (optional, ``pip install dattri``) keeps the top ``rank`` eigenpairs of
  ``H + damping I`` that dattri's Arnoldi iteration finds (Schioppa et al. 2022) and inverts
  on their span: an approximation for models too large to form H.

Per-example gradients come from ``torch.func.vmap(torch.func.grad(...))`` and Hessian-vector
products from forward-over-reverse differentiation (``torch.func.jvp`` of ``torch.func.grad``),
so H is never formed except by ``"exact"``.
"""

import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from neuronshapley._internal.optional import require
from neuronshapley._internal.validation import check_choice, check_float, check_int

METHODS = ("exact", "cg", "lissa", "dattri-arnoldi")
OWNER = "influence"

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy of logits ``outputs`` against class ids ``targets``."""
    return nn.functional.cross_entropy(outputs, targets, reduction="none")


@dataclass(frozen=True)
class InfluenceResult:
    """Influences of training points on test points, and how they were computed.

    Attributes:
        matrix: ``I(x_i, z_j)``, shape ``(n_train, n_test)``. Removing ``x_i`` changes the loss
            on ``z_j`` by about ``-matrix[i, j] / n_train``.
        self_influence: ``I(x_i, x_i)`` for each training point, shape ``(n_train,)``, or
            ``None`` when not asked for (``self_influence=False``).
        method: ``"exact"``, ``"cg"``, ``"lissa"`` or ``"dattri-arnoldi"``.
        damping: The ``lambda`` added to the Hessian.
        n_hvp: Hessian-vector products spent (``"exact"``: one per parameter, to form H;
            ``"dattri-arnoldi"``: its Arnoldi steps, one per kept pair to check it, and one per
            solve for the residual; a product with k vectors at once counts k).
        seconds: Wall time of the whole call.
        residual: ``"cg"``: the largest relative residual ``||(H + lambda I) s - v|| / ||v||``
            reached over the solved vectors, recomputed at the end; ``"exact"`` and
            ``"dattri-arnoldi"``: the same quantity for their solves (for the latter it measures
            what the discarded eigen-directions cost); ``"lissa"``: ``None``.
        error_bound: ``"lissa"``: the bound on the relative error of each solve left by
            truncating the series after ``depth`` terms (Problem 10.1.4), given only when it is
            one: the extreme eigenvalues are exact (Lanczos ran as many steps as there are
            parameters) and every Hessian-vector product used all the training points; else
            ``None`` (see ``error_estimate``).
        error_estimate: ``"lissa"``: the same formula with the Lanczos estimates, always given;
            an estimate, not a bound, when ``error_bound`` is ``None`` (Ritz values lie inside
            the spectrum, so they make it optimistic).
        depth: ``"lissa"``: the number of terms ``r`` summed; ``"cg"``: the iterations run;
            ``"dattri-arnoldi"``: the eigenpairs kept (the rank of the approximation).
        scale: ``"lissa"``: the scale ``alpha`` used; else ``None``.
        eigenvalues: The smallest and largest eigenvalue of ``H + lambda I`` found (exact for
            ``"exact"``, Lanczos estimates for ``"lissa"``, the smallest and largest kept
            Ritz values for ``"dattri-arnoldi"``; ``None`` for ``"cg"``).
    """

    matrix: NDArray[np.float64]
    self_influence: NDArray[np.float64] | None
    method: str
    damping: float
    n_hvp: int
    seconds: float
    residual: float | None = None
    error_bound: float | None = None
    error_estimate: float | None = None
    depth: int | None = None
    scale: float | None = None
    eigenvalues: tuple[float, float] | None = None

    def loo_estimate(self) -> NDArray[np.float64]:
        """Predicted change of each test loss when each training point is removed:
        ``-matrix / n_train``, shape ``(n_train, n_test)``."""
        return -self.matrix / len(self.matrix)


class _Problem:
    """The model as a function of one flat parameter vector, and the pieces built on it."""

    def __init__(
        self,
        model: nn.Module,
        loss: LossFunction,
        x: torch.Tensor,
        y: torch.Tensor,
        weight_decay: float,
        batch_size: int,
    ) -> None:
        self.model = model
        self.loss = loss
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError(
                f"The 'model' parameter of {OWNER} has no trainable parameters "
                "(requires_grad=True); there is nothing to be influenced."
            )
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.theta = torch.cat([p.detach().reshape(-1) for _, p in named])
        self.x, self.y = x, y
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self._graph: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def n_params(self) -> int:
        return int(self.theta.numel())

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = torch.split(flat, self.sizes)
        return {n: t.view(s) for n, t, s in zip(self.names, pieces, self.shapes, strict=True)}

    def batch_losses(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        outputs = torch.func.functional_call(self.model, self.unflatten(flat), (x,))
        return self.loss(outputs, y)

    def example_loss(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.batch_losses(flat, x.unsqueeze(0), y.unsqueeze(0)).sum()

    def chunks(self, n: int) -> list[slice]:
        return [slice(i, min(i + self.batch_size, n)) for i in range(0, n, self.batch_size)]

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat(
                [self.batch_losses(self.theta, x[c], y[c]) for c in self.chunks(len(x))]
            )

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example gradients of the loss, shape ``(n_examples, n_params)``."""
        per_example = torch.func.vmap(torch.func.grad(self.example_loss), in_dims=(None, 0, 0))
        return torch.cat([per_example(self.theta, x[c], y[c]) for c in self.chunks(len(x))])

    def objective_part(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # One chunk's share of the mean training loss.
        return self.batch_losses(flat, x, y).sum() / len(self.x)

    def gradient_graph(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean loss's gradient on ``(x, y)`` with its graph kept (double backward)."""
        leaf = self.theta.clone().requires_grad_(True)
        total = torch.zeros_like(leaf)
        scale = len(self.x) / len(x)
        with torch.enable_grad():
            for c in self.chunks(len(x)):
                part = self.objective_part(leaf, x[c], y[c]) * scale
                total = total + torch.autograd.grad(part, leaf, create_graph=True)[0]
        return leaf, total

    def hvp(
        self, vectors: torch.Tensor, x: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``H v`` for each row of ``vectors`` (H of the objective, weight decay included), on
        the training data or on the batch ``(x, y)`` (then scaled as a mean over the batch).

        Reverse-over-reverse: the gradient's graph is built once (and kept for the training
        data) and each product is one batched backward pass through it.
        """
        if x is None or y is None:
            if self._graph is None:
                self._graph = self.gradient_graph(self.x, self.y)
            leaf, gradient = self._graph
        else:
            leaf, gradient = self.gradient_graph(x, y)
        products = torch.autograd.grad(
            gradient, leaf, vectors, retain_graph=True, is_grads_batched=True
        )[0]
        return products.detach() + self.weight_decay * vectors

    def hessian(self) -> torch.Tensor:
        """H, formed one block of identity rows at a time (``n_params`` products)."""
        p = self.n_params
        eye = torch.eye(p, dtype=self.theta.dtype, device=self.theta.device)
        rows = [self.hvp(eye[i : i + self.batch_size]) for i in range(0, p, self.batch_size)]
        hessian = torch.cat(rows)
        return (hessian + hessian.T) / 2


def influence(
    model: nn.Module,
    train: tuple[Any, Any],
    test: tuple[Any, Any],
    *,
    loss: LossFunction = cross_entropy,
    damping: float = 0.0,
    weight_decay: float = 0.0,
    method: str = "exact",
    self_influence: bool = True,
    max_exact_params: int = 10_000,
    tol: float = 1e-8,
    max_iter: int = 1_000,
    scale: float | None = None,
    depth: int | None = None,
    target_error: float | None = None,
    repeats: int = 1,
    hvp_batch_size: int | None = None,
    lanczos_steps: int = 64,
    rank: int = 100,
    arnoldi_steps: int | None = None,
    batch_size: int = 512,
    seed: int | None = 0,
) -> InfluenceResult:
    """Influence of every training point on every test loss (Theorem 10.1.2).

    ``I(x, z) = -grad loss(z)^T (H + damping I)^-1 grad loss(x)``, H the Hessian at the model's
    current parameters of ``mean_i loss(x_i) + (weight_decay / 2) ||theta||^2``. The model
    should be trained to a minimum of that objective (the theory assumes a zero gradient); it
    is evaluated as it is (put it in ``eval()`` mode if it has dropout or batch norm) and not
    modified. Compute in float64 when the figures matter.

    Args:
        model: A ``torch.nn.Module``; every parameter with ``requires_grad`` is a coordinate
            of theta.
        train: ``(x, y)`` training inputs and targets (tensors or arrays, first axis the
            examples).
        test: ``(x, y)`` test inputs and targets; ``x`` must have the training inputs' shape
            past the first axis.
        loss: ``loss(outputs, targets) -> per-example losses`` (shape ``(n,)``), twice
            differentiable. Default: cross-entropy on logits.
        damping: ``lambda >= 0`` added to H's diagonal (chapter §10.1: makes it positive
            definite). Default 0.
        weight_decay: The L2 coefficient of the training objective (part of H, unlike
            ``damping``, which is an approximation). Default 0.
        method: ``"exact"`` (default), ``"cg"``, ``"lissa"`` or ``"dattri-arnoldi"`` (needs
            the optional ``dattri`` package; docs/data.md compares it with ``"cg"``).
        self_influence: Also compute ``I(x_i, x_i)`` for every training point. Default
            ``True``; with ``"cg"`` and ``"lissa"`` it costs one solve per training point.
        max_exact_params: ``"exact"`` refuses models with more parameters. Default 10,000.
        tol: ``"cg"``: stop when every relative residual is at most ``tol``. Default 1e-8.
        max_iter: ``"cg"``: most iterations. Default 1,000.
        scale: ``"lissa"``: ``alpha``; the series converges iff
            ``0 < alpha (lambda_max) < 2`` for the eigenvalues of ``H + damping I``. Default
            ``None``: ``1 / lambda_max`` from a Lanczos estimate.
        depth: ``"lissa"``: terms ``r`` of the series. Default ``None``: the smallest ``r``
            whose error bound is at most ``target_error``.
        target_error: ``"lissa"``: relative error wanted when ``depth`` is not given. Default
            ``None``: 1e-3.
        repeats: ``"lissa"``: independent series averaged (useful with ``hvp_batch_size``,
            whose mini-batches differ between repeats). Default 1.
        hvp_batch_size: ``"lissa"``: Hessian-vector products on random mini-batches of this
            many training points (Koh & Liang's stochastic estimate). Default ``None``: all.
        lanczos_steps: ``"lissa"``: Lanczos steps for the extreme eigenvalues that choose the
            scale and bound the error (exact when at least the number of parameters).
            Default 64.
        rank: ``"dattri-arnoldi"``: eigenpairs of ``H + damping I`` kept (the largest). The
            inverse is taken on their span only: directions outside it count zero, so the
            answer is exact only when ``rank`` reaches the number of parameters. Default 100.
        arnoldi_steps: ``"dattri-arnoldi"``: Arnoldi iterations (one Hessian-vector product
            each, on all the training points at once). Default ``None``: ``2 * rank``, at most
            the number of parameters plus one.
        batch_size: Examples per vectorised pass (memory). Default 512.
        seed: ``"lissa"``: seed of the mini-batches and of the Lanczos start;
            ``"dattri-arnoldi"``: seed of the Arnoldi start vector. Default 0.

    Returns:
        An ``InfluenceResult``.

    Raises:
        ValueError: non-finite losses or gradients, mismatched shapes, a Hessian that is not
            positive definite at ``damping`` (naming the smallest eigenvalue and the damping
            that would fix it), a LiSSA scale for which the series diverges (naming one that
            converges), or a model too large for ``"exact"``.
    """
    started = time.perf_counter()
    method = check_choice(method, "method", OWNER, METHODS)
    damping = float(check_float(damping, "damping", OWNER, low=0.0))  # type: ignore[arg-type]
    weight_decay = float(check_float(weight_decay, "weight_decay", OWNER, low=0.0))  # type: ignore[arg-type]
    batch_size = int(check_int(batch_size, "batch_size", OWNER, min_value=1))  # type: ignore[arg-type]
    if method == "dattri-arnoldi":
        # Checked before any gradient is computed, so a missing package or a bad rank costs
        # nothing.
        rank = int(check_int(rank, "rank", OWNER, min_value=1))  # type: ignore[arg-type]
        check_int(arnoldi_steps, "arnoldi_steps", OWNER, min_value=2, allow_none=True)
        require("dattri.func.projection", "dattri", "the 'dattri-arnoldi' method")
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"The 'model' parameter of {OWNER} must be a torch.nn.Module. "
            f"Got {type(model).__name__} instead."
        )
    dtype = next((p.dtype for p in model.parameters()), torch.float64)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x_train, y_train = _pair(train, "train", dtype, device)
    x_test, y_test = _pair(test, "test", dtype, device)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"The 'test' parameter of {OWNER} must hold inputs of the training inputs' shape "
            f"{tuple(x_train.shape[1:])} (past the first axis). Got {tuple(x_test.shape[1:])} "
            "instead."
        )
    problem = _Problem(model, loss, x_train, y_train, weight_decay, batch_size)
    g_train = _checked_gradients(problem, x_train, y_train, "train")
    g_test = _checked_gradients(problem, x_test, y_test, "test")
    # Solve for the test side (usually fewer points) and, if asked, every training point.
    right = torch.cat([g_test, g_train]) if self_influence else g_test
    n_test = len(g_test)

    residual: float | None = None
    bound: float | None = None
    estimate: float | None = None
    used_depth: int | None = None
    used_scale: float | None = None
    eigenvalues: tuple[float, float] | None = None
    if method == "exact":
        max_exact = int(check_int(max_exact_params, "max_exact_params", OWNER, min_value=1))  # type: ignore[arg-type]
        solved, n_hvp, eigenvalues = _exact(problem, right, damping, max_exact)
        residual = _relative_residual(problem, solved, right, damping, with_hvp=False)
    elif method == "cg":
        tol = float(check_float(tol, "tol", OWNER, low=0.0, include_low=False))  # type: ignore[arg-type]
        max_iter = int(check_int(max_iter, "max_iter", OWNER, min_value=1))  # type: ignore[arg-type]
        solved, n_hvp, used_depth = _cg(problem, right, damping, tol, max_iter)
        residual = _relative_residual(problem, solved, right, damping, with_hvp=True)
        n_hvp += len(right)
    elif method == "dattri-arnoldi":
        # Up to n_params Ritz pairs exist; dattri's max_iter counts the start vector too.
        rank = min(rank, problem.n_params)
        steps = min(2 * rank if arnoldi_steps is None else arnoldi_steps, problem.n_params + 1)
        if steps <= rank:
            raise ValueError(
                f"The 'arnoldi_steps' parameter of {OWNER} must exceed 'rank' (each kept "
                f"eigenpair needs an Arnoldi step). Got arnoldi_steps={arnoldi_steps!r} "
                f"and rank={rank!r} instead."
            )
        solved, n_hvp, used_depth, eigenvalues = _dattri_arnoldi(
            problem, right, damping, rank, steps, 0 if seed is None else seed
        )
        residual = _relative_residual(problem, solved, right, damping, with_hvp=True)
        n_hvp += len(right)
    else:
        solved, n_hvp, used_depth, used_scale, (bound, estimate), eigenvalues = _lissa(
            problem,
            right,
            damping,
            scale,
            depth,
            target_error,
            repeats,
            hvp_batch_size,
            lanczos_steps,
            seed,
        )
    matrix = -(g_train @ solved[:n_test].T)
    self_values = None
    if self_influence:
        self_values = (
            -(g_train * solved[n_test:]).sum(dim=1).detach().cpu().numpy().astype(np.float64)
        )
    return InfluenceResult(
        matrix=matrix.detach().cpu().numpy().astype(np.float64),
        self_influence=self_values,
        method=method,
        damping=damping,
        n_hvp=int(n_hvp),
        seconds=time.perf_counter() - started,
        residual=residual,
        error_bound=bound,
        error_estimate=estimate,
        depth=used_depth,
        scale=used_scale,
        eigenvalues=eigenvalues,
    )


def _pair(
    data: Any, name: str, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise TypeError(
            f"The {name!r} parameter of {OWNER} must be a pair (x, y) of inputs and targets. "
            f"Got {type(data).__name__} instead."
        )
    x = torch.as_tensor(np.asarray(data[0]) if not isinstance(data[0], torch.Tensor) else data[0])
    y = torch.as_tensor(np.asarray(data[1]) if not isinstance(data[1], torch.Tensor) else data[1])
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"The {name!r} parameter of {OWNER} holds no examples.")
    if len(y) != len(x):
        raise ValueError(
            f"The {name!r} parameter of {OWNER} must hold one target per input. Got {len(x)} "
            f"inputs and {len(y)} targets instead."
        )
    x = x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype)
    y = y.to(device=device, dtype=dtype if y.is_floating_point() else y.dtype)
    return x, y


def _checked_gradients(
    problem: _Problem, x: torch.Tensor, y: torch.Tensor, name: str
) -> torch.Tensor:
    losses = problem.losses(x, y)
    if losses.shape != (len(x),):
        raise ValueError(
            f"The 'loss' parameter of {OWNER} must return one loss per example (shape "
            f"({len(x)},)). Got shape {tuple(losses.shape)} on {name!r} instead (use "
            "reduction='none')."
        )
    bad = torch.nonzero(~torch.isfinite(losses)).flatten()
    if len(bad):
        raise ValueError(
            f"The loss is not finite on {len(bad)} example(s) of the {name!r} parameter of "
            f"{OWNER}, first at index {int(bad[0])}: {float(losses[bad[0]])!r}."
        )
    gradients = problem.gradients(x, y)
    bad = torch.nonzero(~torch.isfinite(gradients).all(dim=1)).flatten()
    if len(bad):
        raise ValueError(
            f"The loss gradient is not finite on {len(bad)} example(s) of the {name!r} "
            f"parameter of {OWNER}, first at index {int(bad[0])}."
        )
    return gradients


def _not_positive_definite(smallest: float, damping: float, how: str) -> ValueError:
    # The smallest eigenvalue of H alone is smallest - damping; any damping above its negative
    # makes H + damping I positive definite. Suggest a margin of 1% of that (at least 1e-8).
    needed = damping - smallest
    return ValueError(
        f"The Hessian plus damping is not positive definite: its smallest eigenvalue {how} is "
        f"{smallest:.6g} at damping={damping!r}. The 'damping' parameter of {OWNER} must exceed "
        f"{needed:.6g} (e.g. damping={needed * 1.01 + 1e-8:.3g}), or train the model closer to "
        "a minimum."
    )


def _exact(
    problem: _Problem, right: torch.Tensor, damping: float, max_params: int
) -> tuple[torch.Tensor, int, tuple[float, float]]:
    p = problem.n_params
    if p > max_params:
        raise ValueError(
            f"The model has {p} parameters, more than max_exact_params={max_params}, so "
            f"method='exact' of {OWNER} would form a {p} x {p} Hessian. Use method='cg' or "
            "'lissa', or raise 'max_exact_params'."
        )
    hessian = problem.hessian()
    values, vectors = torch.linalg.eigh(hessian + damping * torch.eye(p, dtype=hessian.dtype))
    smallest, largest = float(values[0]), float(values[-1])
    # A relative floor: eigenvalues at rounding level of the largest count as zero.
    if smallest <= 1e-12 * max(abs(largest), 1.0):
        raise _not_positive_definite(smallest, damping, "(exact)")
    solved = ((right @ vectors) / values) @ vectors.T
    return solved, p, (smallest, largest)


def _relative_residual(
    problem: _Problem, solved: torch.Tensor, right: torch.Tensor, damping: float, *, with_hvp: bool
) -> float:
    applied = (
        torch.cat([problem.hvp(solved[c]) for c in problem.chunks(len(solved))]) + damping * solved
    )
    norms = right.norm(dim=1).clamp_min(torch.finfo(right.dtype).tiny)
    return float(((applied - right).norm(dim=1) / norms).max())


def _cg(
    problem: _Problem, right: torch.Tensor, damping: float, tol: float, max_iter: int
) -> tuple[torch.Tensor, int, int]:
    """Conjugate gradients on every right-hand side at once (one batched HVP per iteration)."""
    solution = torch.zeros_like(right)
    residual = right.clone()
    direction = residual.clone()
    rho = (residual * residual).sum(dim=1)
    goal = (tol * right.norm(dim=1)) ** 2
    active = rho > goal
    n_hvp = 0
    iterations = 0
    while active.any() and iterations < max_iter:
        rows = torch.nonzero(active).flatten()
        d = direction[rows]
        applied = problem.hvp(d) + damping * d
        n_hvp += len(rows)
        iterations += 1
        curvature = (d * applied).sum(dim=1)
        flat = curvature <= 0
        if flat.any():
            k = int(torch.nonzero(flat).flatten()[0])
            quotient = float(curvature[k] / (d[k] * d[k]).sum())
            raise _not_positive_definite(
                quotient, damping, "(at most; a Rayleigh quotient met by conjugate gradients)"
            )
        step = rho[rows] / curvature
        solution[rows] += step[:, None] * d
        residual[rows] -= step[:, None] * applied
        new_rho = (residual[rows] * residual[rows]).sum(dim=1)
        direction[rows] = residual[rows] + (new_rho / rho[rows])[:, None] * d
        rho[rows] = new_rho
        active = rho > goal
    return solution, n_hvp, iterations


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    # dattri's Arnoldi allocates its start vector and its Hessenberg matrix in torch's default
    # dtype; a float64 model would meet float32 vectors (an error) and lose the precision the
    # user asked for. Restored even on error, so the caller's setting survives.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _dattri_arnoldi(
    problem: _Problem, right: torch.Tensor, damping: float, rank: int, steps: int, seed: int
) -> tuple[torch.Tensor, int, int, tuple[float, float]]:
    """``(H + damping I)^-1`` on the span of the top ``rank`` Ritz vectors of dattri's Arnoldi
    iteration (``ArnoldiProjector``, Schioppa et al. 2022), applied to each row of ``right``.

    dattri sees the mean training loss as a function of the flat parameters; the weight decay
    and the damping are both a multiple of I, so they enter as its ``regularization``. The
    per-example gradients stay ours (``_Problem.gradients``), so the shapes, the chunking and
    the sign are those of the other methods.
    """
    projection = require("dattri.func.projection", "dattri", "the 'dattri-arnoldi' method")

    def objective(flat: torch.Tensor) -> torch.Tensor:
        parts = [
            problem.objective_part(flat, problem.x[c], problem.y[c])
            for c in problem.chunks(len(problem.x))
        ]
        return torch.stack(parts).sum()

    dtype = problem.theta.dtype
    # dattri seeds torch's global generator for its start vector; fork_rng leaves the
    # caller's random state as it was.
    with _default_dtype(dtype), warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        # dattri warns (UserWarning) when a Ritz value is not positive and then keeps it all the
        # same; the check below decides what such a value means instead.
        warnings.simplefilter("ignore", UserWarning)
        projector = projection.ArnoldiProjector(
            feature_dim=problem.n_params,
            proj_dim=rank,
            func=objective,
            x=problem.theta.detach(),
            max_iter=steps,
            tol=1e-7 if dtype == torch.float32 else 1e-12,
            regularization=problem.weight_decay + damping,
            # Reverse-over-reverse: the gradient's graph is built once and each product is a
            # backward pass through it (the default forward-over-reverse loads torch's JIT
            # decompositions, which warn on this torch).
            mode="rev-rev",
            seed=seed,
            device=problem.theta.device,
        )
        projector.get_eigenspace()
    values = projector.eigvals.detach().to(dtype)
    vectors = projector.eigvecs.detach().to(dtype)  # (kept, n_params), rows ~ orthonormal
    n_hvp = steps - 1  # dattri's max_iter - 1 products (at most: it stops if the space closes)
    # Check every kept pair against the Rayleigh quotient of its vector (one batched product).
    # With an orthonormal basis they agree to rounding. dattri orthogonalises once per step and
    # misses a Krylov space that closes early (a repeated eigenvalue, e.g. the softmax's shift
    # invariance), after which it keeps ghost pairs (measured: a Ritz value of 1e-18 where
    # every eigenvalue is >= 3e-3), which would blow up the inverse: drop any pair whose value
    # is more than 1% off its quotient. A quotient <= 0 certifies that H + damping I is not
    # positive definite.
    applied = torch.cat([problem.hvp(vectors[c]) for c in problem.chunks(len(vectors))])
    applied = applied + damping * vectors
    n_hvp += len(vectors)
    quotients = (vectors * applied).sum(dim=1) / (vectors * vectors).sum(dim=1)
    if bool((quotients <= 0).any()):
        raise _not_positive_definite(
            float(quotients.min()),
            damping,
            "(at most; a Rayleigh quotient of an Arnoldi Ritz vector)",
        )
    keep = (values - quotients).abs() <= 0.01 * quotients
    if not bool(keep.any()):
        raise ValueError(
            f"dattri's Arnoldi iteration returned no usable eigenpair (each Ritz value is more "
            f"than 1% off its vector's Rayleigh quotient). Raise the 'arnoldi_steps' or the "
            f"'damping' parameter of {OWNER}, or compute in float64."
        )
    values, vectors = values[keep], vectors[keep] / vectors[keep].norm(dim=1, keepdim=True)
    solved = ((right @ vectors.T) / values) @ vectors
    return solved, n_hvp, len(values), (float(values.min()), float(values.max()))


def _lanczos_extremes(
    problem: _Problem, damping: float, steps: int, seed: int | None
) -> tuple[float, float]:
    """Smallest and largest Ritz values of ``H + damping I`` after ``steps`` Lanczos steps
    (full reorthogonalisation). Exact when ``steps`` reaches the number of parameters;
    before that the largest is a lower estimate of the true largest eigenvalue and the
    smallest an upper estimate of the true smallest."""
    p = problem.n_params
    steps = min(steps, p)
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    q = torch.randn(p, generator=generator, dtype=problem.theta.dtype).to(problem.theta.device)
    basis = [q / q.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(steps):
        w = problem.hvp(basis[j][None])[0] + damping * basis[j]
        alphas.append(float(w @ basis[j]))
        stacked = torch.stack(basis)
        w = w - stacked.T @ (stacked @ w)
        w = w - stacked.T @ (stacked @ w)
        beta = float(w.norm())
        if j == steps - 1 or beta <= 1e-12 * max(abs(alphas[0]), 1.0):
            break
        betas.append(beta)
        basis.append(w / beta)
    tridiagonal = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    ritz = np.linalg.eigvalsh(tridiagonal)
    return float(ritz[0]), float(ritz[-1])


def lissa_error_bound(scale: float, smallest: float, largest: float, depth: int) -> float:
    """Relative error of ``alpha sum_{i=0}^{r} (I - A)^i v`` against ``(H + lambda I)^-1 v``.

    With ``A = alpha (H + lambda I)`` the remainder is ``A^-1 (I - A)^{r+1}`` (Problem 10.1.4),
    so the relative error in the 2-norm is at most ``rho^(r+1)`` with ``rho = max |1 - a|``
    over A's eigenvalues, i.e. over ``alpha * smallest`` and ``alpha * largest``. (The
    chapter's statement uses ``lambda_max(A)``; the remainder's largest eigenvalue is
    ``(1 - a)^(r+1) / a`` at the *smallest* ``a``, which is what this bound follows.)
    """
    rho = max(abs(1.0 - scale * smallest), abs(1.0 - scale * largest))
    return float(rho ** (depth + 1))


def lissa_depth(scale: float, smallest: float, largest: float, target_error: float) -> int:
    """The smallest depth ``r`` with ``lissa_error_bound(...) <= target_error``."""
    rho = max(abs(1.0 - scale * smallest), abs(1.0 - scale * largest))
    if rho == 0.0:
        return 0
    return max(0, math.ceil(math.log(target_error) / math.log(rho)) - 1)


def _lissa(
    problem: _Problem,
    right: torch.Tensor,
    damping: float,
    scale: float | None,
    depth: int | None,
    target_error: float | None,
    repeats: int,
    hvp_batch_size: int | None,
    lanczos_steps: int,
    seed: int | None,
) -> tuple[torch.Tensor, int, int, float, tuple[float | None, float], tuple[float, float]]:
    repeats = int(check_int(repeats, "repeats", OWNER, min_value=1))  # type: ignore[arg-type]
    lanczos_steps = int(check_int(lanczos_steps, "lanczos_steps", OWNER, min_value=1))  # type: ignore[arg-type]
    check_int(depth, "depth", OWNER, min_value=0, allow_none=True)
    check_float(
        target_error,
        "target_error",
        OWNER,
        low=0.0,
        high=1.0,
        include_low=False,
        include_high=False,
        allow_none=True,
    )
    check_int(hvp_batch_size, "hvp_batch_size", OWNER, min_value=1, allow_none=True)
    if depth is not None and target_error is not None:
        raise ValueError(
            f"Give at most one of the 'depth' and 'target_error' parameters of {OWNER} (the "
            f"depth follows from the target error). Got depth={depth!r} and "
            f"target_error={target_error!r}."
        )
    smallest, largest = _lanczos_extremes(problem, damping, lanczos_steps, seed)
    n_hvp = min(lanczos_steps, problem.n_params)
    if smallest <= 0:
        raise _not_positive_definite(smallest, damping, "(Lanczos estimate)")
    if scale is None:
        scale = 1.0 / largest
    scale = float(check_float(scale, "scale", OWNER, low=0.0, include_low=False))  # type: ignore[arg-type]
    if scale * largest >= 2.0:
        raise ValueError(
            f"LiSSA diverges with scale={scale!r}: scale * lambda_max(H + damping I) = "
            f"{scale * largest:.4g} >= 2 (lambda_max ~ {largest:.6g}, Lanczos). The 'scale' "
            f"parameter of {OWNER} must be below 2 / lambda_max = {2.0 / largest:.6g}; "
            f"scale={1.0 / largest:.6g} converges fastest for the top eigenvalue."
        )
    if depth is None:
        depth = lissa_depth(
            scale, smallest, largest, 1e-3 if target_error is None else target_error
        )
    estimate = lissa_error_bound(scale, smallest, largest, depth)
    exact_spectrum = lanczos_steps >= problem.n_params
    full_batch = hvp_batch_size is None or hvp_batch_size >= len(problem.x)
    bound = estimate if exact_spectrum and full_batch else None
    generator = np.random.default_rng(seed)
    n_train = len(problem.x)
    total = torch.zeros_like(right)
    limit = 2.0 * right.norm(dim=1) / (scale * smallest) + 1.0  # ||series|| <= ||v|| / a_min
    for _ in range(repeats):
        current = right.clone()
        for _step in range(depth):
            if hvp_batch_size is None or hvp_batch_size >= n_train:
                applied = problem.hvp(current)
            else:
                rows = torch.as_tensor(generator.choice(n_train, hvp_batch_size, replace=False))
                applied = problem.hvp(current, problem.x[rows], problem.y[rows])
            current = right + current - scale * (applied + damping * current)
            n_hvp += len(right)
            if not torch.isfinite(current).all() or bool((current.norm(dim=1) > limit).any()):
                raise ValueError(
                    f"LiSSA diverged with scale={scale!r} after {_step + 1} terms (the series "
                    "grew past its bound ||v|| / (scale * lambda_min)); the Lanczos estimate "
                    f"lambda_max ~ {largest:.6g} is too low or the mini-batch Hessians vary. "
                    f"The 'scale' parameter of {OWNER} must be below 2 / lambda_max; try "
                    f"scale={0.5 / largest:.6g}."
                )
        total += scale * current
    return total / repeats, n_hvp, depth, scale, (bound, estimate), (smallest, largest)
