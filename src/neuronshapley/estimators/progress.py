"""What a running estimator reports after every round: ``Progress`` and ``ProgressCallback``."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass
class Progress:
    """Where a run stands, passed to the ``progress`` callback after every round.

    Attributes:
        n_evaluations: Coalitions evaluated so far (over a resumed run).
        n_permutations: Permutations walked so far.
        elapsed_seconds: Wall time so far (over a resumed run).
        values: Current estimate of every player (a view: copy it to keep it).
        n_undecided: Players TMAB still samples (``None`` for non-adaptive estimators).
        max_evaluations: The evaluation budget, or ``None``.
        max_seconds: The time budget of this call, or ``None``.
    """

    n_evaluations: int
    n_permutations: int
    elapsed_seconds: float
    values: NDArray[np.float64]
    n_undecided: int | None
    max_evaluations: int | None
    max_seconds: float | None


ProgressCallback = Callable[[Progress], None]
