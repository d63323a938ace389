"""Shapley-value differences sampled directly (Theorem 10.2.8 and Problem 10.2.7 of the chapter).

Theorem 10.2.8 writes the difference of two values as one average over the others' coalitions::

    s_i - s_j = sum_{S ⊆ [N] \\ {i,j}} w(S) (U(S + i) - U(S + j)),
    w(S) = 1 / ((N - 1) C(N - 2, |S|)).

**The weights are a distribution.** Summing over the C(N - 2, s) sets of each size s,
sum_S w(S) = sum_{s=0}^{N-2} C(N - 2, s) / ((N - 1) C(N - 2, s)) = (N - 1) / (N - 1) = 1:
w is the law of S when its size is uniform over 0..N-2 and S is uniform among the sets of that
size that avoid i and j. A sample U(S + i) - U(S + j) with S drawn from w is an unbiased sample
of s_i - s_j, and its range is 2R when every marginal contribution lies in an interval of width
R (the chapter's remark: |s_i - s_j| <= 2R).

**One S serves many pairs (Problem 10.2.7).** Evaluating U(S + i) for every player i outside S
costs N - |S| evaluations and gives a sample U(S + i) - U(S + j) for *every* pair outside S. But
for that sample to have the law w of the pair, the law of S must be chosen with care: a pair is
outside S with a probability that falls with |S|. Let F be the players kept outside S on
purpose (f = |F| in {0, 1, 2}: none, the anchor, or the pair itself), draw the size s with
probability pi_f(s), s = 0..N-2, and S uniform among the C(N - f, s) sets of that size that avoid
F. For a pair {i, j} ⊇ F, given the size s,

    P(i, j both outside S | s) = C(N - 2, s) / C(N - f, s),

and given that they are, S is uniform among the sets of size s avoiding i and j. So, given that
the pair is outside, the size has law proportional to pi_f(s) C(N - 2, s) / C(N - f, s), and the
pair's samples have exactly the law w (no importance weight at all) when that is uniform:

    pi_f(s) ∝ C(N - f, s) / C(N - 2, s):
      f = 2 (one pair):   pi ∝ 1                        (uniform: the theorem's own law)
      f = 1 (an anchor):  pi ∝ (N - 1) / (N - 1 - s)
      f = 0 (all pairs):  pi ∝ N (N - 1) / ((N - s)(N - s - 1)).

Each pair's estimate is then the plain mean of the samples in which it was outside S: given how
many there were, they are independent draws from w, so the mean is unbiased and its standard
error and the engine's intervals (``IntervalRule``) hold for it as for any mean of bounded
samples. (Any other pi would need the importance weight
(C(N - f, s) / C(N - 2, s)) / ((N - 1) pi_f(s) / c) per sample, and would pay for it in
variance; ``size_distribution`` is the one that needs none.) Another law than pi_f for a given
f would serve some pairs unbiasedly only with that weight, so each scheme below serves exactly
its own kind of pair: both in F, one in F and one free, or both free.

**What it costs.** Per sampled set, with H = 1 + 1/2 + ... + 1/(N - 1):

- ``pairs`` (f = 2): 2 evaluations per requested pair; every sample serves its pair.
- ``anchor`` (f = 1): 1 + (N - 1) / H evaluations; each pair (anchor, i) is served with
  probability 1 / H. About 1/N sample per evaluation per pair, like a permutation walk.
- all pairs (f = 0): N H / (N - 1) evaluations, few (pi_0 puts half its mass on s = N - 2); each
  of the N (N - 1) / 2 pairs is served with probability 1 / (N - 1).

A permutation walk gives each pair one difference of two marginals for about N evaluations, so
per evaluation the direct samples are not more numerous; they can be less variable, because
U(S + i) - U(S + j) pairs i and j on the same coalition. docs/efficiency.md measures when that
pays.

**Anchored values (the chapter's "Better Approximation method").** ``anchored_shapley``
estimates s_a of one anchor player (or takes it given) and every difference s_a - s_i, and
returns s_i = s_a - (s_a - s_i). Each interval is the sum of two: if s_a is in [l_a, h_a] and
s_a - s_i in [l_i, h_i], each with probability at least 1 - delta / 2, then s_i is in
[l_a - h_i, h_a - l_i] with probability at least 1 - delta (a union bound, no independence
needed); the standard errors add in quadrature (the two estimates use separate samples).

Randomness: block b of sampled sets is drawn from ``SeedSequence(entropy, spawn_key=(b,))``, so
a run with more samples extends a run with fewer, whatever the batch size.
"""

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neuronshapley._internal.validation import check_float, check_int
from neuronshapley.estimators.driver import seed_entropy
from neuronshapley.estimators.walks import Evaluator
from neuronshapley.games.base import Game, as_game, game_fingerprint, player_groups
from neuronshapley.results.bounds import IntervalRule
from neuronshapley.results.persistence import damaged, read_saved, write_saved
from neuronshapley.results.result import ShapleyResult
from neuronshapley.results.stats import RunningStats

