"""The dropout-effect study: statistics on hand-made values, curves on additive games."""

import math

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley.applications.dropout import (
    DropoutStudy,
    dropout_study,
)
from neuronshapley.games.base import BaseGame
from neuronshapley.results.result import ShapleyResult
from neuronshapley.typing import CoalitionMatrix, GameValues
from neuronshapley.units import NeuronGame
from tests.units._models import BUDGET, Snapshot, TinyCNN, fitted, images, trained

# Two "models" of 12 units each. A is spread out with one dominant unit; B is flatter.
A = [0.5, 0.2, 0.1, 0.1, 0.05, 0.05, 0.02, 0.02, 0.01, 0.01, 0.005, -0.06]
B = [0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.04, 0.04, 0.03, 0.01, -0.01, -0.02]
BASE = 0.1


class Additive(BaseGame):
    """V(S) = BASE + sum of the weights in S: its Shapley values are the weights."""

    def __init__(self, weights: list[float]) -> None:
        super().__init__(len(weights))
        self.weights = np.asarray(weights, dtype=float)

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        return BASE + coalitions.astype(float) @ self.weights


class ByCount(BaseGame):
    """V(S) = curve[number of players outside S], whoever they are."""

    def __init__(self, curve: list[float]) -> None:
        super().__init__(len(curve) - 1)
        self.curve = np.asarray(curve, dtype=float)

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        return self.curve[self.n_players - coalitions.sum(axis=1)]


def result_of(values: list[float], names: list[str]) -> ShapleyResult:
    array = np.asarray(values, dtype=float)
    zeros = np.zeros_like(array)
    return ShapleyResult(
        values=array,
        stderr=zeros,
        ci_low=array,
        ci_high=array,
        n_samples=np.zeros(len(array), dtype=np.int64),
        variance=zeros,
        player_names=list(names),
        n_evaluations=0,
        estimator="by_hand",
        params={},
        seed=None,
        stop_reason="exact",
        elapsed_seconds=0.0,
    )


def pair(weights: list[float]) -> tuple[Additive, ShapleyResult]:
    game = Additive(weights)
    return game, result_of(weights, game.player_names)


@pytest.fixture(scope="module")
def study() -> DropoutStudy:
    return dropout_study({"A": pair(A), "B": pair(B)}, k=10, n_random=3, seed=0)


def test_value_statistics_by_hand(study: DropoutStudy) -> None:
    a, b = study.models["A"], study.models["B"]
    # Default threshold: 0.1 x the largest |value| of both models (0.5, in A).
    assert study.near_zero == pytest.approx(0.05)
    # sd (ddof=0): mean 1.005 / 12, squared deviations sum to 0.23545625.
    assert a.value_sd == pytest.approx(math.sqrt(0.23545625 / 12))
    # mean 0.99 / 12, squared deviations sum to 0.093025.
    assert b.value_sd == pytest.approx(math.sqrt(0.093025 / 12))
    # |values| sorted: the 6th and 7th are 0.05, 0.05 (A) and 0.04, 0.1 (B).
    assert a.median_abs_value == pytest.approx(0.05)
    assert b.median_abs_value == pytest.approx(0.07)
    # Strictly below 0.05: 0.02, 0.02, 0.01, 0.01, 0.005 (A); 0.04 x2, 0.03, 0.01 x2, 0.02 (B).
    assert a.near_zero_fraction == pytest.approx(5 / 12)
    assert b.near_zero_fraction == pytest.approx(6 / 12)
    # The top 10 of A miss 0.005 of its 1.065 positive value; B has exactly 10 positive values.
    assert a.top_share == pytest.approx(1.06 / 1.065)
    assert b.top_share == pytest.approx(1.0)
    assert (a.n_negative, b.n_negative) == (1, 2)
    assert a.n_units == 12


def test_explicit_threshold_applies_to_every_model() -> None:
    study = dropout_study({"A": pair(A), "B": pair(B)}, k=1, n_random=1, near_zero=0.015)
    assert study.near_zero == 0.015
    assert study.models["A"].near_zero_fraction == pytest.approx(3 / 12)
    assert study.models["B"].near_zero_fraction == pytest.approx(2 / 12)


def test_top_curves(study: DropoutStudy) -> None:
    for weights, model in zip((A, B), study.models.values(), strict=True):
        top = model.top
        np.testing.assert_array_equal(top.counts, np.arange(11))
        full = BASE + sum(weights)
        assert model.full_value == pytest.approx(full)
        assert top.ranked[0] == pytest.approx(full)
        assert top.random_mean[0] == pytest.approx(full)
        highest = sorted(weights, reverse=True)
        for count in (1, 2, 10):
            assert top.ranked[count] == pytest.approx(full - sum(highest[:count]))
        assert top.random_mean.shape == top.random_std.shape == (11,)
        assert top.n_random == 3
    assert study.models["A"].top.order[:2] == ["p0", "p1"]


