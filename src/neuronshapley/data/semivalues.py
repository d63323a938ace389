"""Semivalues of training points: Beta Shapley, Data Banzhaf and leave-one-out.

A semivalue weighs player i's marginal contribution by the size of the coalition it joins:

    phi_i = sum_{k=0}^{n-1} p_k * mean_{S subset of N \\ {i}, |S| = k} [V(S + i) - V(S)],

with size probabilities ``p_k >= 0`` summing to 1 (Dubey, Neyman & Weber 1981). Shapley:
``p_k = 1/n``; Banzhaf: ``p_k = C(n-1, k) / 2^(n-1)``; leave-one-out: all weight on ``k = n-1``.

- **Beta Shapley** (Kwon & Zou, AISTATS 2022, eq. 5-6): ``p_k`` is the Beta-binomial
  probability of ``k`` successes in ``n - 1`` trials with parameters ``(beta, alpha)``,
  ``p_k = C(n-1, k) B(k + beta, n - 1 - k + alpha) / B(alpha, beta)``; ``alpha = beta = 1`` is
  Shapley, ``alpha = 16, beta = 1`` (the paper's choice for noisy labels) puts the weight on
  small coalitions. pyDVL's ``BetaShapleyValuation`` uses the same per-subset coefficient
  ``B(k + beta, n - 1 - k + alpha) / B(alpha, beta)``. Estimated here by Kwon & Zou's weighted
  permutation sampling: in a uniform permutation the coalition before a player has a uniform
  size, so the marginal at size ``k`` weighted by ``n p_k`` is an unbiased sample of phi_i.
  These are the engine's walks with other weights (``ns.permutation_semivalue``), so a run
  checkpoints, resumes, stops on a budget and runs on a backend like ``permutation_shapley``.
- **Data Banzhaf** (Wang & Jia, AISTATS 2023, maximum sample reuse, their Algorithm 1): draw
  coalitions with every point in independently with probability 1/2 and take, for each point,
  the mean value of the coalitions holding it minus the mean of those without it; every
  coalition serves every player (pyDVL's ``MSRBanzhafValuation``).
- **Leave-one-out**: ``V(N) - V(N \\ {i})``, exact with ``n + 1`` evaluations.

All three take any ``Game`` (a ``DataGame``, or a closed-form game in the tests) and evaluate
coalitions in batches through the game's ``value``.
"""

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.files import atomic_write
from neuronshapley._internal.validation import check_float, check_int, check_progress
from neuronshapley.estimators.checkpoint import CheckpointError
from neuronshapley.estimators.exact import enumerable_game, weighted_marginals
from neuronshapley.estimators.options import Budget, Persistence
from neuronshapley.estimators.permutation import permutation_semivalue
from neuronshapley.estimators.progress import Progress, ProgressCallback
from neuronshapley.estimators.walks import Evaluator
from neuronshapley.games.base import Game, as_game, game_fingerprint, player_groups
from neuronshapley.results import ShapleyResult, confidence_halfwidth
from neuronshapley.results.bounds import IntervalRule


def beta_size_weights(n_players: int, alpha: float, beta: float) -> NDArray[np.float64]:
    """Beta Shapley's ``p_k``, ``k = 0 .. n_players - 1``: the Beta-binomial(n - 1, beta, alpha)
    probabilities (they sum to 1), computed in log space."""
    n = n_players
    log_norm = math.lgamma(alpha) + math.lgamma(beta) - math.lgamma(alpha + beta)
    logs = [
        math.lgamma(n)
        - math.lgamma(k + 1)
        - math.lgamma(n - k)  # log C(n-1, k)
        + math.lgamma(k + beta)
        + math.lgamma(n - 1 - k + alpha)
        - math.lgamma(n - 1 + alpha + beta)
        - log_norm
        for k in range(n)
    ]
    return np.exp(np.array(logs))


