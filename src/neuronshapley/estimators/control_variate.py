"""Permutation sampling with a control variate: a cheap surrogate game walked on the same orders.

Plain permutation sampling averages, for each player i, its marginals x_t = V(C_t + i) - V(C_t)
over random orders. Given a *surrogate* game U on the same players that is cheap to evaluate
(e.g. ``units.linearized.linearized_game``, the network linearised in its unit masks), walking
the same orders on U gives, on the same coalitions, the surrogate's marginals u_t. When U's
marginals move with the game's, x_t - c (u_t - phi^U) has the mean phi_i of x_t and a smaller
variance: Var(x) (1 - rho^2) at the best c = Cov(x, u) / Var(u), rho the correlation of x_t
and u_t over orders (the classical control variate; Owen, *Monte Carlo theory, methods and
examples*, ch. 8.9).

**Why a linear surrogate does not help.** U(S) = sum_{i in S} a_i has the marginal a_i in every
order: u_t is a constant, uncorrelated with anything. A useful surrogate has marginals that vary
with S as the game's do (a nonlinear function of S), with Shapley values that are known (a
closed form, an enumeration) or cheap to estimate.

**The surrogate's values.** With ``surrogate_values`` given, phi^U is exact. Otherwise it is
estimated from ``surrogate_permutations`` walks of the surrogate alone, drawn from their own
stream (``SeedSequence(entropy, spawn_key=(j, 2))``), independent of the walks on the game: the
multi-fidelity Monte Carlo estimator (Peherstorfer, Willcox & Gunzburger, SIAM Review 2018).
The estimate of player i is

    phi_hat = sum_k w_k (xbar_k - c_k (ubar_k - phi_hat^U)),   w_k = M_k / M,

over the two folds k of the M game samples (even and odd sample numbers), xbar_k and ubar_k the
fold's means, phi_hat^U the surrogate-only walks' mean (or the exact value).

**Why it stays unbiased (cross-fitting, K = 2).** c_k is computed from the *other* fold only
(its covariance and variance of x and u), so it is independent of fold k's samples and of the
surrogate-only walks. Hence E[c_k (ubar_k - phi_hat^U)] = E[c_k] (E[ubar_k] - E[phi_hat^U]) =
E[c_k] (phi^U - phi^U) = 0, and E[phi_hat] = phi for every game and surrogate, at any number of
samples. (Fitting c on the same samples it adjusts would make it correlated with ubar_k - phi^U:
a bias of order 1/M.) The price is a coefficient fitted on half the samples.

**The coefficient.** With one c for both folds, the estimate's variance is (s_xx - 2 c s_xu +
c^2 s_uu) / M + c^2 s_uu / N_s (the surrogate-only walks walk orders the same way, so their
samples have the variance s_uu of the paired ones; both folds share their mean phi_hat^U, so its
error does not average out between the folds), minimised by

    c = s_xu / (s_uu (1 + M / N_s))    (N_s = infinity with exact surrogate values),

each fold's c computed so from the other fold's moments.

A constant u (a linear surrogate) gets c = 0: the estimate is then exactly plain permutation
sampling on the same orders (``permutation_shapley`` with the same seed), no loss. A fixed
``beta`` (the same c for both folds) is unbiased too; ``beta=0`` is plain sampling.

**One coefficient for every player** (``pooled=True``). Fitted per player from a fold of M_k / 2
samples, c is noisy when the walks are few (folds of 4-8 samples at a few thousand evaluations
on a 160-unit network), and a noisy c costs variance: E[(c - c*)^2] s_uu per player. Pooled,
c_k = sum_i s_xu,i / sum_i s_uu,i (1 + M / N_s) over the other fold's players: the slope that
minimises the sum of the players' variances with one c, fitted on n times as many pairs. It is
still from the other fold only, so the estimate stays unbiased. It pays where the surrogate's
marginals track the game's with about the same slope for every player (a linearised network:
x ~ u).

**Intervals.** The standard error treats the fitted c_k as fixed: Var = sum_k w_k^2 (s_xx -
2 c_k s_xu + c_k^2 s_uu)_k / M_k + (sum_k w_k c_k)^2 s_uu^U / N_s, each fold's moments its own,
the last term the surrogate's estimation error (0 with exact values). The intervals are normal
(CLT) intervals at that standard error: asymptotic, no finite-sample guarantee (the adjusted
samples have no known range).

**Truncation** (``truncation=``, the rule of ``truncated_shapley``). The game's walks stop where
the network is dead and record 0 for the players they did not reach; the surrogate, cheap, is
walked whole on the same orders. The adjustment has mean 0 whatever x is, so the estimate has
the mean of the truncated samples: plain truncation estimates the truncated game's values, as
``truncated_shapley`` does, and ``continue_probability`` keeps them unbiased. With plain
truncation the interval is widened as ``results.tails`` widens truncated sampling's: the
control-variate estimates of the ends L and H of each sample's true marginal (same
coefficients, so each is unbiased for E[L] and E[H]) give [L_hat - z se_L, H_hat + z se_H], which
holds phi_i for a monotone tail (as ``truncated_shapley``'s does).

Orders: game walk j is ``walks.permutation(entropy, j, n)`` (with ``antithetic``, pair j walks
permutation j and its reverse and their mean is one sample), the orders ``permutation_shapley``
walks with the same seed; walks go down from the full set as in ``estimators.walks``.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import check_bool, check_float, check_int, check_progress
from neuronshapley.estimators.driver import seed_entropy
from neuronshapley.estimators.options import Sampling, Truncation
from neuronshapley.estimators.progress import Progress, ProgressCallback
from neuronshapley.estimators.walks import Endpoints, Evaluator, Walker, permutation, uses_contexts
from neuronshapley.games.base import CallableGame, Game, as_game, game_fingerprint, player_groups
from neuronshapley.results.result import ShapleyResult
from neuronshapley.results.stats import RunningStats
from neuronshapley.results.tails import monotone_refuted

_OWNER = "control_variate_shapley"
# Walks per block: their values and marginals (walks x players floats) stay within this.
_BLOCK_BYTES = 2**26
# The contexts of the surrogate's own walks start here, after any game walk's (a surrogate that
# scores each walk on its own data sees other data in them than the paired walks did).
_ALONE = 2**40
# A surrogate whose marginals vary by less than this (relative to their size) is a constant:
# its coefficient is 0 (round-off in a linear surrogate's differences is not a signal).
_CONSTANT = 1e-9


@dataclass
class _Moments:
    """Mean and co-moments of paired samples (x, u) per player, merged exactly (Chan et al.)."""

    count: int
    mean_x: NDArray[np.float64]
    mean_u: NDArray[np.float64]
    cxx: NDArray[np.float64]
    cuu: NDArray[np.float64]
    cxu: NDArray[np.float64]

    @classmethod
    def zeros(cls, n: int) -> "_Moments":
        return cls(0, *(np.zeros(n) for _ in range(5)))

    def add(self, x: NDArray[np.float64], u: NDArray[np.float64]) -> None:
        """Merge a block of samples, one row per sample, one column per player."""
        m = len(x)
        if m == 0:
            return
        mx, mu = x.mean(axis=0), u.mean(axis=0)
        dx, du = x - mx, u - mu
        n0 = self.count
        total = n0 + m
        ex, eu = mx - self.mean_x, mu - self.mean_u
        self.cxx += (dx * dx).sum(axis=0) + ex * ex * n0 * m / total
        self.cuu += (du * du).sum(axis=0) + eu * eu * n0 * m / total
        self.cxu += (dx * du).sum(axis=0) + ex * eu * n0 * m / total
        self.mean_x += ex * m / total
        self.mean_u += eu * m / total
        self.count = total

    def var_x(self) -> NDArray[np.float64]:
        return self.cxx / max(self.count - 1, 1)

    def var_u(self) -> NDArray[np.float64]:
        return self.cuu / max(self.count - 1, 1)

    def cov(self) -> NDArray[np.float64]:
        return self.cxu / max(self.count - 1, 1)


def _pooled_coefficient(fit: _Moments, ratio: float) -> NDArray[np.float64]:
    """One c for every player: sum_i s_xu / sum_i s_uu (1 + ratio); 0 if no u varies."""
    var_u = float(fit.var_u().sum())
    constant = np.sqrt(var_u) <= _CONSTANT * (1.0 + float(np.abs(fit.mean_u).sum()))
    c = 0.0 if constant else float(fit.cov().sum()) / (var_u * (1.0 + ratio))
    return np.full(len(fit.mean_u), c)


def _coefficient(fit: _Moments, ratio: float) -> NDArray[np.float64]:
    """c = s_xu / (s_uu (1 + ratio)) from ``fit``'s moments; 0 where u is constant."""
    var_u, cov = fit.var_u(), fit.cov()
    constant = np.sqrt(var_u) <= _CONSTANT * (1.0 + np.abs(fit.mean_u))
    return np.where(constant, 0.0, cov / np.where(constant, 1.0, var_u * (1.0 + ratio)))


