"""Pairwise Shapley interactions (SII) among chosen players: exact, sampled, and shapiq's.

The index (Grabisch & Roubens 1999; ``results.interactions`` gives the formula) of a pair is a
weighted mean of its discrete derivative ``Δ_ij(S) = V(S+ij) - V(S+i) - V(S+j) + V(S)``.

- ``exact_interactions`` enumerates all ``2^n`` coalitions (``n <= 20``).
- ``permutation_interactions`` samples permutations of *all* players and serves every pair of
  the chosen ones from each (ours: it scales to a few chosen units inside a game of thousands).
- ``shapiq_interactions`` runs one of shapiq's SII approximators on the game (Muschalik et al.
  2024). They estimate every pair of the whole game and cannot be restricted to chosen players:
  shapiq's permutation sampler, for instance, gives each pair a sample only when its two players
  are adjacent in the permutation (probability ``2 / n``), at ``4 (n - 1)`` evaluations per
  permutation. That fits small games; for 20 units inside 160 it would spend about 12,000 times
  the evaluations of ours per sample of a chosen pair.
"""

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.optional import require
from neuronshapley._internal.validation import check_bool, check_choice, check_float, check_int
from neuronshapley.estimators.exact import all_coalition_values, enumerable_game
from neuronshapley.estimators.walks import Evaluator
from neuronshapley.games.base import Game, as_game, game_fingerprint
from neuronshapley.results.interactions import (
    InteractionResult,
    interval_words,
    pair_halfwidths,
)
from neuronshapley.typing import CoalitionMatrix, GameValues

MAX_EXACT_PLAYERS = 20
INTERACTION_BOUNDS = ("normal", "bernstein")
SHAPIQ_APPROXIMATORS = ("PermutationSamplingSII", "SHAPIQ", "SVARMIQ")


def exact_interactions(
    game: Game | Callable[..., Any],
    *,
    players: Sequence[int | str] | None = None,
    batch_size: int = 2**14,
    n_players: int | None = None,
) -> InteractionResult:
    """Exact pairwise Shapley interactions by enumerating every coalition (games of <= 20 players).

    Args:
        game: A ``Game`` or a callable ``bool[n_coalitions, n_players] -> float[n_coalitions]``.
        players: The players whose pairs to compute, by index or name (at least two, distinct).
            Default: every player.
        batch_size: Coalitions per call to the game. Default 16384.
        n_players: Number of players, only for a plain callable ``game``.

    Returns:
        An ``InteractionResult`` with zero standard errors and intervals equal to the values.
    """
    owner = "exact_interactions"
    game = enumerable_game(
        game, n_players, batch_size, owner, "permutation_interactions", limit=MAX_EXACT_PLAYERS
    )
    n = game.n_players
    chosen = _chosen_players(game, players, owner)
    started = time.perf_counter()
    evaluator = Evaluator(game)
    table = all_coalition_values(evaluator, n, batch_size)
    sizes = np.bitwise_count(np.arange(2**n, dtype=np.uint32)).astype(np.int64)
    # |S|! (n - |S| - 2)! / (n - 1)! = 1 / ((n - 1) C(n - 2, |S|)) for |S| = 0 .. n - 2.
    weights = np.array([1.0 / ((n - 1) * math.comb(n - 2, s)) for s in range(n - 1)])
    m = len(chosen)
    values = np.zeros((m, m))
    for a in range(m):
        for b in range(a + 1, m):
            low, high = sorted((int(chosen[a]), int(chosen[b])))
            # Axes 1 and 3 are the bits of the higher and the lower player of the pair.
            shape = (-1, 2, 2 ** (high - low - 1), 2, 2**low)
            t = table.reshape(shape)
            derivative = t[:, 1, :, 1, :] - t[:, 1, :, 0, :] - t[:, 0, :, 1, :] + t[:, 0, :, 0, :]
            without = sizes.reshape(shape)[:, 0, :, 0, :]
            values[a, b] = values[b, a] = np.sum(weights[without] * derivative)
    return _unsampled(
        game, chosen, values, np.zeros((m, m)), values, evaluator, owner,
        {"batch_size": batch_size}, seed=None, interval="exact values: no sampling error",
        started=started,
    )  # fmt: skip


