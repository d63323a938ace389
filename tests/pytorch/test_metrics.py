"""Metrics against hand computations, user metrics, and the errors they teach with."""

from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional as F  # noqa: N812

import neuronshapley as ns
from neuronshapley.pytorch.metrics import MetricError
from neuronshapley.units import Metric, NeuronGame, Split
from tests.units._models import BUDGET, fitted, random_coalitions, vectors

N_COALITIONS, N_EXAMPLES, N_CLASSES = 4, 30, 3
# Groups 0..3 and -1 (no group); group 3 has no positive (class 1) example.
GROUPS = torch.tensor([0, 1, 2, 3, -1] * 6)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, Split]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(N_COALITIONS, N_EXAMPLES, N_CLASSES, generator=generator)
    y = torch.randint(0, N_CLASSES, (N_EXAMPLES,), generator=generator)
    y[GROUPS == 3] = 0
    y[:3] = 1  # groups 0, 1 and 2 each have a positive
    return logits, y, Split(torch.zeros(N_EXAMPLES, 2), y, GROUPS)


def hits(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """(n_coalitions, n_examples): whether each example is classified right."""
    return (logits.argmax(dim=-1) == y).numpy()


def test_accuracy(batch: Any) -> None:
    logits, y, split = batch
    values = ns.metrics.accuracy()(logits, y, split)
    expected = [hits(logits, y)[c].sum() / N_EXAMPLES for c in range(N_COALITIONS)]
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-15)


def test_neg_cross_entropy(batch: Any) -> None:
    logits, y, split = batch
    values = ns.metrics.neg_cross_entropy()(logits, y, split)
    expected = [-float(F.cross_entropy(logits[c].double(), y)) for c in range(N_COALITIONS)]
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("target", [0, 1, 2])
def test_class_recall(batch: Any, target: int) -> None:
    logits, y, split = batch
    members = (y == target).numpy()
    predicted = logits.argmax(dim=-1).numpy()
    expected = [(predicted[c][members] == target).mean() for c in range(N_COALITIONS)]
    by_function = ns.metrics.class_recall(target)
    by_name = ns.metrics.resolve_metric(f"recall:{target}")
    assert by_name.name == by_function.name == f"recall:{target}"
    for metric in (by_function, by_name):
        np.testing.assert_allclose(metric(logits, y, split).numpy(), expected, rtol=1e-15)


def test_mean_group_recall(batch: Any) -> None:
    logits, y, split = batch
    predicted = logits.argmax(dim=-1).numpy()
    groups, labels = GROUPS.numpy(), y.numpy()
    expected = []
    for c in range(N_COALITIONS):
        recalls = []
        for group in (0, 1, 2, 3):  # -1 is no group
            positives = (groups == group) & (labels == 1)
            if positives.any():  # group 3 has none: left out of the mean
                recalls.append((predicted[c][positives] == 1).mean())
        assert len(recalls) == 3
        expected.append(np.mean(recalls))
    metric = ns.metrics.resolve_metric("mean_group_recall")
    assert metric.needs_groups
    np.testing.assert_allclose(metric(logits, y, split).numpy(), expected, rtol=1e-14)


def test_worst_group_accuracy(batch: Any) -> None:
    logits, y, split = batch
    right, groups = hits(logits, y), GROUPS.numpy()
    expected = [min(right[c][groups == g].mean() for g in (0, 1, 2, 3)) for c in range(4)]
    metric = ns.metrics.resolve_metric("worst_group_accuracy")
    np.testing.assert_allclose(metric(logits, y, split).numpy(), expected, rtol=1e-15)
    # Examples of group -1 count nowhere: making them all wrong changes nothing.
    flipped = logits.clone()
    flipped[:, GROUPS == -1] = -10.0 * F.one_hot(y[GROUPS == -1], N_CLASSES).float()
    np.testing.assert_allclose(metric(flipped, y, split).numpy(), expected, rtol=1e-15)


