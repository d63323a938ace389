"""Experimental: TMAB's top-k race with the boundary decided by direct differences (issue 18).

TMAB (``bandit``) decides each player against a threshold c: the top k are right (no excluded
player beats a returned one by more than 2 tol) once every returned player has
lower_a + tol >= c and every other upper_b - tol <= c. That asks each interval to clear c, so
the k-th and (k+1)-th players, a gap g apart, need half-widths below about g / 2 each, from
marginals whose variance is that of a whole marginal contribution.

The condition that matters is pairwise: for every returned a and excluded b, s_a - s_b >= -2 tol.
This race certifies a pair (a, b) in either of two ways:

- by the players' own intervals: lower_a - upper_b >= -2 tol (what TMAB's threshold rule
  implies, and a little more);
- by a direct interval on s_a - s_b from Theorem 10.2.8's samples U(S + a) - U(S + b)
  (``differences``, 2 evaluations each): its lower end >= -2 tol.

Each round it finds the pairs (returned, excluded) that neither certifies. If there are at most
``max_pairs`` of them it samples those pairs directly (``pair_samples`` each); otherwise, or if a
pair's own interval says the excluded player is the better one (the ranking by means must move
first), it walks ``n_walks`` permutations sampling the players of those pairs that TMAB's rule
(midpoint threshold) leaves undecided, or all of them if it leaves none. It stops
``"separated"`` when every pair is certified.

The guarantee is TMAB's: with probability at least 1 - delta every certificate is true, so the
returned top k is right up to 2 tol. Half of delta goes to the players' anytime intervals
(``bound="anytime"``, divided among the n players) and half to the pairs' anytime intervals,
divided among all n (n - 1) / 2 pairs that could ever be sampled (which pairs are sampled
depends on the data; the union over all of them does not). A pair's samples are independent
draws from w whenever they are drawn, so its confidence sequence holds at every sample size,
under this adaptive schedule too. The samples of a pair lie in an interval of width 2R.

Not in the round engine: no checkpoint, resume, backend or truncation; for measurement
(benchmarks/differences.py, docs/efficiency.md).
"""

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import check_float, check_int
from neuronshapley.estimators.bandit import undecided_players
from neuronshapley.estimators.differences import _sample_pairs
from neuronshapley.estimators.driver import seed_entropy
from neuronshapley.estimators.options import Sampling
from neuronshapley.estimators.walks import Endpoints, Evaluator, Walker, WalkRange
from neuronshapley.games.base import Game, as_game, game_fingerprint, player_groups
from neuronshapley.results.bounds import IntervalRule, confidence_halfwidth
from neuronshapley.results.result import ShapleyResult, result_from_stats
from neuronshapley.results.stats import RunningStats