def banzhaf_size_weights(n_players: int) -> NDArray[np.float64]:
    """Banzhaf's ``p_k = C(n-1, k) / 2^(n-1)``, ``k = 0 .. n_players - 1``."""
    n = n_players
    logs = [
        math.lgamma(n) - math.lgamma(k + 1) - math.lgamma(n - k) - (n - 1) * math.log(2.0)
        for k in range(n)
    ]
    return np.exp(np.array(logs))


def exact_semivalue(
    game: Game | Callable[..., Any],
    size_weights: Any,
    *,
    estimator: str = "exact_semivalue",
    batch_size: int = 2**14,
    n_players: int | None = None,
) -> ShapleyResult:
    """The semivalue with size probabilities ``size_weights`` by enumerating all 2^n coalitions.

    Args:
        game: A ``Game`` or a callable ``bool[n_coalitions, n_players] -> float[n_coalitions]``
            of at most 25 players.
        size_weights: ``p_k`` for ``k = 0 .. n - 1`` (e.g. ``beta_size_weights(n, 16, 1)``).
        estimator: The name recorded in the result. Default ``"exact_semivalue"``.
        batch_size: Coalitions per call to the game. Default 16384.
        n_players: Number of players, only for a plain callable ``game``.

    Returns:
        A ``ShapleyResult`` with zero standard errors.
    """
    owner = "exact_semivalue"
    game = enumerable_game(game, n_players, batch_size, owner, "beta_shapley or data_banzhaf")
    n = game.n_players
    weights = np.asarray(size_weights, dtype=np.float64)
    if weights.shape != (n,) or not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(
            f"The 'size_weights' parameter of {owner} must hold {n} finite non-negative "
            f"numbers, one per coalition size 0 .. {n - 1}. Got shape {weights.shape} instead."
            if weights.shape != (n,)
            else f"The 'size_weights' parameter of {owner} must hold finite non-negative "
            f"numbers. Got {weights.tolist()} instead."
        )
    per_subset = weights / np.array([math.comb(n - 1, k) for k in range(n)], dtype=np.float64)
    return weighted_marginals(
        game,
        per_subset,
        estimator=estimator,
        params={"size_weights": weights.tolist()},
        batch_size=batch_size,
    )


def exact_beta_shapley(
    game: Game | Callable[..., Any],
    *,
    alpha: float = 16.0,
    beta: float = 1.0,
    n_players: int | None = None,
) -> ShapleyResult:
    """Exact Beta(alpha, beta) Shapley values by enumeration (at most 25 players).

    Args:
        game: A ``Game`` or a callable (then ``n_players`` is required).
        alpha: Beta parameter alpha > 0 (large: weight on small coalitions). Default 16.
        beta: Beta parameter beta > 0. Default 1.
        n_players: Number of players, only for a plain callable ``game``.
    """
    owner = "exact_beta_shapley"
    alpha, beta = _check_alpha_beta(alpha, beta, owner)
    game = as_game(game, n_players, owner)
    result = exact_semivalue(game, beta_size_weights(game.n_players, alpha, beta), estimator=owner)
    result.params = {"alpha": alpha, "beta": beta, **result.params}
    return result


