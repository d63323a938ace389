"""Pricing data sources with Shapley values (chapter §10.2, Example 10.2.1; §10.5's caveat).

The players are sources of training data (annotators, vendors, datasets); ``V(S)`` is the test
metric of a model fitted on the points of the sources in ``S``. A source's *payment* is its
Shapley value, so the payments add up to ``V(N) - V(∅)`` (efficiency). Beside the payments a
``PricingResult`` holds what the chapter's §10.5 says a payment hides:

- the *standalone* value ``V({i}) - V(∅)``: what the source is worth bought alone;
- the *leave-one-out* value ``V(N) - V(N \\ {i})``: what is lost if only it is dropped;
- the pairwise Shapley interaction index of every pair of sources (Grabisch & Roubens 1999):
  positive for a synergy (two sources worth little alone and much together), negative for a
  redundancy (two sources that do the same job).

A payment averages a source's marginal contributions over every context: each pure synergy
(Harsanyi dividend) is split equally among the sources that make it, so a synergistic pair is
paid far above what either is worth alone; a copy of a source is paid what the original is
paid (symmetry) and takes a share of the original's payment, not a fixed half (docs/data.md
measures it). The interactions and the standalone values make that visible instead of leaving
it inside the average.

Few sources (at most ``MAX_EXACT_SOURCES``) are priced exactly: every coalition's model is fitted
once (``2^m`` fits for ``m`` sources, cached), and the payments, standalone, leave-one-out
values and interactions all come from those fits. More sources need ``budget``: the engine's
permutation estimator with intervals (the interactions are then left out: they need ``2 m^2``
coalitions per permutation).
"""

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import check_float, check_int
from neuronshapley.data.game import DataGame, Metric, accuracy
from neuronshapley.estimators import exact_interactions, exact_shapley, permutation_shapley
from neuronshapley.estimators.exact import all_coalition_values
from neuronshapley.estimators.walks import Evaluator
from neuronshapley.games.base import Game, as_game, check_coalitions, game_fingerprint
from neuronshapley.results import ShapleyResult
from neuronshapley.results.interactions import InteractionPair, InteractionResult
from neuronshapley.typing import CoalitionMatrix, GameValues

OWNER = "price_sources"
MAX_EXACT_SOURCES = 12


class PricingRow(NamedTuple):
    """A row of ``PricingResult.table()``: one source."""

    source: str
    n_points: int | None
    payment: float
    payment_low: float
    payment_high: float
    share: float
    standalone: float
    leave_one_out: float


