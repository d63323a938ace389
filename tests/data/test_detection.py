"""Scoring data values on noisy labels: flips, F1 (count and OpenDataVal's 2-means), AUC, and
the point-removal curve."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import neuronshapley as ns
from neuronshapley.data.detection import (
    detection_auc,
    f1_at_count,
    flip_labels,
    removal_curve,
    two_means_f1,
    two_means_lower,
)


def test_flip_labels_changes_exactly_the_chosen_share() -> None:
    y = np.random.default_rng(1).integers(0, 10, size=500)
    noisy, flipped = flip_labels(y, 0.1, seed=0, n_classes=10)
    assert len(flipped) == 50 and np.array_equal(flipped, np.unique(flipped))
    assert (noisy[flipped] != y[flipped]).all()
    kept = np.setdiff1d(np.arange(500), flipped)
    assert np.array_equal(noisy[kept], y[kept])
    assert noisy.min() >= 0 and noisy.max() <= 9
    binary = np.array([0, 1] * 10)
    flipped_binary, where = flip_labels(binary, 0.5, seed=2)
    assert np.array_equal(flipped_binary[where], 1 - binary[where])
    again, where_again = flip_labels(binary, 0.5, seed=2)
    assert np.array_equal(again, flipped_binary) and np.array_equal(where, where_again)


def test_two_means_lower_is_the_best_split_by_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = np.concatenate([rng.normal(0, 1, 30), rng.normal(rng.uniform(0, 4), 1, 10)])
        ordered = np.sort(values)
        sse = [
            ((ordered[:s] - ordered[:s].mean()) ** 2).sum()
            + ((ordered[s:] - ordered[s:].mean()) ** 2).sum()
            for s in range(1, len(values))
        ]
        best = int(np.argmin(sse)) + 1
        assert np.array_equal(np.sort(values[two_means_lower(values)]), ordered[:best])


def test_f1_scores_of_perfect_and_partial_rankings() -> None:
    values = np.array([-5.0, -4.0, 1.0, 1.1, 0.9, 1.2, -4.5, 1.05])
    noisy = [0, 1, 6]
    assert f1_at_count(values, noisy) == 1.0
    assert two_means_f1(values, noisy) == 1.0
    assert detection_auc(values, noisy) == 1.0
    # One of the three noisy points valued highest: 2 of 3 flagged by count.
    values[6] = 2.0
    assert f1_at_count(values, noisy) == pytest.approx(2 / 3)
    assert two_means_f1(values, noisy) == pytest.approx(2 * 2 / (2 + 3))


def test_detection_auc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 5, size=60).astype(float)  # many ties
    noisy = rng.choice(60, size=12, replace=False)
    truth = np.zeros(60, bool)
    truth[noisy] = True
    assert detection_auc(values, noisy) == pytest.approx(roc_auc_score(truth, -values), abs=1e-12)


def test_removal_curve_of_an_additive_game() -> None:
    weights = np.array([3.0, -1.0, 2.0, 0.5])
    game = ns.games.AdditiveGame(weights)
    order = np.argsort(-weights)
    curve = removal_curve(game, order, [0, 1, 2, 4])
    assert np.allclose(curve, [4.5, 1.5, -0.5, 0.0])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: flip_labels([0.5, 1.0], 0.1), r"'labels' parameter of flip_labels"),
        (lambda: flip_labels([0, 1], 1.5), r"'fraction' parameter of flip_labels"),
        (lambda: f1_at_count([1.0, 2.0], [5]), r"'noisy' parameter of f1_at_count"),
        (lambda: detection_auc([1.0, np.nan], [0]), r"'values' parameter of detection_auc"),
        (lambda: detection_auc([1.0, 2.0], []), r"must name some but not all points"),
        (
            lambda: removal_curve(ns.games.AdditiveGame([1.0, 2.0]), [0, 0], [1]),
            r"'order' parameter of removal_curve must be a permutation",
        ),
    ],
)
def test_bad_input_is_named(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()