def beta_shapley(
    game: Game | Callable[..., Any],
    *,
    alpha: float = 16.0,
    beta: float = 1.0,
    n_permutations: int | None = 100,
    seed: int = 0,
    tail: float = 0.0,
    metric_range: float = 1.0,
    delta: float = 0.05,
    union_bound: bool = False,
    batch_size: int = 32,
    n_players: int | None = None,
    **engine: Any,
) -> ShapleyResult:
    """Beta(alpha, beta) Shapley values (Kwon & Zou 2022) by weighted permutation sampling.

    The engine's permutation walks (``ns.permutation_semivalue``) with Beta Shapley's size
    weights: the marginal of the player that joins a coalition of size ``k`` is weighted by
    ``n p_k`` (``beta_size_weights``), so its mean over permutations is unbiased for the
    semivalue. The run has the engine's checkpoints, resume, budgets, progress and backends
    (``engine``: ``max_evaluations``, ``max_seconds``, ``checkpoint``, ``resume``,
    ``progress``, ``backend``, ``walks_per_task``, ``n_walks``, ``antithetic``, ...).

    ``tail`` saves evaluations: the sizes holding the last ``tail`` of the weight get none, so a
    walk evaluates only the coalitions below them (with ``alpha = 16, beta = 1`` and 200
    players, ``tail=1e-3`` evaluates about a third of each walk). That moves each value by at
    most the weight left out times ``2 * metric_range``; the intervals are widened by it
    (``diagnostics["semivalue_bias_bound"]``).

    Args:
        game: A ``Game`` (e.g. a ``DataGame``) or a callable (then ``n_players``).
        alpha: Beta parameter alpha > 0. Default 16 (Kwon & Zou's choice for noisy labels).
        beta: Beta parameter beta > 0. Default 1. ``alpha = beta = 1`` is Shapley.
        n_permutations: Permutations to walk. Default 100 (``None``: until a budget is spent).
        seed: Seed of the permutations. Default 0.
        tail: Weight left out at the largest sizes, in [0, 1). Default 0 (whole walks).
        metric_range: Width M of the interval V's values lie in (accuracy: 1): marginals lie
            in [-M, M] (the engine's ``value_range`` is their width, 2 M), the weighted samples
            in ``[-W M, W M]`` with ``W = n max_k p_k``, and the intervals are empirical
            Bernstein with that range. Default 1.
        delta: Failure probability of each interval (all together with ``union_bound``).
            Default 0.05.
        union_bound: Divide ``delta`` among the players. Default ``False``.
        batch_size: Coalitions per batch of walk steps. Default 32.
        n_players: Number of players, only for a plain callable ``game``.
        **engine: Further options of ``ns.permutation_semivalue``.

    Returns:
        A ``ShapleyResult`` (``estimator="beta_shapley"``); ``params["semivalue"]`` records
        alpha, beta, the tail, W and the weight left out.
    """
    owner = "beta_shapley"
    alpha, beta = _check_alpha_beta(alpha, beta, owner)
    metric_range = _check_range(metric_range, owner)
    game = as_game(game, n_players, owner)
    return permutation_semivalue(
        game,
        beta_size_weights(game.n_players, alpha, beta),
        n_permutations,
        tail=tail,
        estimator=owner,
        semivalue_name="beta",
        semivalue_params={"alpha": alpha, "beta": beta},
        delta=delta,
        bound="bernstein",
        value_range=2.0 * metric_range,
        union_bound=union_bound,
        batch_size=batch_size,
        seed=seed,
        **engine,
    )


BANZHAF_CHECKPOINT = "coalitions.npz"
"""The file ``data_banzhaf`` checkpoints into (in its ``checkpoint`` directory)."""
_BANZHAF_CHECKPOINT_VERSION = 1
# With no time budget, a call to the game holds about this many seconds of coalitions (from
# the measured cost), so progress and checkpoints come that often; MSR's values do not depend
# on how the coalitions are cut into calls.
_CALL_SECONDS = 2.0


