"""Adversarial repair: the targeted PGD attack, its targets, and the study's curves."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import neuronshapley as ns
from neuronshapley.applications.adversarial import (
    AdversarialStudy,
    adversarial_study,
    attack_split,
    pgd_attack,
    random_targets,
    spearman_correlation,
)
from neuronshapley.applications.fairness import split_in_two
from neuronshapley.pytorch.data import Split
from neuronshapley.results.result import ShapleyResult
from tests.units._models import (
    BUDGET,
    N_CLASSES,
    NormDropNet,
    Snapshot,
    TinyCNN,
    fitted,
    images,
    seeded,
    trained,
)

BOUNDS = (-2.0, 2.0)


def _inputs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = images(n, seed=seed)
    return x.clamp(*BOUNDS), y  # clean inputs inside the bounds


def _success(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(dim=1) == targets).double().mean().item()


@pytest.fixture(scope="module")
def game() -> ns.NeuronGame:
    x, y = _inputs(60, seed=7)
    reference, _ = _inputs(40, seed=8)
    return ns.NeuronGame(
        fitted("cnn"), data=Split(x, y, name="test"), reference=reference, memory_budget=BUDGET
    )


@pytest.fixture(scope="module")
def source() -> nn.Module:
    return trained(lambda: TinyCNN(5, 7), images(64, seed=0), steps=60, seed=3)


@pytest.fixture(scope="module")
def study(game: ns.NeuronGame, source: nn.Module) -> AdversarialStudy:
    return adversarial_study(
        game,
        epsilon=0.5,
        steps=5,
        bounds=BOUNDS,
        k=3,
        counts=(0, 1, 2, 100),
        max_evaluations=150,
        sources={"other cnn": source},
        seed=4,
    )


# -- the attack ---------------------------------------------------------------------------------


def test_pgd_stays_within_epsilon_and_bounds() -> None:
    x, y = _inputs(40, seed=1)
    targets = random_targets(y, N_CLASSES, seed=0)
    adversarial = pgd_attack(fitted("cnn"), x, targets, epsilon=0.3, steps=4, bounds=(-1.0, 1.0))
    clean = x.clamp(-1.0, 1.0)
    assert adversarial.shape == x.shape and adversarial.dtype == x.dtype
    assert float(adversarial.min()) >= -1.0 and float(adversarial.max()) <= 1.0
    # Inputs the bound did not move stay within epsilon of the clean input...
    inside = (x > -1.0) & (x < 1.0)
    assert float((adversarial - x)[inside].abs().max()) <= 0.3 + 1e-6
    assert float((adversarial - clean).abs().max()) <= 0.3 + 1e-6
    # ... and the sign steps reach the edge of the ball somewhere: the input really moved.
    assert float((adversarial - x)[inside].abs().max()) == pytest.approx(0.3, abs=1e-6)


def test_pgd_unbounded_uses_the_whole_ball() -> None:
    x, y = _inputs(20, seed=2)
    targets = random_targets(y, N_CLASSES, seed=1)
    adversarial = pgd_attack(fitted("cnn"), x, targets, epsilon=0.25, steps=3)
    assert float((adversarial - x).abs().max()) == pytest.approx(0.25, abs=1e-6)


def test_pgd_raises_targeted_success() -> None:
    model = fitted("cnn")
    x, y = _inputs(60, seed=5)
    targets = random_targets(y, N_CLASSES, seed=0)
    before = _success(model, x, targets)
    adversarial = pgd_attack(model, x, targets, epsilon=0.5, steps=10, bounds=BOUNDS)
    after = _success(model, adversarial, targets)
    assert before < 0.5
    assert after >= 0.9
    # A tiny step that cannot leave the start region leaves success near the clean rate.
    assert _success(model, pgd_attack(model, x, targets, epsilon=1e-4, steps=1), targets) < 0.5


def test_pgd_leaves_the_model_untouched() -> None:
    model = seeded(NormDropNet)
    model.train()
    model.drop.eval()  # a submodule whose mode differs from its parent's
    model.conv.weight.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 7.0)
    snapshot = Snapshot(model)
    x, y = _inputs(12, seed=3)
    pgd_attack(model, x, random_targets(y, N_CLASSES, seed=0), epsilon=0.2, steps=3)
    snapshot.assert_untouched()
    assert model.training and not model.drop.training and model.bn.training
    assert model.conv.weight.grad is None
    assert model.fc.bias.grad is None
    assert torch.equal(model.fc.weight.grad, torch.full_like(model.fc.weight, 7.0))


def test_pgd_is_deterministic_with_its_seed_and_batch_size() -> None:
    model = fitted("cnn")
    x, y = _inputs(30, seed=4)
    targets = random_targets(y, N_CLASSES, seed=2)
    first = pgd_attack(model, x, targets, epsilon=0.2, steps=2, seed=11)
    again = pgd_attack(model, x, targets, epsilon=0.2, steps=2, seed=11, batch_size=7)
    other = pgd_attack(model, x, targets, epsilon=0.2, steps=2, seed=12)
    assert torch.allclose(first, again, atol=1e-6)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epsilon": 0.0}, r"'epsilon' parameter of pgd_attack must be a float in \(0.0, inf\]"),
        ({"epsilon": 0.1, "steps": 0}, r"'steps' parameter of pgd_attack .* Got 0"),
        ({"epsilon": 0.1, "step_size": -1.0}, r"'step_size' parameter .* Got -1.0"),
        ({"epsilon": 0.1, "bounds": (1.0, 0.0)}, r"'bounds' parameter .* low < high"),
        ({"epsilon": 0.1, "seed": -1}, r"'seed' parameter of pgd_attack .* Got -1"),
        ({"epsilon": 0.1, "batch_size": 0}, r"'batch_size' parameter .* Got 0"),
    ],
)
def test_pgd_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    x, y = _inputs(4, seed=0)
    with pytest.raises(ValueError, match=match):
        pgd_attack(fitted("cnn"), x, y, **kwargs)  # type: ignore[arg-type]


def test_pgd_bad_inputs() -> None:
    x, y = _inputs(4, seed=0)
    with pytest.raises(ValueError, match=r"'targets' parameter of pgd_attack must hold one"):
        pgd_attack(fitted("cnn"), x, y[:3], epsilon=0.1)
    with pytest.raises(TypeError, match=r"'targets' parameter .* integer class ids"):
        pgd_attack(fitted("cnn"), x, y.float(), epsilon=0.1)
    with pytest.raises(TypeError, match=r"'x' parameter .* floating-point"):
        pgd_attack(fitted("cnn"), x.long(), y, epsilon=0.1)


def test_random_targets_differ_from_labels_and_are_seeded() -> None:
    labels = torch.arange(600) % 4
    targets = random_targets(labels, 4, seed=3)
    assert targets.dtype == torch.int64 and targets.shape == labels.shape
    assert bool((targets != labels).all())
    assert int(targets.min()) >= 0 and int(targets.max()) <= 3
    # Every other class is drawn for every label (150 draws among 3 classes each).
    for label in range(4):
        assert set(targets[labels == label].tolist()) == set(range(4)) - {label}
    assert torch.equal(targets, random_targets(labels, 4, seed=3))
    assert not torch.equal(targets, random_targets(labels, 4, seed=4))
    with pytest.raises(ValueError, match=r"'labels' parameter of random_targets .* \[0, 2\]"):
        random_targets(labels, 3, seed=0)
    with pytest.raises(ValueError, match=r"'n_classes' parameter .* Got 1"):
        random_targets(labels * 0, 1, seed=0)


def test_attack_split_labels_are_targets(game: ns.NeuronGame) -> None:
    attacked = attack_split(game.model, game.data, epsilon=0.5, steps=5, seed=2, bounds=BOUNDS)
    assert torch.equal(attacked.labels, game.data.y)
    assert torch.equal(attacked.split.y, random_targets(game.data.y, N_CLASSES, seed=2))
    # "accuracy" on the adversarial split is the targeted success rate.
    success = game.with_data(attacked.split, metric="accuracy").value_without([])
    assert success == pytest.approx(_success(game.model, attacked.split.x, attacked.split.y))
    assert success > 0.8


# -- the study ----------------------------------------------------------------------------------


def test_study_table_shape_and_columns(study: AdversarialStudy, game: ns.NeuronGame) -> None:
    rows = study.table()
    assert [row["removed"] for row in rows] == [0, 1, 2, 3, game.n_players]
    assert list(rows[0]) == [
        "removed",
        "attack success (values half)",
        "attack success (held-out)",
        "clean accuracy",
        "adversarial true-label accuracy",
        "transfer from other cnn",
    ]
    assert sorted(study.order) == sorted(game.player_names)
    values = study.result.values
    ordered = [values[game.player_names.index(name)] for name in study.order]
    assert ordered == sorted(ordered, reverse=True)
    assert study.rank_correlation is None
    assert study.whitebox_removed == 3
    assert 0.0 <= study.whitebox_success <= 1.0
    assert study.step_size == pytest.approx(2.5 * 0.5 / 5)


def test_study_count_zero_is_the_full_model(
    study: AdversarialStudy, game: ns.NeuronGame, source: nn.Module
) -> None:
    values_half, held_out = split_in_two(game.data, seed=4)
    recipe = {"epsilon": 0.5, "steps": 5, "bounds": BOUNDS}
    original = attack_split(game.model, values_half, seed=4, **recipe)  # type: ignore[arg-type]
    targets = random_targets(held_out.y, N_CLASSES, seed=5)
    held = attack_split(game.model, held_out, seed=5, targets=targets, **recipe)  # type: ignore[arg-type]
    transfer = attack_split(source, held_out, seed=6, targets=targets, **recipe)  # type: ignore[arg-type]
    model = game.model
    assert study.success_values_half[0] == pytest.approx(
        _success(model, original.split.x, original.split.y)
    )
    assert study.success_held_out[0] == pytest.approx(_success(model, held.split.x, targets))
    assert study.clean_accuracy[0] == pytest.approx(_success(model, held_out.x, held_out.y))
    assert study.adversarial_true_label_accuracy[0] == pytest.approx(
        _success(model, held.split.x, held_out.y)
    )
    assert study.transfer_success["other cnn"][0] == pytest.approx(
        _success(model, transfer.split.x, targets)
    )
    # With every unit removed the model is constant: success is the share of one target class.
    assert study.success_values_half[-1] != pytest.approx(study.success_values_half[0])
    assert study.n_values_examples + study.n_held_out_examples == len(game.data)


def test_study_curves_match_ablated_evaluations(
    study: AdversarialStudy, game: ns.NeuronGame
) -> None:
    _, held_out = split_in_two(game.data, seed=4)
    removed = study.order[:2]
    assert study.clean_accuracy[2] == pytest.approx(
        game.with_data(held_out, metric="accuracy").value_without(removed)
    )


def test_study_with_clean_values_and_its_checks(game: ns.NeuronGame) -> None:
    rng = np.random.default_rng(0)
    clean = _result(list(game.player_names), rng.normal(size=game.n_players))
    small = adversarial_study(
        game, clean, epsilon=0.5, steps=2, k=1, counts=(0, 1), max_evaluations=400, seed=0
    )
    # A budget that completes a round: a round cut by the budget no longer enters the values.
    assert np.isfinite(small.rank_correlation)
    assert small.rank_correlation == pytest.approx(
        spearman_correlation(small.result.values, clean.values)
    )
    assert small.transfer_success == {}
    shuffled = _result(list(reversed(game.player_names)), clean.values)
    with pytest.raises(ValueError, match="'clean_result' parameter of adversarial_study"):
        adversarial_study(game, shuffled, epsilon=0.5, max_evaluations=40)
    with pytest.raises(ValueError, match=r"'counts' parameter .* Got -1"):
        adversarial_study(game, counts=(0, -1), epsilon=0.5, max_evaluations=40)
    with pytest.raises(ValueError, match=r"'bounds' parameter of adversarial_study"):
        adversarial_study(game, bounds="image", epsilon=0.5)  # type: ignore[arg-type]
    four_classes = nn.Sequential(nn.Flatten(), nn.Linear(36, 4))
    with pytest.raises(ValueError, match="'four', a model of 4 classes; the game's model has 3"):
        adversarial_study(game, sources={"four": four_classes}, epsilon=0.5)
    with pytest.raises(TypeError, match="'game' parameter of adversarial_study"):
        adversarial_study(game.model, epsilon=0.5)  # type: ignore[arg-type]


# -- rank correlation ---------------------------------------------------------------------------


def test_spearman_hand_computed_with_ties() -> None:
    # Ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): centred dot product 4.5, norms^2 4.5 and 5.
    assert spearman_correlation([1.0, 2.0, 2.0, 3.0], [10, 30, 20, 40]) == pytest.approx(
        3 / math.sqrt(10)
    )
    assert spearman_correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman_correlation([5, 1, 3], [50, 2, 3]) == pytest.approx(1.0)
    assert math.isnan(spearman_correlation([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="same length >= 2"):
        spearman_correlation([1, 2], [1, 2, 3])


def _result(names: list[str], values: np.ndarray) -> ShapleyResult:
    n = len(names)
    zeros = np.zeros(n)
    return ShapleyResult(
        values=np.asarray(values, dtype=np.float64),
        stderr=zeros,
        ci_low=zeros,
        ci_high=zeros,
        n_samples=np.ones(n, dtype=np.int64),
        variance=zeros,
        player_names=names,
        n_evaluations=0,
        estimator="hand",
        params={},
        seed=None,
        stop_reason="hand",
        elapsed_seconds=0.0,
    )
