"""Games whose Shapley values are known in closed form, to test estimators against.

Every game here has a ``shapley_values()`` method that returns the exact values without
enumerating coalitions (except :class:`TabularGame`, which is the brute-force reference). Eq. (1)
of Ghorbani & Zou (2020), "Neuron Shapley: Discovering the Responsible Neurons", is the definition
they all agree with::

    phi_i = (1/n) * sum_{S ⊆ N \\ {i}} (V(S | {i}) - V(S)) / C(n - 1, |S|)
"""

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any, Self, cast

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import as_generator, check_float, check_int
from neuronshapley.games.base import BaseGame
from neuronshapley.typing import CoalitionMatrix, GameValues, PlayerValues, Seed

_MAX_TABULAR_PLAYERS = 20


def _check_vector(values: Any, name: str, owner: str) -> NDArray[np.float64]:
    """Return ``values`` as a non-empty, finite, 1-D float64 array."""
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"The {name!r} parameter of {owner} must be a 1-D sequence of floats. "
            f"Got {values!r} instead."
        ) from None
    if out.ndim != 1 or out.size == 0:
        raise ValueError(
            f"The {name!r} parameter of {owner} must be a non-empty 1-D sequence of floats. "
            f"Got shape {out.shape} instead."
        )
    if not np.all(np.isfinite(out)):
        raise ValueError(
            f"The {name!r} parameter of {owner} must hold finite numbers. Got {values!r} instead."
        )
    return out


def _check_members(members: Any, n_players: int, name: str, owner: str) -> NDArray[np.int64]:
    """Return ``members`` as a non-empty array of distinct player indices in ``[0, n_players)``."""
    try:
        items = list(members)
    except TypeError:
        raise TypeError(
            f"The {name!r} parameter of {owner} must be a sequence of player indices. "
            f"Got {members!r} instead."
        ) from None
    if not items:
        raise ValueError(
            f"The {name!r} parameter of {owner} must name at least one player. Got {members!r}."
        )
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise TypeError(
                f"The {name!r} parameter of {owner} must hold int player indices. "
                f"Got {item!r} in {members!r} instead."
            )
        if not 0 <= int(item) < n_players:
            raise ValueError(
                f"The {name!r} parameter of {owner} must hold player indices in "
                f"[0, {n_players - 1}]. Got {item!r} in {members!r} instead."
            )
    if len(set(items)) != len(items):
        raise ValueError(
            f"The {name!r} parameter of {owner} must not repeat a player. Got {members!r} instead."
        )
    return np.array(items, dtype=np.int64)


def _shapley_weight(n: int, size: int) -> Fraction:
    """Weight ``|S|! (n - |S| - 1)! / n!`` of a coalition ``S`` of the other players in eq. (1)."""
    return Fraction(1, n * math.comb(n - 1, size))