# Sampled sets drawn per block of the random stream (part of a run's identity, not a knob).
SETS_PER_BLOCK = 64
# Rows of sampled-set masks held at once in the ``pairs`` scheme (sets x pairs).
MAX_BLOCK_ROWS = 4096


def theorem_weights(n_players: int) -> NDArray[np.float64]:
    """w(S) of Theorem 10.2.8 by size: 1 / ((N - 1) C(N - 2, s)) for s = 0..N-2."""
    n = n_players
    return np.array([1.0 / ((n - 1) * math.comb(n - 2, s)) for s in range(n - 1)])


def size_distribution(n_players: int, n_forced: int) -> NDArray[np.float64]:
    """pi_f(s), s = 0..N-2: the law of |S| under which every pair served gets the law w.

    ``n_forced`` players (f in {0, 1, 2}) are kept outside S; see the module docstring.
    """
    n = n_players
    s = np.arange(n - 1, dtype=np.float64)
    if n_forced == 2:
        weight = np.ones_like(s)
    elif n_forced == 1:
        weight = (n - 1) / (n - 1 - s)
    elif n_forced == 0:
        weight = n * (n - 1) / ((n - s) * (n - s - 1))
    else:
        raise ValueError(f"n_forced must be 0, 1 or 2. Got {n_forced!r} instead.")
    return np.asarray(weight / weight.sum())


