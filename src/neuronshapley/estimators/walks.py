"""Permutation walks: the sampling engine behind permutation, truncated and TMAB Shapley.

A walk takes a random permutation pi and removes its players one by one from the full set, as the
original Neuron Shapley code did: after t removals the coalition is C_t = N minus pi[:t], and the
player removed at step t+1 has the marginal contribution V(C_t) - V(C_{t+1}). Walking down from N
and walking up from the empty set along the reversed permutation give the same samples (a reversed
uniform permutation is uniform), so every marginal is an unbiased sample of eq. (2) of
Ghorbani & Zou (2020).

Only the marginals of *sampled* players are recorded (TMAB samples the undecided ones). A walk
evaluates exactly the coalitions those players need, C_q and C_{q+1} for a player at position q;
the players in between are removed without evaluation, at the price of one extra evaluation where
the walk resumes (as in the original code). Early truncation (appendix B) ends a walk once
``patience`` consecutive evaluated coalitions are dead; the players removed after that point get a
zero marginal, a bias that the intervals bound (``results.tails``).

With ``Truncation.continue_probability`` = p the truncation is unbiased (Russian roulette, as in
Monte Carlo transport): at the truncation point t* the walk flips a coin, goes on to the end with
probability p and weights every marginal of its tail (positions q >= t*) by 1/p, or stops with
probability 1 - p and records 0 for them. The truncation point depends only on the permutation
and the coin is independent of it, so for every permutation the expected sample of a tail player
is p (x / p) + (1 - p) 0 = x, its marginal: each sample is unbiased, whatever the game. The price
is variance (a tail sample is x / p or 0) and a wider range, R / p, for the intervals. The coin of
walk j is the first draw of its own stream, ``SeedSequence(entropy, spawn_key=(j, 1))``, so a
range gives the same coins wherever it is walked.

Walks run in *rounds* of a few permutations whose coalitions share batches, so that a game (a
PyTorch model) answers many coalitions per call. Permutation number j is drawn from its own seed,
``SeedSequence(entropy, spawn_key=(j,))``, so any range of permutations can be walked anywhere
(a resumed run, another worker) and the statistics merged exactly.
"""

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley.estimators.options import Sampling, Truncation, call_size
from neuronshapley.games.base import BaseGame, Game, check_values
from neuronshapley.results.stats import RunningStats
from neuronshapley.results.tails import TailBounds
from neuronshapley.typing import CoalitionMatrix, GameValues

# With truncation, the fewest rows a walk gets in a shared batch (see Walker._walk).
MIN_SHARE = 8


def uses_contexts(game: Game) -> bool:
    """Whether ``game`` scores each walk on its own data (``value_in_contexts``).

    Such a game (e.g. a ``NeuronGame`` that draws fresh examples per permutation, as the
    original Neuron Shapley code did) is asked ``value_in_contexts(coalitions, contexts)`` with
    the permutation number of every row, so that all coalitions of one walk, V(N) and V(empty)
    included, are scored on the same data and their differences stay paired.
    """
    return bool(getattr(game, "uses_contexts", False)) and hasattr(game, "value_in_contexts")


