"""FeatureGame: values by hand, players and groups, batching, the model left alone, bad input."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import neuronshapley as ns
from neuronshapley.features import FeatureGame, image_patches


def linear_model() -> nn.Module:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]]))
        model.bias.copy_(torch.tensor([0.5, -0.5]))
    return model


def test_values_match_a_hand_computation() -> None:
    game = FeatureGame(linear_model(), torch.tensor([1.0, 1.0, 1.0]), baseline=2.0, target=0)
    coalitions = np.array([[True, True, True], [False, False, False], [True, False, True]])
    # Kept features take x = 1, the others the baseline 2: 0.5 + w . inputs.
    np.testing.assert_allclose(game.value(coalitions), [6.5, 12.5, 8.5])
    assert game.player_names == ["x[0]", "x[1]", "x[2]"] and game.n_evaluations == 3


def test_a_background_set_averages_the_output_over_its_rows() -> None:
    background = torch.tensor([[0.0, 0.0, 0.0], [2.0, 4.0, 0.0]])
    game = FeatureGame(linear_model(), torch.ones(3), baseline=background, target=1)
    # Empty coalition: (-0.5 + 0) and (-0.5 - 2 + 0) -> mean -1.5; {x2}: -0.5 + 1 and -2.5 + 1.
    np.testing.assert_allclose(
        game.value(np.array([[False] * 3, [False, False, True]])), [-1.5, -0.5]
    )


def test_probability_output_is_the_softmax_of_the_target() -> None:
    x = torch.tensor([1.0, 0.0, 2.0])
    game = FeatureGame(linear_model(), x, target=1, output="probability")
    expected = torch.softmax(linear_model()(x), -1)[1].item()
    np.testing.assert_allclose(game.value(np.ones((1, 3), dtype=bool)), [expected], rtol=1e-6)


def test_groups_by_label_by_index_and_image_patches() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    x = torch.randn(1, 4, 4)
    assert FeatureGame(model, x).player_names[5] == "pixel(1,1)"
    patches = FeatureGame(model, x, groups=image_patches(x.shape, 2))
    assert patches.player_names == ["patch(0,0)", "patch(0,1)", "patch(1,0)", "patch(1,1)"]
    assert patches.player_groups == patches.player_names
    indexed = FeatureGame(model, x, groups=[np.arange(8), np.arange(8, 16)])
    assert indexed.player_names == ["group0", "group1"]
    # Keeping a group keeps all its features: the top half of the image.
    top = torch.cat([x.reshape(-1)[:8], torch.zeros(8)]).reshape(1, 1, 4, 4)
    np.testing.assert_allclose(
        indexed.value(np.array([[True, False]])), [model(top)[0, indexed.target].item()], rtol=1e-6
    )


def test_many_coalitions_in_small_passes_give_the_values_of_one_pass() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    x, background = torch.randn(6), torch.randn(5, 6)
    coalitions = np.random.default_rng(0).random((40, 6)) < 0.5
    big = FeatureGame(model, x, baseline=background).value(coalitions)
    small = FeatureGame(model, x, baseline=background, memory_budget=1).value(coalitions)
    np.testing.assert_allclose(small, big, rtol=1e-6)


def test_the_model_is_left_as_it_came_in() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model.train()
    before = copy.deepcopy(model.state_dict())
    game = FeatureGame(model, torch.randn(4))
    first = game.value(np.ones((2, 4), dtype=bool))
    assert np.all(first == first[0])  # eval mode: no dropout, running statistics
    assert model.training and all(module.training for module in model.modules())
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert not any(module._forward_hooks for module in model.modules())


def test_the_fingerprint_follows_what_defines_the_game() -> None:
    model = linear_model()
    x = torch.ones(3)
    same = FeatureGame(model, x).fingerprint()
    assert FeatureGame(model, x).fingerprint() == same
    assert FeatureGame(model, x, baseline=1.0).fingerprint() != same
    assert (
        FeatureGame(model, x, target=0 if FeatureGame(model, x).target else 1).fingerprint() != same
    )
    with torch.no_grad():
        model.bias.add_(1.0)
    assert FeatureGame(model, x).fingerprint() != same


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"baseline": torch.zeros(4)},
            ValueError,
            r"'baseline' parameter.*shape \(3,\).*Got a tensor of shape \(4,\)",
        ),
        ({"baseline": "mean"}, ValueError, r"'baseline' parameter of FeatureGame must be 'zero'"),
        (
            {"target": 2},
            ValueError,
            r"'target' parameter of FeatureGame must be an int in \[0, 1\]. Got 2",
        ),
        (
            {"groups": [[0, 1], [1, 2]]},
            ValueError,
            r"'groups'.*exactly once.*1 feature\(s\) in more than one group, first \[1\]",
        ),
        (
            {"groups": [[0, 1]]},
            ValueError,
            r"'groups'.*exactly once.*1 feature\(s\) in no group, first \[2\]",
        ),
        ({"groups": [[0, 1], [2, 7]]}, ValueError, r"'groups'.*indices in \[0, 2\]. Got \[7\]"),
        ({"output": "softmax"}, ValueError, r"'output' parameter of FeatureGame must be one of"),
    ],
)
def test_bad_input_is_a_clear_error_and_the_model_is_untouched(kwargs, error, match) -> None:
    model = linear_model().train()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(error, match=match):
        FeatureGame(model, torch.ones(3), **kwargs)
    assert model.training
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


def test_a_model_that_cannot_take_x_is_named() -> None:
    with pytest.raises(ValueError, match=r"cannot take the example 'x' of shape \(5,\)"):
        FeatureGame(linear_model(), torch.ones(5))


def test_exact_refuses_too_many_features_and_says_how_many() -> None:
    model = nn.Linear(26, 2)
    with pytest.raises(ValueError, match=r"n_players > 25 \(this game has 26.*permutation_shapley"):
        ns.exact_shapley(FeatureGame(model, torch.ones(26)))


def test_a_bfloat16_model_has_a_fingerprint() -> None:
    """numpy has no bfloat16: the fingerprint widens it instead of failing (it did)."""
    model = torch.nn.Linear(4, 2).bfloat16()
    x = torch.ones(4, dtype=torch.bfloat16)
    first, second = FeatureGame(model, x), FeatureGame(model, x)
    assert first.fingerprint() == second.fingerprint()