@dataclass
class DifferenceResult:
    """Estimates of Shapley-value differences s_i - s_j for a list of pairs.

    Attributes:
        pairs: int array of shape ``(n_pairs, 2)``: row ``(i, j)`` estimates s_i - s_j.
        differences: The estimates, one per pair.
        stderr: Standard error of each estimate (``inf`` for a pair never sampled).
        ci_low: Lower end of each pair's interval (see ``guarantee``).
        ci_high: Upper end of each pair's interval.
        n_samples: Samples U(S + i) - U(S + j) behind each estimate.
        variance: Sample variance of those samples.
        player_names: One name per player of the game.
        n_evaluations: Coalitions evaluated.
        scheme: ``"pairs"``, ``"anchor"`` or ``"all"`` (module docstring).
        guarantee: What the intervals promise, in words.
        params: The estimator's parameters.
        seed: The root of the random stream (repeat the run with it).
        elapsed_seconds: Wall time.
    """

    pairs: NDArray[np.intp]
    differences: NDArray[np.float64]
    stderr: NDArray[np.float64]
    ci_low: NDArray[np.float64]
    ci_high: NDArray[np.float64]
    n_samples: NDArray[np.int64]
    variance: NDArray[np.float64]
    player_names: list[str]
    n_evaluations: int
    scheme: str
    guarantee: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    elapsed_seconds: float = 0.0

    @property
    def n_players(self) -> int:
        return len(self.player_names)

    def matrix(self) -> NDArray[np.float64]:
        """The antisymmetric D[i, j] = s_i - s_j (0 on the diagonal, NaN where not estimated)."""
        out = np.full((self.n_players, self.n_players), np.nan)
        np.fill_diagonal(out, 0.0)
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        estimated = np.where(self.n_samples > 0, self.differences, np.nan)
        out[i, j] = estimated
        out[j, i] = -estimated
        return out

    def difference(self, i: int, j: int) -> float:
        """The estimate of s_i - s_j (either order of a pair that was estimated)."""
        rows = np.flatnonzero((self.pairs[:, 0] == i) & (self.pairs[:, 1] == j))
        if rows.size:
            return float(self.differences[rows[0]])
        rows = np.flatnonzero((self.pairs[:, 0] == j) & (self.pairs[:, 1] == i))
        if rows.size:
            return -float(self.differences[rows[0]])
        raise KeyError(f"The pair ({i}, {j}) was not estimated.")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save into directory ``path`` (created if needed) as JSON + ``.npz``; no pickle."""
        arrays = {name: np.asarray(getattr(self, name)) for name in _DIFFERENCE_ARRAYS}
        record = {
            "format_version": DIFFERENCE_FORMAT,
            "player_names": self.player_names,
            "n_evaluations": int(self.n_evaluations),
            "scheme": self.scheme,
            "guarantee": self.guarantee,
            "params": self.params,
            "seed": self.seed,
            "elapsed_seconds": self.elapsed_seconds,
        }
        return write_saved(Path(path), "differences", arrays, record)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "DifferenceResult":
        """Load a result written by :meth:`save`; a damaged or partial save is refused."""
        directory = Path(path)
        meta, arrays = read_saved(
            directory,
            "differences",
            kind="DifferenceResult",
            arrays=_DIFFERENCE_ARRAYS,
            versions=(DIFFERENCE_FORMAT,),
        )
        try:
            result = cls(
                **arrays,
                player_names=[str(name) for name in meta["player_names"]],
                n_evaluations=int(meta["n_evaluations"]),
                scheme=str(meta["scheme"]),
                guarantee=str(meta["guarantee"]),
                params=dict(meta["params"]),
                seed=meta["seed"],
                elapsed_seconds=float(meta["elapsed_seconds"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(damaged(directory / "differences.json", error)) from None
        n_pairs = len(result.pairs)
        if result.pairs.shape != (n_pairs, 2) or any(
            len(getattr(result, name)) != n_pairs for name in _DIFFERENCE_ARRAYS
        ):
            raise ValueError(
                damaged(directory / "differences.npz", ValueError("not one row per pair"))
            )
        return result


DIFFERENCE_FORMAT = 1
_DIFFERENCE_ARRAYS = (
    "pairs", "differences", "stderr", "ci_low", "ci_high", "n_samples", "variance",
)  # fmt: skip


# -- sampling ------------------------------------------------------------------------------------


def _random_sets(
    rng: np.random.Generator, sizes: NDArray[np.int64], excluded: NDArray[np.bool_]
) -> NDArray[np.bool_]:
    """Row r: a uniform set of ``sizes[r]`` players that avoids ``excluded[r]``."""
    keys = rng.random(excluded.shape)
    keys[excluded] = 2.0  # ranked last, so never among the first sizes[r]
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    return ranks < sizes[:, None]


def _values_joined(
    evaluator: Evaluator,
    sets: NDArray[np.bool_],
    rows_set: NDArray[np.intp],
    rows_player: NDArray[np.intp],
    batch_size: int,
) -> NDArray[np.float64]:
    """U(sets[rows_set[r]] + rows_player[r]) for every row r, ``batch_size`` rows per game call."""
    values = np.empty(len(rows_set))
    for start in range(0, len(rows_set), batch_size):
        chunk = slice(start, start + batch_size)
        masks = sets[rows_set[chunk]]  # fancy indexing copies: each call gets its own masks
        masks[np.arange(len(masks)), rows_player[chunk]] = True
        values[chunk] = evaluator(masks)
    return values


def _block_stats(
    n_items: int, items: NDArray[np.intp], samples: NDArray[np.float64]
) -> RunningStats:
    """Count, mean and M2 per item of one block of samples (merged in order afterwards)."""
    count = np.bincount(items, minlength=n_items).astype(np.int64)
    mean = np.bincount(items, weights=samples, minlength=n_items) / np.maximum(count, 1)
    m2 = np.bincount(items, weights=(samples - mean[items]) ** 2, minlength=n_items).astype(
        np.float64
    )
    low = float(samples.min()) if len(samples) else math.inf
    high = float(samples.max()) if len(samples) else -math.inf
    return RunningStats(count, mean, m2, low, high)


def _block_rng(entropy: int, block: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(block,)))


def _blocks(n_sets: int, per_block: int) -> list[tuple[int, int]]:
    """(block index, sets in it) covering ``n_sets`` sampled sets."""
    return [(b, min(per_block, n_sets - b * per_block)) for b in range(-(-n_sets // per_block))]


def _sample_pairs(
    evaluator: Evaluator, pairs: NDArray[np.intp], n_sets: int, entropy: int, batch_size: int
) -> RunningStats:
    """f = 2: for each pair its own S ⊆ [N] minus the pair, |S| uniform on 0..N-2."""
    n, n_pairs = evaluator.game.n_players, len(pairs)
    stats = RunningStats.zeros(n_pairs, ordered=True)
    per_block = max(1, MAX_BLOCK_ROWS // n_pairs)
    for block, count in _blocks(n_sets, per_block):
        rng = _block_rng(entropy, block)
        rows = count * n_pairs  # row = (set t, pair p) at t * n_pairs + p
        pair_of_row = np.tile(np.arange(n_pairs), count)
        excluded = np.zeros((rows, n), dtype=bool)
        excluded[np.arange(rows), pairs[pair_of_row, 0]] = True
        excluded[np.arange(rows), pairs[pair_of_row, 1]] = True
        sizes = rng.integers(0, n - 1, size=rows)
        sets = _random_sets(rng, sizes, excluded)
        # Rows 2r and 2r + 1: S_r + i and S_r + j, so one game call holds both sides of a pair.
        rows_set = np.repeat(np.arange(rows), 2)
        rows_player = pairs[pair_of_row].reshape(-1)
        values = _values_joined(evaluator, sets, rows_set, rows_player, batch_size)
        samples = values[0::2] - values[1::2]
        # A difference of two marginals lies in [-R, R]: 0, the first guess, is inside.
        stats = stats.merge(_block_stats(n_pairs, pair_of_row, samples), first_guess=0.0)
    return stats


def _sample_anchor(
    evaluator: Evaluator, anchor: int, n_sets: int, entropy: int, batch_size: int
) -> RunningStats:
    """f = 1: S avoids the anchor; samples U(S + a) - U(S + i) for every i outside S.

    The statistics are indexed by player (the anchor's own entry stays empty)."""
    n = evaluator.game.n_players
    stats = RunningStats.zeros(n, ordered=True)
    probabilities = size_distribution(n, 1)
    for block, count in _blocks(n_sets, SETS_PER_BLOCK):
        rng = _block_rng(entropy, block)
        sizes = rng.choice(n - 1, size=count, p=probabilities)
        excluded = np.zeros((count, n), dtype=bool)
        excluded[:, anchor] = True
        sets = _random_sets(rng, sizes, excluded)
        # Every player outside S, the anchor included, joins S once.
        rows_set, rows_player = np.nonzero(~sets)
        values = _values_joined(evaluator, sets, rows_set, rows_player, batch_size)
        table = np.full((count, n), np.nan)
        table[rows_set, rows_player] = values
        others = rows_player != anchor
        samples = table[rows_set[others], anchor] - values[others]
        # A difference of two marginals lies in [-R, R]: 0, the first guess, is inside.
        stats = stats.merge(_block_stats(n, rows_player[others], samples), first_guess=0.0)
    return stats


def _pair_index(n: int, i: NDArray[np.intp], j: NDArray[np.intp]) -> NDArray[np.intp]:
    """Row of the pair (i, j), i < j, in the order of ``np.triu_indices(n, 1)``."""
    return np.asarray(i * (2 * n - i - 1) // 2 + (j - i - 1), dtype=np.intp)


def _sample_all(evaluator: Evaluator, n_sets: int, entropy: int, batch_size: int) -> RunningStats:
    """f = 0: S from pi_0; samples U(S + i) - U(S + j) for every pair i < j outside S."""
    n = evaluator.game.n_players
    n_pairs = n * (n - 1) // 2
    stats = RunningStats.zeros(n_pairs, ordered=True)
    probabilities = size_distribution(n, 0)
    for block, count in _blocks(n_sets, SETS_PER_BLOCK):
        rng = _block_rng(entropy, block)
        sizes = rng.choice(n - 1, size=count, p=probabilities)
        sets = _random_sets(rng, sizes, np.zeros((count, n), dtype=bool))
        rows_set, rows_player = np.nonzero(~sets)
        values = _values_joined(evaluator, sets, rows_set, rows_player, batch_size)
        items, samples = [], []
        starts = np.searchsorted(rows_set, np.arange(count + 1))
        for t in range(count):
            players = rows_player[starts[t] : starts[t + 1]]  # sorted: np.nonzero is row-major
            own = values[starts[t] : starts[t + 1]]
            first, second = np.triu_indices(len(players), 1)
            items.append(_pair_index(n, players[first], players[second]))
            samples.append(own[first] - own[second])
        # A difference of two marginals lies in [-R, R]: 0, the first guess, is inside.
        stats = stats.merge(
            _block_stats(n_pairs, np.concatenate(items), np.concatenate(samples)), first_guess=0.0
        )
    return stats


# -- public API ----------------------------------------------------------------------------------


def _check_player(value: Any, name: str, owner: str, n: int) -> int:
    return int(check_int(value, name, owner, min_value=0, max_value=n - 1))  # type: ignore[arg-type]


def _check_pairs(pairs: Any, owner: str, n: int) -> NDArray[np.intp]:
    rule = "a non-empty sequence of (i, j) pairs of distinct player indices in [0, n_players)"
    try:
        array = np.asarray(pairs)
    except (TypeError, ValueError):
        array = np.asarray([])
    if (
        array.ndim != 2
        or array.shape[0] == 0
        or array.shape[1] != 2
        or not np.issubdtype(array.dtype, np.integer)
    ):
        raise ValueError(f"The 'pairs' parameter of {owner} must be {rule}. Got {pairs!r} instead.")
    bad = (array < 0) | (array >= n)
    if bad.any() or np.any(array[:, 0] == array[:, 1]):
        where = int(np.flatnonzero(bad.any(axis=1) | (array[:, 0] == array[:, 1]))[0])
        raise ValueError(
            f"The 'pairs' parameter of {owner} must be {rule} (n_players = {n}). "
            f"Got {tuple(array[where].tolist())!r} at position {where} instead."
        )
    return array.astype(np.intp)


def _interval_rule(
    owner: str, bound: str, delta: float, value_range: float | None, union_bound: bool
) -> IntervalRule:
    rule = IntervalRule(bound, delta, value_range, union_bound).check(owner)
    # A difference of two marginals of range R lies in an interval of width 2R.
    doubled = None if rule.value_range is None else 2.0 * rule.value_range
    return IntervalRule(rule.bound, rule.delta, doubled, rule.union_bound)


def difference_shapley(
    game: Game | Callable[..., Any],
    n_samples: int,
    *,
    anchor: int | None = None,
    pairs: Sequence[tuple[int, int]] | None = None,
    delta: float = 0.05,
    bound: str = "bernstein",
    value_range: float | None = None,
    union_bound: bool = False,
    batch_size: int = 256,
    seed: int | Any = None,
    n_players: int | None = None,
) -> DifferenceResult:
    """Shapley-value differences s_i - s_j sampled directly (Theorem 10.2.8, Problem 10.2.7).

    Three schemes, chosen by ``anchor`` and ``pairs`` (derivation and costs in the module
    docstring of ``estimators.differences``):

    - ``pairs=[(i, j), ...]``: each pair draws its own S ⊆ [N] minus {i, j} with |S| uniform on
      0..N-2 (the theorem's law), 2 evaluations per pair per sample. For a few pairs, e.g.
      the k-th against the (k+1)-th of a ranking.
    - ``anchor=a``: one S avoiding a per sample; s_a - s_i for every other player i.
    - neither: one S per sample serves every pair outside it; all N (N - 1) / 2 differences.

    Args:
        game: A ``Game`` or a callable ``bool[n_coalitions, n_players] -> float[n_coalitions]``.
        n_samples: Sets S to draw (per pair with ``pairs``), at least 2.
        anchor: The anchor player's index. Default ``None``.
        pairs: The pairs to estimate. Default ``None``. Not with ``anchor``.
        delta: Each interval fails with probability at most ``delta``. Default 0.05.
        bound: ``"bernstein"`` (default), ``"normal"`` or ``"anytime"`` (``IntervalRule``).
        value_range: Range R of a marginal contribution; a difference sample lies in an
            interval of width 2R. Default ``None``: the observed range (a heuristic).
        union_bound: Divide ``delta`` among the pairs, so all intervals hold at once.
            Default ``False``.
        batch_size: Coalitions per call to the game. Default 256.
        seed: Int or ``numpy.random.Generator``. Default ``None``: fresh entropy, recorded.
        n_players: Number of players, only for a plain callable ``game``.

    Returns:
        A ``DifferenceResult`` (``pairs``, ``differences``, ``stderr``, intervals, counts;
        ``matrix()`` gives D[i, j] = s_i - s_j). With ``anchor``, row r is (anchor, i).
    """
    owner = "difference_shapley"
    game = as_game(game, n_players, owner)
    n = game.n_players
    if n < 2:
        raise ValueError(f"{owner} needs a game of at least 2 players. Got {n}.")
    n_sets = int(check_int(n_samples, "n_samples", owner, min_value=2))  # type: ignore[arg-type]
    batch = int(check_int(batch_size, "batch_size", owner, min_value=1))  # type: ignore[arg-type]
    rule = _interval_rule(owner, bound, delta, value_range, union_bound)
    if anchor is not None and pairs is not None:
        raise ValueError(
            f"Give {owner} either 'anchor' (s_anchor - s_i for every i) or 'pairs', not both. "
            f"Got anchor={anchor!r}, pairs={pairs!r}."
        )
    entropy = seed_entropy(seed, owner)
    started = time.perf_counter()
    evaluator = Evaluator(game)
    if pairs is not None:
        scheme, pair_array = "pairs", _check_pairs(pairs, owner, n)
        stats = _sample_pairs(evaluator, pair_array, n_sets, entropy, batch)
    elif anchor is not None:
        scheme = "anchor"
        a = _check_player(anchor, "anchor", owner, n)
        others = np.array([i for i in range(n) if i != a], dtype=np.intp)
        pair_array = np.column_stack((np.full(n - 1, a), others)).astype(np.intp)
        stats = _select(_sample_anchor(evaluator, a, n_sets, entropy, batch), others)
    else:
        scheme = "all"
        first, second = np.triu_indices(n, 1)
        pair_array = np.column_stack((first, second)).astype(np.intp)
        stats = _sample_all(evaluator, n_sets, entropy, batch)
    half, used_range = rule.halfwidth(stats)
    count = stats.count
    guarantee = (
        rule.describe(used_range)
        # IntervalRule speaks of players; here each interval is one pair's difference.
        .replace("players", "pairs")
        .replace("player", "pair")
    )
    params = {
        "n_samples": n_sets,
        "anchor": None if anchor is None else int(anchor),
        "bound": rule.bound,
        "delta": rule.delta,
        "value_range": None if value_range is None else float(value_range),
        "union_bound": rule.union_bound,
        "batch_size": batch,
    }
    return DifferenceResult(
        pairs=pair_array,
        differences=stats.mean.copy(),
        stderr=np.where(count > 0, np.sqrt(stats.variance / np.maximum(count, 1)), np.inf),
        ci_low=stats.mean - half,
        ci_high=stats.mean + half,
        n_samples=count.copy(),
        variance=stats.variance,
        player_names=list(game.player_names),
        n_evaluations=evaluator.n_evaluations,
        scheme=scheme,
        guarantee=guarantee,
        params=params,
        seed=entropy,
        elapsed_seconds=time.perf_counter() - started,
    )


def _select(stats: RunningStats, rows: NDArray[np.intp]) -> RunningStats:
    """The statistics of ``rows`` only (the anchor's own, empty, entry dropped)."""
    process = None if stats.variance_process is None else stats.variance_process[rows]
    return RunningStats(
        stats.count[rows],
        stats.mean[rows],
        stats.m2[rows],
        stats.sample_min,
        stats.sample_max,
        process,
    )


def _sample_marginals(
    evaluator: Evaluator, player: int, n_sets: int, entropy: int, batch_size: int
) -> RunningStats:
    """Marginals U(S + a) - U(S), S ⊆ [N] minus a with |S| uniform on 0..N-1: unbiased for s_a.

    Drawn from the stream's blocks after those of the differences (spawn key (b, 1)). The
    anytime bound's first guess of a marginal is (V(N) - V(empty)) / n, the mean of all values,
    which lies in the range of every player's marginals (results.stats); 2 evaluations."""
    n = evaluator.game.n_players
    ends = np.zeros((2, n), dtype=bool)
    ends[0] = True
    v_full, v_empty = evaluator(ends)
    first_guess = float(v_full - v_empty) / n
    stats = RunningStats.zeros(1, ordered=True)
    for block, count in _blocks(n_sets, SETS_PER_BLOCK):
        rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(block, 1)))
        sizes = rng.integers(0, n, size=count)
        excluded = np.zeros((count, n), dtype=bool)
        excluded[:, player] = True
        sets = _random_sets(rng, sizes, excluded)
        # Rows 2t and 2t + 1: S_t + a and S_t, side by side in one game call.
        with_player = sets.copy()
        with_player[:, player] = True
        masks = np.empty((2 * count, n), dtype=bool)
        masks[0::2] = with_player
        masks[1::2] = sets
        values = np.empty(2 * count)
        for start in range(0, 2 * count, batch_size):
            values[start : start + batch_size] = evaluator(masks[start : start + batch_size].copy())
        samples = values[0::2] - values[1::2]
        stats = stats.merge(
            _block_stats(1, np.zeros(count, dtype=np.intp), samples), first_guess=first_guess
        )
    return stats


