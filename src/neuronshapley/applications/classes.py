"""Class-specific units (section 4.2 of Ghorbani & Zou 2020).

With the recall of one class as the metric, the units with the highest values are the ones that
class needs. The paper finds that removing them collapses that class's recall while overall
accuracy barely moves, that they overlap little with the globally critical units, and that they
sit deeper in the network.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neuronshapley.applications.removal import RemovalCurve, removal_curve
from neuronshapley.estimators import ShapleyResult, truncated_shapley
from neuronshapley.estimators.progress import ProgressCallback


@dataclass(frozen=True)
class ClassUnits:
    """The units one class needs, and what removing them does.

    Attributes:
        target_class: The class.
        result: Values of every unit for the recall of this class.
        top: The ``k`` units with the highest values, highest first.
        overlap_with_global: How many of ``top`` are also in the global top ``k``.
        recall_before: The class's recall with every unit.
        recall_after: The class's recall without ``top``.
        accuracy_before: Overall accuracy with every unit.
        accuracy_after: Overall accuracy without ``top``.
        curve: The class's recall as its top units are removed, against random units.
        mean_depth: Mean position (0 = first) of the layers holding ``top``.
    """

    target_class: int
    result: ShapleyResult
    top: list[str]
    overlap_with_global: int
    recall_before: float
    recall_after: float
    accuracy_before: float
    accuracy_after: float
    curve: RemovalCurve
    mean_depth: float


@dataclass(frozen=True)
class ClassStudy:
    """Class-specific units for several classes, next to the global ones.

    Attributes:
        per_class: One entry per class.
        global_top: The global top ``k`` (accuracy).
        global_mean_depth: Mean layer position of ``global_top``.
        layer_names: The layers in network order (positions refer to it).
    """

    per_class: list[ClassUnits]
    global_top: list[str]
    global_mean_depth: float
    layer_names: list[str]

    def table(self) -> list[dict[str, object]]:
        """One row per class: recall and accuracy before/after, overlap, depth."""
        return [
            {
                "class": entry.target_class,
                "recall before": entry.recall_before,
                "recall after": entry.recall_after,
                "accuracy before": entry.accuracy_before,
                "accuracy after": entry.accuracy_after,
                f"overlap with global top {len(entry.top)}": entry.overlap_with_global,
                "mean layer position": entry.mean_depth,
            }
            for entry in self.per_class
        ]


def _mean_depth(game: Any, names: Sequence[str]) -> float:
    position = {layer.path: i for i, layer in enumerate(game.layers)}
    layer_of = dict(zip(game.player_names, game.unit_layers, strict=True))
    return float(np.mean([position[layer_of[name]] for name in names])) if names else np.nan


def class_specific_units(
    game: Any,
    global_result: ShapleyResult,
    classes: Sequence[int],
    *,
    k: int = 10,
    max_evaluations: int = 3000,
    truncation: float | None = 0.1,
    n_random: int = 10,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> ClassStudy:
    """Value the units for the recall of each class and remove each class's top ``k``.

    Each class's values are estimated on the examples of that class only (recall of class c is
    the accuracy on its examples, so the other examples add cost and nothing else), with
    ``truncated_shapley`` under a budget.

    Args:
        game: A :class:`~neuronshapley.units.NeuronGame` with metric accuracy; its model,
            units, ablation fills and data are reused.
        global_result: Values of ``game``'s players for accuracy (the global ranking).
        classes: The classes to study.
        k: Units removed per class. Default 10.
        max_evaluations: Evaluation budget per class. Default 3,000.
        truncation: Truncation threshold of each class's run. Default 0.1.
        n_random: Random draws of the removal curves. Default 10.
        seed: Seed of the permutations and random draws. Default 0.
        progress: Called after every round of each class's estimator. Default None.
    """
    global_top = [row.name for row in global_result.top(k)]
    accuracy_before = float(game.value(np.ones((1, game.n_players), dtype=bool))[0])
    entries = []
    for target in classes:
        members = (game.data.y == int(target)).nonzero().flatten()
        if len(members) == 0:
            raise ValueError(f"class_specific_units: the data has no example of class {target}.")
        class_game = game.with_data(
            game.data.subset(members, f"class {target}"), metric=f"recall:{int(target)}"
        )
        result = truncated_shapley(
            class_game,
            truncation=truncation,
            max_evaluations=max_evaluations,
            seed=seed,
            progress=progress,
        )
        top = [row.name for row in result.top(k)]
        curve = removal_curve(class_game, top, k, n_random=n_random, seed=seed)
        entries.append(
            ClassUnits(
                target_class=int(target),
                result=result,
                top=top,
                overlap_with_global=len(set(top) & set(global_top)),
                recall_before=float(curve.ranked[0]),
                recall_after=float(curve.ranked[-1]),
                accuracy_before=accuracy_before,
                accuracy_after=game.value_without(top),
                curve=curve,
                mean_depth=_mean_depth(game, top),
            )
        )
    return ClassStudy(
        per_class=entries,
        global_top=global_top,
        global_mean_depth=_mean_depth(game, global_top),
        layer_names=[layer.path for layer in game.layers],
    )
