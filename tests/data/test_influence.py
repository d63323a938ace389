"""Influence functions (chapter §10.1) against what they approximate: exact solves, the
LiSSA series' own error bound, conjugate gradients' residual, and leave-one-out retraining."""

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.datasets import load_digits

from neuronshapley.data.influence import influence, lissa_error_bound
from neuronshapley.data.loo import fit_lbfgs, leave_one_out


def squared(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((outputs - targets) ** 2).sum(dim=1)


@pytest.fixture(scope="module")
def softmax_digits() -> tuple[torch.nn.Module, tuple, tuple]:
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    train = (torch.tensor(x[:200]), torch.tensor(y[:200]))
    test = (torch.tensor(x[1000:1004]), torch.tensor(y[1000:1004]))
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 10).double()
    gradient = fit_lbfgs(model, train, weight_decay=1e-2, max_iter=2000)
    assert gradient < 1e-9
    return model, train, test


@pytest.fixture(scope="module")
def small_regression() -> tuple[torch.nn.Module, tuple, tuple]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(40, 5, generator=generator, dtype=torch.float64)
    y = x @ torch.randn(5, 3, generator=generator, dtype=torch.float64)
    y += 0.3 * torch.randn(40, 3, generator=generator, dtype=torch.float64)
    model = torch.nn.Linear(5, 3).double()
    fit_lbfgs(model, (x[:30], y[:30]), loss=squared, weight_decay=1e-3)
    return model, (x[:30], y[:30]), (x[30:], y[30:])


@pytest.mark.parametrize("method", ["exact", "cg", "lissa"])
def test_influence_predicts_leave_one_out_retraining_on_digits(softmax_digits, method) -> None:
    # Koh & Liang's protocol: change of test loss after removing a point and retraining from the
    # optimum, against -I/n. Measured at this size (200 points, 20 removed x 4 test points,
    # weight decay 1e-2): Pearson and Spearman 0.999 for every method; the thresholds are the
    # issue's targets (docs/data.md has the 1,000-point figures).
    model, train, test = softmax_digits
    removed = list(range(0, 200, 10))
    retrained = leave_one_out(model, train, test, removed, weight_decay=1e-2)
    result = influence(model, train, test, weight_decay=1e-2, method=method, self_influence=False)
    predicted = result.loo_estimate()[removed]
    assert pearsonr(predicted.ravel(), retrained.ravel())[0] >= 0.97
    assert spearmanr(predicted.ravel(), retrained.ravel())[0] >= 0.95


def test_influence_on_ridge_regression_misses_leave_one_out_by_order_one_over_n_squared() -> None:
    # Removing a point changes the test loss by O(1/n); -I/n is its first-order term, and what
    # is left (the Hessian's own change, H_i / n, and the test loss's curvature) is O(1/n^2).
    # Measured (this seed): gap * n^2 = 39 at n = 100 and 57 at n = 400; 1,600 gives 55.
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(440, 5, generator=generator, dtype=torch.float64)
    y = x @ torch.randn(5, 3, generator=generator, dtype=torch.float64)
    y += 0.3 * torch.randn(440, 3, generator=generator, dtype=torch.float64)
    test = (x[400:], y[400:])
    gaps = {}
    for n in (100, 400):
        model = torch.nn.Linear(5, 3).double()
        fit_lbfgs(model, (x[:n], y[:n]), loss=squared, weight_decay=1e-3)
        removed = list(range(20))
        retrained = leave_one_out(
            model, (x[:n], y[:n]), test, removed, loss=squared, weight_decay=1e-3
        )
        result = influence(model, (x[:n], y[:n]), test, loss=squared, weight_decay=1e-3)
        gaps[n] = np.abs(result.loo_estimate()[removed] - retrained).max()
    assert gaps[400] <= gaps[100] / 8  # 1/n^2 predicts 16; 1/n would give 4
    assert gaps[400] * 400**2 <= 2 * gaps[100] * 100**2


def test_self_influence_is_the_diagonal_of_the_train_on_train_matrix(small_regression) -> None:
    model, train, _ = small_regression
    result = influence(model, train, train, loss=squared, weight_decay=1e-3)
    np.testing.assert_allclose(result.self_influence, np.diag(result.matrix), rtol=1e-10)
    assert (result.self_influence < 0).all()  # -g^T H^-1 g with H positive definite


def test_lissa_error_stays_within_the_bound_of_problem_10_1_4(small_regression) -> None:
    model, train, test = small_regression
    exact = influence(model, train, test, loss=squared, weight_decay=1e-3, self_influence=False)
    for depth in (5, 20, 80):
        lissa = influence(
            model,
            train,
            test,
            loss=squared,
            weight_decay=1e-3,
            method="lissa",
            depth=depth,
            lanczos_steps=18,
            self_influence=False,
        )  # 18 Lanczos steps = the number of parameters: exact extremes
        error = np.abs(lissa.matrix - exact.matrix).max() / np.abs(exact.matrix).max()
        assert lissa.depth == depth
        # The bound is on each solve in the 2-norm; the matrix entries are inner products with
        # gradients, so their relative error can exceed it by the gradients' condition. Measured
        # here within the bound itself; a factor 10 for that slack.
        assert error <= 10 * lissa.error_bound
    smallest, largest = exact.eigenvalues
    assert lissa_error_bound(1 / largest, smallest, largest, 80) == pytest.approx(lissa.error_bound)