def data_banzhaf(
    game: Game | Callable[..., Any],
    *,
    n_samples: int = 1000,
    seed: int = 0,
    metric_range: float = 1.0,
    delta: float = 0.05,
    union_bound: bool = False,
    batch_size: int = 4096,
    n_players: int | None = None,
    max_evaluations: int | None = None,
    max_seconds: float | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: float = 60.0,
    resume: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
) -> ShapleyResult:
    """Data Banzhaf values by maximum sample reuse (Wang & Jia 2023, Algorithm 1).

    ``n_samples`` coalitions, each player in independently with probability 1/2 (drawn from
    ``numpy.random.default_rng(seed)``, row after row, so the first m coalitions are the same
    for any ``n_samples``); player i's value is the mean V of the coalitions holding i minus
    the mean V of those without it. Given how many hold i, each side is a mean of i.i.d.
    values in an interval of width ``metric_range``, so each gets an empirical Bernstein
    half-width at ``delta / 2`` and the interval is their sum.

    A player on one side of every sample (likely only below ~30 samples) gets the value 0 and
    the interval ``[-metric_range, metric_range]``, which holds every Banzhaf value.

    A budget stops the run after a whole number of coalitions (a fixed number, independent of
    the values, so the estimate stays unbiased); ``checkpoint`` keeps the values of the
    coalitions evaluated so far (every ``checkpoint_every`` seconds and at the end, also after
    Ctrl-C), and ``resume`` evaluates only the rest, to the values of an uninterrupted run.

    The result is a difference of two means, not a mean of samples: do not ``merge`` two of
    them (draw one run with more samples, or resume it with a larger ``n_samples``).

    Args:
        game: A ``Game`` (e.g. a ``DataGame``) or a callable (then ``n_players``).
        n_samples: Coalitions drawn. Default 1000.
        seed: Seed of the coalitions. Default 0.
        metric_range: Width M of the interval V's values lie in (accuracy: 1). Default 1.
        delta: Failure probability of each interval (all together with ``union_bound``).
            Default 0.05.
        union_bound: Divide ``delta`` among the players. Default ``False``.
        batch_size: The most coalitions per call to the game. Default 4096.
        n_players: Number of players, only for a plain callable ``game``.
        max_evaluations: Stop after this many coalitions in all (over a resumed run).
        max_seconds: Stop after this much wall time in this call.
        checkpoint: Directory to keep the evaluated coalitions' values in
            (``coalitions.npz``).
        checkpoint_every: Seconds between checkpoints. Default 60.
        resume: Directory of a checkpoint to continue from (same game, seed and player count;
            ``n_samples`` and the budgets may grow).
        progress: Called after every call to the game with a ``Progress`` (``n_permutations``
            counts the coalitions).

    Returns:
        A ``ShapleyResult`` (``estimator="data_banzhaf"``); ``n_samples`` per player is the
        smaller of its two sides, ``stderr`` that of the difference; ``stop_reason`` is
        ``"n_samples"``, ``"max_evaluations"``, ``"max_seconds"`` or ``"interrupted"``.
    """
    owner = "data_banzhaf"
    n_samples = int(check_int(n_samples, "n_samples", owner, min_value=2))  # type: ignore[arg-type]
    seed = int(check_int(seed, "seed", owner, min_value=0))  # type: ignore[arg-type]
    metric_range = _check_range(metric_range, owner)
    batch_size = int(check_int(batch_size, "batch_size", owner, min_value=1))  # type: ignore[arg-type]
    rule = IntervalRule("bernstein", delta, metric_range, union_bound).check(owner)
    budget = Budget.from_arguments(owner, None, max_evaluations, max_seconds)
    persistence = Persistence.from_arguments(owner, checkpoint, checkpoint_every, resume)
    check_progress(progress, owner)
    game = as_game(game, n_players, owner)
    n = game.n_players
    fingerprint = game_fingerprint(game)
    started = time.perf_counter()
    loaded, elapsed_before = np.zeros(0), 0.0
    if persistence.resume is not None:
        loaded, elapsed_before = _load_coalitions(
            persistence.resume, seed=seed, n_players=n, fingerprint=fingerprint
        )
    utilities = loaded[:n_samples]
    masks = np.random.default_rng(seed).random((n_samples, n)) < 0.5
    left = None if budget.max_evaluations is None else budget.max_evaluations - len(utilities)
    evaluator = Evaluator(game, None if left is None else max(left, 0), budget.max_seconds)
    parts, done = [utilities], len(utilities)
    side_delta = rule.delta / (n if union_bound else 1) / 2.0
    stop_reason, last_saved = "n_samples", time.perf_counter()

    def save() -> None:
        if persistence.checkpoint is not None:
            elapsed = elapsed_before + time.perf_counter() - started
            # A resume with a smaller n_samples evaluates nothing new: the checkpoint keeps
            # every coalition it held (paid for, one model fit each), not just those used.
            kept = np.concatenate(parts)
            if len(loaded) > len(kept):
                kept = loaded
            _save_coalitions(persistence.checkpoint, kept, seed, n, fingerprint, elapsed)

    try:
        while done < n_samples:
            remaining = evaluator.remaining()
            if remaining == 0:
                stop_reason = "max_evaluations"
                break
            if evaluator.out_of_time():
                stop_reason = "max_seconds"
                break
            measured = evaluator.seconds_per_evaluation()
            size = min(batch_size, n_samples - done)
            if measured is not None and measured > 0 and budget.max_seconds is None:
                size = min(size, max(1, int(_CALL_SECONDS / measured)))
            if remaining is not None:
                size = min(size, remaining)
            values = evaluator.in_calls(masks[done : done + size], batch_size, None)
            parts.append(np.asarray(values, dtype=np.float64))
            done += len(values)
            if progress is not None:
                so_far = np.concatenate(parts)
                progress(
                    Progress(
                        n_evaluations=done,
                        n_permutations=done,
                        elapsed_seconds=elapsed_before + time.perf_counter() - started,
                        values=_msr_sides(masks[:done], so_far, side_delta, metric_range)[0],
                        n_undecided=None,
                        max_evaluations=budget.max_evaluations,
                        max_seconds=budget.max_seconds,
                    )
                )
            if time.perf_counter() - last_saved >= persistence.checkpoint_every:
                save()
                last_saved = time.perf_counter()
    except KeyboardInterrupt:  # Ctrl-C: keep the coalitions evaluated so far
        stop_reason = "interrupted"
    save()
    utilities = np.concatenate(parts)
    values, half, squared_error, n_each, seen = _msr_sides(
        masks[: len(utilities)], utilities, side_delta, metric_range
    )
    stderr = np.where(seen, np.sqrt(squared_error), np.inf)
    return ShapleyResult(
        values=values,
        stderr=stderr,
        ci_low=values - half,
        ci_high=values + half,
        n_samples=n_each,
        variance=np.where(seen, squared_error * n_each, 0.0),
        player_names=list(game.player_names),
        n_evaluations=len(utilities),
        estimator=owner,
        params={
            "n_samples": n_samples,
            "bound": rule.bound,
            "delta": rule.delta,
            "value_range": rule.value_range,
            "union_bound": rule.union_bound,
        },
        seed=seed,
        stop_reason=stop_reason,
        elapsed_seconds=elapsed_before + time.perf_counter() - started,
        diagnostics={"players_unseen_on_a_side": int((~seen).sum())},
        groups=player_groups(game),
        game_fingerprint=fingerprint,
    )


