"""Games: the batched protocol every estimator uses, and games with known Shapley values."""

from neuronshapley.games.base import (
    BaseGame,
    CallableGame,
    Game,
    as_game,
    check_coalitions,
    check_values,
    game_fingerprint,
)
from neuronshapley.games.closed_form import (
    SOUM,
    AdditiveGame,
    AirportGame,
    DeadNetworkGame,
    GloveGame,
    TabularGame,
    UnanimityGame,
    WeightedVotingGame,
    corner_detector_game,
    dataset_pricing_game,
    sparse_soum,
)

__all__ = [
    "SOUM",
    "AdditiveGame",
    "AirportGame",
    "BaseGame",
    "CallableGame",
    "DeadNetworkGame",
    "Game",
    "GloveGame",
    "TabularGame",
    "UnanimityGame",
    "WeightedVotingGame",
    "as_game",
    "check_coalitions",
    "check_values",
    "corner_detector_game",
    "dataset_pricing_game",
    "game_fingerprint",
    "sparse_soum",
]