def difference_race(
    game: Game | Callable[..., Any],
    k: int,
    *,
    value_range: float,
    delta: float = 0.05,
    tol: float = 1e-3,
    max_pairs: int = 16,
    pair_samples: int = 32,
    max_evaluations: int | None = None,
    n_walks: int = 8,
    batch_size: int = 32,
    seed: int | Any = None,
    n_players: int | None = None,
) -> ShapleyResult:
    """The top ``k`` players, their boundary decided by direct differences (experimental).

    Args:
        game: A ``Game`` or a callable ``bool[n_coalitions, n_players] -> float[n_coalitions]``.
        k: How many players to separate, 1 <= k < n_players.
        value_range: Range R of a marginal contribution (required: the guarantee needs it).
        delta: The returned top k is wrong (beyond 2 tol) with probability at most ``delta``.
            Default 0.05.
        tol: Values closer than ``2 tol`` count as ties. Default 1e-3.
        max_pairs: Sample the open pairs directly once there are at most this many. Default 16.
        pair_samples: Direct samples per open pair and round. Default 32.
        max_evaluations: Stop before evaluating more coalitions. Default ``None``.
        n_walks: Permutations per walking round. Default 8.
        batch_size: Coalitions per call to the game. Default 32.
        seed: Int or ``numpy.random.Generator``. Default ``None``: fresh entropy, recorded.
        n_players: Number of players, only for a plain callable ``game``.

    Returns:
        A ``ShapleyResult`` of the players' own estimates (anytime intervals at delta / 2 for
        all players at once); ``stop_reason`` ``"separated"`` when every pair is certified;
        ``diagnostics`` counts the evaluations spent on pairs and the pairs certified by them.
    """
    owner = "difference_race"
    game = as_game(game, n_players, owner)
    n = game.n_players
    if n < 2:
        raise ValueError(f"{owner} needs at least 2 players to separate a top k. Got {n}.")
    k = int(check_int(k, "k", owner, min_value=1, max_value=n - 1))  # type: ignore[arg-type]
    tol = float(check_float(tol, "tol", owner, low=0.0))  # type: ignore[arg-type]
    max_pairs = int(check_int(max_pairs, "max_pairs", owner, min_value=0))  # type: ignore[arg-type]
    pair_samples = int(check_int(pair_samples, "pair_samples", owner, min_value=1))  # type: ignore[arg-type]
    check_int(max_evaluations, "max_evaluations", owner, min_value=3, allow_none=True)
    # Required, not a heuristic: the guarantee holds only with a true range.
    check_float(value_range, "value_range", owner, low=0.0, include_low=False)
    player_rule = IntervalRule("anytime", delta / 2.0, value_range, True).check(owner)
    R = float(player_rule.value_range)  # type: ignore[arg-type]
    # The pairs' share of delta, divided among every pair that could be sampled.
    pair_delta = (player_rule.delta) / (n * (n - 1) / 2.0)
    entropy = seed_entropy(seed, owner)
    started = time.perf_counter()
    evaluator = Evaluator(game, max_evaluations)
    ends = evaluator(np.stack((np.ones(n, dtype=bool), np.zeros(n, dtype=bool))))
    endpoints = Endpoints(float(ends[0]), float(ends[1]))
    first_guess = (endpoints.v_full - endpoints.v_empty) / n
    walker = Walker(
        evaluator,
        entropy,
        endpoints,
        Sampling.from_arguments(owner, False, batch_size, n_walks),
        None,
    )
    stats = RunningStats.zeros(n, ordered=True)
    pair_stats: dict[tuple[int, int], RunningStats] = {}
    next_walk, pair_round, pair_evaluations = 0, 0, 0
    stop_reason = "max_evaluations"
    certified_by_pairs = 0
    while True:
        half, _ = player_rule.halfwidth(stats)
        lower, upper = stats.mean - half, stats.mean + half
        top = np.argsort(-stats.mean, kind="stable")[:k]
        rest = np.setdiff1d(np.arange(n), top)
        open_a, open_b = np.nonzero(lower[top][:, None] - upper[rest][None, :] < -2.0 * tol)
        open_pairs = np.column_stack((top[open_a], rest[open_b]))
        still_open, refuted = _pair_certificates(pair_stats, open_pairs, tol, R, pair_delta)
        certified_by_pairs = len(open_pairs) - len(still_open)
        if len(still_open) == 0:
            stop_reason = "separated"
            break
        remaining = evaluator.remaining()
        if len(still_open) <= max_pairs and not refuted:
            cost = 2 * pair_samples * len(still_open)
            if remaining is not None and remaining < cost:
                break
            round_entropy = int(
                np.random.SeedSequence(entropy, spawn_key=(2, pair_round)).generate_state(1)[0]
            )
            pair_round += 1
            # Key (min, max): one sample stream per unordered pair, its sign fixed.
            low_high = np.sort(still_open, axis=1)
            before = evaluator.n_evaluations
            block = _sample_pairs(evaluator, low_high, pair_samples, round_entropy, batch_size)
            pair_evaluations += evaluator.n_evaluations - before
            for row, (a, b) in enumerate(low_high.tolist()):
                one = RunningStats(
                    block.count[row : row + 1],
                    block.mean[row : row + 1],
                    block.m2[row : row + 1],
                    block.sample_min,
                    block.sample_max,
                )
                known = pair_stats.get((a, b), RunningStats.zeros(1, ordered=True))
                pair_stats[(a, b)] = known.merge(one, first_guess=0.0)  # a difference: 0 in range
            continue
        # Walk TMAB's undecided players among those of the open pairs (a decided player in an
        # open pair waits for its partner); all of them if TMAB would walk none.
        involved = np.zeros(n, dtype=bool)
        involved[still_open.reshape(-1)] = True
        undecided, _ = undecided_players(
            stats.mean, half, k=k, side="top", tol=tol, rule="midpoint"
        )
        sampled = involved & undecided if np.any(involved & undecided) else involved
        outcome = walker.walk(WalkRange(next_walk, n_walks, sampled))
        if not outcome.complete:
            break
        stats = stats.merge(outcome.stats, first_guess=first_guess)
        next_walk += n_walks
    result = result_from_stats(
        stats,
        rule=player_rule,
        player_names=list(game.player_names),
        n_evaluations=evaluator.n_evaluations,
        estimator=owner,
        params={
            "k": k,
            "tol": tol,
            "max_pairs": max_pairs,
            "pair_samples": pair_samples,
            "n_walks": n_walks,
            "batch_size": batch_size,
            "bound": player_rule.bound,
            "delta": player_rule.delta,
            "value_range": R,
            "union_bound": True,
        },
        seed=entropy,
        stop_reason=stop_reason,
        elapsed_seconds=time.perf_counter() - started,
        diagnostics={
            "n_walks": next_walk,
            "pair_evaluations": pair_evaluations,
            "n_pairs_sampled": len(pair_stats),
            "n_pairs_certified_by_differences": certified_by_pairs,
        },
        groups=player_groups(game),
        game_fingerprint=game_fingerprint(game),
    )
    return result


def _pair_certificates(
    pair_stats: dict[tuple[int, int], RunningStats],
    open_pairs: NDArray[np.intp],
    tol: float,
    value_range: float,
    pair_delta: float,
) -> tuple[NDArray[np.intp], bool]:
    """The open (returned, excluded) pairs that no direct interval certifies, and whether a
    direct interval says an excluded player beats a returned one by more than 2 tol."""
    keep = []
    refuted = False
    for a, b in open_pairs.tolist():
        key = (min(a, b), max(a, b))
        stats = pair_stats.get(key)
        if stats is None:
            keep.append(True)
            continue
        sign = 1.0 if a < b else -1.0  # the stream estimates s_min - s_max
        half = confidence_halfwidth(
            stats.count,
            stats.variance,
            delta=pair_delta,
            bound="anytime",
            value_range=2.0 * value_range,
            variance_process=stats.variance_process,
        )[0]
        difference = sign * float(stats.mean[0])
        keep.append(difference - half < -2.0 * tol)
        refuted = refuted or difference + half < -2.0 * tol
    rows = np.asarray(keep, dtype=bool)
    return open_pairs[rows] if len(open_pairs) else open_pairs, refuted