class _Walks:
    """Walks orders down from the full set on one game, returning every player's marginal."""

    def __init__(self, game: Game, batch_size: int) -> None:
        self.evaluator = Evaluator(game)
        self.n = game.n_players
        self.batch_size = batch_size
        self.contexts = uses_contexts(game)
        self.seconds = 0.0
        if self.contexts:
            self.v_full = self.v_empty = math.nan
        else:
            ends = np.zeros((2, self.n), dtype=bool)
            ends[0] = True
            started = time.perf_counter()
            self.v_full, self.v_empty = (float(v) for v in self.evaluator(ends))
            self.seconds += time.perf_counter() - started

    def marginals(
        self, orders: NDArray[np.intp], contexts: NDArray[np.int64]
    ) -> NDArray[np.float64]:
        """Row w: the marginal of every player in the walk along ``orders[w]``."""
        started = time.perf_counter()
        n, n_walks = self.n, len(orders)
        ranks = np.empty_like(orders)
        ranks[np.arange(n_walks)[:, None], orders] = np.arange(n)[None, :]
        # V(C_t) for t = 0..n, C_t = {i : rank_i >= t}; the run's endpoints unless each walk
        # is scored on its own data (then every walk evaluates its own).
        low, high = (0, n) if self.contexts else (1, n - 1)
        steps = np.arange(low, high + 1)
        values = np.empty((n_walks, n + 1))
        values[:, 0], values[:, n] = self.v_full, self.v_empty
        if len(steps):
            # Row r is walk r // len(steps) at step steps[r % len(steps)]; the masks are built
            # one batch at a time, so memory stays at batch_size x n whatever the walks.
            n_rows = n_walks * len(steps)
            out = np.empty(n_rows)
            for start in range(0, n_rows, self.batch_size):
                rows = np.arange(start, min(start + self.batch_size, n_rows))
                walk, step = rows // len(steps), steps[rows % len(steps)]
                masks = ranks[walk] >= step[:, None]
                out[rows] = self.evaluator(masks, contexts[walk] if self.contexts else None)
            values[:, low : high + 1] = out.reshape(n_walks, len(steps))
        # The player at position t leaves C_t for C_{t+1}: its marginal is V(C_t) - V(C_{t+1}).
        before = np.take_along_axis(values, ranks, axis=1)
        after = np.take_along_axis(values, ranks + 1, axis=1)
        self.seconds += time.perf_counter() - started
        return np.asarray(before - after)