def test_group_metrics_through_the_game() -> None:
    model = fitted("mlp")
    x, y = vectors(N_EXAMPLES, seed=1)
    groups = GROUPS.clone()
    reference, _ = vectors(20, seed=2)
    coalitions = random_coalitions(6, 11, seed=0)
    seen: list[torch.Tensor] = []

    def record(logits: torch.Tensor, targets: torch.Tensor, split: Any) -> float:
        seen.append(logits.clone())
        return 0.0

    NeuronGame(model, data=(x, y, groups), metric=record, reference=reference).value(coalitions)
    logits = torch.stack(seen)  # what the model outputs for each coalition
    for name in ("mean_group_recall", "worst_group_accuracy"):
        game = NeuronGame(model, data=(x, y, groups), metric=name, reference=reference)
        expected = ns.metrics.resolve_metric(name)(logits, y, Split(x, y, groups)).numpy()
        np.testing.assert_array_equal(game.value(coalitions), expected)


def test_user_metric_is_called_once_per_coalition() -> None:
    model = fitted("mlp")
    x, y = vectors(N_EXAMPLES, seed=1)
    reference, _ = vectors(20, seed=2)
    calls: list[tuple[tuple[int, ...], bool, Any]] = []

    def margin(logits: torch.Tensor, targets: torch.Tensor, split: Any) -> float:
        calls.append((tuple(logits.shape), torch.equal(targets, y), split))
        right = logits.gather(1, targets[:, None]).squeeze(1)
        return float((right - logits.logsumexp(dim=1)).mean())

    game = NeuronGame(model, data=(x, y), metric=margin, reference=reference, memory_budget=BUDGET)
    values = game.value(random_coalitions(5, 11, seed=1))
    assert [shape for shape, _, _ in calls] == [(N_EXAMPLES, N_CLASSES)] * 5
    assert all(same and isinstance(split, Split) for _, same, split in calls)
    # This margin is minus the cross-entropy: the built-in metric agrees to float32 rounding.
    builtin = NeuronGame(model, data=(x, y), metric="neg_cross_entropy", reference=reference)
    np.testing.assert_allclose(values, builtin.value(random_coalitions(5, 11, seed=1)), rtol=1e-6)


def test_metric_object_is_used_as_is() -> None:
    metric = Metric("logit_sum", lambda logits, targets, split: logits.double().sum(dim=(1, 2)))
    assert ns.metrics.resolve_metric(metric) is metric


# -- declared value bounds: a valid range for the confidence bounds --------------------------


@pytest.mark.parametrize(
    ("metric", "marginal_range"),
    [
        ("accuracy", 2.0),
        ("recall:1", 2.0),
        ("neg_cross_entropy", None),
        (ns.metrics.from_outputs(lambda outputs: 0.0, bounds=(-1, 1)), 4.0),
        (lambda logits, targets, split: 0.0, None),  # a user's metric declares nothing
    ],
)
def test_the_marginal_range_comes_from_the_metric_s_bounds(
    metric: Any, marginal_range: float | None
) -> None:
    """Values in [lo, hi] give marginals V(S + i) - V(S) in [-(hi - lo), hi - lo]."""
    model = fitted("mlp")
    x, y = vectors(N_EXAMPLES, seed=1)
    game = NeuronGame(model, data=(x, y), metric=metric, reference=vectors(20, seed=2)[0])
    assert game.marginal_range() == marginal_range


def test_a_metric_outside_its_declared_bounds_is_refused() -> None:
    model = fitted("mlp")
    x, y = vectors(N_EXAMPLES, seed=1)
    metric = ns.metrics.from_user(lambda logits, targets, split: 2.5, bounds=(0, 1))
    game = NeuronGame(model, data=(x, y), metric=metric, reference=vectors(20, seed=2)[0])
    with pytest.raises(MetricError, match=r"declares that its values lie in \[0, 1\], .* 2\.5"):
        game.value(random_coalitions(2, 11, seed=0))


