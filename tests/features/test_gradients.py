"""The gradient family and Captum's Shapley estimators through ``attribute``: the same game, the
same result type, completeness where it holds, the model left alone."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import neuronshapley as ns
from neuronshapley.features import FeatureGame
from neuronshapley.features.gradients import METHODS, attribute


def relu_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )


@pytest.mark.parametrize("method", METHODS)
def test_every_method_returns_the_common_result_type_with_its_cost(method: str) -> None:
    model, x = relu_mlp(), torch.randn(6)
    result = attribute(method, model, x, target=2)
    assert isinstance(result, ns.ShapleyResult) and result.estimator == method
    assert result.player_names == FeatureGame(model, x).player_names
    assert result.params["target"] == 2 and result.params["baseline"] == "zero"
    assert result.diagnostics["network_evaluations"] == result.n_evaluations >= 1
    assert np.isfinite(result.diagnostics["completeness_error"])
    if method in ("shapley_sampling", "kernel_shap"):
        assert result.diagnostics["gradient_calls"] == 0 and result.seed == 0


def test_on_a_linear_model_every_baseline_method_is_the_exact_shapley_value() -> None:
    """For f(x) = w.x + c the Shapley value of feature i is w_i (x_i - r_i): IG (the gradient
    is constant along the path), DeepLIFT (Rescale is exact on linear maps) and Captum's two
    estimators (every marginal contribution is w_i (x_i - r_i)) all give it; gradient x input is
    it for a zero baseline. 1e-4: float32 sums of a few terms of order 1."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(7, 4), nn.Linear(4, 2))
    x, baseline = torch.randn(7), torch.randn(7)
    truth = ns.exact_shapley(FeatureGame(model, x, baseline=baseline, target=1)).values
    for method in ("integrated_gradients", "deeplift", "shapley_sampling", "kernel_shap"):
        values = attribute(method, model, x, baseline=baseline, target=1).values
        np.testing.assert_allclose(values, truth, atol=1e-4, err_msg=method)
    zero_truth = ns.exact_shapley(FeatureGame(model, x, target=1)).values
    np.testing.assert_allclose(
        attribute("input_x_gradient", model, x, target=1).values, zero_truth, atol=1e-4
    )


def test_integrated_gradients_is_complete_once_the_path_has_enough_steps() -> None:
    """On a ReLU MLP the integrand is piecewise constant along the path, so the quadrature error
    shrinks with the steps: measured 1.2% of f(x) - f(r) at 8 steps, 0.03% at 256; we ask
    for under 0.2% at 256."""
    model, x = relu_mlp(2), torch.randn(6) * 2
    coarse = attribute("integrated_gradients", model, x, n_steps=8)
    fine = attribute("integrated_gradients", model, x, n_steps=256)
    scale = abs(fine.diagnostics["output_difference"])
    assert abs(fine.diagnostics["completeness_error"]) < 2e-3 * scale
    assert abs(fine.diagnostics["completeness_error"]) < abs(
        coarse.diagnostics["completeness_error"]
    )
    np.testing.assert_allclose(
        fine.diagnostics["completeness_error"], fine.diagnostics["captum_delta"], atol=1e-4
    )
    assert fine.diagnostics["gradient_calls"] == 256 and fine.params["n_steps"] == 256


def test_deeplift_sums_to_the_difference_of_outputs_on_a_relu_mlp() -> None:
    """DeepLIFT's summation-to-delta; 1e-4 of the difference is float32 rounding."""
    model = relu_mlp(3)
    for x in torch.randn(4, 6):
        for baseline in ("zero", torch.randn(6)):
            result = attribute("deeplift", model, x, baseline=baseline, target=0)
            error = result.diagnostics["completeness_error"]
            assert abs(error) <= 1e-4 * max(1.0, abs(result.diagnostics["output_difference"]))


def test_a_background_set_averages_the_attributions_over_its_rows() -> None:
    model, x, background = relu_mlp(4), torch.randn(6), torch.randn(3, 6)
    mean = np.mean(
        [attribute("deeplift", model, x, baseline=row, target=1).values for row in background],
        axis=0,
    )
    result = attribute("deeplift", model, x, baseline=background, target=1)
    np.testing.assert_allclose(result.values, mean, atol=1e-6)
    assert result.params["n_baseline_rows"] == 3 and result.diagnostics["gradient_calls"] == 3


def test_groups_sum_gradient_attributions_and_are_captums_feature_mask() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(6, 2))
    x = torch.randn(6)
    groups = [np.array([0, 1, 2]), np.array([3, 4, 5])]
    truth = ns.exact_shapley(FeatureGame(model, x, groups=groups, target=0)).values
    per_feature = attribute("input_x_gradient", model, x, target=0).values
    grouped = attribute("input_x_gradient", model, x, target=0, groups=groups)
    np.testing.assert_allclose(grouped.values, [per_feature[:3].sum(), per_feature[3:].sum()])
    assert grouped.player_names == ["group0", "group1"]
    for method in ("shapley_sampling", "kernel_shap"):
        values = attribute(method, model, x, target=0, groups=groups).values
        np.testing.assert_allclose(values, truth, atol=1e-4, err_msg=method)


def test_sampling_methods_repeat_with_the_seed_and_leave_the_global_random_state() -> None:
    model, x = relu_mlp(6), torch.randn(6)
    state = torch.random.get_rng_state()
    first = attribute("shapley_sampling", model, x, n_samples=3, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = attribute("shapley_sampling", model, x, n_samples=3, seed=7)
    np.testing.assert_array_equal(first.values, again.values)
    assert first.diagnostics["network_evaluations"] >= 3 * 6


def test_the_model_leaves_as_it_came_mode_weights_gradients_and_hooks() -> None:
    model = relu_mlp(8)
    model.train()
    model[1].eval()
    before = copy.deepcopy(model.state_dict())
    for method in METHODS:
        attribute(method, model, torch.randn(6))
    assert model.training and not model[1].training and model[0].training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(parameter.grad is None for parameter in model.parameters())
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks


def test_an_unknown_method_is_named_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"'method' parameter of attribute must be one of .*"):
        attribute("gradcam", relu_mlp(), torch.randn(6))
    with pytest.raises(ValueError, match=r"'n_steps' parameter of attribute must be an int"):
        attribute("integrated_gradients", relu_mlp(), torch.randn(6), n_steps=1)
    with pytest.raises(ValueError, match=r"'target' parameter of FeatureGame"):
        attribute("saliency", relu_mlp(), torch.randn(6), target=3)
