"""The batched game protocol: players, a value function over coalitions, an evaluation counter.

Every estimator in the package talks to a game through this protocol, whatever the players are
(units of a network, training points, input features). A game is evaluated on a *batch* of
coalitions at once so that an adapter can answer many coalitions in one forward pass.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from neuronshapley._internal.fingerprint import digest
from neuronshapley._internal.validation import check_int
from neuronshapley.typing import CoalitionMatrix, GameValues, ValueFunction


@runtime_checkable
class Game(Protocol):
    """What an estimator needs from a game.

    Attributes:
        n_players: Number of players.
        player_names: One stable string per player (e.g. ``"features.3:17"``).
        n_evaluations: Number of coalitions evaluated so far.
    """

    n_players: int
    player_names: list[str]
    n_evaluations: int

    def value(self, coalitions: CoalitionMatrix) -> GameValues:
        """Value of each row of ``coalitions`` (bool, shape ``(n_coalitions, n_players)``).

        Estimators reuse the array for the next batch: copy it if you keep it.
        """
        ...


def player_groups(game: Game) -> list[str] | None:
    """Each player's group (a unit's layer, a feature's group, a data point's source), if the
    game states them as ``player_groups``; results carry them to reports and tables."""
    groups = getattr(game, "player_groups", None)
    return None if groups is None else [str(group) for group in groups]


def game_fingerprint(game: Game) -> str:
    """What identifies ``game``: its own ``fingerprint()`` if it has one, else its type and players.

    A checkpoint and a result carry it, so that a run is never resumed on, nor merged with, a
    different game that happens to have the same number of players. A game that can say what
    defines it (a ``NeuronGame``: model weights, data, units, metric, ablation) implements
    ``fingerprint() -> str``; ``BaseGame`` hashes its attributes. A plain object is known only
    by its type and player names.
    """
    own = getattr(game, "fingerprint", None)
    if callable(own):
        return str(own())
    return digest(type(game).__qualname__, list(game.player_names))


def check_coalitions(coalitions: Any, n_players: int, owner: str) -> CoalitionMatrix:
    """Return ``coalitions`` if it is a bool array of shape ``(n_coalitions, n_players)``."""
    if not isinstance(coalitions, np.ndarray):
        raise TypeError(
            f"The coalitions passed to {owner} must be a numpy bool array of shape "
            f"(n_coalitions, {n_players}). Got {type(coalitions).__name__} instead."
        )
    if coalitions.ndim != 2 or coalitions.shape[1] != n_players:
        hint = " (for one coalition use coalitions[None, :])" if coalitions.ndim == 1 else ""
        raise ValueError(
            f"The coalitions passed to {owner} must have shape (n_coalitions, {n_players}). "
            f"Got shape {coalitions.shape} instead{hint}."
        )
    if coalitions.dtype != np.bool_:
        raise TypeError(
            f"The coalitions passed to {owner} must have dtype bool. Got {coalitions.dtype} "
            "instead (convert with coalitions.astype(bool))."
        )
    return coalitions


def check_values(values: Any, n_coalitions: int, owner: str | Callable[[], str]) -> GameValues:
    """Return ``values`` as float64 if it holds one finite number per coalition.

    ``owner`` names the game in the error; pass a callable to build the name only on error
    (this runs once per batch on the hot path).
    """
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        out = None
    if out is not None and out.shape == (n_coalitions,) and np.isfinite(out).all():
        return out
    return _raise_bad_values(values, n_coalitions, owner if isinstance(owner, str) else owner())


def _raise_bad_values(values: Any, n_coalitions: int, owner: str) -> GameValues:
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{owner} must return an array of {n_coalitions} floats, one per coalition. "
            f"Got {type(values).__name__} that does not convert to floats ({error})."
        ) from None
    if out.shape != (n_coalitions,):
        raise ValueError(
            f"{owner} must return an array of shape ({n_coalitions},), one value per coalition. "
            f"Got shape {out.shape} for a batch of {n_coalitions} coalitions instead."
        )
    if not np.all(np.isfinite(out)):
        bad = np.flatnonzero(~np.isfinite(out))
        raise ValueError(
            f"{owner} returned {len(bad)} non-finite value(s) (NaN or inf), first at row {bad[0]} "
            f"of the batch: {out[bad[0]]!r}. A game must return finite numbers."
        )
    raise AssertionError("unreachable: the values passed every check")  # pragma: no cover


def default_player_names(n_players: int) -> list[str]:
    """Names ``p0, p1, ...`` for games whose players have no natural names."""
    return [f"p{i}" for i in range(n_players)]


class BaseGame(ABC):
    """A game with validation and evaluation counting; subclasses implement ``_value``.

    Args:
        n_players: Number of players, at least 1.
        player_names: One distinct string per player. Default: ``p0, p1, ...``.
    """

    def __init__(self, n_players: int, player_names: Sequence[str] | None = None) -> None:
        owner = type(self).__name__
        self.n_players: int = check_int(n_players, "n_players", owner, min_value=1)  # type: ignore[assignment]
        if player_names is None:
            names = default_player_names(self.n_players)
        else:
            names = [str(name) for name in player_names]
            if len(names) != self.n_players:
                raise ValueError(
                    f"The 'player_names' parameter of {owner} must hold {self.n_players} names, "
                    f"one per player. Got {len(names)} instead."
                )
            if len(set(names)) != len(names):
                raise ValueError(f"The 'player_names' parameter of {owner} has repeated names.")
        self.player_names: list[str] = names
        self.n_evaluations: int = 0

    def value(self, coalitions: CoalitionMatrix) -> GameValues:
        """Value of each coalition; counts the evaluations."""
        coalitions = check_coalitions(coalitions, self.n_players, f"{type(self).__name__}.value")
        values = check_values(self._value(coalitions), len(coalitions), self._owner)
        self.n_evaluations += len(coalitions)
        return values

    __call__ = value

    def _owner(self) -> str:
        return f"The game {self!r}"

    # Attributes that do not define the game (counters, caches): left out of the fingerprint.
    fingerprint_ignores: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        """A hash of what defines the game: its type, players and attributes by content.

        Counters and caches must not count: list them in ``fingerprint_ignores`` (or override
        this method), or a run of the game could not be resumed once they change.
        """
        ignored = {"n_evaluations", *self.fingerprint_ignores}
        defining = {key: value for key, value in vars(self).items() if key not in ignored}
        return digest(type(self).__qualname__, defining)

    @abstractmethod
    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        """Values of validated coalitions (bool, shape ``(n_coalitions, n_players)``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_players={self.n_players})"


