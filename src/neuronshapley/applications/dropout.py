"""The dropout effect: how training with filter dropout changes the Neuron Shapley values.

Ghorbani & Zou (2020), section 4 ("Dropout effect") and figure 4, trained the same SqueezeNet
with and without filter dropout (p = 0.5) and compared the two models' values:

(a) with dropout the values are more concentrated around zero;
(b) the dropout model is more robust to removing its highest-valued filters, yet removing the
    top 30 still destroys it (a few critical filters remain);
(c) removing the lowest-valued filters first, the dropout model survives the removal of almost
    half of its filters.

:func:`dropout_study` measures all three on any number of models (typically
``{"no dropout": (game, result), "dropout 0.5": (game, result)}``) and :meth:`DropoutStudy.table`
turns (a) into numbers, not just a histogram: the spread of the values, their median magnitude,
the fraction of units near zero (one threshold for every model), the share of the positive
value held by the top 10 units and the number of negative values. Values of different models
are comparable in absolute terms: by efficiency each model's values sum to V(N) - V(empty), the
same order of magnitude for models of similar accuracy on the same data.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import check_float, check_int
from neuronshapley.applications.removal import (
    RemovalCurve,
    rank_by_score,
    removal_curve,
    units_before_drop,
)
from neuronshapley.games.base import Game
from neuronshapley.results.result import ShapleyResult
from neuronshapley.typing import Seed

_OWNER = "dropout_study"
# The paper's histograms show most values within a tenth of the largest one.
NEAR_ZERO_FRACTION = 0.1
TOP_SHARE = 10
_TABLE_COUNTS = (5, 10)


@dataclass(frozen=True)
class ModelSummary:
    """One model of a :class:`DropoutStudy`: its values, their distribution, its curves.

    Attributes:
        values: The Shapley value of every unit, in the game's player order.
        player_names: The units' names.
        full_value: The metric of the full model, V(N) (accuracy for the paper's study).
        value_sd: Standard deviation of the values (population, ``ddof=0``).
        median_abs_value: Median of ``|value|``.
        near_zero_fraction: Fraction of units with ``|value| < near_zero`` (the study's shared
            threshold).
        top_share: Share of the total positive value held by the ``TOP_SHARE`` (10) highest
            units: the sum of their positive parts over the sum of all positive values (NaN
            when no value is positive; 1 when the model has at most 10 units).
        n_negative: Number of units with a negative value.
        top: The curve of removing the ``0, 1, ..., k`` highest-valued units, against random
            units.
        reverse: The curve of removing the lowest-valued units first (all units, about 50
            points), against random units.
        units_before_drop: The most lowest-valued units removed (among ``reverse.counts``)
            with the metric, at that count and every smaller one, at most ``drop`` below
            ``full_value``.
    """

    values: NDArray[np.float64]
    player_names: list[str]
    full_value: float
    value_sd: float
    median_abs_value: float
    near_zero_fraction: float
    top_share: float
    n_negative: int
    top: RemovalCurve
    reverse: RemovalCurve
    units_before_drop: int

    @property
    def n_units(self) -> int:
        """Number of units (players) of the model."""
        return len(self.values)


@dataclass(frozen=True)
class DropoutStudy:
    """Value distributions and removal curves of several models, side by side.

    Attributes:
        models: Model name -> its :class:`ModelSummary`, in the order given.
        near_zero: The threshold on ``|value|`` behind every model's ``near_zero_fraction``.
        k: Units removed by the top curves.
        drop: The tolerated absolute drop of the metric behind ``units_before_drop``.
    """

    models: dict[str, ModelSummary]
    near_zero: float
    k: int
    drop: float

    def table(self) -> list[dict[str, Any]]:
        """One row per model: the value distribution and the removal results.

        Returns:
            Rows with the keys ``"model"``, ``"units"``, ``"accuracy"`` (V(N), the game's
            metric), ``"value sd"``, ``"median |value|"``, ``"near zero (fraction)"``,
            ``"top-10 share"``, ``"negative values"``, ``"after top 5"``, ``"after top 10"``
            and ``"after top {k}"`` (the metric once the highest-valued units are removed;
            counts above ``k`` left out), ``"random {k} (mean)"`` (the metric once ``k`` random
            units are removed), ``"units before drop"`` and ``"units before drop
            (fraction)"``.
        """
        counts = sorted({count for count in (*_TABLE_COUNTS, self.k) if count <= self.k})
        rows = []
        for name, model in self.models.items():
            top = model.top
            position = {int(count): i for i, count in enumerate(top.counts)}
            row: dict[str, Any] = {
                "model": name,
                "units": model.n_units,
                "accuracy": model.full_value,
                "value sd": model.value_sd,
                "median |value|": model.median_abs_value,
                "near zero (fraction)": model.near_zero_fraction,
                "top-10 share": model.top_share,
                "negative values": model.n_negative,
            }
            for count in counts:
                row[f"after top {count}"] = float(top.ranked[position[count]])
            row[f"random {self.k} (mean)"] = float(top.random_mean[position[self.k]])
            row["units before drop"] = model.units_before_drop
            row["units before drop (fraction)"] = model.units_before_drop / model.n_units
            rows.append(row)
        return rows


def dropout_study(
    models: Mapping[str, tuple[Game, ShapleyResult]],
    *,
    k: int = 20,
    n_random: int = 10,
    seed: Seed = 0,
    drop: float = 0.01,
    reverse_step: int | None = None,
    near_zero: float | None = None,
) -> DropoutStudy:
    """Compare the Shapley values of models trained with and without dropout.

    The experiment of Ghorbani & Zou (2020), figure 4, on every model of ``models``: the
    distribution of its values, the metric after removing its ``1..k`` highest-valued units
    (against random units, mean and sd over ``n_random`` draws) and after removing its
    lowest-valued units first, all of them, about 50 points. Evaluations per model: one batched
    game call per curve.

    Args:
        models: Model name -> ``(game, result)``: the model's game (e.g. a
            :class:`~neuronshapley.units.NeuronGame` scoring accuracy on test data) and the
            Shapley values of its players (same names, same order). At least two models.
        k: Most units removed by the top curves; at most the units of every model. Default 20.
        n_random: Random draws per count of every curve. Default 10.
        seed: Seed of the random draws; every model gets the same seed. Default 0.
        drop: Tolerated absolute drop of the metric below V(N) for ``units_before_drop``.
            Default 0.01.
        reverse_step: Units between points of the reverse curves. Default ``None``
            (``ceil(n_units / 50)`` for each model: about 50 points).
        near_zero: Threshold on ``|value|`` under which a unit counts as near zero, the same
            for every model. Default ``None``: ``NEAR_ZERO_FRACTION`` (0.1) times the largest
            ``|value|`` over all models, so that the fractions compare the models on one scale.

    Returns:
        The per-model summaries and curves.

    Raises:
        ValueError: If fewer than two models are given, a result does not hold its game's
            players in order, or a parameter is out of range.
        TypeError: If an entry of ``models`` is not a ``(game, result)`` pair.
    """
    pairs = _check_models(models)
    smallest = min(game.n_players for game, _ in pairs.values())
    k = int(check_int(k, "k", _OWNER, min_value=1, max_value=smallest))  # type: ignore[arg-type]
    check_int(n_random, "n_random", _OWNER, min_value=1)
    drop = float(check_float(drop, "drop", _OWNER, low=0.0))  # type: ignore[arg-type]
    check_int(reverse_step, "reverse_step", _OWNER, min_value=1, allow_none=True)
    check_float(near_zero, "near_zero", _OWNER, low=0.0, include_low=False, allow_none=True)

    values = {name: np.asarray(result.values, np.float64) for name, (_, result) in pairs.items()}
    if near_zero is None:
        largest = max(float(np.max(np.abs(v))) for v in values.values())
        # All-zero values (a dead model) leave no scale: count exact zeros only.
        threshold = NEAR_ZERO_FRACTION * largest if largest > 0 else np.finfo(np.float64).tiny
    else:
        threshold = float(near_zero)

    summaries = {
        name: _summarize(game, values[name], k, n_random, seed, drop, reverse_step, threshold)
        for name, (game, _) in pairs.items()
    }
    return DropoutStudy(models=summaries, near_zero=threshold, k=k, drop=drop)


def _check_models(models: Any) -> dict[str, tuple[Game, ShapleyResult]]:
    if not isinstance(models, Mapping) or len(models) < 2:
        got = f"{len(models)} model(s)" if isinstance(models, Mapping) else type(models).__name__
        raise ValueError(
            f"The 'models' parameter of {_OWNER} must be a mapping of at least two model names "
            f"to (game, result) pairs, e.g. {{'no dropout': (game, result), 'dropout 0.5': "
            f"(game_d, result_d)}}. Got {got} instead."
        )
    pairs: dict[str, tuple[Game, ShapleyResult]] = {}
    for name, pair in models.items():
        if (
            not isinstance(pair, tuple)
            or len(pair) != 2
            or not isinstance(pair[0], Game)
            or not isinstance(pair[1], ShapleyResult)
        ):
            raise TypeError(
                f"The 'models' parameter of {_OWNER} must map each name to a (game, "
                f"ShapleyResult) pair. Got {type(pair).__name__} for model {name!r} instead."
            )
        game, result = pair
        if list(result.player_names) != list(game.player_names):
            raise ValueError(
                f"The 'models' parameter of {_OWNER} must pair each game with the values of its "
                f"players, in the game's order (game.player_names). Model {name!r} has a result "
                f"over {len(result.player_names)} players ({list(result.player_names)[:3]}...) "
                f"for a game of {game.n_players} ({list(game.player_names)[:3]}...)."
            )
        pairs[str(name)] = (game, result)
    return pairs


def _summarize(
    game: Game,
    values: NDArray[np.float64],
    k: int,
    n_random: int,
    seed: Seed,
    drop: float,
    reverse_step: int | None,
    near_zero: float,
) -> ModelSummary:
    """The value statistics and both removal curves of one model."""
    names = list(game.player_names)
    n = len(names)
    top = removal_curve(
        game,
        rank_by_score(names, values)[:k],
        k,
        n_random=n_random,
        seed=seed,
        ranking="Shapley value, highest first",
    )
    step = -(-n // 50) if reverse_step is None else reverse_step
    reverse = removal_curve(
        game,
        rank_by_score(names, -values),
        sorted({*range(0, n + 1, step), n}),
        n_random=n_random,
        seed=seed,
        ranking="Shapley value, lowest first",
    )
    full_value = float(top.ranked[0])
    positive = np.clip(values, 0.0, None)
    total_positive = float(positive.sum())
    highest = np.sort(positive)[::-1][:TOP_SHARE]
    return ModelSummary(
        values=values,
        player_names=names,
        full_value=full_value,
        value_sd=float(np.std(values)),
        median_abs_value=float(np.median(np.abs(values))),
        near_zero_fraction=float(np.mean(np.abs(values) < near_zero)),
        top_share=float(highest.sum() / total_positive) if total_positive > 0 else float("nan"),
        n_negative=int(np.sum(values < 0)),
        top=top,
        reverse=reverse,
        units_before_drop=units_before_drop(reverse, full_value, drop),
    )