def permutation_interactions(
    game: Game | Callable[..., Any],
    *,
    players: Sequence[int | str] | None = None,
    n_permutations: int = 100,
    seed: int = 0,
    bound: str = "normal",
    delta: float = 0.05,
    union_bound: bool = False,
    value_range: float | None = None,
    batch_size: int = 4096,
    n_players: int | None = None,
) -> InteractionResult:
    """Pairwise Shapley interactions of chosen players, sampled from permutations of all players.

    **The estimator.** Draw a uniformly random permutation ``π`` of all ``n`` players and, for an
    ordered pair ``(i, j)``, let ``S = pre_π(i) \\ {j}``: the players before ``i``, without
    ``j``. Leaving ``j`` out, ``π`` orders the other ``n - 1`` players uniformly, so ``i``'s
    position among them is uniform on ``0 .. n - 2`` and, given the size ``s``, ``S`` is a
    uniform ``s``-subset of ``N \\ {i, j}``:

        P(S) = 1 / ((n - 1) C(n - 2, s)) = s! (n - s - 2)! / (n - 1)!,

    exactly the SII weight. Hence ``E[Δ_ij(S)] = I_ij`` with no reweighting: one permutation gives
    an unbiased sample of every pair (merging ``i`` and ``j`` into one player is the Shapley
    value of that player in a game of ``n - 1``; Grabisch & Roubens 1999). Each permutation's
    sample of a pair averages its two orientations ``(i, j)`` and ``(j, i)`` (both unbiased), so
    the samples of a pair are i.i.d. across permutations and their variance gives the standard
    error.

    **What it costs.** With ``P_i = pre_π(i)``, ``Δ_ij(S)`` needs ``V(P_i)`` and
    ``V(P_i + i)`` (shared by every pair that starts at ``i``) and two coalitions of its own:
    ``P_i`` with ``j`` flipped, and the same with ``i``. If ``j`` comes after ``i`` then
    ``S = P_i`` and ``Δ = [V(P_i+i+j) - V(P_i+j)] - [V(P_i+i) - V(P_i)]``; if before, then
    ``S = P_i - j`` and the same four values give ``-Δ``. For ``m`` chosen players a permutation
    thus costs ``2m + 2m(m - 1) = 2m^2`` evaluations (800 for the 190 pairs of 20 units),
    independent of ``n``; the coalitions of several permutations go to the game in one batch.

    Args:
        game: A ``Game`` or a callable ``bool[n_coalitions, n_players] -> float[n_coalitions]``.
        players: The players whose pairs to estimate, by index or name (at least two,
            distinct). Default: every player.
        n_permutations: Permutations to sample, at least 2. Default 100.
        seed: Seed of the permutations (``numpy.random.default_rng(seed)``). Default 0.
        bound: ``"normal"`` (CLT interval, asymptotic) or ``"bernstein"`` (empirical Bernstein,
            valid at this number of permutations; needs ``value_range``). Default ``"normal"``.
        delta: Each interval misses with probability at most ``delta`` (all of them together
            with ``union_bound``). Default 0.05.
        union_bound: Divide ``delta`` among the pairs, so that all intervals hold at once.
            Default ``False``.
        value_range: Width ``R`` of an interval that holds every value of the game (1 for
            accuracy); a sample then lies in ``[-2R, 2R]``. Required by ``"bernstein"``.
            Default ``None``.
        batch_size: Coalitions per call to the game (at least one permutation's). Default 4096.
        n_players: Number of players, only for a plain callable ``game``.

    Returns:
        An ``InteractionResult``; ``interval`` says what the intervals promise. Runs with
        different seeds pool exactly with ``InteractionResult.merge``.
    """
    owner = "permutation_interactions"
    game = as_game(game, n_players, owner)
    chosen = _chosen_players(game, players, owner)
    n_perms = int(check_int(n_permutations, "n_permutations", owner, min_value=2))  # type: ignore[arg-type]
    check_int(seed, "seed", owner, min_value=0)
    check_choice(bound, "bound", owner, INTERACTION_BOUNDS)
    check_float(delta, "delta", owner, low=0.0, high=1.0, include_low=False, include_high=False)
    check_bool(union_bound, "union_bound", owner)
    check_float(value_range, "value_range", owner, low=0.0, include_low=False, allow_none=True)
    if bound == "bernstein" and value_range is None:
        raise ValueError(
            f"The 'bound' parameter of {owner} is 'bernstein', which needs 'value_range' (the "
            "width of an interval holding every value of the game, e.g. 1.0 for accuracy). "
            "Got value_range=None instead."
        )
    check_int(batch_size, "batch_size", owner, min_value=1)

    started = time.perf_counter()
    n, m = game.n_players, len(chosen)
    evaluator = Evaluator(game)
    rng = np.random.default_rng(seed)
    per_batch = max(1, batch_size // (2 * m * m))
    count, mean, squares = 0, np.zeros((m, m)), np.zeros((m, m))
    for start in range(0, n_perms, per_batch):
        size = min(per_batch, n_perms - start)
        orders = rng.permuted(np.tile(np.arange(n), (size, 1)), axis=1)
        samples = _permutation_samples(evaluator, np.argsort(orders, axis=1), chosen, batch_size)
        # Chan's merge of the batch's mean and sum of squares into the running ones.
        batch_mean = samples.mean(axis=0)
        batch_squares = ((samples - batch_mean) ** 2).sum(axis=0)
        total = count + size
        shift = batch_mean - mean
        mean = mean + shift * (size / total)
        squares = squares + batch_squares + shift**2 * (count * size / total)
        count = total

    variance = squares / (count - 1)
    half = pair_halfwidths(count, variance, bound, delta, union_bound, value_range)
    n_samples = np.full((m, m), count, dtype=np.int64)
    np.fill_diagonal(n_samples, 0)
    return InteractionResult(
        values=mean,
        stderr=np.sqrt(variance / count),
        ci_low=mean - half,
        ci_high=mean + half,
        player_names=[game.player_names[i] for i in chosen],
        player_indices=chosen,
        n_game_players=n,
        n_samples=n_samples,
        n_evaluations=evaluator.n_evaluations,
        estimator=owner,
        params={
            "n_permutations": n_perms,
            "bound": bound,
            "delta": delta,
            "union_bound": union_bound,
            "value_range": value_range,
            "batch_size": batch_size,
        },
        seed=seed,
        interval=interval_words(bound, delta, union_bound, m * (m - 1) // 2, value_range),
        elapsed_seconds=time.perf_counter() - started,
        game_fingerprint=game_fingerprint(game),
    )


def _permutation_samples(
    evaluator: Evaluator, ranks: NDArray[np.int64], chosen: NDArray[np.int64], batch_size: int
) -> NDArray[np.float64]:
    """One sample matrix ``(m, m)`` per permutation (``ranks[b, p]``: position of player p)."""
    size, n = ranks.shape
    m = len(chosen)
    first, second = np.nonzero(~np.eye(m, dtype=bool))  # the ordered pairs (a, b), a != b
    pairs = np.arange(len(first))
    chosen_ranks = ranks[:, chosen]  # (size, m)
    before = ranks[:, None, :] < chosen_ranks[:, :, None]  # P_i: (size, m, n)
    before_with = before.copy()
    before_with[:, np.arange(m), chosen] = True  # P_i + i
    flipped = before[:, first, :]  # P_i with j flipped: (size, m(m-1), n)
    flipped[:, pairs, chosen[second]] ^= True
    flipped_with = flipped.copy()
    flipped_with[:, pairs, chosen[first]] = True
    coalitions = np.concatenate((before, before_with, flipped, flipped_with), axis=1)
    values = _evaluate(evaluator, coalitions.reshape(-1, n), batch_size).reshape(size, -1)
    p, p_with = values[:, :m], values[:, m : 2 * m]
    f, f_with = values[:, 2 * m : 2 * m + len(pairs)], values[:, 2 * m + len(pairs) :]
    after = chosen_ranks[:, second] > chosen_ranks[:, first]  # j after i: S = P_i
    derivative = (f_with - f) - (p_with[:, first] - p[:, first])
    derivative = np.where(after, derivative, -derivative)
    samples = np.zeros((size, m, m))
    samples[:, first, second] = derivative
    return (samples + samples.transpose(0, 2, 1)) / 2.0


def _evaluate(evaluator: Evaluator, coalitions: CoalitionMatrix, batch_size: int) -> GameValues:
    return np.concatenate(
        [evaluator(coalitions[k : k + batch_size]) for k in range(0, len(coalitions), batch_size)]
    )


def shapiq_interactions(
    game: Game | Callable[..., Any],
    *,
    budget: int,
    approximator: str = "PermutationSamplingSII",
    players: Sequence[int | str] | None = None,
    seed: int = 0,
    n_players: int | None = None,
) -> InteractionResult:
    """Pairwise SII from one of shapiq's approximators, run on the whole game.

    shapiq (``pip install shapiq``; ``neuronshapley[bench]`` pins 1.4.1) estimates every pair of
    the game; the result keeps the pairs of ``players``. Its approximators report no uncertainty,
    so ``stderr``, ``ci_low`` and ``ci_high`` are NaN off the diagonal.

    Args:
        game: A ``Game`` or a callable ``bool[n_coalitions, n_players] -> float[n_coalitions]``.
        budget: Coalition evaluations for shapiq, at least 4.
        approximator: ``"PermutationSamplingSII"``, ``"SHAPIQ"`` or ``"SVARMIQ"``. Default
            ``"PermutationSamplingSII"``.
        players: The players whose pairs to keep, by index or name. Default: every player.
        seed: shapiq's ``random_state``. Default 0.
        n_players: Number of players, only for a plain callable ``game``.
    """
    owner = "shapiq_interactions"
    game = as_game(game, n_players, owner)
    chosen = _chosen_players(game, players, owner)
    check_int(budget, "budget", owner, min_value=4)
    check_choice(approximator, "approximator", owner, SHAPIQ_APPROXIMATORS)
    check_int(seed, "seed", owner, min_value=0)
    shapiq = require("shapiq", "bench", "shapiq's interaction approximators")
    started = time.perf_counter()
    n = game.n_players
    evaluator = Evaluator(game)

    def value_function(coalitions: CoalitionMatrix) -> GameValues:
        # shapiq asks for the empty coalition as a 1-D array.
        return evaluator(np.atleast_2d(np.asarray(coalitions, dtype=bool)))

    method = getattr(shapiq, approximator)(
        n, max_order=2, index="SII", top_order=True, random_state=seed
    )
    estimate = method.approximate(budget, value_function)
    m = len(chosen)
    values = np.zeros((m, m))
    for a in range(m):
        for b in range(a + 1, m):
            key = tuple(sorted((int(chosen[a]), int(chosen[b]))))
            values[a, b] = values[b, a] = float(estimate.values[estimate.interaction_lookup[key]])
    unknown = np.full((m, m), np.nan)
    np.fill_diagonal(unknown, 0.0)
    params = {"budget": budget, "approximator": approximator, "shapiq": shapiq.__version__}
    return _unsampled(
        game, chosen, values, unknown, unknown, evaluator, owner, params, seed=seed,
        interval="none: shapiq's approximators report no uncertainty (the intervals are NaN)",
        started=started,
    )  # fmt: skip


def _unsampled(
    game: Game,
    chosen: NDArray[np.int64],
    values: NDArray[np.float64],
    stderr: NDArray[np.float64],
    bounds: NDArray[np.float64],
    evaluator: Evaluator,
    owner: str,
    params: dict[str, Any],
    *,
    seed: int | None,
    interval: str,
    started: float,
) -> InteractionResult:
    """A result without samples of its own (exact, or a peer's estimate): both ends of each
    interval are ``bounds`` (the values when exact, NaN when unknown)."""
    m = len(chosen)
    return InteractionResult(
        values=values,
        stderr=stderr,
        ci_low=bounds.copy(),
        ci_high=bounds.copy(),
        player_names=[game.player_names[i] for i in chosen],
        player_indices=chosen,
        n_game_players=game.n_players,
        n_samples=np.zeros((m, m), dtype=np.int64),
        n_evaluations=evaluator.n_evaluations,
        estimator=owner,
        params=params,
        seed=seed,
        interval=interval,
        elapsed_seconds=time.perf_counter() - started,
        game_fingerprint=game_fingerprint(game),
    )


def _chosen_players(
    game: Game, players: Sequence[int | str] | None, owner: str
) -> NDArray[np.int64]:
    """The indices of ``players`` (names or indices; at least two, distinct) in ``game``."""
    n = game.n_players
    if n < 2:
        raise ValueError(f"{owner} needs a game of at least 2 players. This game has {n}.")
    if players is None:
        return np.arange(n, dtype=np.int64)
    rule = "a sequence of at least two distinct player indices or names"
    if isinstance(players, str | bytes) or not isinstance(players, Sequence | np.ndarray):
        raise TypeError(f"The 'players' parameter of {owner} must be {rule}. Got {players!r}.")
    index = {name: i for i, name in enumerate(game.player_names)}
    chosen = []
    for player in players:
        if isinstance(player, str):
            if player not in index:
                raise ValueError(
                    f"The 'players' parameter of {owner} names {player!r}, which is not a "
                    f"player of the game (e.g. {game.player_names[0]!r})."
                )
            chosen.append(index[player])
        elif isinstance(player, int | np.integer) and not isinstance(player, bool):
            if not 0 <= int(player) < n:
                raise ValueError(
                    f"The 'players' parameter of {owner} holds index {int(player)}, outside "
                    f"[0, {n}) for this game of {n} players."
                )
            chosen.append(int(player))
        else:
            raise TypeError(
                f"The 'players' parameter of {owner} must be {rule}. Got the entry {player!r}."
            )
    if len(chosen) < 2 or len(set(chosen)) != len(chosen):
        raise ValueError(f"The 'players' parameter of {owner} must be {rule}. Got {players!r}.")
    return np.asarray(chosen, dtype=np.int64)