class Evaluator:
    """Calls the game, checks what it returns, and enforces the evaluation and time budget."""

    def __init__(
        self, game: Game, max_evaluations: int | None = None, max_seconds: float | None = None
    ) -> None:
        self.game = game
        self.max_evaluations = max_evaluations
        self.max_seconds = max_seconds
        self.n_evaluations = 0
        self.started = time.perf_counter()
        # The measured cost of the coalitions this process evaluated (not a backend's).
        self.seconds_in_game, self.n_timed = 0.0, 0
        # BaseGame.value already checks what _value returns; other games are checked here.
        self._checked = type(game).value is BaseGame.value

    def __call__(
        self, coalitions: CoalitionMatrix, contexts: NDArray[np.int64] | None = None
    ) -> GameValues:
        started = time.perf_counter()
        if contexts is None:
            values = self.game.value(coalitions)
        else:
            values = self.game.value_in_contexts(coalitions, contexts)  # type: ignore[attr-defined]
        if not self._checked:
            values = check_values(values, len(coalitions), lambda: f"The game {self.game!r}")
        self.seconds_in_game += time.perf_counter() - started
        self.n_timed += len(coalitions)
        self.n_evaluations += len(coalitions)
        return values

    def seconds_per_evaluation(self) -> float | None:
        """The measured cost of one coalition in this call (``None`` before the first)."""
        return self.seconds_in_game / self.n_timed if self.n_timed else None

    def in_calls(
        self, coalitions: CoalitionMatrix, batch_size: int, contexts: NDArray[np.int64] | None
    ) -> GameValues:
        """The values of ``coalitions`` (one planned batch), in calls of :func:`call_size`.

        Without a time budget, one call. With one, calls short enough that the budget, checked
        between them, overshoots by one call at most; a call of 2 coalitions first measures the
        cost where nothing was measured yet (a resumed run). Returns the values of the rows
        evaluated before the time ran out (all of them if it did not): a prefix.
        """
        if self.max_seconds is None:
            return self(coalitions, contexts)
        parts, done = [], 0
        while done < len(coalitions):
            if done and self.out_of_time():
                break
            measured = self.seconds_per_evaluation()
            size = 2 if measured is None else call_size(batch_size, measured, self.max_seconds)
            stop = min(done + size, len(coalitions))
            part = None if contexts is None else contexts[done:stop]
            parts.append(np.asarray(self(coalitions[done:stop], part)))
            done = stop
        return np.concatenate(parts)

    def remaining(self) -> int | None:
        """Evaluations left in the budget (``None``: unlimited)."""
        if self.max_evaluations is None:
            return None
        return max(self.max_evaluations - self.n_evaluations, 0)

    def out_of_time(self) -> bool:
        return self.max_seconds is not None and self.elapsed() >= self.max_seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def permutation(entropy: int, index: int, n_players: int) -> NDArray[np.intp]:
    """Permutation number ``index`` of the stream ``entropy``: the order players are removed."""
    rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(index,)))
    return rng.permutation(n_players)


def continue_draw(entropy: int, index: int) -> float:
    """Walk number ``index``'s uniform draw for the unbiased truncation (its own stream)."""
    return float(
        np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(index, 1))).random()
    )


def rank_dtype(n_players: int) -> type[np.unsignedinteger[Any]]:
    # Comparing 16-bit ranks builds the coalition masks twice as fast as 32-bit ones.
    return np.uint16 if n_players < 2**16 else np.uint32


