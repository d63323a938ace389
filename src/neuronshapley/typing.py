"""Named array types that state their shapes (used in signatures across the package)."""

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

CoalitionMatrix = NDArray[np.bool_]
"""Boolean array of shape ``(n_coalitions, n_players)``; ``True`` marks a player that is present."""

GameValues = NDArray[np.float64]
"""Float array of shape ``(n_coalitions,)``: the value of each coalition."""

PlayerValues = NDArray[np.float64]
"""Float array of shape ``(n_players,)``: one number per player (values, bounds, errors)."""

ValueFunction = Callable[[CoalitionMatrix], GameValues]
"""Any callable ``bool[n_coalitions, n_players] -> float[n_coalitions]``."""

Seed = int | np.random.Generator | None
"""Randomness as an integer seed or a ``numpy.random.Generator``; never the global state."""