def test_reverse_curves_and_units_before_drop(study: DropoutStudy) -> None:
    a = study.models["A"]
    reverse = a.reverse
    # 12 units: ceil(12 / 50) = 1 unit per point, all of them removed at the end.
    np.testing.assert_array_equal(reverse.counts, np.arange(13))
    assert reverse.order[0] == "p11"  # the negative value goes first
    assert reverse.ranked[0] == pytest.approx(a.full_value)
    assert reverse.ranked[-1] == pytest.approx(BASE)
    # Removing -0.06, 0.005, 0.01, 0.01, 0.02, 0.02 changes V by +0.06 ... -0.005 (within
    # 0.01); the 7th (0.05) makes it -0.055.
    assert a.units_before_drop == 6
    assert reverse.ranked[7] == pytest.approx(a.full_value - 0.055)
    stepped = dropout_study({"A": pair(A), "B": pair(B)}, k=1, n_random=1, reverse_step=5)
    np.testing.assert_array_equal(stepped.models["A"].reverse.counts, [0, 5, 10, 12])
    assert stepped.models["A"].units_before_drop == 5


def test_units_before_drop_needs_every_smaller_count() -> None:
    # The curve dips 0.02 below V(N) at 2 units removed, then recovers: only 1 unit counts.
    dipping = ByCount([1.0, 0.995, 0.98, 1.0, 1.0, 0.5])
    flat = ByCount([1.0, 1.0, 1.0, 1.0, 0.999, 0.995])
    values = [0.5, 0.4, 0.3, 0.2, 0.1]
    models = {
        "dipping": (dipping, result_of(values, dipping.player_names)),
        "flat": (flat, result_of(values, flat.player_names)),
    }
    study = dropout_study(models, k=2, n_random=2, drop=0.01)
    np.testing.assert_allclose(study.models["dipping"].reverse.ranked, dipping.curve)
    assert study.models["dipping"].units_before_drop == 1
    assert study.models["flat"].units_before_drop == 5
    tolerant = dropout_study(models, k=2, n_random=1, drop=0.03)
    assert tolerant.models["dipping"].units_before_drop == 4


def test_table(study: DropoutStudy) -> None:
    rows = study.table()
    assert [row["model"] for row in rows] == ["A", "B"]
    assert list(rows[0]) == [
        "model",
        "units",
        "accuracy",
        "value sd",
        "median |value|",
        "near zero (fraction)",
        "top-10 share",
        "negative values",
        "after top 5",
        "after top 10",
        "random 10 (mean)",
        "units before drop",
        "units before drop (fraction)",
    ]
    a = study.models["A"]
    assert rows[0]["accuracy"] == a.full_value
    assert rows[0]["after top 5"] == pytest.approx(a.full_value - 0.95)
    assert rows[1]["after top 10"] == study.models["B"].top.ranked[10]
    assert rows[0]["random 10 (mean)"] == a.top.random_mean[10]
    assert rows[0]["units before drop (fraction)"] == pytest.approx(6 / 12)
    assert rows[1]["negative values"] == 2
    small = dropout_study({"A": pair(A), "B": pair(B)}, k=7, n_random=1).table()
    assert [key for key in small[0] if key.startswith("after")] == ["after top 5", "after top 7"]


def test_bad_input() -> None:
    good = pair(A)
    with pytest.raises(ValueError, match=r"'models' parameter of dropout_study.*at least two"):
        dropout_study({"A": good})
    with pytest.raises(ValueError, match=r"'models' parameter.*Got list"):
        dropout_study([good, pair(B)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"\(game, ShapleyResult\) pair.*model 'B'"):
        dropout_study({"A": good, "B": (good[0],)})  # type: ignore[dict-item]
    shuffled = result_of(A[::-1], good[0].player_names[::-1])
    with pytest.raises(ValueError, match=r"in the game's order.*Model 'B'"):
        dropout_study({"A": good, "B": (good[0], shuffled)})
    with pytest.raises(ValueError, match=r"'k' parameter of dropout_study.*\[1, 5\].*Got 6"):
        dropout_study({"A": good, "B": pair(B[:5])}, k=6)
    both = {"A": good, "B": pair(B)}
    with pytest.raises(ValueError, match=r"'near_zero' parameter.*\(0.0, inf\].*Got 0"):
        dropout_study(both, k=2, near_zero=0)
    with pytest.raises(ValueError, match=r"'drop' parameter.*Got -0.1"):
        dropout_study(both, k=2, drop=-0.1)
    with pytest.raises(ValueError, match=r"'reverse_step' parameter.*Got 0"):
        dropout_study(both, k=2, reverse_step=0)
    with pytest.raises(ValueError, match=r"'n_random' parameter.*Got 0"):
        dropout_study(both, k=2, n_random=0)


def test_on_neuron_games() -> None:
    x, y = images(30, seed=1)
    reference, _ = images(30, seed=2)
    models = {
        "first": fitted("cnn"),
        "second": trained(TinyCNN, images(64, seed=0), steps=60, seed=1),
    }
    games = {
        name: NeuronGame(
            model, units="conv2", data=(x, y), reference=reference, memory_budget=BUDGET
        )
        for name, model in models.items()
    }
    snapshots = [Snapshot(model) for model in models.values()]
    pairs = {name: (game, ns.exact_shapley(game)) for name, game in games.items()}
    study = dropout_study(pairs, k=3, n_random=2, reverse_step=4)
    for snapshot in snapshots:
        snapshot.assert_untouched()
    for name, (game, result) in pairs.items():
        model = study.models[name]
        top = [row.name for row in result.top(3)]
        assert model.full_value == pytest.approx(game.value_without([]))
        assert model.top.ranked[3] == pytest.approx(game.value_without(top))
        np.testing.assert_array_equal(model.reverse.counts, [0, 4, 6])
        assert model.top.metric == "accuracy"
