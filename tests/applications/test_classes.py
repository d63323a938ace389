"""Class-specific units: values for one class's recall, removed, against the global ones."""

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley.applications.classes import class_specific_units
from tests.units._models import fitted, images


def _game() -> ns.NeuronGame:
    x, y = images(90, seed=31)
    reference, _ = images(40, seed=32)
    return ns.NeuronGame(fitted("cnn"), "conv*", data=(x, y), reference=reference)


def test_with_data_shares_the_fills_and_scores_the_subset() -> None:
    game = _game()
    members = (game.data.y == 1).nonzero().flatten()
    class_game = game.with_data(game.data.subset(members), metric="recall:1")
    assert class_game.fills is game.fills
    assert class_game.n_evaluations == 0
    coalitions = np.random.default_rng(0).random((6, game.n_players)) < 0.5
    # Recall of class 1 on all the data equals accuracy on its examples.
    on_all = game.with_data(game.data, metric="recall:1").value(coalitions)
    np.testing.assert_array_equal(class_game.value(coalitions), on_all)
    assert game.metric.name == "accuracy"  # the parent game is unchanged


def test_class_study_reports_each_class() -> None:
    game = _game()
    global_result = ns.exact_shapley(game)
    study = class_specific_units(game, global_result, [0, 1], k=3, max_evaluations=300, seed=0)
    assert [entry.target_class for entry in study.per_class] == [0, 1]
    for entry in study.per_class:
        assert len(entry.top) == 3
        assert entry.recall_before == pytest.approx(
            game.with_data(game.data, metric=f"recall:{entry.target_class}").value_without([])
        )
        assert entry.accuracy_after == game.value_without(entry.top)
        assert entry.overlap_with_global == len(set(entry.top) & set(study.global_top))
        assert 0 <= entry.mean_depth <= len(study.layer_names) - 1
        assert entry.result.n_evaluations <= 300
    assert len(study.table()) == 2


def test_class_without_examples_is_an_error() -> None:
    game = _game()
    with pytest.raises(ValueError, match="no example of class 9"):
        class_specific_units(game, ns.exact_shapley(game), [9], k=2, max_evaluations=50)