def test_lissa_picks_the_depth_that_meets_a_target_error(small_regression) -> None:
    model, train, test = small_regression
    result = influence(
        model,
        train,
        test,
        loss=squared,
        weight_decay=1e-3,
        method="lissa",
        target_error=1e-6,
        lanczos_steps=18,
        self_influence=False,
    )
    smallest, largest = result.eigenvalues
    assert result.error_bound <= 1e-6
    assert lissa_error_bound(result.scale, smallest, largest, result.depth - 1) > 1e-6


def test_cg_reaches_the_residual_it_was_asked_for(small_regression) -> None:
    model, train, test = small_regression
    result = influence(model, train, test, loss=squared, weight_decay=1e-3, method="cg", tol=1e-10)
    exact = influence(model, train, test, loss=squared, weight_decay=1e-3)
    assert result.residual <= 1e-9  # the recurrence's 1e-10, recomputed directly
    np.testing.assert_allclose(result.matrix, exact.matrix, rtol=1e-6, atol=1e-12)
    assert result.n_hvp > 0 and result.seconds > 0


def concave(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -squared(outputs, targets)


def test_a_hessian_that_is_not_positive_definite_names_its_eigenvalue_and_the_fix(
    small_regression,
) -> None:
    model, train, test = small_regression
    with pytest.raises(ValueError, match=r"smallest eigenvalue .* is -[0-9.]+.*must exceed"):
        influence(model, train, test, loss=concave)
    with pytest.raises(ValueError, match="not positive definite"):
        influence(model, train, test, loss=concave, method="cg")
    # The damping the message suggests works.
    try:
        influence(model, train, test, loss=concave)
    except ValueError as error:
        suggested = float(str(error).split("e.g. damping=")[1].split(")")[0])
    result = influence(model, train, test, loss=concave, damping=suggested)
    assert np.isfinite(result.matrix).all()


def test_lissa_with_too_large_a_scale_says_which_scale_converges(small_regression) -> None:
    model, train, test = small_regression
    with pytest.raises(ValueError, match=r"LiSSA diverges with scale=100.0.*must be below"):
        influence(
            model,
            train,
            test,
            loss=squared,
            weight_decay=1e-3,
            method="lissa",
            scale=100.0,
            depth=10,
            lanczos_steps=18,
        )


def test_bad_input_is_named(small_regression) -> None:
    model, train, test = small_regression
    with pytest.raises(ValueError, match=r"'test' parameter .* shape \(5,\).*Got \(4,\)"):
        influence(model, train, (test[0][:, :4], test[1]), loss=squared)
    bad = test[1].clone()
    bad[2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"not finite on 1 example\(s\) of the 'test'.*index 2"):
        influence(model, train, (test[0], bad), loss=squared)
    with pytest.raises(ValueError, match="'method' parameter of influence"):
        influence(model, train, test, loss=squared, method="newton")
    with pytest.raises(ValueError, match="'damping' parameter of influence"):
        influence(model, train, test, loss=squared, damping=-1.0)
    with pytest.raises(ValueError, match="more than max_exact_params=10"):
        influence(model, train, test, loss=squared, max_exact_params=10)
    with pytest.raises(ValueError, match="at most one of the 'depth' and 'target_error'"):
        influence(model, train, test, loss=squared, method="lissa", depth=3, target_error=0.1)


def test_the_model_is_left_as_it_came(small_regression) -> None:
    model, train, test = small_regression
    before = [p.detach().clone() for p in model.parameters()]
    influence(model, train, test, loss=squared, method="lissa", depth=3)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_the_truncation_bound_is_reported_only_where_it_is_one(small_regression) -> None:
    """Lanczos with fewer steps than parameters, or mini-batch Hessians, give estimates of the
    extreme eigenvalues, not bounds: the error is then an estimate, never printed as a bound."""
    model, train, test = small_regression  # 18 parameters
    options = {"loss": squared, "weight_decay": 1e-3, "method": "lissa", "depth": 20}
    few = influence(model, train, test, lanczos_steps=4, **options)
    assert few.error_bound is None and few.error_estimate is not None
    batches = influence(model, train, test, lanczos_steps=18, hvp_batch_size=10, seed=0, **options)
    assert batches.error_bound is None
    full = influence(model, train, test, lanczos_steps=18, **options)
    assert full.error_bound is not None and full.error_bound == full.error_estimate