class Walk:
    """One permutation walked from the full set down, evaluating only what is needed."""

    __slots__ = (
        "context",
        "cursor",
        "needed",
        "order",
        "own_endpoints",
        "position_weights",
        "ranks",
        "streak",
        "tail_weight",
        "truncated_at",
        "values",
        "weighted_from",
    )

    def __init__(
        self,
        order: NDArray[np.intp],
        sampled: NDArray[np.bool_] | None,
        context: int | None = None,
        tail_weight: float | None = None,
        position_weights: NDArray[np.float64] | None = None,
    ) -> None:
        n = len(order)
        dtype = rank_dtype(n)
        self.order = order
        self.ranks = np.empty(n, dtype=dtype)
        self.ranks[order] = np.arange(n, dtype=dtype)
        # A walk with its own data (a context) evaluates its own V(N) and V(empty): prefixes
        # 0 and n. Otherwise those two are the run's, evaluated once.
        self.context = context
        self.own_endpoints = context is not None
        low, high = (0, n) if self.own_endpoints else (1, n - 1)
        # A semivalue's weights (``Semivalue.position_weights``): positions of weight 0 record
        # a zero sample without being evaluated.
        self.position_weights = position_weights
        if sampled is None and position_weights is None:
            needed = np.arange(low, high + 1)
        else:
            positions = np.arange(n) if sampled is None else np.flatnonzero(sampled[order])
            if position_weights is not None:
                positions = positions[position_weights[positions] != 0]
            needed = np.union1d(positions, positions + 1)
            needed = needed[(needed >= low) & (needed <= high)]
        # Prefix lengths t whose coalition C_t = {i : rank_i >= t} must be evaluated, in order.
        self.needed = needed.astype(dtype)
        self.values = np.empty(len(needed), dtype=np.float64)
        self.cursor = 0
        self.streak = 0
        self.truncated_at: int | None = None
        # 1/p if this walk's coin says it goes on past its truncation point (then from the
        # prefix ``weighted_from`` on its marginals are weighted by it), else None.
        self.tail_weight = tail_weight
        self.weighted_from: int | None = None

    @property
    def done(self) -> bool:
        return self.truncated_at is not None or self.cursor == len(self.needed)

    def fill(self, out: CoalitionMatrix, count: int) -> int:
        """Write the next ``count`` needed coalitions into ``out``; return how many were written."""
        prefixes = self.needed[self.cursor : self.cursor + count]
        np.greater_equal(self.ranks[None, :], prefixes[:, None], out=out[: len(prefixes)])
        return len(prefixes)

    def receive(
        self, values: GameValues, truncation: Truncation | None, v_full: float, v_empty: float
    ) -> None:
        """Store the values of the coalitions last filled and apply early truncation."""
        start, count = self.cursor, len(values)
        self.values[start : start + count] = values
        self.cursor = start + count
        if truncation is None or self.weighted_from is not None:
            return
        dead = truncation.dead(values, v_full, v_empty)
        if not dead.any():
            self.streak = 0
            return
        if dead.all():
            streak_end = self.streak + count
            if streak_end >= truncation.patience:
                self._truncate(start + truncation.patience - self.streak - 1)
            else:
                self.streak = streak_end
            return
        index = np.arange(count)
        last_alive = np.maximum.accumulate(np.where(dead, -1, index))
        streak = np.where(last_alive >= 0, index - last_alive, self.streak + index + 1)
        hits = np.flatnonzero(streak >= truncation.patience)
        if hits.size:
            self._truncate(start + int(hits[0]))
        else:
            self.streak = int(streak[-1])

    def _truncate(self, index: int) -> None:
        if self.tail_weight is not None:
            # The coin says go on: the values after this point (same batch) are used.
            self.weighted_from = int(self.needed[index])
            return
        # Values evaluated after the truncation point (same batch) are paid for but not used,
        # so the marginals do not depend on the batch size.
        self.truncated_at = int(self.needed[index])
        self.cursor = index + 1

    def marginals(
        self, sampled: NDArray[np.bool_] | None, v_full: float, v_empty: float
    ) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
        """Players whose marginal this walk measured, and those marginals."""
        players, contributions, _ = self.measure(sampled, v_full, v_empty)
        return players, contributions

    def measure(
        self, sampled: NDArray[np.bool_] | None, v_full: float, v_empty: float
    ) -> tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]]:
        """:meth:`marginals`, and for each what the truncated tail may hide: its total
        M = V(C_{t*}) - V(empty) for the players the walk did not reach (recorded as 0), else 0.
        A walk with its own data (a context) has no V(empty) of its own when truncated; the
        run's stands in for it."""
        n = len(self.order)
        evaluated = self.needed[: self.cursor].astype(np.intp)
        complete = self.cursor == len(self.needed) and self.truncated_at is None
        if self.own_endpoints:
            prefixes, values = evaluated, self.values[: self.cursor]
            if complete and (len(prefixes) == 0 or prefixes[-1] != n):
                # The last sampled player sits before the end: no marginal needs V(empty).
                complete = False
        else:
            prefixes = np.concatenate(([0], evaluated, [n] if complete else []))
            values = np.concatenate(
                ([v_full], self.values[: self.cursor], [v_empty] if complete else [])
            )
        positions = np.arange(n) if sampled is None else np.flatnonzero(sampled[self.order])
        unweighted = np.zeros(0, dtype=np.intp)
        if self.position_weights is not None:
            # Positions of weight 0 were not evaluated: their sample is 0 once the walk is over.
            zero = self.position_weights[positions] == 0
            if self.cursor == len(self.needed):
                unweighted = positions[zero]
            positions = positions[~zero]
        # The last prefix whose value is known: a marginal at position q needs C_q and C_{q+1}.
        limit = n if complete else (int(prefixes[-1]) if len(prefixes) else 0)
        measured = positions[positions + 1 <= limit]
        before = np.searchsorted(prefixes, measured)
        contributions = values[before] - values[before + 1]
        if self.position_weights is not None:
            contributions *= self.position_weights[measured]
            measured = np.concatenate((measured, unweighted))
            contributions = np.concatenate((contributions, np.zeros(len(unweighted))))
        if self.weighted_from is not None and self.tail_weight is not None:
            tail = measured >= self.weighted_from
            contributions[tail] *= self.tail_weight
        hidden = np.zeros(len(measured))
        if self.truncated_at is not None:
            dead = positions[positions >= self.truncated_at]
            measured = np.concatenate((measured, dead))
            contributions = np.concatenate((contributions, np.zeros(len(dead))))
            # _truncate left the cursor just past the truncation point's value.
            total = float(self.values[self.cursor - 1]) - v_empty
            hidden = np.concatenate((hidden, np.full(len(dead), total)))
        return self.order[measured], contributions, hidden