@pytest.mark.parametrize("bounds", [(1, 0), (0, float("inf")), "01", (0,)])
def test_bad_bounds_are_named(bounds: Any) -> None:
    with pytest.raises(ValueError, match=r"'bounds' parameter of from_outputs"):
        ns.metrics.from_outputs(lambda outputs: 0.0, bounds=bounds)


# -- errors --------------------------------------------------------------------------------------


def game_with(metric: Any, data: Any = None) -> NeuronGame:
    model = fitted("mlp")
    reference, _ = vectors(20, seed=2)
    return NeuronGame(model, data=data or vectors(10, seed=1), metric=metric, reference=reference)


def test_unknown_metric_name_lists_the_names() -> None:
    with pytest.raises(
        ValueError,
        match=r"must be one of accuracy, neg_cross_entropy, mean_group_recall, "
        r"worst_group_accuracy, recall:<class>.*Got 'acuracy'",
    ):
        game_with("acuracy")
    with pytest.raises(ValueError, match="must be one of"):
        game_with("recall:one")


def test_metric_of_a_bad_type() -> None:
    with pytest.raises(TypeError, match=r"'metric' parameter of NeuronGame.*Got int"):
        game_with(5)


def test_bad_class_for_recall() -> None:
    with pytest.raises(ValueError, match=r"'target_class' parameter of class_recall.*-1"):
        ns.metrics.class_recall(-1)


def test_recall_of_a_class_absent_from_the_data() -> None:
    x, y = vectors(10, seed=1)
    game = game_with("recall:2", data=(x, torch.zeros_like(y)))
    with pytest.raises(ValueError, match="needs examples of class 2"):
        game.value(np.ones((1, 11), dtype=bool))


def evaluate(returned: Any) -> None:
    game = game_with(lambda logits, targets, split: returned)
    game.value(np.ones((1, 11), dtype=bool))


def test_user_metric_returning_several_numbers() -> None:
    with pytest.raises(ValueError, match=r"one number per call.*shape \(2,\)"):
        evaluate(torch.tensor([0.1, 0.2]))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), torch.tensor(float("nan"))])
def test_user_metric_returning_a_non_finite_value(value: Any) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        evaluate(value)


@pytest.mark.parametrize("value", ["high", None, [0.5]])
def test_user_metric_returning_no_number(value: Any) -> None:
    with pytest.raises(TypeError, match="must return a float"):
        evaluate(value)


def test_user_metric_returning_one_element_tensor() -> None:
    game = game_with(lambda logits, targets, split: torch.tensor([0.25]))
    assert game.value(np.ones((1, 11), dtype=bool))[0] == 0.25


def test_user_metric_returning_a_numeric_string() -> None:
    with pytest.raises(TypeError, match="must return a float"):
        evaluate("0.5")


def test_user_metric_returning_numpy_arrays_like_tensors() -> None:
    game = game_with(lambda logits, targets, split: np.array([0.25]))
    assert game.value(np.ones((1, 11), dtype=bool))[0] == 0.25
    with pytest.raises(ValueError, match=r"one number per call.*shape \(2,\)"):
        evaluate(np.array([0.1, 0.2]))


@pytest.mark.parametrize("name", ["mean_group_recall", "worst_group_accuracy"])
def test_group_metric_without_groups_fails_at_construction(name: str) -> None:
    with pytest.raises(ValueError, match=f"metric '{name}' needs a group per example.*groups"):
        game_with(name)


def test_group_metric_with_every_example_outside_groups() -> None:
    x, y = vectors(10, seed=1)
    game = game_with("worst_group_accuracy", data=(x, y, torch.full_like(y, -1)))
    with pytest.raises(ValueError, match="no example in a group"):
        game.value(np.ones((1, 11), dtype=bool))