def _orders(
    entropy: int, first: int, count: int, n: int, antithetic: bool, stream: int | None
) -> tuple[NDArray[np.intp], NDArray[np.int64]]:
    """Orders of walks ``first .. first + count - 1``, and the context of each (the data a
    game that scores walks on their own examples uses): the walk's number, or its pair's."""
    orders = np.empty((count, n), dtype=np.intp)
    for row, j in enumerate(range(first, first + count)):
        base_index = j // 2 if antithetic else j
        if stream is None:
            base = permutation(entropy, base_index, n)
        else:  # the surrogate-only walks: their own stream
            rng = np.random.default_rng(
                np.random.SeedSequence(entropy, spawn_key=(base_index, stream))
            )
            base = rng.permutation(n)
        orders[row] = base[::-1] if antithetic and j % 2 else base
    walks = np.arange(first, first + count, dtype=np.int64)
    return orders, (walks // 2 if antithetic else walks)


def _as_samples(marginals: NDArray[np.float64], antithetic: bool) -> NDArray[np.float64]:
    """One sample per walk, or per antithetic pair (the mean of the pair's two walks)."""
    if not antithetic:
        return marginals
    return np.asarray((marginals[0::2] + marginals[1::2]) / 2.0)


def _check_surrogate(game: Game, surrogate: Any) -> Game:
    if not isinstance(surrogate, Game) and not callable(surrogate):
        raise TypeError(
            f"The 'surrogate' parameter of {_OWNER} must be a Game or a callable "
            f"bool[n_coalitions, n_players] -> float[n_coalitions]. Got "
            f"{type(surrogate).__name__}."
        )
    # A plain callable surrogate plays the game's players, under their names.
    surrogate_game = (
        surrogate
        if isinstance(surrogate, Game)
        else CallableGame(surrogate, game.n_players, list(game.player_names))
    )
    if surrogate_game.n_players != game.n_players:
        raise ValueError(
            f"The 'surrogate' parameter of {_OWNER} must be a game on the same players as "
            f"'game' ({game.n_players}). Got a game of {surrogate_game.n_players} players."
        )
    if list(surrogate_game.player_names) != list(game.player_names):
        diff = next(
            (a, b)
            for a, b in zip(game.player_names, surrogate_game.player_names, strict=True)
            if a != b
        )
        raise ValueError(
            f"The 'surrogate' parameter of {_OWNER} must name its players as 'game' does (the "
            f"control variate pairs them by position). Got {diff[1]!r} where the game has "
            f"{diff[0]!r}."
        )
    return surrogate_game


def _check_values(values: Any, n: int) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (n,) or not np.isfinite(array).all():
        raise ValueError(
            f"The 'surrogate_values' parameter of {_OWNER} must hold the surrogate's exact "
            f"Shapley value of each of the {n} players (finite numbers). Got shape "
            f"{array.shape}" + ("" if array.shape != (n,) else " with non-finite entries") + "."
        )
    return array


def control_variate_shapley(
    game: Game | Callable[..., Any],
    surrogate: Game | Callable[..., Any],
    n_permutations: int | None = None,
    *,
    max_evaluations: int | None = None,
    surrogate_values: Any = None,
    surrogate_permutations: int | None = None,
    beta: float | None = None,
    pooled: bool = False,
    antithetic: bool = False,
    truncation: float | None = None,
    truncation_mode: str = "relative",
    patience: int = 5,
    continue_probability: float | None = None,
    delta: float = 0.05,
    batch_size: int = 256,
    n_walks: int = 8,
    seed: int | Any = None,
    progress: ProgressCallback | None = None,
    n_players: int | None = None,
) -> ShapleyResult:
    """Permutation sampling of ``game`` with ``surrogate`` as a control variate (unbiased).

    Both games are walked along the same random orders (the game's marginals x_t, the
    surrogate's u_t, on the same coalitions), and each player's estimate is the mean of
    x_t - c (u_t - phi^U), with the coefficient c cross-fitted on the other half of the walks
    so that the estimate stays unbiased; derivation in the module docstring of
    ``estimators.control_variate``. It pays when the surrogate is much cheaper than the game
    and its marginals correlate with the game's: the variance falls by 1 - rho^2 (rho the
    correlation over orders, the surrogate's values known); a surrogate that does not
    correlate costs the fitting noise of c only.

    Args:
        game: A ``Game`` or a callable ``bool[n_coalitions, n_players] -> float[n_coalitions]``.
        surrogate: The cheap game on the same players (same names), e.g.
            ``ns.units.linearized_game(neuron_game)``. A plain callable is accepted.
        n_permutations: Orders to walk on the game (and on the surrogate), at least 4 (two
            folds of two samples); with ``antithetic`` even, at least 8. Default ``None``: as
            many as ``max_evaluations`` allows (one of the two is required).
        max_evaluations: The game's evaluation budget (V(N) and V(empty) included): the run
            stops before a round of walks that could exceed it, counting each walk at its
            untruncated cost (n - 1 coalitions, n + 1 where each walk is scored on its own
            data), so a truncated run may stop a little short of it. At least what 4 samples
            cost. Default ``None``: no budget.
        surrogate_values: The surrogate's exact Shapley values (a closed form, an exact
            enumeration), one per player. Default ``None``: estimated from
            ``surrogate_permutations`` walks of the surrogate alone.
        surrogate_permutations: Independent walks of the surrogate alone that estimate its
            values, at least 2. Default ``None``: 10 x ``n_permutations`` (the surrogate's
            estimation error then costs about 1/11 of the variance reduction). Not with
            ``surrogate_values``; with it, also give ``n_permutations`` (the surrogate's walks
            keep pace with the game's: after w of the M game walks, N_s w / M of them).
        beta: A fixed coefficient c for every player instead of the cross-fitted one. Default
            ``None`` (cross-fitted). ``0`` is plain permutation sampling.
        pooled: Cross-fit one coefficient shared by every player instead of one per player:
            far less fitting noise when the walks are few (module docstring). Default
            ``False``. Not with ``beta``.
        antithetic: Walk each order and its reverse; their mean is one sample (both games).
            Default ``False``.
        truncation: Stop the game's walks where the network is dead, as ``truncated_shapley``
            does (its ``truncation``, ``truncation_mode``, ``patience`` and
            ``continue_probability``, the same rule); the surrogate is walked whole. Default
            ``None``: no truncation. With plain truncation the values are the truncated game's
            and the intervals are widened by what the tails may hide (module docstring).
        truncation_mode: ``"relative"`` or ``"absolute"``. Default ``"relative"``.
        patience: Consecutive dead coalitions that end a walk. Default 5.
        continue_probability: p in (0, 1): a truncated walk goes on with probability p and
            weights its tail by 1/p (unbiased). Default ``None`` (plain truncation).
        delta: Each normal interval misses with probability about ``delta``. Default 0.05.
        batch_size: Coalitions per call to each game. Default 256.
        n_walks: Game walks per round (even with ``antithetic``); after each round the
            surrogate's own walks catch up and ``progress`` is called. Default 8.
        seed: Int or ``numpy.random.Generator``. Default ``None``: fresh entropy, recorded.
        progress: Called after every round (once both folds hold two samples) with a
            ``Progress`` whose values are the estimate so far, the result a run of that many
            walks returns (the orders depend on the walk's number only, and the surrogate's own
            walks keep pace; with ``surrogate_permutations`` given, a run of that share of
            them). Default ``None``.
        n_players: Number of players, only for a plain callable ``game``.

    Returns:
        A ``ShapleyResult`` (``estimator="control_variate_shapley"``). ``n_samples`` counts the
        game's samples; ``variance`` is M x the estimate's variance (so that ``stderr`` =
        sqrt(variance / n_samples)); ``n_evaluations`` counts the game's evaluations only;
        ``stop_reason`` is ``"n_permutations"`` or ``"max_evaluations"``, and ``params`` hold
        the walks walked (``n_permutations``, ``surrogate_permutations``): a run of those with
        the same seed returns the same result.
        ``diagnostics`` holds ``plain_values`` (the plain permutation estimate from the same
        walks) and ``plain_variance`` (of x_t), ``variance_ratio`` (variance /
        plain_variance: plain sampling needs 1 / that as many game evaluations for the same
        standard error), ``coefficients`` (c of each fold),
        ``correlation`` (of x_t and u_t), ``surrogate_values`` (phi^U used),
        ``surrogate_estimate_variance`` (its share of the estimate's variance),
        ``n_surrogate_evaluations``, ``n_walks_truncated`` (with plain truncation also
        ``monotone_refuted``: a measured marginal of the wrong sign, so the widened intervals
        have no proof) and the seconds spent in each game. Intervals are normal: asymptotic
        (``interval_guarantee``).
    """
    game = as_game(game, n_players, _OWNER)
    surrogate_game = _check_surrogate(game, surrogate)
    n = game.n_players
    check_bool(antithetic, "antithetic", _OWNER)
    walks_per_sample = 2 if antithetic else 1
    if n_permutations is None and max_evaluations is None:
        raise ValueError(
            f"{_OWNER} needs a stopping rule: give 'n_permutations' (orders to walk) or "
            "'max_evaluations' (the game's evaluation budget), or both. Got neither."
        )
    total_walks = check_int(n_permutations, "n_permutations", _OWNER, min_value=4, allow_none=True)
    if antithetic and total_walks is not None and (total_walks % 2 or total_walks < 8):
        raise ValueError(
            f"With antithetic=True, the 'n_permutations' parameter of {_OWNER} must be even and "
            f"at least 8 (two folds of two pairs). Got {total_walks}."
        )
    # A walk's coalitions at most (untruncated), and the run's own: V(N) and V(empty), unless
    # each walk is scored on its own data (then every walk evaluates its own ends).
    per_walk, ends = (n + 1, 0) if uses_contexts(game) else (n - 1, 2)
    fewest = ends + 4 * walks_per_sample * per_walk  # two folds of two samples
    budget = check_int(max_evaluations, "max_evaluations", _OWNER, min_value=1, allow_none=True)
    if budget is not None and budget < fewest:
        raise ValueError(
            f"The 'max_evaluations' parameter of {_OWNER} must allow two folds of two samples: "
            f"at least {fewest:,} evaluations on these {n} players"
            f"{' (antithetic pairs)' if antithetic else ''}. Got {budget:,}."
        )
    round_walks = int(check_int(n_walks, "n_walks", _OWNER, min_value=1))  # type: ignore[arg-type]
    if antithetic and round_walks % 2:
        raise ValueError(
            f"With antithetic=True, the 'n_walks' parameter of {_OWNER} must be even (each "
            f"order walks with its reverse). Got n_walks={round_walks}."
        )
    check_progress(progress, _OWNER)
    rule = Truncation.from_arguments(
        _OWNER, truncation, truncation_mode, patience, continue_probability
    )
    if rule is not None and uses_contexts(game):
        raise ValueError(
            f"The 'truncation' parameter of {_OWNER} needs the run's V(N) and V(empty) to tell "
            "a dead network; this game scores each walk on its own data, which has none. Got "
            f"truncation={truncation!r}; use truncation=None."
        )
    check_float(delta, "delta", _OWNER, low=0.0, high=1.0, include_low=False, include_high=False)
    batch = int(check_int(batch_size, "batch_size", _OWNER, min_value=1))  # type: ignore[arg-type]
    fixed = check_float(beta, "beta", _OWNER, allow_none=True)
    check_bool(pooled, "pooled", _OWNER)
    if pooled and fixed is not None:
        raise ValueError(
            f"Give {_OWNER} either 'beta' (a fixed coefficient) or 'pooled=True' (one fitted "
            f"coefficient for every player), not both. Got beta={beta!r}."
        )
    exact_u: NDArray[np.float64] | None = None
    # The surrogate's own walks keep pace with the game's: after w game walks, ratio x w.
    ratio = 10.0
    if surrogate_values is not None:
        if surrogate_permutations is not None:
            raise ValueError(
                f"Give {_OWNER} either 'surrogate_values' (the surrogate's exact values) or "
                f"'surrogate_permutations' (walks that estimate them), not both. Got "
                f"surrogate_permutations={surrogate_permutations!r}."
            )
        exact_u = _check_values(surrogate_values, n)
        ratio = 0.0
    elif surrogate_permutations is not None:
        n_surrogate_walks = int(
            check_int(  # type: ignore[arg-type]
                surrogate_permutations,
                "surrogate_permutations",
                _OWNER,
                min_value=4 if antithetic else 2,
            )
        )
        if antithetic and n_surrogate_walks % 2:
            raise ValueError(
                f"With antithetic=True, the 'surrogate_permutations' parameter of {_OWNER} must "
                f"be even. Got {n_surrogate_walks}."
            )
        if total_walks is None:
            raise ValueError(
                f"The 'surrogate_permutations' parameter of {_OWNER} is a share of "
                "'n_permutations' (its walks keep pace with the game's), which is not given. Got "
                f"surrogate_permutations={surrogate_permutations!r}; give n_permutations too, or "
                "leave it None (10 surrogate walks per game walk)."
            )
        ratio = n_surrogate_walks / total_walks
    entropy = seed_entropy(seed, _OWNER)
    started = time.perf_counter()
    on_game, on_surrogate = _Walks(game, batch), _Walks(surrogate_game, batch)
    # Walks per block (whole antithetic pairs): a block's values fit in _BLOCK_BYTES.
    per_block = max(2, _BLOCK_BYTES // (8 * 4 * (n + 1)))
    per_block -= per_block % 2
    folds = (_Moments.zeros(n), _Moments.zeros(n))
    # With plain truncation: the ends L and H of each sample's true marginal (module docstring).
    tails = (
        None
        if rule is None or rule.continue_probability is not None
        else tuple((_Moments.zeros(n), _Moments.zeros(n)) for _ in range(2))
    )
    walker = (
        None
        if rule is None
        else Walker(
            on_game.evaluator,
            entropy,
            Endpoints(on_game.v_full, on_game.v_empty),
            Sampling(antithetic=antithetic, batch_size=batch),
            rule,
        )
    )
    n_truncated = 0
    # The smallest and largest marginal the game's walks measured: one of the wrong sign
    # refutes the monotone tails the widened intervals assume (results.tails).
    seen = RunningStats.zeros(n)
    alone = _Moments.zeros(n)
    walked = walked_alone = 0
    stop_reason = "n_permutations"
    while total_walks is None or walked < total_walks:
        # A round's values and marginals stay within _BLOCK_BYTES (per_block walks at most).
        count = min(round_walks, per_block)
        if total_walks is not None:
            count = min(count, total_walks - walked)
        if budget is not None:
            fits = (budget - on_game.evaluator.n_evaluations) // per_walk
            fits -= fits % walks_per_sample
            if fits < count:
                count, stop_reason = fits, "max_evaluations"
        if count <= 0:
            break
        orders, contexts = _orders(entropy, walked, count, n, antithetic, None)
        hidden = None
        if walker is None:
            x = on_game.marginals(orders, contexts)
        else:
            started_walks = time.perf_counter()
            x, hidden, truncated = walker.walk_marginals(walked, count)
            on_game.seconds += time.perf_counter() - started_walks
            n_truncated += truncated
            if len(x):
                seen.sample_min = min(seen.sample_min, float(x.min()))
                seen.sample_max = max(seen.sample_max, float(x.max()))
        u = _as_samples(on_surrogate.marginals(orders, contexts), antithetic)
        samples = [_as_samples(x, antithetic)]
        if tails is not None and hidden is not None:
            samples += [
                _as_samples(x + np.minimum(hidden, 0.0), antithetic),
                _as_samples(x + np.maximum(hidden, 0.0), antithetic),
            ]
        numbers = walked // walks_per_sample + np.arange(len(u))  # the samples' numbers
        for k in (0, 1):
            own = numbers % 2 == k  # even and odd samples: two folds that grow together
            # One sample array per set of moments: the truncated ends L and H come with tails.
            for moments, x_k in zip((folds, *(tails or ())), samples, strict=True):
                moments[k].add(x_k[own], u[own])
        walked += count
        # The surrogate's own walks catch up: ratio x the game's walks, whole pairs, at least
        # two samples (as many as a fresh run of `walked` walks would walk).
        target = 0 if exact_u is not None else max(math.ceil(ratio * walked), 2 * walks_per_sample)
        target += target % walks_per_sample
        for first in range(walked_alone, target, per_block):
            block = min(per_block, target - first)
            orders, contexts = _orders(entropy, first, block, n, antithetic, 2)
            u = _as_samples(on_surrogate.marginals(orders, contexts + _ALONE), antithetic)
            alone.add(u, u)
        walked_alone = target
        if progress is not None and min(fold.count for fold in folds) >= 2:
            estimate = _Estimate.of(folds, alone, exact_u, fixed, pooled)
            progress(
                Progress(
                    n_evaluations=on_game.evaluator.n_evaluations,
                    n_permutations=walked,
                    elapsed_seconds=time.perf_counter() - started,
                    values=estimate.values,
                    n_undecided=None,
                    max_evaluations=budget,
                    max_seconds=None,
                )
            )
    estimate = _Estimate.of(folds, alone, exact_u, fixed, pooled)
    values, variance_of_estimate = estimate.values, estimate.variance
    coefficients, weights = estimate.coefficients, estimate.weights
    phi_u, surrogate_part = estimate.phi_u, estimate.surrogate
    total = folds[0].count + folds[1].count
    stderr = np.sqrt(variance_of_estimate)
    z = NormalDist().inv_cdf(1.0 - delta / 2.0)
    ci_low, ci_high = values - z * stderr, values + z * stderr
    if tails is not None:
        # The same coefficients adjust L and H: each estimate stays unbiased for E[L], E[H].
        (low, low_var), (high, high_var) = (
            _adjusted(end, coefficients, weights, phi_u, surrogate_part) for end in tails
        )
        ci_low, ci_high = low - z * np.sqrt(low_var), high + z * np.sqrt(high_var)
    plain = _pooled_var_x(folds)
    variance = variance_of_estimate * total
    ratio_to_plain = np.where(plain > 0, variance / np.where(plain > 0, plain, 1.0), 1.0)
    correlation = _correlation(folds)
    how = (
        "given exactly"
        if exact_u is not None
        else f"estimated from {walked_alone} independent walks, whose variance is included"
    )
    fitted = (
        f"c = {float(fixed):g}, fixed, so unbiased"
        if fixed is not None
        else (
            f"{'one c for every player' if pooled else 'c'} cross-fitted on the other half of "
            "the walks, so unbiased"
        )
    )
    note = (
        "; each value is a control-variate mean x - c (u - phi_U) of the game's and the "
        f"surrogate's marginals on the same orders ({fitted}; phi_U {how})"
    )
    if rule is not None:
        note += "; the game's walks were truncated where the network was dead (" + (
            "unbiased: a truncated walk went on with probability "
            f"{rule.continue_probability:g}, its tail weighted by its inverse)"
            if rule.continue_probability is not None
            else "the values are the truncated game's; each interval is widened by what "
            "the tails may hide, valid where they are monotone)"
        )
    return ShapleyResult(
        values=values,
        stderr=stderr,
        ci_low=ci_low,
        ci_high=ci_high,
        n_samples=np.full(n, total, dtype=np.int64),
        variance=variance,
        player_names=list(game.player_names),
        n_evaluations=on_game.evaluator.n_evaluations,
        estimator=_OWNER,
        params={
            # What was walked: a run of these (and the seed) returns this result again.
            "n_permutations": walked,
            "surrogate_permutations": None if exact_u is not None else walked_alone,
            "max_evaluations": budget,
            "n_walks": round_walks,
            "surrogate_values_given": exact_u is not None,
            "beta": None if fixed is None else float(fixed),
            "pooled": bool(pooled),
            "antithetic": bool(antithetic),
            "truncation": None if rule is None else rule.threshold,
            "truncation_mode": truncation_mode,
            "patience": int(patience),
            "continue_probability": None if rule is None else rule.continue_probability,
            # What ShapleyResult.interval_guarantee reads (as for truncated_shapley): without
            # it a truncated result reads as an earlier version's, its bias not included.
            "truncation_bias": None if rule is None else rule.bias,
            "bound": "normal",
            "delta": float(delta),
            "value_range": None,
            "union_bound": False,
            "batch_size": batch,
        },
        seed=entropy,
        stop_reason=stop_reason,
        elapsed_seconds=time.perf_counter() - started,
        diagnostics={
            "interval_note": note,
            # None where every walk has its own endpoints (a game scoring walks on their data).
            "v_full": None if math.isnan(on_game.v_full) else on_game.v_full,
            "v_empty": None if math.isnan(on_game.v_empty) else on_game.v_empty,
            "plain_values": _pooled(folds).mean_x.tolist(),
            "plain_variance": plain.tolist(),
            "variance_ratio": ratio_to_plain.tolist(),
            "coefficients": [c.tolist() for c in coefficients],
            "correlation": correlation.tolist(),
            "surrogate_values": phi_u.tolist(),
            "surrogate_estimate_variance": surrogate_part.tolist(),
            "n_surrogate_evaluations": on_surrogate.evaluator.n_evaluations,
            "n_walks_truncated": n_truncated,
            # As truncated_shapley's: ShapleyResult.interval_guarantee warns where it is true.
            **(
                {}
                if tails is None
                else {"monotone_refuted": monotone_refuted(seen, on_game.v_full, on_game.v_empty)}
            ),
            "game_seconds": on_game.seconds,
            "surrogate_seconds": on_surrogate.seconds,
        },
        groups=player_groups(game),
        game_fingerprint=game_fingerprint(game),
    )


@dataclass
class _Estimate:
    """The control-variate estimate from the samples so far (module docstring)."""

    values: NDArray[np.float64]
    variance: NDArray[np.float64]  # of the estimate
    coefficients: list[NDArray[np.float64]]  # c_k of each fold
    weights: list[float]  # w_k = M_k / M
    phi_u: NDArray[np.float64]
    surrogate: NDArray[np.float64]  # the variance's share from phi_hat^U's error

    @classmethod
    def of(
        cls,
        folds: tuple[_Moments, _Moments],
        alone: _Moments,
        exact_u: NDArray[np.float64] | None,
        fixed: float | None,
        pooled: bool,
    ) -> "_Estimate":
        n = len(alone.mean_u)
        phi_u = exact_u if exact_u is not None else alone.mean_u.copy()
        total = folds[0].count + folds[1].count
        weights = [fold.count / total for fold in folds]
        if fixed is not None:
            coefficients = [np.full(n, float(fixed)), np.full(n, float(fixed))]
        else:
            # c_k from the other fold only: independent of what it adjusts (module docstring).
            # Both folds share phi_hat^U, so its error does not average out between them: the
            # total variance's minimiser uses M / N_s, not M_k / N_s.
            ratio = 0.0 if exact_u is not None else total / alone.count
            fit = _pooled_coefficient if pooled else _coefficient
            coefficients = [fit(folds[1 - k], ratio) for k in (0, 1)]
        shared = weights[0] * coefficients[0] + weights[1] * coefficients[1]
        surrogate = (
            np.zeros(n) if exact_u is not None else shared**2 * alone.var_u() / max(alone.count, 1)
        )
        values, variance = _adjusted(folds, coefficients, weights, phi_u, surrogate)
        return cls(values, variance, coefficients, weights, phi_u, surrogate)


def _adjusted(
    folds: tuple[_Moments, _Moments],
    coefficients: list[NDArray[np.float64]],
    weights: list[float],
    phi_u: NDArray[np.float64],
    surrogate_part: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The estimate sum_k w_k (xbar_k - c_k (ubar_k - phi^U)) and its variance (module
    docstring), ``surrogate_part`` the share of phi^U's estimation error."""
    values = np.zeros(len(phi_u))
    variance = surrogate_part.copy()
    for k, fold in enumerate(folds):
        c = coefficients[k]
        values += weights[k] * (fold.mean_x - c * (fold.mean_u - phi_u))
        adjusted = np.maximum(fold.var_x() - 2.0 * c * fold.cov() + c * c * fold.var_u(), 0.0)
        variance += weights[k] ** 2 * adjusted / fold.count
    return values, variance


def _pooled(folds: tuple[_Moments, _Moments]) -> _Moments:
    """Both folds' moments as one (Chan's merge of the two)."""
    a, b = folds
    total = a.count + b.count
    ex, eu = b.mean_x - a.mean_x, b.mean_u - a.mean_u
    w = a.count * b.count / total
    return _Moments(
        total,
        a.mean_x + ex * b.count / total,
        a.mean_u + eu * b.count / total,
        a.cxx + b.cxx + ex * ex * w,
        a.cuu + b.cuu + eu * eu * w,
        a.cxu + b.cxu + ex * eu * w,
    )


def _pooled_var_x(folds: tuple[_Moments, _Moments]) -> NDArray[np.float64]:
    return _pooled(folds).var_x()


def _correlation(folds: tuple[_Moments, _Moments]) -> NDArray[np.float64]:
    pooled = _pooled(folds)
    scale = np.sqrt(pooled.cxx * pooled.cuu)
    return np.where(scale > 0, pooled.cxu / np.where(scale > 0, scale, 1.0), 0.0)
