"""The critical-units study on a tiny game: its curves against direct evaluations."""

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley.applications.baselines import leave_one_out, weight_norm
from neuronshapley.applications.critical import CriticalStudy, critical_units_study
from neuronshapley.units import NeuronGame
from tests.units._models import BUDGET, Snapshot, fitted, images

BASELINES = ("weight_norm", "leave_one_out", "conductance")


@pytest.fixture(scope="module")
def game() -> NeuronGame:
    x, y = images(30, seed=1)
    reference, _ = images(30, seed=2)
    return NeuronGame(fitted("cnn"), data=(x, y), reference=reference, memory_budget=BUDGET)


@pytest.fixture(scope="module")
def result(game: NeuronGame) -> ns.ShapleyResult:
    return ns.exact_shapley(game)


@pytest.fixture(scope="module")
def study(game: NeuronGame, result: ns.ShapleyResult) -> CriticalStudy:
    return critical_units_study(
        game, result, k=4, baselines=BASELINES, n_random=3, seed=0, reverse_step=3
    )


def test_curves_match_direct_evaluations(
    game: NeuronGame, result: ns.ShapleyResult, study: CriticalStudy
) -> None:
    assert list(study.curves) == ["shapley", *BASELINES]
    full = game.value_without([])
    assert study.full_value == pytest.approx(full)
    top = [row.name for row in result.top(4)]
    for curve in study.curves.values():
        np.testing.assert_array_equal(curve.counts, np.arange(5))
        assert curve.ranked[0] == pytest.approx(full)
    shapley = study.curves["shapley"]
    assert shapley.order == top
    assert shapley.ranked[4] == pytest.approx(game.value_without(top))
    assert shapley.ranked[2] == pytest.approx(game.value_without(top[:2]))
    names = game.player_names
    by_norm = [names[i] for i in np.argsort(-weight_norm(game), kind="stable")[:4]]
    assert study.curves["weight_norm"].order == by_norm
    assert study.curves["weight_norm"].ranked[3] == pytest.approx(game.value_without(by_norm[:3]))
    np.testing.assert_allclose(study.scores["leave_one_out"], leave_one_out(game))


def test_random_draws_are_shared(study: CriticalStudy) -> None:
    first = study.curves["shapley"]
    assert first.n_random == 3
    for curve in study.curves.values():
        np.testing.assert_array_equal(curve.random_mean, first.random_mean)
        np.testing.assert_array_equal(curve.random_std, first.random_std)


def test_reverse_curve_and_units_before_drop(
    game: NeuronGame, result: ns.ShapleyResult, study: CriticalStudy
) -> None:
    reverse = study.reverse
    n = game.n_players
    np.testing.assert_array_equal(reverse.counts, [0, 3, 6, 9, 10])
    assert reverse.order == [row.name for row in result.bottom(n)]
    assert reverse.ranked[2] == pytest.approx(game.value_without(reverse.order[:6]))
    floor = study.full_value - study.drop
    kept = reverse.counts <= study.units_before_drop
    assert (reverse.ranked[kept] >= floor).all()
    beyond = np.flatnonzero(~kept)
    if beyond.size:
        assert reverse.ranked[beyond[0]] < floor


def test_units_before_drop_with_a_huge_tolerance(
    game: NeuronGame, result: ns.ShapleyResult
) -> None:
    study = critical_units_study(
        game, result, k=2, baselines=(), n_random=1, reverse_max=5, drop=2.0
    )
    assert study.units_before_drop == 5
    assert list(study.curves) == ["shapley"]
    np.testing.assert_array_equal(study.reverse.counts, np.arange(6))


def test_table(study: CriticalStudy) -> None:
    rows = study.table()
    assert [row["ranking"] for row in rows] == [
        "shapley",
        *BASELINES,
        "random (mean)",
        "random (sd)",
    ]
    assert list(rows[0]) == ["ranking", "full", "top 1", "top 4"]
    assert rows[0]["top 4"] == study.curves["shapley"].ranked[4]
    assert rows[2]["top 1"] == study.curves["leave_one_out"].ranked[1]
    assert rows[-2]["top 4"] == study.curves["shapley"].random_mean[4]


def test_model_untouched_and_bad_input(game: NeuronGame, result: ns.ShapleyResult) -> None:
    snapshot = Snapshot(game.model)
    critical_units_study(game, result, k=1, baselines=("conductance",), n_random=1)
    snapshot.assert_untouched()
    with pytest.raises(ValueError, match=r"unknown baseline 'size'.*weight_norm"):
        critical_units_study(game, result, k=2, baselines=("size",))
    with pytest.raises(ValueError, match="'k' parameter of critical_units_study"):
        critical_units_study(game, result, k=11)
    other = ns.ShapleyResult.__new__(ns.ShapleyResult)
    object.__setattr__(other, "player_names", ["a"])
    object.__setattr__(other, "values", np.zeros(1))
    with pytest.raises(ValueError, match="'result' parameter of critical_units_study"):
        critical_units_study(game, other)
