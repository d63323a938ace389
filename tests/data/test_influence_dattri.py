"""The optional dattri backend of influence (method="dattri-arnoldi") against the exact
inverse: at full rank it is the exact answer; at a lower rank, the exact inverse restricted to
the top eigenvectors of H + lambda I, which is what the Arnoldi approximation claims to be."""

import sys

import numpy as np
import pytest
import torch

from neuronshapley.data.influence import influence
from neuronshapley.data.loo import fit_lbfgs

pytest.importorskip("dattri")

WEIGHT_DECAY = 1e-2


@pytest.fixture(scope="module")
def tanh_mlp() -> tuple[torch.nn.Module, tuple, tuple]:
    # 6 -> 5 -> 3 with softmax: 53 parameters, and the softmax's shift invariance gives H + wd I
    # the eigenvalue wd six times, the case where dattri's Krylov space closes early.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(80, 6, generator=generator, dtype=torch.float64)
    w = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    y = (x @ w + 0.5 * torch.randn(80, 3, generator=generator, dtype=torch.float64)).argmax(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    model = model.double()
    gradient = fit_lbfgs(model, (x[:60], y[:60]), weight_decay=WEIGHT_DECAY, max_iter=3000)
    assert gradient < 1e-7
    return model, (x[:60], y[:60]), (x[60:], y[60:])


def test_full_rank_arnoldi_is_the_exact_inverse(tanh_mlp) -> None:
    # With as many steps as parameters the Ritz pairs are H's eigenpairs up to rounding, so the
    # two answers differ by float64 rounding through an eigendecomposition (measured 1e-13
    # relative); 1e-8 leaves room for a condition number of 1e5 (this one is 3e2).
    model, train, test = tanh_mlp
    exact = influence(model, train, test, weight_decay=WEIGHT_DECAY)
    arnoldi = influence(
        model, train, test, weight_decay=WEIGHT_DECAY, method="dattri-arnoldi", rank=53
    )
    scale = np.abs(exact.matrix).max()
    np.testing.assert_allclose(arnoldi.matrix, exact.matrix, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(
        arnoldi.self_influence,
        exact.self_influence,
        rtol=0,
        atol=1e-8 * np.abs(exact.self_influence).max(),
    )
    assert arnoldi.method == "dattri-arnoldi" and arnoldi.matrix.shape == (60, 20)
    assert arnoldi.residual <= 1e-8
    assert arnoldi.eigenvalues == pytest.approx(exact.eigenvalues, rel=1e-8)


def test_lower_rank_is_the_inverse_on_the_top_eigenvectors(tanh_mlp) -> None:
    # The approximation's own claim: (H + lambda I)^-1 ~ sum over the top-k eigenpairs of
    # v v^T / mu. With a full Krylov space (arnoldi_steps = parameters + 1) the top-k Ritz pairs
    # are exact, so the answer equals that truncated inverse built here from H itself (formed
    # with autograd), to rounding; k = 20 of 53 is far from the exact answer
    # (measured 46% off), so agreement here is not agreement with the full inverse.
    model, train, test = tanh_mlp
    params = dict(model.named_parameters())
    names = list(params)
    flat = torch.cat([p.detach().reshape(-1) for p in params.values()])
    sizes = [p.numel() for p in params.values()]

    def unflatten(theta: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = torch.split(theta, sizes)
        return {n: t.view(params[n].shape) for n, t in zip(names, pieces, strict=True)}

    def losses(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        outputs = torch.func.functional_call(model, unflatten(theta), (x,))
        return torch.nn.functional.cross_entropy(outputs, y, reduction="none")

    # Reverse over reverse: forward-mode AD loads JIT decompositions that warn on this torch.
    hessian = torch.func.jacrev(torch.func.jacrev(lambda t: losses(t, *train).mean()))(flat)
    hessian = hessian + WEIGHT_DECAY * torch.eye(len(flat), dtype=torch.float64)
    mu, vectors = torch.linalg.eigh(hessian)
    top_mu, top = mu[-20:], vectors[:, -20:]
    per_example = torch.func.vmap(
        torch.func.grad(lambda t, x, y: losses(t, x, y).sum()), in_dims=(None, 0, 0)
    )
    g_train = per_example(flat, train[0][:, None], train[1][:, None])
    g_test = per_example(flat, test[0][:, None], test[1][:, None])
    truncated = -(g_train @ top) @ ((g_test @ top) / top_mu).T

    arnoldi = influence(
        model,
        train,
        test,
        weight_decay=WEIGHT_DECAY,
        method="dattri-arnoldi",
        rank=20,
        arnoldi_steps=54,
        self_influence=False,
    )
    scale = float(truncated.abs().max())
    np.testing.assert_allclose(arnoldi.matrix, truncated.numpy(), rtol=0, atol=1e-8 * scale)
    assert arnoldi.depth == 20
    exact = influence(model, train, test, weight_decay=WEIGHT_DECAY, self_influence=False)
    assert np.abs(arnoldi.matrix - exact.matrix).max() > 0.1 * np.abs(exact.matrix).max()


def test_the_caller_state_is_left_as_it_came(tanh_mlp) -> None:
    # dattri seeds torch's global generator and allocates in the default dtype; neither leaks.
    model, train, test = tanh_mlp
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    before = [p.detach().clone() for p in model.parameters()]
    influence(model, train, test, weight_decay=WEIGHT_DECAY, method="dattri-arnoldi", rank=10)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_default_dtype() == torch.float32
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def concave(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -torch.nn.functional.cross_entropy(outputs, targets, reduction="none")


def test_bad_input_is_named(tanh_mlp, monkeypatch) -> None:
    model, train, test = tanh_mlp
    options = {"weight_decay": WEIGHT_DECAY, "method": "dattri-arnoldi"}
    with pytest.raises(ValueError, match="'rank' parameter of influence"):
        influence(model, train, test, rank=0, **options)
    with pytest.raises(ValueError, match=r"'arnoldi_steps' parameter of influence must exceed"):
        influence(model, train, test, rank=10, arnoldi_steps=10, **options)
    with pytest.raises(ValueError, match=r"not positive definite.*Rayleigh quotient"):
        influence(model, train, test, loss=concave, rank=10, **options)
    # Without the package: the install hint, before any gradient is computed.
    monkeypatch.setitem(sys.modules, "dattri.func.projection", None)
    with pytest.raises(ImportError, match=r"pip install 'neuronshapley\[dattri\]'"):
        influence(model, train, test, **options)