@dataclass(frozen=True)
class WalkRange:
    """A unit of work: permutations ``first .. first + count - 1`` of a run's stream.

    A range is identified by its indices, so it is the same work wherever and however often it
    runs: walking it twice gives the same statistics, and ranges merge exactly.

    Attributes:
        first: Index of the first permutation.
        count: Number of permutations (even with antithetic sampling, from an even ``first``).
        sampled: Players whose marginals are recorded (``None``: every player).
    """

    first: int
    count: int
    sampled: NDArray[np.bool_] | None = None


@dataclass
class RangeStats:
    """What walking a :class:`WalkRange` measured: mergeable statistics and counters.

    Attributes:
        work: The range walked.
        stats: The marginals of its sampled players.
        n_evaluations: Coalitions it evaluated (including any the truncation did not use).
        n_walks_truncated: Its walks that ended early on a dead network.
        removed_fraction_sum: Sum over those walks of the fraction of players removed.
        complete: ``False`` if a budget stopped it part way (its marginals are then those of
            the walks' first steps only, and a resumed run walks the whole range again).
        tails: With plain truncation, the bounds on what its truncated tails hide
            (``results.tails``); ``None`` otherwise.
        n_walks_continued: Its walks that went on past their truncation point
            (``continue_probability``).
    """

    work: WalkRange
    stats: RunningStats
    n_evaluations: int
    n_walks_truncated: int
    removed_fraction_sum: float
    complete: bool
    tails: TailBounds | None = None
    n_walks_continued: int = 0


@dataclass(frozen=True)
class Endpoints:
    """V(N) and V(empty), evaluated once per run: the two ends of every walk."""

    v_full: float
    v_empty: float