@dataclass(frozen=True, eq=False)
class PricingResult:
    """Payments for ``m`` data sources, with what they hide (standalone, leave-one-out, pairs).

    Attributes:
        sources: The source names, sorted (``DataGame``'s order of the group labels).
        n_points: Training points per source, or ``None`` when priced from a game.
        payments: Each source's Shapley value (exact, or estimated with ``budget``).
        payment_low: Lower end of each payment's interval (the payment itself when exact).
        payment_high: Upper end of each payment's interval.
        standalone: ``V({i}) - V(∅)`` per source.
        leave_one_out: ``V(N) - V(N \\ {i})`` per source.
        value_full: ``V(N)``, the metric with every source.
        value_empty: ``V(∅)``, the metric with none (``DataGame``: the best constant predictor).
        interactions: The pairwise Shapley interaction index, ``(m, m)`` symmetric with a zero
            diagonal, or ``None`` when not computed (``budget`` given).
        coalition_values: ``V`` of every coalition, indexed by its bitmask (bit ``i`` set:
            source ``i`` in), or ``None`` (``budget`` given); ``value_of`` reads it by names.
        shapley: The estimator's ``ShapleyResult`` behind ``payments``.
        method: ``"exact"`` (enumeration) or ``"permutation"`` (``budget`` permutations).
        n_fits: Models fitted (each coalition once; coalitions of one class or none need no fit).
        seconds: Wall time of the pricing.
    """

    sources: tuple[str, ...]
    n_points: NDArray[np.int64] | None
    payments: NDArray[np.float64]
    payment_low: NDArray[np.float64]
    payment_high: NDArray[np.float64]
    standalone: NDArray[np.float64]
    leave_one_out: NDArray[np.float64]
    value_full: float
    value_empty: float
    interactions: NDArray[np.float64] | None
    coalition_values: NDArray[np.float64] | None
    shapley: ShapleyResult
    method: str
    n_fits: int
    seconds: float

    @property
    def gain(self) -> float:
        """``V(N) - V(∅)``: what the payments must add up to (efficiency)."""
        return self.value_full - self.value_empty

    @property
    def total_payment(self) -> float:
        """The sum of the payments."""
        return float(np.sum(self.payments))

    @property
    def efficiency_gap(self) -> float:
        """``sum(payments) - (V(N) - V(∅))``: zero up to rounding for exact payments, and for
        permutation payments too (each permutation's marginals telescope to the gain)."""
        return self.total_payment - self.gain

    def value_of(self, sources: Sequence[str]) -> float:
        """``V`` of the coalition of the named sources (e.g. the pair a buyer would license)."""
        if self.coalition_values is None:
            raise ValueError(
                "This PricingResult holds no coalition values (priced with 'budget'); price "
                "the sources exactly to read V of any coalition."
            )
        mask = 0
        for name in sources:
            mask |= 1 << self._position(str(name), "sources", "value_of")
        return float(self.coalition_values[mask])

    def interaction(self, first: str, second: str) -> float:
        """The interaction index of two sources, by name."""
        if self.interactions is None:
            raise ValueError(
                "This PricingResult has no interactions (priced with 'budget'); price the "
                "sources exactly, or run ns.permutation_interactions on the DataGame."
            )
        a, b = self._position(first, "first"), self._position(second, "second")
        if a == b:
            raise ValueError(f"PricingResult.interaction needs two sources. Got {first!r} twice.")
        return float(self.interactions[a, b])

    def pairs(self) -> list[InteractionPair]:
        """Every pair of sources, most synergistic first (most redundant last)."""
        if self.interactions is None:
            return []
        m = len(self.sources)
        rows = [
            InteractionPair(self.sources[a], self.sources[b], float(value), 0.0, value, value)
            for a in range(m)
            for b in range(a + 1, m)
            for value in [float(self.interactions[a, b])]
        ]
        return sorted(rows, key=lambda row: -row.value)

    def table(self) -> list[PricingRow]:
        """One row per source, in the order of ``sources``; ``share`` is the payment over
        ``V(N) - V(∅)`` (``nan`` when that gain is 0)."""
        gain = self.gain
        return [
            PricingRow(
                source=name,
                n_points=None if self.n_points is None else int(self.n_points[i]),
                payment=float(self.payments[i]),
                payment_low=float(self.payment_low[i]),
                payment_high=float(self.payment_high[i]),
                share=float(self.payments[i] / gain) if gain != 0 else math.nan,
                standalone=float(self.standalone[i]),
                leave_one_out=float(self.leave_one_out[i]),
            )
            for i, name in enumerate(self.sources)
        ]

    def _position(self, name: Any, parameter: str, method: str = "interaction") -> int:
        name = str(name)  # sources are named by their labels as strings (an int label too)
        if name not in self.sources:
            raise ValueError(
                f"The {parameter!r} parameter of PricingResult.{method} must name sources, "
                f"each one of {list(self.sources)}. Got {name!r} instead."
            )
        return self.sources.index(name)

    def __repr__(self) -> str:
        return (
            f"PricingResult(sources={len(self.sources)}, method={self.method!r}, "
            f"gain={self.gain:.4g}, efficiency_gap={self.efficiency_gap:.2e})"
        )