def _msr_sides(
    masks: NDArray[np.bool_], utilities: NDArray[np.float64], side_delta: float, width: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], Any]:
    """MSR's values from the coalitions so far: the mean V with each player minus the mean
    without it, the half-width (an empirical Bernstein one per side at ``side_delta``, summed;
    the trivial ``width`` for a player seen on one side only), the squared standard error of
    the difference, the smaller side's count, and which players were seen on both sides."""
    sides = []
    for holds in (masks, ~masks):
        count = holds.sum(axis=0).astype(np.int64)
        total = utilities @ holds
        mean = total / np.maximum(count, 1)
        squares = (utilities**2) @ holds
        variance = np.where(count > 1, (squares - count * mean**2) / np.maximum(count - 1, 1), 0.0)
        variance = np.maximum(variance, 0.0)  # rounding
        half = confidence_halfwidth(
            count, variance, delta=side_delta, bound="bernstein", value_range=width
        )
        sides.append((count, mean, variance, half))
    (count_in, mean_in, var_in, half_in), (count_out, mean_out, var_out, half_out) = sides
    seen = (count_in > 0) & (count_out > 0)
    values = np.where(seen, mean_in - mean_out, 0.0)
    half = np.where(seen, np.minimum(half_in + half_out, 2.0 * width), width)
    squared_error = var_in / np.maximum(count_in, 1) + var_out / np.maximum(count_out, 1)
    return values, half, squared_error, np.minimum(count_in, count_out), seen