class UnanimityGame(BaseGame):
    """The unanimity game of a coalition ``T``: worth 1 once all of ``T`` is present.

    ``V(S) = 1 if T ⊆ S else 0``, with Shapley values ``phi_i = 1/|T|`` for ``i`` in ``T`` and
    ``0`` otherwise (Shapley, 1953, "A value for n-person games"; these games form a basis of all
    games, Harsanyi, 1963).

    Args:
        n_players: Number of players, at least 1.
        coalition: The indices of the players of ``T``; non-empty, distinct, in range.
        player_names: One string per player. Default: ``p0, p1, ...``.
    """

    def __init__(
        self,
        n_players: int,
        coalition: Sequence[int],
        player_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(n_players, player_names)
        self.coalition = _check_members(coalition, self.n_players, "coalition", "UnanimityGame")

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        return np.asarray(coalitions[:, self.coalition].all(axis=1), dtype=np.float64)

    def shapley_values(self) -> PlayerValues:
        """Exact Shapley values: ``1/|T|`` for the players of ``T``, 0 for the others."""
        phi = np.zeros(self.n_players)
        phi[self.coalition] = 1.0 / len(self.coalition)
        return phi

    def __repr__(self) -> str:
        return f"UnanimityGame(n_players={self.n_players}, coalition={self.coalition.tolist()})"


class SOUM(BaseGame):
    """A sum of unanimity models: ``V(S) = sum_T c_T [T ⊆ S]``.

    Every game is a sum of unanimity games (Harsanyi, 1963), so a random one is a generic test
    game with interactions of known order; shapiq uses the same construction (Muschalik et al.,
    2024, "shapiq: Shapley Interactions for Machine Learning"). The Shapley values are
    ``phi_i = sum_{T ∋ i} c_T / |T|``.

    The random basis draws, from ``numpy.random.default_rng(seed)``, ``n_basis`` sizes uniform in
    ``1..min(max_order, n_players)``, then for each term its members (distinct, uniform), then the
    coefficients ``c_T ~ Normal(0, coefficient_scale)``. Use :meth:`from_basis` to give the terms.

    Args:
        n_players: Number of players, at least 1.
        n_basis: Number of unanimity terms, at least 1.
        seed: An int seed or a ``numpy.random.Generator``. Default: 0.
        max_order: Largest size of a term, at least 1. Default: 3.
        coefficient_scale: Standard deviation of the coefficients, ``>= 0``. Default: 1.0.
        player_names: One string per player. Default: ``p0, p1, ...``.

    Attributes:
        basis: The members of each term, a list of int arrays.
        coefficients: The coefficient ``c_T`` of each term, float array of shape ``(n_basis,)``.
    """

    def __init__(
        self,
        n_players: int,
        n_basis: int,
        seed: Seed = 0,
        max_order: int = 3,
        coefficient_scale: float = 1.0,
        player_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(n_players, player_names)
        n_basis_ = cast(int, check_int(n_basis, "n_basis", "SOUM", min_value=1))
        max_order_ = cast(int, check_int(max_order, "max_order", "SOUM", min_value=1))
        scale = cast(float, check_float(coefficient_scale, "coefficient_scale", "SOUM", low=0.0))
        rng = as_generator(seed, "SOUM")
        sizes = rng.integers(1, min(max_order_, self.n_players) + 1, size=n_basis_)
        basis = [rng.choice(self.n_players, size=int(k), replace=False) for k in sizes]
        coefficients = rng.normal(0.0, scale, size=n_basis_)
        self._set_basis([b.astype(np.int64) for b in basis], coefficients)

    @classmethod
    def from_basis(
        cls,
        n_players: int,
        basis: Sequence[Sequence[int]],
        coefficients: Sequence[float],
        player_names: Sequence[str] | None = None,
    ) -> Self:
        """Build the game from given terms.

        Args:
            n_players: Number of players, at least 1.
            basis: The members of each term, a sequence of sequences of player indices (each
                non-empty, distinct, in ``[0, n_players)``).
            coefficients: One coefficient per term.
            player_names: One string per player. Default: ``p0, p1, ...``.

        Returns:
            The game ``V(S) = sum_k coefficients[k] [basis[k] ⊆ S]``.
        """
        game = cls.__new__(cls)
        BaseGame.__init__(game, n_players, player_names)
        owner = "SOUM.from_basis"
        rule = "a non-empty sequence of sequences of player indices"
        if isinstance(basis, str | bytes) or not isinstance(basis, Iterable):
            raise TypeError(
                f"The 'basis' parameter of {owner} must be {rule}. Got {basis!r} instead."
            )
        terms = [
            _check_members(term, game.n_players, f"basis[{k}]", owner)
            for k, term in enumerate(basis)
        ]
        if not terms:
            raise ValueError(
                f"The 'basis' parameter of {owner} must be {rule}. Got {basis!r} instead."
            )
        values = _check_vector(coefficients, "coefficients", owner)
        if len(values) != len(terms):
            raise ValueError(
                f"The 'coefficients' parameter of {owner} must hold one number per term of the "
                f"basis ({len(terms)}). Got {len(values)} instead."
            )
        game._set_basis(terms, values)
        return game

    def _set_basis(self, basis: list[NDArray[np.int64]], coefficients: NDArray[np.float64]) -> None:
        self.basis: list[NDArray[np.int64]] = basis
        self.coefficients: NDArray[np.float64] = np.asarray(coefficients, dtype=np.float64)
        self.n_basis = len(basis)
        width = max(len(term) for term in basis)
        # Short terms are padded by repeating their first member, so that one gather and one
        # all() cover terms of every size without copying the coalitions.
        self._members = np.empty((self.n_basis, width), dtype=np.int64)
        for k, term in enumerate(basis):
            self._members[k] = term[np.minimum(np.arange(width), len(term) - 1)]

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        present = coalitions[:, self._members].all(axis=-1)
        return present @ self.coefficients

    def shapley_values(self) -> PlayerValues:
        """Exact Shapley values ``phi_i = sum_{T ∋ i} c_T / |T|``."""
        sizes = np.array([len(term) for term in self.basis])
        shares = np.repeat(self.coefficients / sizes, sizes)
        players = np.concatenate(self.basis)
        return np.bincount(players, weights=shares, minlength=self.n_players).astype(np.float64)

    def marginal_range(self) -> float:
        """Width of an interval that holds every marginal contribution of every player.

        ``V(S + i) - V(S)`` sums the coefficients of some of the terms containing i, so it lies
        between the sum of their negative and the sum of their positive coefficients. Pass this
        as ``value_range`` for confidence bounds that hold without a guess.
        """
        sizes = np.array([len(term) for term in self.basis])
        players = np.concatenate(self.basis)
        coefficients = np.repeat(self.coefficients, sizes)
        highest = np.bincount(players, np.maximum(coefficients, 0.0), minlength=self.n_players)
        lowest = np.bincount(players, np.minimum(coefficients, 0.0), minlength=self.n_players)
        return float(highest.max() - lowest.min())

    def __repr__(self) -> str:
        return f"SOUM(n_players={self.n_players}, n_basis={self.n_basis})"


def sparse_soum(
    n_players: int = 2000,
    n_large: int = 20,
    n_basis: int = 500,
    seed: Seed = 0,
    noise_scale: float = 0.01,
) -> SOUM:
    """A SOUM with a sparse set of large Shapley values, for top-k identification (TMAB).

    ``n_large`` randomly placed players get singleton terms from 1.0 down to 0.56; five more
    ("runners-up") get 0.5 down to 0.3, just below the top k; on top, ``n_basis`` random terms of
    order 2 or 3 with coefficients ``Normal(0, noise_scale)`` add interactions among all players.
    Most players are thus far from the top-k threshold and a few are close to it, the shape of
    the Neuron Shapley values reported by Ghorbani & Zou (2020), where adaptive sampling pays.

    Args:
        n_players: Number of players, at least ``n_large + 5``. Default: 2000.
        n_large: Players with large values. Default: 20.
        n_basis: Random interaction terms. Default: 500.
        seed: An int seed or a ``numpy.random.Generator``. Default: 0.
        noise_scale: Standard deviation of the interaction coefficients. Default: 0.01.
    """
    owner = "sparse_soum"
    n_large_ = cast(int, check_int(n_large, "n_large", owner, min_value=1))
    check_int(n_players, "n_players", owner, min_value=n_large_ + 5)
    check_int(n_basis, "n_basis", owner, min_value=0)
    scale = cast(float, check_float(noise_scale, "noise_scale", owner, low=0.0))
    rng = as_generator(seed, owner)
    stars = rng.choice(n_players, size=n_large_ + 5, replace=False)
    large = np.concatenate((np.linspace(1.0, 0.56, n_large_), np.linspace(0.5, 0.3, 5)))
    sizes = rng.integers(2, 4, size=n_basis)
    interactions = [rng.choice(n_players, size=int(k), replace=False) for k in sizes]
    basis = [[int(i)] for i in stars] + [term.tolist() for term in interactions]
    coefficients = np.concatenate((large, rng.normal(0.0, scale, size=n_basis)))
    return SOUM.from_basis(n_players, basis, coefficients.tolist())


class GloveGame(BaseGame):
    """The glove market: a pair of gloves is worth 1, ``V(S) = min(#left in S, #right in S)``.

    Players ``0 .. n_left - 1`` hold one left glove each, the others one right glove (Shapley &
    Shubik, 1969, "On market games"). Over a uniform random order of the ``n`` players, a left
    player adds a pair exactly when fewer left than right gloves precede it. With ``s`` players
    before it, of which ``a`` are left (hypergeometric: ``n_left - 1`` left among ``n - 1``)::

        phi_left = (1/n) * sum_{s=0}^{n-1} P(a < s - a)

    and symmetrically for a right player. Computed exactly with fractions.

    Args:
        n_left: Number of left gloves, at least 1.
        n_right: Number of right gloves, at least 1.
        player_names: One string per player. Default: ``p0, p1, ...``.
    """

    def __init__(
        self, n_left: int, n_right: int, player_names: Sequence[str] | None = None
    ) -> None:
        n_left_ = cast(int, check_int(n_left, "n_left", "GloveGame", min_value=1))
        n_right_ = cast(int, check_int(n_right, "n_right", "GloveGame", min_value=1))
        super().__init__(n_left_ + n_right_, player_names)
        self.n_left = n_left_
        self.n_right = n_right_

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        left = coalitions[:, : self.n_left].sum(axis=1)
        right = coalitions[:, self.n_left :].sum(axis=1)
        return np.minimum(left, right).astype(np.float64)

    @staticmethod
    def _phi_one_side(same: int, other: int) -> Fraction:
        """Shapley value of a player with ``same - 1`` like players and ``other`` unlike ones."""
        n = same + other
        total = Fraction(0)
        for s in range(n):
            # a like and s - a unlike players come first; the player completes a pair iff a < s - a
            favourable = sum(
                math.comb(same - 1, a) * math.comb(other, s - a)
                for a in range(max(0, s - other), min(same - 1, s) + 1)
                if a < s - a
            )
            total += Fraction(favourable, math.comb(n - 1, s))
        return total / n

    def shapley_values(self) -> PlayerValues:
        """Exact Shapley values from the permutation formula (see the class docstring)."""
        phi_left = float(self._phi_one_side(self.n_left, self.n_right))
        phi_right = float(self._phi_one_side(self.n_right, self.n_left))
        return np.repeat([phi_left, phi_right], [self.n_left, self.n_right]).astype(np.float64)

    def __repr__(self) -> str:
        return f"GloveGame(n_left={self.n_left}, n_right={self.n_right})"


class AirportGame(BaseGame):
    """The airport game: a runway serves a coalition once it is long enough for its largest plane.

    ``V(S) = max_{i in S} costs_i`` (0 for the empty coalition). With the costs sorted,
    ``c_(1) <= ... <= c_(n)`` and ``c_(0) = 0``, each segment of runway is shared equally by the
    players that need it (Littlechild & Owen, 1973, "A simple expression for the Shapley value in
    a special case")::

        phi_(j) = sum_{k <= j} (c_(k) - c_(k-1)) / (n - k + 1)

    Args:
        costs: One non-negative, finite cost per player.
        player_names: One string per player. Default: ``p0, p1, ...``.
    """

    def __init__(self, costs: Sequence[float], player_names: Sequence[str] | None = None) -> None:
        values = _check_vector(costs, "costs", "AirportGame")
        if np.any(values < 0):
            raise ValueError(
                "The 'costs' parameter of AirportGame must hold non-negative numbers. "
                f"Got {values[values < 0][0]!r} instead."
            )
        super().__init__(len(values), player_names)
        self.costs = values

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        # Costs are non-negative, so absent players can stand in as 0 and the empty set gets 0.
        return np.where(coalitions, self.costs, 0.0).max(axis=1)

    def shapley_values(self) -> PlayerValues:
        """Exact Shapley values by Littlechild & Owen's formula."""
        order = np.argsort(self.costs, kind="stable")
        sorted_costs = self.costs[order]
        segments = np.diff(sorted_costs, prepend=0.0)
        users = self.n_players - np.arange(self.n_players)
        phi = np.empty(self.n_players)
        phi[order] = np.cumsum(segments / users)
        return phi


class WeightedVotingGame(BaseGame):
    """A weighted vote: a coalition wins when its weights reach the quota.

    ``V(S) = 1 if sum_{i in S} weights_i >= quota else 0``. The Shapley value is the
    Shapley-Shubik power index (Shapley & Shubik, 1954, "A method for evaluating the distribution
    of power in a committee system"): player ``i`` swings the coalitions ``S`` of the others with
    ``quota - w_i <= w(S) < quota``, so::

        phi_i = sum_s s! (n - s - 1)! / n! * #{S ⊆ N \\ {i} : |S| = s, quota - w_i <= w(S) < quota}

    The counts come from one dynamic program over (coalition size, weight sum < quota) for all
    players, from which each player is then removed by inverting its step; all in exact integers,
    ``O(n^2 * quota)`` operations in all.

    Args:
        weights: One non-negative integer weight per player.
        quota: The winning threshold, a positive int.
        player_names: One string per player. Default: ``p0, p1, ...``.
    """

    def __init__(
        self,
        weights: Sequence[int],
        quota: int,
        player_names: Sequence[str] | None = None,
    ) -> None:
        owner = "WeightedVotingGame"
        values = np.asarray(weights)
        if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.integer):
            raise TypeError(
                f"The 'weights' parameter of {owner} must be a non-empty 1-D sequence of ints. "
                f"Got {weights!r} instead."
            )
        if np.any(values < 0):
            raise ValueError(
                f"The 'weights' parameter of {owner} must hold non-negative ints. "
                f"Got {values[values < 0][0]!r} instead."
            )
        quota_ = cast(int, check_int(quota, "quota", owner, min_value=1))
        super().__init__(len(values), player_names)
        self.weights: NDArray[np.int64] = values.astype(np.int64)
        self.quota: int = quota_

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        return (coalitions @ self.weights >= self.quota).astype(np.float64)

    def shapley_values(self) -> PlayerValues:
        """Exact Shapley-Shubik power indices (see the class docstring)."""
        n, quota = self.n_players, self.quota
        weights = [int(w) for w in self.weights]
        if sum(weights) < quota:
            return np.zeros(n)
        # counts[s, w] = number of coalitions of size s and weight w, for w < quota only: a swing
        # needs w(S) < quota, and heavier sums never feed back into lighter ones.
        counts = np.zeros((n + 1, quota), dtype=object)
        counts[0, 0] = 1
        for w in weights:
            if w < quota:
                counts[1:, w:] = counts[1:, w:] + counts[:-1, : quota - w]
        phi = []
        for w in weights:
            if w >= quota:
                others = counts
            else:
                # Undo this player's knapsack step: counts[s] = others[s] + others[s-1] << w.
                others = counts.copy()
                for s in range(1, n + 1):
                    others[s, w:] = counts[s, w:] - others[s - 1, : quota - w]
            swings = others[:n, max(0, quota - w) :].sum(axis=1)
            phi.append(sum((_shapley_weight(n, s) * int(swings[s]) for s in range(n)), Fraction(0)))
        return np.array([float(p) for p in phi])

    def __repr__(self) -> str:
        return f"WeightedVotingGame(weights={self.weights.tolist()}, quota={self.quota})"


class AdditiveGame(BaseGame):
    """An additive game, ``V(S) = sum_{i in S} weights_i``, whose Shapley values are ``weights``.

    Args:
        weights: One finite number per player.
        player_names: One string per player. Default: ``p0, p1, ...``.
    """

    def __init__(self, weights: Sequence[float], player_names: Sequence[str] | None = None) -> None:
        values = _check_vector(weights, "weights", "AdditiveGame")
        super().__init__(len(values), player_names)
        self.weights = values

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        return coalitions @ self.weights

    def shapley_values(self) -> PlayerValues:
        """Exact Shapley values: the weights."""
        return self.weights.copy()


class DeadNetworkGame(BaseGame):
    """An additive network that dies when fewer than ``min_players`` units remain.

    ``V(S) = sum_{i in S} weights_i if |S| >= min_players else dead_value``. It mimics removing
    units from a network (Ghorbani & Zou, 2020): past a point the network collapses to chance.
    With ``n`` players, ``A = sum_i weights_i`` and ``m = min_players``, for ``n > 1``::

        phi_i = (n - m)/n * w_i + (1/n) * (w_i + (m - 1) * (A - w_i)/(n - 1) - dead_value)

    Derivation, over a uniform random order: player ``i`` adds ``w_i`` when it arrives at
    position ``m`` or later (probability ``(n - m + 1)/n``), adds each ``w_j`` of a player ``j``
    before it when it arrives exactly at position ``m`` (probability ``(1/n) (m - 1)/(n - 1)``),
    and the ``dead_value`` part, symmetric with ``V(N) - V(∅) = -dead_value``, gives
    ``-dead_value/n``. For ``n = 1``, ``phi_0 = w_0 - dead_value``. The values sum to
    ``A - dead_value``.

    Args:
        weights: One finite number per player.
        min_players: The smallest coalition that is alive, in ``[1, n_players]``.
        dead_value: The value of a dead coalition. Default: 0.0.
        player_names: One string per player. Default: ``p0, p1, ...``.
    """

    def __init__(
        self,
        weights: Sequence[float],
        min_players: int,
        dead_value: float = 0.0,
        player_names: Sequence[str] | None = None,
    ) -> None:
        owner = "DeadNetworkGame"
        values = _check_vector(weights, "weights", owner)
        n = len(values)
        min_players_ = cast(
            int, check_int(min_players, "min_players", owner, min_value=1, max_value=n)
        )
        dead = cast(float, check_float(dead_value, "dead_value", owner))
        super().__init__(len(values), player_names)
        self.weights = values
        self.min_players: int = min_players_
        self.dead_value: float = dead

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        alive = coalitions.sum(axis=1) >= self.min_players
        return np.where(alive, coalitions @ self.weights, self.dead_value)

    def shapley_values(self) -> PlayerValues:
        """Exact Shapley values from the closed form in the class docstring."""
        n, m, w = self.n_players, self.min_players, self.weights
        if n == 1:
            return w - self.dead_value
        total = w.sum()
        return (n - m) / n * w + (w + (m - 1) * (total - w) / (n - 1) - self.dead_value) / n


class TabularGame(BaseGame):
    """A small game given by the value of every coalition.

    Its :meth:`shapley_values` applies eq. (1) of Ghorbani & Zou (2020) term by term, which makes
    it the independent reference for the closed forms above.

    Args:
        table: A mapping from coalitions to values. A coalition is an iterable of player names (a
            plain string is read as one name); all ``2^n`` coalitions, the empty one included,
            must be present.
        player_names: One distinct string per player, at most 20 players.
    """

    def __init__(self, table: Mapping[Any, float], player_names: Sequence[str]) -> None:
        owner = "TabularGame"
        names = [str(name) for name in player_names]
        if not 1 <= len(names) <= _MAX_TABULAR_PLAYERS:
            raise ValueError(
                f"The 'player_names' parameter of {owner} must hold 1 to {_MAX_TABULAR_PLAYERS} "
                f"names (the table has 2^n rows). Got {len(names)} names instead."
            )
        super().__init__(len(names), names)
        if not isinstance(table, Mapping):
            raise TypeError(
                f"The 'table' parameter of {owner} must be a mapping from coalitions to values. "
                f"Got {type(table).__name__} instead."
            )
        index = {name: i for i, name in enumerate(self.player_names)}
        lookup = np.full(2**self.n_players, np.nan)
        for key, value in table.items():
            members = [key] if isinstance(key, str) else key
            if not isinstance(members, Iterable):
                raise TypeError(
                    f"The keys of the 'table' parameter of {owner} must be iterables of player "
                    f"names. Got {key!r} instead."
                )
            mask = 0
            for name in members:
                if name not in index:
                    raise ValueError(
                        f"The 'table' parameter of {owner} has a coalition {key!r} with an unknown "
                        f"player {name!r}; the players are {self.player_names}."
                    )
                mask |= 1 << index[name]
            if not np.isnan(lookup[mask]):
                raise ValueError(
                    f"The 'table' parameter of {owner} gives the coalition {key!r} twice."
                )
            lookup[mask] = check_float(value, f"table[{key!r}]", owner)
        missing = np.flatnonzero(np.isnan(lookup))
        if len(missing):
            first = [name for i, name in enumerate(self.player_names) if missing[0] >> i & 1]
            raise ValueError(
                f"The 'table' parameter of {owner} must give all {len(lookup)} coalitions. "
                f"{len(missing)} are missing, e.g. {{{', '.join(first)}}}."
            )
        self.table = lookup

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        masks = coalitions @ (1 << np.arange(self.n_players, dtype=np.int64))
        return self.table[masks]

    def shapley_values(self) -> PlayerValues:
        """Shapley values by eq. (1) of Ghorbani & Zou (2020), summing over every coalition."""
        n = self.n_players
        masks = np.arange(2**n, dtype=np.int64)
        sizes = ((masks[:, None] >> np.arange(n)) & 1).sum(axis=1)
        weights = np.array([1.0 / (n * math.comb(n - 1, s)) for s in range(n)])
        phi = np.empty(n)
        for i in range(n):
            without = masks[(masks >> i) & 1 == 0]
            gains = self.table[without | (1 << i)] - self.table[without]
            phi[i] = np.sum(weights[sizes[without]] * gains)
        return phi


def dataset_pricing_game() -> TabularGame:
    """Problem 10.5.1 of the textbook chapter: pricing three datasets with synergies.

    Players ``"A"`` (web text), ``"B"`` (maths papers), ``"C"`` (code); ``V`` is the model's score
    out of 100. The Shapley values are ``(115/3, 85/3, 100/3)``.
    """
    table = {
        (): 0.0,
        ("A",): 50.0,
        ("B",): 20.0,
        ("C",): 25.0,
        ("A", "B"): 75.0,
        ("A", "C"): 80.0,
        ("B", "C"): 90.0,
        ("A", "B", "C"): 100.0,
    }
    return TabularGame(table, ["A", "B", "C"])


def corner_detector_game() -> UnanimityGame:
    """Problem 10.5.2 of the textbook chapter: a 2x2 "corner detector".

    Pixels ``"TL", "TR", "BL", "BR"``; the model fires iff TL, TR and BL are on, so
    ``V = [{TL, TR, BL} ⊆ S]`` and the Shapley values are ``(1/3, 1/3, 1/3, 0)``.
    """
    return UnanimityGame(4, [0, 1, 2], player_names=["TL", "TR", "BL", "BR"])