class _CachedGame:
    """``game`` with every coalition's value remembered, so that payments, standalone and
    leave-one-out values and interactions fit each coalition's model once."""

    def __init__(self, game: Game) -> None:
        self.game = game
        self.n_players = game.n_players
        self.player_names = list(game.player_names)
        self.player_groups = getattr(game, "player_groups", None)
        self.n_evaluations = 0
        self._known: dict[bytes, float] = {}

    def value(self, coalitions: CoalitionMatrix) -> GameValues:
        coalitions = check_coalitions(coalitions, self.n_players, "price_sources")
        keys = [row.tobytes() for row in np.packbits(coalitions, axis=1)]
        new = [i for i, key in enumerate(keys) if key not in self._known]
        if new:
            values = np.asarray(self.game.value(coalitions[new].copy()), dtype=np.float64)
            for i, value in zip(new, values, strict=True):
                self._known[keys[i]] = float(value)
        self.n_evaluations += len(coalitions)
        return np.array([self._known[key] for key in keys], dtype=np.float64)

    @property
    def n_distinct(self) -> int:
        """Distinct coalitions the wrapped game has evaluated."""
        return len(self._known)

    def fingerprint(self) -> str:
        # The cache changes no value: results are of the wrapped game.
        return game_fingerprint(self.game)


def price_sources(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    sources: Sequence[Any] | NDArray[Any],
    *,
    fit: Any,
    metric: Metric = accuracy,
    budget: int | None = None,
    seed: int = 0,
    value_range: float | None = None,
) -> PricingResult:
    """Pay each data source its Shapley value in the game "test metric of a model fitted on the
    sources' points" (chapter Example 10.2.1), with its standalone and leave-one-out values and
    the interaction index of every pair of sources (§10.5's caveat).

    Args:
        x_train: Training inputs, first axis the points.
        y_train: Training labels, one per point.
        x_test: Test inputs.
        y_test: Test labels.
        sources: One source label per training point (an annotator, a vendor); the players are
            the distinct labels, sorted. At least 2; at most 12 without ``budget``.
        fit: A scikit-learn-style estimator (cloned per coalition) or a callable
            ``fit(x, y) -> predict``, as for ``DataGame``.
        metric: ``metric(y_true, y_pred) -> float``, higher is better. Default: accuracy.
        budget: ``None`` (default): exact payments by enumerating all ``2^m`` coalitions of
            the ``m`` sources (``2^m`` fits at most). An int >= 2: that many permutations of the
            engine's ``permutation_shapley`` (payments with intervals, no interactions).
        seed: Seed of the permutations (``budget`` only). Default 0.
        value_range: Range of a marginal contribution for the permutation intervals (2 for a
            metric in [0, 1]); ``budget`` only. Default ``None``: the engine's heuristic.

    Returns:
        A ``PricingResult``.

    Example:
        >>> import numpy as np
        >>> from sklearn.linear_model import LogisticRegression
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(60, 2)); y = (x[:, 0] > 0).astype(int)
        >>> result = price_sources(x[:40], y[:40], x[40:], y[40:], ["a", "b"] * 20,
        ...                        fit=LogisticRegression())
        >>> abs(result.efficiency_gap) < 1e-12
        True
    """
    labels = np.asarray(sources)
    n_train = len(x_train)
    if labels.shape != (n_train,):
        raise ValueError(
            f"The 'sources' parameter of {OWNER} must hold one source label per training point, "
            f"shape ({n_train},). Got shape {labels.shape} instead."
        )
    names, counts = np.unique(labels, return_counts=True)
    _check_sources(len(names), budget)
    game = DataGame(x_train, y_train, x_test, y_test, fit=fit, metric=metric, groups=list(labels))
    before = game.n_fits
    result = price_game(game, budget=budget, seed=seed, value_range=value_range)
    return replace(result, n_points=counts.astype(np.int64), n_fits=game.n_fits - before)


