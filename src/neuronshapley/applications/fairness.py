"""Fairness repair (section 4.3 of Ghorbani & Zou 2020): remove the units that hurt a group.

The game's metric is the mean over groups of the recall of the positive class (after Kim et al.
2019): a model that misses the positives of one group scores low even when its overall recall is
high. The units with the most *negative* values lower that metric; removing a few of them should
raise the worst group's recall at little cost in overall accuracy. Everything is reported on
held-out examples that the values were not computed on.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from neuronshapley.pytorch.data import Split
from neuronshapley.results.result import ShapleyResult


@dataclass(frozen=True)
class GroupReport:
    """Per-group behaviour of the model with some units removed.

    Attributes:
        n_removed: Number of units removed.
        removed: Their names.
        group_names: Name of each group.
        accuracy: Accuracy per group.
        recall: Recall of the positive class per group.
        overall_accuracy: Accuracy over all examples (groups -1 included).
        mean_group_recall: Mean of ``recall``: the game's metric.
        recall_gap: Best minus worst group recall.
    """

    n_removed: int
    removed: tuple[str, ...]
    group_names: tuple[str, ...]
    accuracy: NDArray[np.float64]
    recall: NDArray[np.float64]
    overall_accuracy: float
    mean_group_recall: float
    recall_gap: float


def group_report(
    game: Any, removed: Sequence[str], data: Split, *, positive_class: int = 1
) -> GroupReport:
    """Accuracy and recall per group of ``game``'s model on ``data`` with ``removed`` ablated.

    Args:
        game: A :class:`~neuronshapley.units.NeuronGame`.
        removed: Unit names to ablate.
        data: Examples with ``groups`` (group -1 counts only in the overall accuracy).
        positive_class: The class whose recall is measured. Default 1.
    """
    if data.groups is None:
        raise ValueError(
            f"group_report needs a group per example; the split {data.name!r} has none."
        )
    predictions = game.logits(removed, data).argmax(dim=1).cpu()
    labels, groups = data.y.cpu(), data.groups.cpu()
    correct = predictions == labels
    n_groups = int(groups.max()) + 1
    names = data.group_names or tuple(f"group {g}" for g in range(n_groups))
    accuracy, recall = np.zeros(n_groups), np.zeros(n_groups)
    for g in range(n_groups):
        members = groups == g
        positives = members & (labels == positive_class)
        accuracy[g] = correct[members].double().mean().item() if members.any() else np.nan
        recall[g] = correct[positives].double().mean().item() if positives.any() else np.nan
    return GroupReport(
        n_removed=len(removed),
        removed=tuple(removed),
        group_names=tuple(names),
        accuracy=accuracy,
        recall=recall,
        overall_accuracy=float(correct.double().mean()),
        mean_group_recall=float(np.nanmean(recall)),
        recall_gap=float(np.nanmax(recall) - np.nanmin(recall)),
    )


@dataclass(frozen=True)
class FairnessStudy:
    """Group behaviour on held-out data as the most negative units are removed.

    Attributes:
        order: Units in removal order (most negative value first; only negative values).
        reports: One :class:`GroupReport` per number of units removed (the first removes none).
    """

    order: list[str]
    reports: list[GroupReport]

    def table(self) -> list[dict[str, object]]:
        """One row per number removed: overall accuracy, the gap, and each group's recall."""
        rows: list[dict[str, object]] = []
        for report in self.reports:
            row: dict[str, object] = {
                "removed": report.n_removed,
                "overall accuracy": report.overall_accuracy,
                "mean group recall": report.mean_group_recall,
                "recall gap": report.recall_gap,
            }
            for name, value in zip(report.group_names, report.recall, strict=True):
                row[f"recall {name}"] = float(value)
            rows.append(row)
        return rows


def fairness_study(
    game: Any,
    result: ShapleyResult,
    held_out: Split,
    counts: Sequence[int] = (0, 1, 2, 3, 5, 10),
) -> FairnessStudy:
    """Remove the units with the most negative values, 1 to K of them, and report on held-out data.

    Args:
        game: The :class:`~neuronshapley.units.NeuronGame` whose players ``result`` valued
            (its metric should be a group metric, e.g. ``"mean_group_recall"``).
        result: Values of ``game``'s players.
        held_out: Examples with groups that the values were not computed on.
        counts: Numbers of units to remove; capped at the number of negative values. Default
            ``(0, 1, 2, 3, 5, 10)``.
    """
    if list(result.player_names) != list(game.player_names):
        raise ValueError("fairness_study: the result does not value this game's players.")
    negative = [row.name for row in result.bottom(result.n_players) if row.value < 0]
    points = sorted({min(int(count), len(negative)) for count in counts} | {0})
    reports = [group_report(game, negative[:count], held_out) for count in points]
    return FairnessStudy(order=negative[: points[-1]], reports=reports)


def split_in_two(data: Split, seed: int = 0) -> tuple[Split, Split]:
    """Two disjoint random halves of ``data`` (values on one, the held-out report on the other)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator)
    half = len(data) // 2
    return (
        data.subset(order[:half].sort().values, f"{data.name} (values half)"),
        data.subset(order[half:].sort().values, f"{data.name} (held-out half)"),
    )
