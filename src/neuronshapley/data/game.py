"""Training points as players: Data Shapley (Ghorbani & Zou 2019; chapter §10.2, Example 10.2.1).

``V(S)`` is the test metric of a model fitted on the training points in ``S`` (or on the points
of the groups in ``S``: a source, an annotator, a batch). Any estimator of the engine applies;
``tmc_shapley`` is TMC-Shapley on the engine's truncated walks, and ``harmful_points`` is TMAB
(Ghorbani & Zou 2020) for the k lowest-valued points on the same walks.
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.fingerprint import digest
from neuronshapley._internal.validation import check_choice, check_float
from neuronshapley.data.splits import labelled_arrays
from neuronshapley.estimators import tmab_shapley, truncated_shapley
from neuronshapley.games.base import BaseGame, Game, check_coalitions, game_fingerprint
from neuronshapley.results import ShapleyResult
from neuronshapley.typing import CoalitionMatrix, GameValues

OWNER = "DataGame"
Metric = Callable[[Any, Any], float]


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of predictions equal to the labels."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


class DataGame(BaseGame):
    """V(S) = ``metric(y_test, predict(x_test))`` for a model fitted on the training points in S.

    Coalitions the learner cannot fit get a defined value, never an exception from inside the
    learner (classification, i.e. labels that are not floats):

    - the empty coalition: the best constant predictor, the class (among the training labels)
      whose constant prediction scores highest on the test set; with ``empty_value`` given,
      that number instead;
    - a coalition whose points all have one label (``degenerate="constant"``, the default):
      the constant predictor of that label, which is what any learner fitted on it predicts.
      Learners that handle one class (k nearest neighbours) can be called on it with
      ``degenerate="fit"``.

    For regression (float labels) the empty coalition predicts the mean training label.

    Args:
        x_train: Training inputs, first axis the points.
        y_train: Training labels, one per point.
        x_test: Test inputs (the training inputs' shape past the first axis).
        y_test: Test labels.
        fit: A scikit-learn-style estimator (cloned and fitted for every coalition, the
            original untouched) or a callable ``fit(x, y) -> predict`` with
            ``predict(x) -> predictions``.
        metric: ``metric(y_true, y_pred) -> float``, higher is better. Default: accuracy.
        groups: One group label per training point; the players are then the groups (sorted),
            and a coalition holds all the points of its groups. Default ``None``: one player
            per point.
        empty_value: V of the empty coalition. Default ``None``: the best constant predictor.
        degenerate: ``"constant"`` (default) or ``"fit"``, see above.

    Attributes:
        n_fits: Models fitted so far (coalitions valued without a fit not counted).
    """

    fingerprint_ignores = ("n_fits",)

    def __init__(
        self,
        x_train: Any,
        y_train: Any,
        x_test: Any,
        y_test: Any,
        *,
        fit: Any,
        metric: Metric = accuracy,
        groups: Sequence[Any] | None = None,
        empty_value: float | None = None,
        degenerate: str = "constant",
    ) -> None:
        self.x_train, self.y_train, self.x_test, self.y_test = labelled_arrays(
            x_train, y_train, x_test, y_test, OWNER
        )
        is_estimator = hasattr(fit, "fit") and hasattr(fit, "predict")
        if not is_estimator and not callable(fit):
            raise TypeError(
                f"The 'fit' parameter of {OWNER} must be a scikit-learn-style estimator (with "
                "fit and predict) or a callable fit(x, y) -> predict. Got "
                f"{type(fit).__name__} instead."
            )
        if not callable(metric):
            raise TypeError(
                f"The 'metric' parameter of {OWNER} must be a callable metric(y_true, y_pred) "
                f"-> float. Got {type(metric).__name__} instead."
            )
        self.fit = fit
        self.metric = metric
        self.empty_value = check_float(empty_value, "empty_value", OWNER, allow_none=True)
        self.degenerate = check_choice(degenerate, "degenerate", OWNER, ("constant", "fit"))
        self.classification = self.y_train.dtype.kind not in "fc"
        if groups is None:
            self.point_player = np.arange(len(self.x_train))
            names = [f"train:{i}" for i in range(len(self.x_train))]
        else:
            labels = np.asarray(groups)
            if labels.shape != (len(self.x_train),):
                raise ValueError(
                    f"The 'groups' parameter of {OWNER} must hold one group per training point, "
                    f"shape ({len(self.x_train)},). Got shape {labels.shape} instead."
                )
            unique, self.point_player = np.unique(labels, return_inverse=True)
            names = [str(name) for name in unique]
        super().__init__(len(names), names)
        self.n_fits = 0

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        points = coalitions[:, self.point_player]
        return np.array([self._value_of(row) for row in points], dtype=np.float64)

    def _value_of(self, points: NDArray[np.bool_]) -> float:
        size = int(points.sum())
        if size == 0:
            if self.empty_value is not None:
                return self.empty_value
            return self._best_constant()
        y = self.y_train[points]
        if self.classification and self.degenerate == "constant":
            first = y[0]
            if np.all(y == first):
                return self._score(np.full(len(self.y_test), first, dtype=self.y_train.dtype))
        return self._score(self._fit_predict(self.x_train[points], y, size))

    def _best_constant(self) -> float:
        if not self.classification:
            mean = float(np.mean(self.y_train))
            return self._score(np.full(len(self.y_test), mean))
        scores = [
            self._score(np.full(len(self.y_test), label, dtype=self.y_train.dtype))
            for label in np.unique(self.y_train)
        ]
        return max(scores)

    def _fit_predict(self, x: Any, y: Any, size: int) -> Any:
        classes = len(np.unique(y)) if self.classification else None
        what = f"a coalition of {size} training point(s)" + (
            f" with {classes} class(es)" if classes is not None else ""
        )
        try:
            if hasattr(self.fit, "fit") and hasattr(self.fit, "predict"):
                from sklearn.base import clone

                model = clone(self.fit).fit(x, y)
                predictions = model.predict(self.x_test)
            else:
                predictions = self.fit(x, y)(self.x_test)
        except Exception as error:
            raise RuntimeError(
                f"The 'fit' of {OWNER} failed on {what}: {type(error).__name__}: {error}"
            ) from error
        self.n_fits += 1
        return predictions

    def _score(self, predictions: Any) -> float:
        value = float(self.metric(self.y_test, predictions))
        if not np.isfinite(value):
            raise ValueError(
                f"The 'metric' of {OWNER} returned {value!r}; it must return a finite number."
            )
        return value

    def fingerprint(self) -> str:
        """A hash of the data, the learner (its parameters, or the callable's code and captured
        values), the metric, the groups and the rules for unfittable coalitions."""
        learner: Any = self.fit
        if hasattr(learner, "get_params"):
            learner = (type(learner).__qualname__, learner.get_params(deep=True))
        return digest(
            "DataGame",
            self.x_train,
            self.y_train,
            self.x_test,
            self.y_test,
            learner,
            self.metric,
            self.point_player,
            self.player_names,
            self.empty_value,
            self.degenerate,
        )

    def __repr__(self) -> str:
        return (
            f"DataGame(n_players={self.n_players}, n_train={len(self.x_train)}, "
            f"n_test={len(self.x_test)})"
        )


class _DualGame:
    """``W(C) = V(N) - V(N \\ C)``: the same Shapley values as V (the dual game).

    The engine walks from the full set down and stops a walk once ``W <= threshold``; on W
    that is once the players *added so far* in the reversed order hold V within ``threshold``
    of V(N), which is TMC-Shapley's rule (Ghorbani & Zou 2019, Algorithm 1).
    """

    def __init__(self, game: Game) -> None:
        self.game = game
        self.n_players = game.n_players
        self.player_names = list(game.player_names)
        self.player_groups = getattr(game, "player_groups", None)
        self.v_full = float(game.value(np.ones((1, game.n_players), dtype=bool))[0])
        self.n_evaluations = 0

    def value(self, coalitions: CoalitionMatrix) -> GameValues:
        coalitions = check_coalitions(coalitions, self.n_players, "tmc_shapley")
        values = self.v_full - np.asarray(self.game.value(~coalitions), dtype=np.float64)
        self.n_evaluations += len(coalitions)
        return values

    def fingerprint(self) -> str:
        return digest("dual", game_fingerprint(self.game))


def tmc_shapley(game: Game, *, tolerance: float = 0.01, **options: Any) -> ShapleyResult:
    """TMC-Shapley (Ghorbani & Zou 2019): truncated Monte Carlo on the engine's walks.

    Each permutation adds the training points one at a time; once the metric of the points
    added is within ``tolerance`` of V(N) for ``patience`` consecutive steps, the remaining
    points get a zero marginal for that permutation. This runs ``ns.truncated_shapley`` in
    absolute mode on the dual game ``W(C) = V(N) - V(N \\ C)`` (same Shapley values; its
    downward walk is the upward walk of V), so every option of the engine applies.

    Args:
        game: A ``DataGame`` (or any game).
        tolerance: Performance tolerance of the truncation (same units as the metric).
            Default 0.01. ``None`` disables truncation (plain permutation sampling).
        **options: Passed to ``truncated_shapley`` (``n_permutations``, ``max_evaluations``,
            ``patience``, ``seed``, ``value_range``, ``checkpoint`` ...).

    Returns:
        The ``ShapleyResult`` of ``truncated_shapley`` on the dual game (values and intervals
        are those of V's Shapley values). ``n_evaluations`` leaves out the one V(N).
    """
    if tolerance is not None:
        check_float(tolerance, "tolerance", "tmc_shapley", low=0.0)
    for fixed in ("truncation", "truncation_mode"):
        if fixed in options:
            raise TypeError(
                f"tmc_shapley sets {fixed!r} itself (absolute truncation at 'tolerance'); "
                f"pass 'tolerance' instead. Got {fixed}={options[fixed]!r}."
            )
    return truncated_shapley(
        _DualGame(game), truncation=tolerance, truncation_mode="absolute", **options
    )


def harmful_points(
    game: Game,
    k: int,
    *,
    tolerance: float | None = 0.01,
    value_range: float | None = 2.0,
    **options: Any,
) -> ShapleyResult:
    """The ``k`` most harmful training points: TMAB (Ghorbani & Zou 2020, Algorithm 1) for the
    ``k`` lowest Data Shapley values, on TMC-Shapley's truncated walks.

    Runs ``ns.tmab_shapley(..., side="bottom")`` on the dual game of ``tmc_shapley`` (same
    Shapley values, TMC's truncation at ``tolerance``). It samples only the players whose
    interval still straddles the threshold between the ``k`` lowest values and the rest, and
    stops once none does (``stop_reason == "separated"``) or a budget (``max_evaluations``,
    ``max_seconds``) runs out. The answer is ``result.bottom_indices(k)``; when separated,
    with probability at least ``1 - delta`` no point left out is valued below a returned one
    by more than ``2 tol`` (``tmab_shapley``'s guarantee; with truncation it is about the
    truncated game's values unless ``continue_probability`` is given). On a budget the
    intervals of points already decided stop shrinking, so the ranking among them is coarser
    than ``tmc_shapley``'s at the same number of fits.

    Args:
        game: A ``DataGame`` (or any game).
        k: How many points (players) to return, ``1 <= k < n_players``.
        tolerance: TMC's truncation tolerance (units of the metric). Default 0.01. ``None``:
            no truncation.
        value_range: Range of a marginal contribution: 2 for accuracy (marginals in
            [-1, 1]). Default 2.0. ``None`` takes the observed range (voids the guarantee).
        **options: Passed to ``tmab_shapley`` (``delta``, ``tol``, ``max_evaluations``,
            ``max_seconds``, ``seed``, ``n_walks``, ``patience``, ``checkpoint`` ...).

    Returns:
        ``tmab_shapley``'s ``ShapleyResult`` (values of V; ``n_evaluations`` leaves out the
        one V(N)); ``diagnostics["n_undecided"]`` counts the points still undecided.
    """
    if tolerance is not None:
        check_float(tolerance, "tolerance", "harmful_points", low=0.0)
    for fixed in ("side", "truncation", "truncation_mode"):
        if fixed in options:
            raise TypeError(
                f"harmful_points sets {fixed!r} itself (the bottom k, TMC's truncation at "
                f"'tolerance'); use tmab_shapley for other choices. Got {fixed}={options[fixed]!r}."
            )
    return tmab_shapley(
        _DualGame(game),
        k,
        side="bottom",
        truncation=tolerance,
        truncation_mode="absolute",
        value_range=value_range,
        **options,
    )
