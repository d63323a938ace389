"""TCAV on a planted concept: a model whose class-1 logit grows along a known direction of a
layer's activations, concept examples that lie along it, and a random concept that does not."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from neuronshapley.features.tcav import tcav

D = 8


def planted_model() -> tuple[nn.Module, torch.Tensor]:
    """Class 1's logit is u . tanh(h), class 0's is -u . tanh(h), class 2's ignores u;
    ``hidden`` is the identity, so the activations at ``hidden`` are the inputs."""
    u = torch.zeros(D)
    u[:3] = torch.tensor([1.0, 1.0, 1.0]) / 3**0.5
    model = nn.Sequential(
        OrderedDict(hidden=nn.Linear(D, D), act=nn.Tanh(), out=nn.Linear(D, 3, bias=False))
    )
    with torch.no_grad():
        model.hidden.weight.copy_(torch.eye(D))
        model.hidden.bias.zero_()
        model.out.weight.copy_(torch.stack([-u, u, torch.eye(D)[7]]))
    return model, u


def data(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    random = torch.randn(200, D, generator=generator)
    examples = torch.randn(90, D, generator=generator)
    labels = np.repeat([0, 1, 2], 30)
    return random, examples, labels, torch.randn(40, D, generator=generator)


def test_a_planted_concept_scores_one_for_its_class_and_is_significant() -> None:
    model, u = planted_model()
    random, examples, labels, noise = data(0)
    concept = 3 * u + 0.3 * noise  # examples along u, three standard deviations out
    result = tcav(model, "hidden", concept, random, examples, labels, concept_name="planted")
    by_class = {row["class"]: row for row in result.rows()}
    # The derivative of logit 1 along v is sum_j u_j v_j (1 - tanh^2 h_j) > 0 whenever v is
    # near u, for every example: the score is 1, in every run.
    assert by_class[1]["tcav_score"] >= 0.95 and by_class[1]["significant"]
    assert by_class[0]["tcav_score"] <= 0.05 and by_class[0]["significant"]
    assert result.cav_accuracy.min() >= 0.95
    assert result.concept_scores.shape == result.random_scores.shape == (10, 3)


def test_a_random_concept_is_not_significant() -> None:
    model, _ = planted_model()
    random, examples, labels, noise = data(1)
    result = tcav(model, "hidden", noise, random, examples, labels, classes=[1], seed=3)
    # Concept and counter-examples come from one distribution: the concept CAVs are as random
    # as the random-vs-random ones, and the test must not reject.
    assert not result.significant.any()
    assert result.p_values[0] > result.alpha


def test_tcav_leaves_the_model_as_it_came() -> None:
    model, u = planted_model()
    model.train()
    random, examples, labels, noise = data(2)
    tcav(model, "act", 1.5 * u + 0.3 * noise, random, examples, labels, n_runs=3)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())


def test_bad_input_is_named() -> None:
    model, _ = planted_model()
    random, examples, labels, noise = data(3)
    with pytest.raises(ValueError, match=r"'layer' parameter of tcav .* Got 'hiden'.*hidden"):
        tcav(model, "hiden", noise, random, examples, labels)
    with pytest.raises(ValueError, match=r"'labels' parameter of tcav must be 90 ints"):
        tcav(model, "hidden", noise, random, examples, labels[:5])
    with pytest.raises(ValueError, match=r"Classes \[5\] have none"):
        tcav(model, "hidden", noise, random, examples, labels, classes=[5])
    with pytest.raises(ValueError, match=r"'set_size' parameter of tcav must be an int in"):
        tcav(model, "hidden", noise, random[:20], examples, labels, set_size=40)
    with pytest.raises(ValueError, match=r"inputs of one shape"):
        tcav(model, "hidden", noise[:, :4], random, examples, labels)