def anchored_shapley(
    game: Game | Callable[..., Any],
    anchor: int,
    n_samples: int,
    *,
    anchor_samples: int | None = None,
    anchor_value: float | None = None,
    delta: float = 0.05,
    bound: str = "bernstein",
    value_range: float | None = None,
    union_bound: bool = False,
    batch_size: int = 256,
    seed: int | Any = None,
    n_players: int | None = None,
) -> ShapleyResult:
    """Every Shapley value as s_anchor minus a sampled difference (the chapter's "Better
    Approximation method", section 10.2.2, with Theorem 10.2.8).

    s_anchor is taken as given (``anchor_value``, e.g. exact or a player known to be null) or
    estimated from ``anchor_samples`` of its marginal U(S + a) - U(S) (S uniform in size 0..N-1,
    then uniform: the Shapley law, 2 evaluations each); the differences s_anchor - s_i come
    from ``difference_shapley(anchor=...)``. Each interval is the sum of two intervals at
    ``delta / 2``: s_i lies in [l_a - h_i, h_a - l_i] with probability at least 1 - delta
    (union bound); with ``union_bound`` all of them at once. With a given ``anchor_value`` the
    anchor's interval is that single point and the differences get the whole ``delta``.

    Args:
        game: A ``Game`` or a callable ``bool[n_coalitions, n_players] -> float[n_coalitions]``.
        anchor: The anchor player's index.
        n_samples: Sets S drawn for the differences, at least 2.
        anchor_samples: Marginals of the anchor to sample, at least 2. Default ``None``:
            ``n_samples``. Not with ``anchor_value``.
        anchor_value: The anchor's known Shapley value. Default ``None``: estimated.
        delta: Each interval fails with probability at most ``delta``. Default 0.05.
        bound: ``"bernstein"`` (default), ``"normal"`` or ``"anytime"``.
        value_range: Range R of a marginal contribution (the differences' samples: 2R).
            Default ``None``: the observed ranges (a heuristic).
        union_bound: All intervals hold at once. Default ``False``.
        batch_size: Coalitions per call to the game. Default 256.
        seed: Int or ``numpy.random.Generator``. Default ``None``: fresh entropy, recorded.
        n_players: Number of players, only for a plain callable ``game``.

    Returns:
        A ``ShapleyResult`` (``estimator="anchored_shapley"``): ``n_samples`` and ``variance``
        are those of each player's difference samples (the anchor's: of its marginals);
        ``stderr`` combines both estimates; ``interval_guarantee`` says how the intervals
        combine. A player whose difference was never sampled (each set serves a given player
        with probability 1 / H only, H = 1 + 1/2 + ... + 1/(N - 1)) gets the anchor's value,
        an infinite standard error and interval. It cannot be merged with another result.
    """
    owner = "anchored_shapley"
    game = as_game(game, n_players, owner)
    n = game.n_players
    if n < 2:
        raise ValueError(f"{owner} needs a game of at least 2 players. Got {n}.")
    a = _check_player(anchor, "anchor", owner, n)
    n_sets = int(check_int(n_samples, "n_samples", owner, min_value=2))  # type: ignore[arg-type]
    check_float(anchor_value, "anchor_value", owner, allow_none=True)
    if anchor_value is not None and anchor_samples is not None:
        raise ValueError(
            f"Give {owner} either 'anchor_value' (the anchor's value is known) or "
            f"'anchor_samples', not both. Got anchor_value={anchor_value!r}, "
            f"anchor_samples={anchor_samples!r}."
        )
    n_anchor = int(
        check_int(  # type: ignore[arg-type]
            n_sets if anchor_samples is None else anchor_samples,
            "anchor_samples",
            owner,
            min_value=2,
        )
    )
    batch = int(check_int(batch_size, "batch_size", owner, min_value=1))  # type: ignore[arg-type]
    base = IntervalRule(bound, delta, value_range, union_bound).check(owner)
    split = base.delta if anchor_value is not None else base.delta / 2.0
    entropy = seed_entropy(seed, owner)
    started = time.perf_counter()
    differences = difference_shapley(
        game,
        n_sets,
        anchor=a,
        delta=split,
        bound=base.bound,
        value_range=base.value_range,
        union_bound=base.union_bound,
        batch_size=batch,
        seed=entropy,
    )
    evaluations = differences.n_evaluations
    if anchor_value is not None:
        s_a, se_a, var_a, count_a = float(anchor_value), 0.0, 0.0, 0
        low_a = high_a = s_a
    else:
        evaluator = Evaluator(game)
        marginals = _sample_marginals(evaluator, a, n_anchor, entropy, batch)
        evaluations += evaluator.n_evaluations
        rule = IntervalRule(base.bound, split, base.value_range, False)
        half, _ = rule.halfwidth(marginals)
        s_a = float(marginals.mean[0])
        var_a = float(marginals.variance[0])
        count_a = int(marginals.count[0])
        se_a = math.sqrt(var_a / count_a)
        low_a, high_a = s_a - float(half[0]), s_a + float(half[0])
    others = differences.pairs[:, 1]
    values = np.full(n, s_a)
    values[others] = s_a - differences.differences
    stderr = np.full(n, se_a)
    stderr[others] = np.sqrt(se_a**2 + differences.stderr**2)
    ci_low = np.full(n, low_a)
    ci_high = np.full(n, high_a)
    ci_low[others] = low_a - differences.ci_high
    ci_high[others] = high_a - differences.ci_low
    n_samples_out = np.full(n, count_a, dtype=np.int64)
    n_samples_out[others] = differences.n_samples
    variance = np.full(n, var_a)
    variance[others] = differences.variance
    how = "given" if anchor_value is not None else f"estimated from {n_anchor} marginals"
    note = (
        f"; each value is s_anchor ({how}) minus a sampled difference s_anchor - s_i, and its "
        "interval [l_a - h_i, h_a - l_i] joins an interval for each"
        + ("" if anchor_value is not None else " at delta / 2 (union bound)")
        + "; the differences' samples have range 2 R"
    )
    return ShapleyResult(
        values=values,
        stderr=stderr,
        ci_low=ci_low,
        ci_high=ci_high,
        n_samples=n_samples_out,
        variance=variance,
        player_names=list(game.player_names),
        n_evaluations=evaluations,
        estimator=owner,
        params={
            "anchor": a,
            "n_samples": n_sets,
            "anchor_samples": None if anchor_value is not None else n_anchor,
            "anchor_value": None if anchor_value is None else float(anchor_value),
            "bound": base.bound,
            "delta": base.delta,
            "value_range": base.value_range,
            "union_bound": base.union_bound,
            "batch_size": batch,
        },
        seed=entropy,
        stop_reason="n_samples",
        elapsed_seconds=time.perf_counter() - started,
        diagnostics={"interval_note": note, "anchor_interval": [low_a, high_a]},
        groups=player_groups(game),
        game_fingerprint=game_fingerprint(game),
    )