def price_game(
    game: Game | Callable[..., Any],
    *,
    budget: int | None = None,
    seed: int = 0,
    value_range: float | None = None,
    n_players: int | None = None,
) -> PricingResult:
    """``price_sources`` on a game already built: a grouped ``DataGame``, or a table of
    measured values such as ``games.dataset_pricing_game()`` (the chapter's Problem 10.5.1).

    Args:
        game: A ``Game`` or a callable ``bool[n_coalitions, n_players] -> float[n_coalitions]``.
        budget: As for ``price_sources``. Default ``None``: exact (at most 12 players).
        seed: Seed of the permutations (``budget`` only). Default 0.
        value_range: As for ``price_sources``. Default ``None``.
        n_players: Number of players, only for a plain callable ``game``.

    Returns:
        A ``PricingResult`` (``n_points`` ``None``; ``n_fits`` counts a ``DataGame``'s fits,
        else the coalitions evaluated).
    """
    owner = "price_game"
    game = as_game(game, n_players, owner)
    _check_sources(game.n_players, budget, parameter="game", owner=owner)
    # Checked whether or not they are used, so that a mistake never passes silently.
    check_int(seed, "seed", owner, min_value=0)
    check_float(value_range, "value_range", owner, low=0.0, include_low=False, allow_none=True)
    started = time.perf_counter()
    fits_before = getattr(game, "n_fits", None)
    cached = _CachedGame(game)
    m = game.n_players
    full, empty = np.ones((1, m), dtype=bool), np.zeros((1, m), dtype=bool)
    alone = np.eye(m, dtype=bool)
    v_full = float(cached.value(full)[0])
    v_empty = float(cached.value(empty)[0])
    interactions: InteractionResult | None = None
    table: NDArray[np.float64] | None = None
    if budget is None:
        shapley = exact_shapley(cached)
        interactions = exact_interactions(cached)
        # Every coalition is cached by now: the table costs no fit.
        table = all_coalition_values(Evaluator(cached), m, 2**m)
        method = "exact"
    else:
        # n_walks groups permutations into rounds; fewer than 8 permutations make one round.
        shapley = permutation_shapley(
            cached,
            n_permutations=budget,
            n_walks=min(8, budget),
            seed=seed,
            value_range=value_range,
        )
        method = "permutation"
    standalone = cached.value(alone) - v_empty
    leave_one_out = v_full - cached.value(~alone)
    # A DataGame counts its fits (one-class and empty coalitions need none); another game is
    # charged one evaluation per distinct coalition.
    n_fits = cached.n_distinct
    if fits_before is not None:
        n_fits = int(getattr(game, "n_fits", 0)) - int(fits_before)
    return PricingResult(
        sources=tuple(game.player_names),
        n_points=None,
        payments=np.asarray(shapley.values, dtype=np.float64),
        payment_low=np.asarray(shapley.ci_low, dtype=np.float64),
        payment_high=np.asarray(shapley.ci_high, dtype=np.float64),
        standalone=standalone,
        leave_one_out=leave_one_out,
        value_full=v_full,
        value_empty=v_empty,
        interactions=None if interactions is None else interactions.values,
        coalition_values=table,
        shapley=shapley,
        method=method,
        n_fits=n_fits,
        seconds=time.perf_counter() - started,
    )


def _check_sources(
    n_sources: int, budget: Any, parameter: str = "sources", owner: str = OWNER
) -> None:
    if n_sources < 2:
        raise ValueError(
            f"The {parameter!r} parameter of {owner} must have at least 2 sources to price "
            f"against each other. Got {n_sources} instead."
        )
    check_int(budget, "budget", owner, min_value=2, allow_none=True)
    if budget is None and n_sources > MAX_EXACT_SOURCES:
        raise ValueError(
            f"The {parameter!r} parameter of {owner} has {n_sources} sources; exact payments "
            f"fit a model for each of the 2^{n_sources} coalitions and are refused above "
            f"{MAX_EXACT_SOURCES} sources. Pass 'budget' (a number of permutations) for "
            "sampled payments with intervals, or merge sources."
        )
