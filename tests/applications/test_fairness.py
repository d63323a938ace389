"""Fairness repair: per-group reports on held-out data as the most negative units go."""

import numpy as np
import pytest
import torch

import neuronshapley as ns
from neuronshapley.applications.fairness import fairness_study, group_report, split_in_two
from neuronshapley.pytorch.data import Split
from tests.units._models import fitted, vectors

NAMES = ("a", "b", "c")


def _split(n: int, seed: int) -> Split:
    x, y = vectors(n, seed=seed)
    y = (y % 2).long()  # binary labels: class 1 is the positive class
    groups = torch.arange(n) % 4 - 1  # groups -1, 0, 1, 2
    return Split(x, y, groups, NAMES, f"split {seed}")


def _game() -> ns.NeuronGame:
    reference, _ = vectors(50, seed=21)
    return ns.NeuronGame(
        fitted("mlp"), data=_split(120, 20), reference=reference, metric="mean_group_recall"
    )


def test_group_report_matches_a_hand_count() -> None:
    game = _game()
    held = _split(90, 22)
    removed = game.player_names[:2]
    report = group_report(game, removed, held)
    predictions = game.logits(removed, held).argmax(1)
    for g, name in enumerate(NAMES):
        members = held.groups == g
        positives = members & (held.y == 1)
        assert report.group_names[g] == name
        assert report.accuracy[g] == (predictions[members] == held.y[members]).double().mean()
        assert report.recall[g] == (predictions[positives] == 1).double().mean()
    assert report.overall_accuracy == (predictions == held.y).double().mean().item()
    assert report.mean_group_recall == pytest.approx(np.nanmean(report.recall))
    assert report.recall_gap == pytest.approx(np.nanmax(report.recall) - np.nanmin(report.recall))


def test_study_removes_only_negative_units_most_negative_first() -> None:
    game = _game()
    result = ns.exact_shapley(game)
    negative = [row.name for row in result.bottom(game.n_players) if row.value < 0]
    assert negative, "the fitted MLP should have some units that hurt the group metric"
    study = fairness_study(game, result, _split(90, 22), counts=(0, 1, 2, 50))
    assert [report.n_removed for report in study.reports] == [0, 1, 2, len(negative)]
    assert study.order == negative
    assert study.reports[1].removed == (negative[0],)
    assert study.reports[0].mean_group_recall == pytest.approx(
        group_report(game, [], _split(90, 22)).mean_group_recall
    )
    assert len(study.table()) == 4
    assert "recall c" in study.table()[0]


def test_split_in_two_is_disjoint_and_complete() -> None:
    data = _split(11, 23)
    first, second = split_in_two(data, seed=1)
    assert len(first) + len(second) == 11
    rows = {tuple(row.tolist()) for row in torch.cat([first.x, second.x])}
    assert len(rows) == 11
    assert first.group_names == NAMES


def test_group_report_needs_groups() -> None:
    game = _game()
    x, y = vectors(10, seed=3)
    with pytest.raises(ValueError, match="needs a group per example"):
        group_report(game, [], Split(x, y))