class Walker:
    """Walks ranges of permutations of one run: the pure step a scheduler drives.

    ``walk(work)`` depends only on the game, the run's ``entropy``, its endpoints, the sampling
    options and the range, so a range can be walked anywhere (a resumed run, another worker)
    and give the same :class:`RangeStats`. The walker only keeps buffers between calls.

    Args:
        evaluator: The game behind its budget.
        entropy: Root of the permutation stream.
        endpoints: V(N) and V(empty) of the run.
        sampling: How permutations are walked (antithetic pairs, batch size).
        truncation: Early truncation rule, or ``None``.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        entropy: int,
        endpoints: Endpoints,
        sampling: Sampling,
        truncation: Truncation | None,
    ) -> None:
        self.evaluator = evaluator
        self.entropy = entropy
        self.endpoints = endpoints
        self.truncation = truncation
        self.antithetic = sampling.antithetic
        self.batch_size = sampling.batch_size
        self.n_players = evaluator.game.n_players
        self.stop_reason: str | None = None
        # One mask buffer for the whole run: a fresh one per batch costs more in page faults
        # than building the masks. Games must copy coalitions they keep (see games.base.Game).
        self._buffer = np.empty((self.batch_size, self.n_players), dtype=bool)
        self.contexts = uses_contexts(evaluator.game)
        semivalue = sampling.semivalue
        self.position_weights = None if semivalue is None else semivalue.position_weights()
        self._context_buffer = np.empty(self.batch_size, dtype=np.int64)

    def _context(self, walk_number: int) -> int | None:
        # An antithetic pair is one sample: both walks share their data.
        if not self.contexts:
            return None
        return walk_number // 2 if self.antithetic else walk_number

    def _tail_weight(self, walk_number: int) -> float | None:
        """1/p if walk ``walk_number`` goes on past its truncation point, else ``None``."""
        p = None if self.truncation is None else self.truncation.continue_probability
        if p is None or continue_draw(self.entropy, walk_number) >= p:
            return None
        return 1.0 / p

    def _order(self, walk_number: int) -> NDArray[np.intp]:
        if not self.antithetic:
            return permutation(self.entropy, walk_number, self.n_players)
        base = permutation(self.entropy, walk_number // 2, self.n_players)
        return base[::-1].copy() if walk_number % 2 else base

    def walk(self, work: WalkRange) -> RangeStats:
        """Walk the permutations of ``work`` and return what they measured.

        If the budget runs out part way, the marginals measured so far are returned with
        ``complete=False``: those of the players removed first in each walk, marginals against
        large coalitions, so the driver counts the evaluations but drops the marginals.
        """
        if work.first < 0 or work.count < 1:
            raise ValueError(f"A range needs first >= 0 and count >= 1. Got {work}.")
        if self.antithetic and (work.first % 2 or work.count % 2):
            # Walk 2j+1 is the reverse of walk 2j: a range must hold whole pairs.
            raise ValueError(
                "With antithetic sampling a range must start at an even permutation and hold an "
                f"even number of them. Got first={work.first}, count={work.count}."
            )
        walks = self._walks(work)
        evaluated_before = self.evaluator.n_evaluations
        complete = self._walk(walks)
        stats = RunningStats.zeros(self.n_players)
        tails = None
        if self.truncation is not None and self.truncation.continue_probability is None:
            band = self.truncation.dead_band(self.endpoints.v_full, self.endpoints.v_empty)
            tails = TailBounds.zeros(self.n_players, band)
        self._collect(walks, work.sampled, stats, tails)
        truncated = [walk.truncated_at for walk in walks if walk.truncated_at is not None]
        return RangeStats(
            work=work,
            stats=stats,
            n_evaluations=self.evaluator.n_evaluations - evaluated_before,
            n_walks_truncated=len(truncated),
            removed_fraction_sum=float(sum(t / self.n_players for t in truncated)),
            complete=complete,
            tails=tails,
            n_walks_continued=sum(walk.weighted_from is not None for walk in walks),
        )

    def walk_marginals(
        self, first: int, count: int
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], int]:
        """Every player's marginal in walks ``first .. first + count - 1``, one row per walk,
        for an estimator that pairs each walk's marginals with another game's on the same
        order (``estimators.control_variate``).

        A truncated walk records 0 for the players it did not reach, and a walk whose coin said
        go on weights its tail by 1/p, as :meth:`walk` does. Also returns, row by row, what the
        truncated tail may hide for each player (the tail's total M where the walk did not
        reach the player, else 0; ``results.tails``), and how many walks were truncated. The
        range is walked whole: the evaluator must have no budget.
        """
        walks = self._walks(WalkRange(first, count))
        if not self._walk(walks):
            raise RuntimeError(
                f"walk_marginals walks whole ranges; the evaluator stopped on {self.stop_reason}."
            )
        marginals = np.zeros((count, self.n_players))
        hidden = np.zeros((count, self.n_players))
        v_full, v_empty = self.endpoints.v_full, self.endpoints.v_empty
        for row, walk in enumerate(walks):
            players, contributions, tail = walk.measure(None, v_full, v_empty)
            marginals[row, players] = contributions
            hidden[row, players] = tail
        return marginals, hidden, sum(walk.truncated_at is not None for walk in walks)

    def _walks(self, work: WalkRange) -> list[Walk]:
        """The walks of ``work``, none evaluated yet."""
        return [
            Walk(
                self._order(j),
                work.sampled,
                self._context(j),
                self._tail_weight(j),
                self.position_weights,
            )
            for j in range(work.first, work.first + work.count)
        ]

    def _walk(self, walks: list[Walk]) -> bool:
        evaluator, truncation = self.evaluator, self.truncation
        v_full, v_empty = self.endpoints.v_full, self.endpoints.v_empty
        active = [walk for walk in walks if not walk.done]
        while active:
            remaining = evaluator.remaining()
            if remaining == 0 or evaluator.out_of_time():
                self.stop_reason = "max_seconds" if remaining != 0 else "max_evaluations"
                return False
            # Batches are planned without looking at the budget, so that everything before the
            # last batch (including what truncation wastes) is the same whatever the budget.
            capacity = self.batch_size
            coalitions = self._buffer
            filled: list[tuple[Walk, int, int]] = []
            row = 0
            for j, walk in enumerate(active):
                left = capacity - row
                if left == 0:
                    break
                # Without truncation, fill the batch from as few walks as possible (Python work
                # is paid per walk and batch). With it, share the batch among the walks: a walk
                # that dies mid-chunk wastes the rest of its chunk, so chunks stay small (but
                # not below MIN_SHARE rows, or the Python work per walk would dominate).
                share = min(left, max(-(-left // (len(active) - j)), MIN_SHARE))
                take = left if truncation is None else share
                count = walk.fill(coalitions[row:], take)
                if walk.context is not None:
                    self._context_buffer[row : row + count] = walk.context
                filled.append((walk, row, count))
                row += count
            cut = remaining is not None and row > remaining
            if remaining is not None and cut:
                row = remaining  # the budget ends inside this batch: evaluate what fits
            contexts = self._context_buffer[:row] if self.contexts else None
            values = evaluator.in_calls(coalitions[:row], self.batch_size, contexts)
            evaluated = len(values)
            for walk, start, count in filled:
                if start < evaluated:
                    walk.receive(
                        values[start : min(start + count, evaluated)], truncation, v_full, v_empty
                    )
            if evaluated < row:  # the time ran out between the calls of this batch
                self.stop_reason = "max_seconds"
                return False
            if cut:
                # Even if every walk finished, this round did not pay for its full batches, so
                # it must not be checkpointed as complete: the run stops on its budget here.
                self.stop_reason = "max_evaluations"
                return False
            active = [walk for walk in active if not walk.done]
        return True

    def _collect(
        self,
        walks: list[Walk],
        sampled: NDArray[np.bool_] | None,
        stats: RunningStats,
        tails: TailBounds | None,
    ) -> None:
        v_full, v_empty = self.endpoints.v_full, self.endpoints.v_empty
        measured = [walk.measure(sampled, v_full, v_empty) for walk in walks]
        if not self.antithetic:
            for players, contributions, hidden in measured:
                stats.add(players, contributions)
                if tails is not None:
                    tails.low.add(players, contributions + np.minimum(hidden, 0.0))
                    tails.high.add(players, contributions + np.maximum(hidden, 0.0))
            return
        for (players_a, values_a, hidden_a), (players_b, values_b, hidden_b) in zip(
            measured[0::2], measured[1::2], strict=True
        ):
            # A pair's mean is one sample; keep players that both walks measured.
            total = np.zeros(self.n_players)
            seen = np.zeros(self.n_players, dtype=np.int8)
            total[players_a] += values_a
            total[players_b] += values_b
            seen[players_a] += 1
            seen[players_b] += 1
            both = np.flatnonzero(seen == 2)
            stats.add(both, total[both] / 2.0)
            if tails is not None:
                # The ends of a pair's mean are the means of its walks' ends.
                below = np.zeros(self.n_players)
                above = np.zeros(self.n_players)
                below[players_a] += np.minimum(hidden_a, 0.0)
                below[players_b] += np.minimum(hidden_b, 0.0)
                above[players_a] += np.maximum(hidden_a, 0.0)
                above[players_b] += np.maximum(hidden_b, 0.0)
                tails.low.add(both, (total[both] + below[both]) / 2.0)
                tails.high.add(both, (total[both] + above[both]) / 2.0)