def _save_coalitions(
    directory: Path,
    utilities: NDArray[np.float64],
    seed: int,
    n_players: int,
    fingerprint: str,
    elapsed: float,
) -> None:
    """Write the values of the first ``len(utilities)`` coalitions, atomically."""
    record = {
        "checkpoint_version": _BANZHAF_CHECKPOINT_VERSION,
        "estimator": "data_banzhaf",
        "seed": seed,
        "n_players": n_players,
        "game_fingerprint": fingerprint,
        "elapsed_seconds": elapsed,
    }
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(
        directory / BANZHAF_CHECKPOINT,
        lambda file: np.savez(file, record=np.array(json.dumps(record)), utilities=utilities),
    )


def _load_coalitions(
    directory: Path, *, seed: int, n_players: int, fingerprint: str
) -> tuple[NDArray[np.float64], float]:
    """The saved values and elapsed seconds of ``directory``'s checkpoint, refusing another
    run's (a damaged file, another game, seed or player count)."""
    path = directory / BANZHAF_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(
            f"The 'resume' parameter of data_banzhaf points at {directory}, which holds no "
            f"checkpoint ({BANZHAF_CHECKPOINT}, written when checkpoint= is given)."
        )
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            record = json.loads(str(data["record"]))
            utilities = np.asarray(data["utilities"], dtype=np.float64)
        expected = {"estimator": "data_banzhaf", "checkpoint_version": 1}
        if any(record.get(key) != value for key, value in expected.items()):
            raise ValueError("not a data_banzhaf checkpoint of this version")
    except Exception as error:  # BadZipFile, EOFError, KeyError, JSON, the check above
        raise CheckpointError(
            f"The checkpoint {path} is damaged or not data_banzhaf's and cannot be read "
            f"({type(error).__name__}: {error}); start the run again without resuming."
        ) from None
    for key, value in (("n_players", n_players), ("seed", seed)):
        if record.get(key) != value:
            raise CheckpointError(
                f"The checkpoint in {directory} was made with {key}={record.get(key)!r}; this "
                f"call has {key}={value!r}. Resume with the same parameters."
            )
    if record.get("game_fingerprint") != fingerprint:
        raise CheckpointError(
            f"The checkpoint in {directory} belongs to another game: the players match in "
            "number, but the game differs. Resume it with the game it was made with."
        )
    return utilities, float(record.get("elapsed_seconds", 0.0))


def leave_one_out_values(
    game: Game | Callable[..., Any], *, n_players: int | None = None
) -> ShapleyResult:
    """Leave-one-out values ``V(N) - V(N \\ {i})``, exact, with ``n + 1`` evaluations in one call.

    Args:
        game: A ``Game`` (e.g. a ``DataGame``) or a callable (then ``n_players``).
        n_players: Number of players, only for a plain callable ``game``.
    """
    owner = "leave_one_out_values"
    game = as_game(game, n_players, owner)
    n = game.n_players
    started = time.perf_counter()
    evaluator = Evaluator(game)
    coalitions = np.ones((n + 1, n), dtype=bool)
    coalitions[np.arange(1, n + 1), np.arange(n)] = False  # row 0: N; row i + 1: N \ {i}
    values = evaluator(coalitions)
    phi = values[0] - values[1:]
    zeros = np.zeros(n)
    return ShapleyResult(
        values=phi,
        stderr=zeros,
        ci_low=phi.copy(),
        ci_high=phi.copy(),
        n_samples=np.ones(n, dtype=np.int64),
        variance=zeros.copy(),
        player_names=list(game.player_names),
        n_evaluations=evaluator.n_evaluations,
        estimator=owner,
        params={},
        seed=None,
        stop_reason="complete",
        elapsed_seconds=time.perf_counter() - started,
        groups=player_groups(game),
        game_fingerprint=game_fingerprint(game),
    )


def _check_alpha_beta(alpha: Any, beta: Any, owner: str) -> tuple[float, float]:
    return (
        float(check_float(alpha, "alpha", owner, low=0.0, include_low=False)),  # type: ignore[arg-type]
        float(check_float(beta, "beta", owner, low=0.0, include_low=False)),  # type: ignore[arg-type]
    )


def _check_range(metric_range: Any, owner: str) -> float:
    return float(check_float(metric_range, "metric_range", owner, low=0.0, include_low=False))  # type: ignore[arg-type]