class CallableGame(BaseGame):
    """Wrap a plain value function ``bool[n_coalitions, n_players] -> float[n_coalitions]``.

    Args:
        function: The value function.
        n_players: Number of players.
        player_names: One string per player. Default: ``p0, p1, ...``.
    """

    def __init__(
        self,
        function: ValueFunction,
        n_players: int,
        player_names: Sequence[str] | None = None,
    ) -> None:
        if not callable(function):
            raise TypeError(
                f"CallableGame needs a callable value function. Got {type(function).__name__}."
            )
        super().__init__(n_players, player_names)
        self.function = function

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        try:
            return self.function(coalitions)
        except Exception as error:
            # The user's function failed, not the estimator: say so, and on which coalition.
            name = getattr(self.function, "__name__", type(self.function).__name__)
            first = np.flatnonzero(coalitions[0]).tolist()
            raise RuntimeError(
                f"The game function you passed ({name}) raised {type(error).__name__} on a "
                f"batch of {len(coalitions)} coalitions (the first holds players {first}): "
                f"{error}"
            ) from error

    def fingerprint(self) -> str:
        """The function by content: its code (nested functions too), defaults and the values it
        captured, and the players. Objects it captured that say nothing but their address (a
        model, say) count by their type and attributes."""
        return digest("CallableGame", self.function, self.player_names)

    def __repr__(self) -> str:
        name = getattr(self.function, "__name__", type(self.function).__name__)
        return f"CallableGame({name}, n_players={self.n_players})"


def as_game(game: Game | Callable[..., Any], n_players: int | None, owner: str) -> Game:
    """Accept a ``Game`` or a plain callable (which then needs ``n_players``)."""
    if isinstance(game, Game):
        if n_players is not None and n_players != game.n_players:
            raise ValueError(
                f"The 'n_players' parameter of {owner} is {n_players} but the game has "
                f"{game.n_players} players; leave n_players out when passing a Game."
            )
        return game
    if callable(game):
        if n_players is None:
            raise ValueError(
                f"{owner} got a plain callable as game, so the 'n_players' parameter is "
                "required (e.g. n_players=10), or wrap it: ns.games.CallableGame(fn, n_players)."
            )
        return CallableGame(game, n_players)
    raise TypeError(
        f"The 'game' parameter of {owner} must be a Game or a callable "
        f"bool[n_coalitions, n_players] -> float[n_coalitions]. Got {type(game).__name__}."
    )
