"""``InteractionResult``: pairwise Shapley interactions of chosen players, with their uncertainty.

The pairwise Shapley interaction index (SII, Grabisch & Roubens 1999) of players ``i`` and ``j``
of a game ``V`` on the players ``N`` (``n = |N|``) is

    I_ij = sum_{S ⊆ N \\ {i, j}} |S|! (n - |S| - 2)! / (n - 1)! * Δ_ij(S),
    Δ_ij(S) = V(S + i + j) - V(S + i) - V(S + j) + V(S).

Negative: the two are redundant (either one does much of what both do); positive: they are
synergistic (each needs the other). A result holds the index for every pair of a chosen set of
players *inside the whole game* (the other players stay players: they are in or out of ``S``).

Saved like ``ShapleyResult``: a directory holding ``interactions.npz`` (arrays) and
``interactions.json`` (names, parameters, counts and a hash of the arrays), loaded without pickle.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from neuronshapley.results.bounds import confidence_halfwidth
from neuronshapley.results.persistence import damaged, read_saved, write_saved

FORMAT_VERSION = 1
_MATRICES = ("values", "stderr", "ci_low", "ci_high")
_ARRAYS = (*_MATRICES, "player_indices", "n_samples")


class InteractionPair(NamedTuple):
    """A row of ``InteractionResult.pairs()``: the two players, the index and its interval."""

    first: str
    second: str
    value: float
    stderr: float
    ci_low: float
    ci_high: float


@dataclass(eq=False)
class InteractionResult:
    """Pairwise Shapley interaction indices among ``m`` chosen players of a game.

    Every matrix is ``(m, m)`` and symmetric; its diagonal is 0 (the index is of pairs).

    Attributes:
        values: ``values[a, b]``: the SII of players ``a`` and ``b`` (estimated, or exact).
        stderr: Standard error of each entry (0 for exact values).
        ci_low: Lower end of each entry's interval (``interval`` says what it promises).
        ci_high: Upper end of each entry's interval.
        player_names: The names of the ``m`` chosen players.
        player_indices: Their indices among the game's players, int array of shape ``(m,)``.
        n_game_players: Number of players of the whole game.
        n_samples: Samples behind each pair's estimate, int array of shape ``(m, m)`` (0 for
            exact values).
        n_evaluations: Coalitions the estimator evaluated.
        estimator: Name of the estimator function.
        params: The estimator's parameters (JSON types only).
        seed: The seed of the sampling (``None`` for exact values).
        interval: What ``ci_low``/``ci_high`` promise, in words.
        elapsed_seconds: Wall time of the computation.
        game_fingerprint: What identifies the game (``games.game_fingerprint``), or ``None``.
        diagnostics: Estimator-specific counters.
    """

    values: NDArray[np.float64]
    stderr: NDArray[np.float64]
    ci_low: NDArray[np.float64]
    ci_high: NDArray[np.float64]
    player_names: list[str]
    player_indices: NDArray[np.int64]
    n_game_players: int
    n_samples: NDArray[np.int64]
    n_evaluations: int
    estimator: str
    params: dict[str, Any]
    seed: int | None
    interval: str
    elapsed_seconds: float
    game_fingerprint: str | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = len(self.player_names)
        for name in _MATRICES:
            shape = np.shape(getattr(self, name))
            if shape != (m, m):
                raise ValueError(
                    f"InteractionResult: {name} has shape {shape} for {m} players; every matrix "
                    f"has shape ({m}, {m})."
                )
        if np.shape(self.n_samples) != (m, m):
            raise ValueError(
                f"InteractionResult: n_samples has shape {np.shape(self.n_samples)} for {m} "
                f"players; it has shape ({m}, {m})."
            )
        if np.shape(self.player_indices) != (m,):
            raise ValueError(
                f"InteractionResult: player_indices has shape {np.shape(self.player_indices)} "
                f"for {m} players; it holds one index per player."
            )

    @property
    def n_players(self) -> int:
        """Number of chosen players (rows of the matrix)."""
        return len(self.player_names)

    def value(self, first: str, second: str) -> float:
        """The index of the pair named ``first`` and ``second``."""
        a, b = self._position(first, "first"), self._position(second, "second")
        if a == b:
            raise ValueError(
                f"InteractionResult.value needs two different players. Got {first!r} twice."
            )
        return float(self.values[a, b])

    def _position(self, name: str, parameter: str) -> int:
        try:
            return self.player_names.index(name)
        except ValueError:
            shown = ", ".join(repr(n) for n in self.player_names[:5])
            more = ", ..." if self.n_players > 5 else ""
            raise ValueError(
                f"The {parameter!r} parameter of InteractionResult.value must name one of the "
                f"result's players ({shown}{more}). Got {name!r} instead."
            ) from None

    def pairs(self, order: str = "value") -> list[InteractionPair]:
        """Every pair once, sorted.

        Args:
            order: ``"value"`` (most negative, i.e. most redundant, first), ``"-value"`` (most
                synergistic first) or ``"magnitude"`` (largest ``|value|`` first). Default
                ``"value"``.
        """
        keys = {"value": 1.0, "-value": -1.0}
        if order not in (*keys, "magnitude"):
            raise ValueError(
                "The 'order' parameter of InteractionResult.pairs must be 'value', '-value' or "
                f"'magnitude'. Got {order!r} instead."
            )
        rows, cols = np.triu_indices(self.n_players, k=1)
        entries = self.values[rows, cols]
        key = np.abs(entries) * -1.0 if order == "magnitude" else entries * keys[order]
        ranked = np.argsort(key, kind="stable")
        return [
            InteractionPair(
                self.player_names[rows[k]],
                self.player_names[cols[k]],
                float(entries[k]),
                float(self.stderr[rows[k], cols[k]]),
                float(self.ci_low[rows[k], cols[k]]),
                float(self.ci_high[rows[k], cols[k]]),
            )
            for k in ranked
        ]

    # -- merging ---------------------------------------------------------------------------
    def merge(self, other: "InteractionResult") -> "InteractionResult":
        """Pool two ``permutation_interactions`` runs over different seeds of the same game.

        Each pair's samples are i.i.d. across permutations, so the means and variances combine
        exactly (Chan's parallel update) and the intervals are recomputed with the same rule.
        Refuses exact or shapiq results, other players, other games, the same seed (the same
        permutations would count twice) and other interval settings. The merged result has
        ``seed=None`` and lists the seeds it holds in ``params["seeds"]``.
        """
        owner = "InteractionResult.merge"
        for part in (self, other):
            if part.estimator != "permutation_interactions":
                raise ValueError(
                    f"{owner} pools permutation_interactions results; got one of "
                    f"{part.estimator} (exact values and shapiq's estimates have no samples)."
                )
        if self.player_names != other.player_names or self.n_game_players != other.n_game_players:
            raise ValueError(f"{owner} needs the same players in the same order in both results.")
        if self.game_fingerprint != other.game_fingerprint:
            raise ValueError(f"{owner} refuses results of different games (fingerprints differ).")
        seeds = _seeds(self) + _seeds(other)
        if len(set(seeds)) != len(seeds):
            raise ValueError(
                f"{owner} got the same seed in both results ({sorted(set(seeds))}): the same "
                "permutations would count twice. Run the second part with another seed."
            )
        settings = ("bound", "delta", "union_bound", "value_range")
        differ = [key for key in settings if self.params.get(key) != other.params.get(key)]
        if differ:
            raise ValueError(f"{owner} needs the same interval settings; {differ} differ.")
        m = self.n_players
        off = ~np.eye(m, dtype=bool)
        first, second = int(self.n_samples[off][0]), int(other.n_samples[off][0])
        total = first + second
        var_first = self.stderr**2 * first
        var_second = other.stderr**2 * second
        shift = other.values - self.values
        mean = self.values + shift * (second / total)
        squares = (first - 1) * var_first + (second - 1) * var_second
        variance = (squares + shift**2 * (first * second / total)) / (total - 1)
        bound, delta = str(self.params["bound"]), float(self.params["delta"])
        union, value_range = bool(self.params["union_bound"]), self.params["value_range"]
        half = pair_halfwidths(total, variance, bound, delta, union, value_range)
        return InteractionResult(
            values=mean,
            stderr=np.sqrt(variance / total),
            ci_low=mean - half,
            ci_high=mean + half,
            player_names=list(self.player_names),
            player_indices=self.player_indices.copy(),
            n_game_players=self.n_game_players,
            n_samples=self.n_samples + other.n_samples,
            n_evaluations=self.n_evaluations + other.n_evaluations,
            estimator=self.estimator,
            params={**self.params, "n_permutations": total, "seeds": seeds},
            seed=None,
            interval=self.interval,
            elapsed_seconds=self.elapsed_seconds + other.elapsed_seconds,
            game_fingerprint=self.game_fingerprint,
            diagnostics={},
        )

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save into directory ``path`` (created if needed) as JSON + ``.npz``; no pickle."""
        arrays: dict[str, Any] = {name: np.asarray(getattr(self, name)) for name in _ARRAYS}
        record = {
            "format_version": FORMAT_VERSION,
            "player_names": self.player_names,
            "n_game_players": int(self.n_game_players),
            "n_evaluations": int(self.n_evaluations),
            "estimator": self.estimator,
            "params": self.params,
            "seed": self.seed,
            "interval": self.interval,
            "elapsed_seconds": self.elapsed_seconds,
            "game_fingerprint": self.game_fingerprint,
            "diagnostics": self.diagnostics,
        }
        return write_saved(Path(path), "interactions", arrays, record)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "InteractionResult":
        """Load a result written by :meth:`save`."""
        directory = Path(path)
        meta, arrays = read_saved(
            directory,
            "interactions",
            kind="InteractionResult",
            arrays=_ARRAYS,
            versions=(FORMAT_VERSION,),
        )
        meta_path = directory / "interactions.json"
        try:
            return cls(
                **arrays,
                player_names=[str(name) for name in meta["player_names"]],
                n_game_players=int(meta["n_game_players"]),
                n_evaluations=int(meta["n_evaluations"]),
                estimator=str(meta["estimator"]),
                params=dict(meta["params"]),
                seed=meta["seed"],
                interval=str(meta["interval"]),
                elapsed_seconds=float(meta["elapsed_seconds"]),
                game_fingerprint=meta.get("game_fingerprint"),
                diagnostics=dict(meta["diagnostics"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(damaged(meta_path, error)) from None

    def __repr__(self) -> str:
        return (
            f"InteractionResult({self.estimator}, {self.n_players} players of "
            f"{self.n_game_players}, {self.n_evaluations} evaluations)"
        )


def _seeds(result: InteractionResult) -> list[int]:
    held = result.params.get("seeds")
    return [int(s) for s in held] if held else [int(result.seed)] if result.seed is not None else []


def pair_halfwidths(
    count: int,
    variance: NDArray[np.float64],
    bound: str,
    delta: float,
    union_bound: bool,
    value_range: float | None,
) -> NDArray[np.float64]:
    """Half-widths of the pairs' intervals from ``count`` samples each (module docstring of
    ``results.bounds``); a sample lies in ``[-2R, 2R]`` for game values in a range of width R.
    ``union_bound`` divides ``delta`` among the ``m (m - 1) / 2`` pairs. The diagonal is 0."""
    m = len(variance)
    level = delta / (m * (m - 1) // 2) if union_bound else delta
    half = confidence_halfwidth(
        np.full(m * m, count, dtype=np.int64),
        np.asarray(variance, dtype=np.float64).ravel(),
        delta=level,
        bound=bound,
        value_range=4.0 * value_range if value_range is not None else 0.0,
    ).reshape(m, m)
    np.fill_diagonal(half, 0.0)
    return half


def interval_words(
    bound: str, delta: float, union_bound: bool, n_pairs: int, value_range: float | None
) -> str:
    """What the intervals of ``permutation_interactions`` promise, in words."""
    level = f"{1 - delta:.4g}"
    scope = f"all {n_pairs} pairs at once (union bound)" if union_bound else "each pair on its own"
    if bound == "normal":
        return (
            f"normal (CLT) intervals at level {level}, {scope}: asymptotic, no finite-sample "
            "guarantee"
        )
    return (
        f"empirical Bernstein intervals (Maurer & Pontil 2009) at level {level}, {scope}, at "
        f"this number of permutations, given that every game value lies in an interval of "
        f"width {value_range:g}"
    )
