"""Exact Shapley and Banzhaf values by enumerating all 2^n coalitions (n <= 25).

Coalitions are evaluated in large batches; the values are then combined with one vectorised
pass per player: reshaping the value table so that the player's bit is its own axis gives every
marginal contribution V(S + i) - V(S) at once, weighted by |S| (eq. 1 of Ghorbani & Zou 2020).
"""

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import check_int
from neuronshapley.estimators.walks import Evaluator
from neuronshapley.games.base import Game, as_game, game_fingerprint, player_groups
from neuronshapley.results.result import ShapleyResult

MAX_EXACT_PLAYERS = 25


def exact_shapley(
    game: Game | Callable[..., Any], *, batch_size: int = 2**14, n_players: int | None = None
) -> ShapleyResult:
    """Exact Shapley values, eq. (1) of Ghorbani & Zou (2020), for games of up to 25 players.

    Args:
        game: A ``Game`` or a callable ``bool[n_coalitions, n_players] -> float[n_coalitions]``.
        batch_size: Coalitions per call to the game. Default 16384.
        n_players: Number of players, only for a plain callable ``game``.

    Returns:
        A ``ShapleyResult`` with zero standard errors and intervals equal to the values.
    """
    return _exact("exact_shapley", game, batch_size, n_players, _shapley_weights)


def exact_banzhaf(
    game: Game | Callable[..., Any], *, batch_size: int = 2**14, n_players: int | None = None
) -> ShapleyResult:
    """Exact Banzhaf values: each player's mean marginal contribution over all 2^(n-1) coalitions.

    Args:
        game: A ``Game`` or a callable ``bool[n_coalitions, n_players] -> float[n_coalitions]``.
        batch_size: Coalitions per call to the game. Default 16384.
        n_players: Number of players, only for a plain callable ``game``.

    Returns:
        A ``ShapleyResult`` (``estimator="exact_banzhaf"``) with zero standard errors.
    """
    return _exact("exact_banzhaf", game, batch_size, n_players, _banzhaf_weights)


def _shapley_weights(n: int) -> NDArray[np.float64]:
    # |S|! (n - |S| - 1)! / n! = 1 / (n * C(n-1, |S|)) for |S| = 0 .. n-1.
    return np.array([1.0 / (n * math.comb(n - 1, s)) for s in range(n)])


def _banzhaf_weights(n: int) -> NDArray[np.float64]:
    return np.full(n, 0.5 ** (n - 1))


def all_coalition_values(evaluator: Evaluator, n: int, batch_size: int) -> NDArray[np.float64]:
    """V of every coalition, indexed by its bitmask (bit i set: player i present)."""
    values = np.empty(2**n, dtype=np.float64)
    bits = np.arange(n, dtype=np.int64)
    for start in range(0, 2**n, batch_size):
        masks = np.arange(start, min(start + batch_size, 2**n), dtype=np.int64)
        values[start : start + len(masks)] = evaluator(((masks[:, None] >> bits) & 1).astype(bool))
    return values


def enumerable_game(
    game: Game | Callable[..., Any],
    n_players: int | None,
    batch_size: Any,
    owner: str,
    instead: str,
    limit: int = MAX_EXACT_PLAYERS,
) -> Game:
    """``game`` as a ``Game``, checked for enumeration: at most ``limit`` players (else an
    error that names ``instead``, the estimators to use) and a valid ``batch_size``."""
    game = as_game(game, n_players, owner)
    check_int(batch_size, "batch_size", owner, min_value=1)
    n = game.n_players
    if n > limit:
        raise ValueError(
            f"{owner} enumerates all 2^n coalitions and refuses n_players > {limit} "
            f"(this game has {n}: 2^{n} evaluations). Use {instead}."
        )
    return game


def _exact(
    owner: str,
    game: Game | Callable[..., Any],
    batch_size: int,
    n_players: int | None,
    weights_for: Callable[[int], NDArray[np.float64]],
) -> ShapleyResult:
    game = enumerable_game(
        game,
        n_players,
        batch_size,
        owner,
        "permutation_shapley or tmab_shapley (for the input features of a network, "
        "ns.features.dasp is cheaper still)",
    )
    n = game.n_players
    return weighted_marginals(
        game,
        weights_for(n),
        estimator=owner,
        params={"batch_size": batch_size},
        batch_size=batch_size,
    )


def weighted_marginals(
    game: Game,
    weights: NDArray[np.float64],
    *,
    estimator: str,
    params: dict[str, Any],
    batch_size: int,
) -> ShapleyResult:
    """phi_i = sum over S without i of ``weights[|S|]`` (V(S + i) - V(S)), every coalition
    evaluated: the Shapley and Banzhaf values and any semivalue (``data.semivalues``), for a
    game already checked to have at most ``MAX_EXACT_PLAYERS`` players."""
    n = game.n_players
    started = time.perf_counter()
    evaluator = Evaluator(game)
    values = all_coalition_values(evaluator, n, batch_size)
    sizes = np.bitwise_count(np.arange(2**n, dtype=np.uint32))
    phi = np.empty(n, dtype=np.float64)
    for i in range(n):
        # Axis 1 is player i's bit: [:, 0, :] are the coalitions without i, [:, 1, :] with i.
        table = values.reshape(-1, 2, 2**i)
        without_sizes = sizes.reshape(-1, 2, 2**i)[:, 0, :]
        phi[i] = np.sum(weights[without_sizes] * (table[:, 1, :] - table[:, 0, :]))
    zeros = np.zeros(n)
    return ShapleyResult(
        values=phi,
        stderr=zeros,
        ci_low=phi.copy(),
        ci_high=phi.copy(),
        n_samples=np.full(n, 2 ** (n - 1), dtype=np.int64),
        variance=zeros.copy(),
        player_names=list(game.player_names),
        n_evaluations=evaluator.n_evaluations,
        estimator=estimator,
        params=params,
        seed=None,
        stop_reason="complete",
        elapsed_seconds=time.perf_counter() - started,
        groups=player_groups(game),
        game_fingerprint=game_fingerprint(game),
    )
