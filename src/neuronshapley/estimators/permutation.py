"""Monte Carlo Shapley over random permutations, with optional early truncation.

``permutation_shapley`` estimates eq. (2) of Ghorbani & Zou (2020): phi_i is the mean marginal
contribution of player i over uniformly random orders. ``truncated_shapley`` adds the paper's
early truncation (section 3, appendix B): once the network is dead, the players still to be
removed get a zero marginal without a forward pass. With ``truncation=None`` the two are the same
function and, for the same seed, give the same result.
"""

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from neuronshapley.estimators.backend import Backend
from neuronshapley.estimators.driver import run_rounds, sampling_spec
from neuronshapley.estimators.options import (
    Budget,
    Persistence,
    RoundPlan,
    Sampling,
    Semivalue,
    Truncation,
)
from neuronshapley.estimators.progress import ProgressCallback
from neuronshapley.games.base import Game, as_game
from neuronshapley.results.bounds import IntervalRule
from neuronshapley.results.result import ShapleyResult


def truncated_shapley(
    game: Game | Callable[..., Any],
    n_permutations: int | None = None,
    *,
    truncation: float | None = 0.1,
    truncation_mode: str = "relative",
    patience: int = 5,
    continue_probability: float | None = None,
    antithetic: bool = False,
    delta: float = 0.05,
    bound: str = "bernstein",
    value_range: float | None = None,
    union_bound: bool = False,
    max_evaluations: int | None = None,
    max_seconds: float | None = None,
    batch_size: int = 32,
    n_walks: int = 8,
    seed: int | Any = None,
    n_players: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: float = 60.0,
    resume: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    walks_per_task: int | str | None = "auto",
    backend: Backend | None = None,
) -> ShapleyResult:
    """Truncated Monte Carlo Shapley (Ghorbani & Zou 2020, section 3 and appendix B).

    Each permutation is walked from the full set down, removing one player at a time; a walk
    stops once ``patience`` consecutive coalitions are dead, and the players it has not removed
    yet get a zero marginal for that permutation. That biases the values towards the truncated
    game's; the intervals are widened by a bound on the bias (what each walk's truncated tail
    can hide, V(C_t*) - V(empty); valid for a monotone game, see ``results.tails``).
    ``continue_probability=p`` makes the truncation unbiased for any game instead: a walk goes
    on past its truncation point with probability p and weights its tail by 1/p.

    Args:
        game: A ``Game`` or a callable ``bool[n_coalitions, n_players] -> float[n_coalitions]``.
        n_permutations: Permutations to walk. Default ``None``: until a budget is spent (at least
            one of ``n_permutations``, ``max_evaluations`` and ``max_seconds`` is required).
        truncation: Dead-network threshold; ``None`` disables truncation. Default 0.1: in
            ``"relative"`` mode a coalition is dead once it keeps at most 10% of the full
            network's gain over the empty one, (V - V(empty)) / (V(N) - V(empty)) <= 0.1.
        truncation_mode: ``"relative"`` (default) or ``"absolute"`` (dead when V <= truncation).
        patience: Consecutive dead evaluations that end a walk. Default 5.
        continue_probability: ``None`` (default): plain truncation, the intervals widened by
            the bound on its bias. A float p in (0, 1): unbiased truncation (Russian roulette);
            each walk goes on past its truncation point with probability p, drawn from its
            seed, and its tail marginals are weighted by 1/p. Costs about p of the evaluations
            truncation saves; the range R of the intervals becomes ``value_range / p``.
        antithetic: Walk each permutation and its reverse; their mean is one sample. Default
            ``False``. Needs an even ``n_walks`` and ``n_permutations``.
        delta: Each interval fails with probability at most ``delta``. Default 0.05.
        bound: ``"bernstein"`` (empirical Bernstein, finite-sample, default) or ``"normal"``.
        value_range: Range R of a marginal contribution (e.g. 1 for accuracy). Default ``None``:
            the range of all samples seen, a heuristic; give R for a guaranteed bound.
        union_bound: Divide ``delta`` among the players so all intervals hold at once. Default
            ``False``.
        max_evaluations: Stop before evaluating more coalitions (counted over a resumed run).
        max_seconds: Stop after this much wall time in this call.
        batch_size: Coalitions per batch of walk steps. Default 32. With ``max_seconds`` a
            batch is evaluated in calls of at most 5% of it (from the measured cost of an
            evaluation), so the time budget overshoots by one such call at most.
        n_walks: Permutations walked per round; their coalitions share batches. Default 8.
        seed: Int or ``numpy.random.Generator``. Default ``None``: fresh entropy, recorded in the
            result so the run can be repeated.
        n_players: Number of players, only for a plain callable ``game``.
        checkpoint: Directory to save the run's state in, every ``checkpoint_every`` seconds and
            at the end.
        checkpoint_every: Seconds between checkpoints. Default 60.
        resume: Directory of a checkpoint to continue from; the parameters must match, the
            budgets may grow. The result equals an uninterrupted run's.
        progress: Called after every round with a ``Progress`` (evaluations, elapsed time,
            current values). Default ``None``.
        walks_per_task: Cut each round into tasks of this many permutations, walked on their
            own and merged in order (a backend runs them in parallel; a checkpoint inside a
            round and a budget cut keep every finished task). ``None``: one task per round.
            Default ``"auto"``: one task per round where a round is expected to take at most
            a minute (from the measured cost of V(N) and V(empty)), else tasks of about a
            minute. Part of the run's identity: the same value gives the same result wherever
            the tasks run. What ``"auto"`` chose is in the result's ``params`` and the
            checkpoint (a resumed run takes it); give an int or ``None`` for the same bits on
            every machine.
        backend: Where the tasks run: ``None`` (this process, default) or a backend such as
            ``ns.backends.RayBackend(workers=2)``. The result does not depend on it.

    Returns:
        A ``ShapleyResult``; ``diagnostics`` counts truncated walks and where they stopped
        (``n_walks_continued``: walks that went on past their truncation point).
    """
    return _permutation_run(
        "truncated_shapley",
        game,
        n_players,
        seed,
        progress,
        sampling=(antithetic, batch_size, n_walks, walks_per_task),
        interval=IntervalRule(bound, delta, value_range, union_bound),
        truncation=(truncation, truncation_mode, patience, continue_probability),
        budget=(n_permutations, max_evaluations, max_seconds),
        persistence=(checkpoint, checkpoint_every, resume),
        backend=backend,
    )


def permutation_shapley(
    game: Game | Callable[..., Any],
    n_permutations: int | None = None,
    *,
    antithetic: bool = False,
    delta: float = 0.05,
    bound: str = "bernstein",
    value_range: float | None = None,
    union_bound: bool = False,
    max_evaluations: int | None = None,
    max_seconds: float | None = None,
    batch_size: int = 32,
    n_walks: int = 8,
    seed: int | Any = None,
    n_players: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: float = 60.0,
    resume: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    walks_per_task: int | str | None = "auto",
    backend: Backend | None = None,
) -> ShapleyResult:
    """Monte Carlo Shapley over random permutations (eq. 2 of Ghorbani & Zou 2020).

    Every player's marginal contribution is sampled once per permutation (walked from the full
    set down), and its running mean and variance give the estimate and its interval. It is
    ``truncated_shapley`` with ``truncation=None``; see there for the arguments.

    Returns:
        A ``ShapleyResult``.
    """
    return _permutation_run(
        "permutation_shapley",
        game,
        n_players,
        seed,
        progress,
        sampling=(antithetic, batch_size, n_walks, walks_per_task),
        interval=IntervalRule(bound, delta, value_range, union_bound),
        truncation=(None, "relative", 5, None),
        budget=(n_permutations, max_evaluations, max_seconds),
        persistence=(checkpoint, checkpoint_every, resume),
        backend=backend,
    )


def permutation_semivalue(
    game: Game | Callable[..., Any],
    size_weights: Any,
    n_permutations: int | None = None,
    *,
    tail: float = 0.0,
    estimator: str = "permutation_semivalue",
    semivalue_name: str = "semivalue",
    semivalue_params: dict[str, float] | None = None,
    antithetic: bool = False,
    delta: float = 0.05,
    bound: str = "bernstein",
    value_range: float | None = None,
    union_bound: bool = False,
    max_evaluations: int | None = None,
    max_seconds: float | None = None,
    batch_size: int = 32,
    n_walks: int = 8,
    seed: int | Any = None,
    n_players: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: float = 60.0,
    resume: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    walks_per_task: int | str | None = "auto",
    backend: Backend | None = None,
) -> ShapleyResult:
    """Any semivalue by weighted permutation sampling, on the engine's walks.

    A semivalue weighs a marginal by the size k of the coalition it joins, with size
    probabilities ``size_weights`` p_k (Shapley: 1/n; Beta Shapley, Banzhaf:
    ``data.beta_size_weights``, ``data.banzhaf_size_weights``). The walks are
    ``permutation_shapley``'s, so the run has its checkpoints, resume, budgets, progress and
    backends; each marginal is weighted by ``n p_k`` (:class:`~.options.Semivalue`), which
    keeps it an unbiased sample of the semivalue. With uniform weights it is
    ``permutation_shapley``, sample for sample.

    ``tail`` saves evaluations where the weight sits on small coalitions (Beta(16, 1)): the
    sizes holding the last ``tail`` of the weight get none, so a walk evaluates only the
    coalitions below them, and each value moves by at most the weight left out times R, by
    which the intervals are widened (``diagnostics["semivalue_bias_bound"]``).

    Args:
        game: A ``Game`` or a callable ``bool[n_coalitions, n_players] -> float[n_coalitions]``.
        size_weights: p_k for k = 0 .. n - 1: non-negative, summing to 1.
        n_permutations: Permutations to walk (or a budget: ``max_evaluations``, ``max_seconds``).
        tail: Weight left out at the largest sizes, in [0, 1). Default 0.
        estimator: The name recorded in the result and checkpoint.
        semivalue_name: What the weights are (e.g. ``"beta"``), part of the run's identity.
        semivalue_params: The parameters behind the weights, part of the run's identity.
        value_range: Width R of an interval holding every marginal and 0 (for V in [0, 1],
            R = 2); the weighted samples then lie in an interval of width W R, W the largest
            ``n p_k`` kept (at least 1, see ``Semivalue.max_weight``), which the intervals
            use. Default ``None``: the samples' range, a heuristic.
        The other arguments are ``permutation_shapley``'s.

    Returns:
        A ``ShapleyResult`` whose ``params["semivalue"]`` records the weights (name,
        parameters, tail, W, the weight left out and a digest of p).
    """
    owner = estimator
    game = as_game(game, n_players, owner)
    semivalue = Semivalue.from_arguments(
        owner, game.n_players, size_weights, tail, semivalue_name, semivalue_params
    )
    return _permutation_run(
        owner,
        game,
        None,
        seed,
        progress,
        sampling=(antithetic, batch_size, n_walks, walks_per_task),
        interval=IntervalRule(bound, delta, value_range, union_bound),
        truncation=(None, "relative", 5, None),
        budget=(n_permutations, max_evaluations, max_seconds),
        persistence=(checkpoint, checkpoint_every, resume),
        backend=backend,
        semivalue=semivalue,
    )


def _permutation_run(
    owner: str,
    game: Game | Callable[..., Any],
    n_players: int | None,
    seed: Any,
    progress: ProgressCallback | None,
    *,
    sampling: tuple[Any, Any, Any, Any],
    interval: IntervalRule,
    truncation: tuple[Any, Any, Any, Any],
    budget: tuple[Any, Any, Any],
    persistence: tuple[Any, Any, Any],
    backend: Any,
    semivalue: Semivalue | None = None,
) -> ShapleyResult:
    """Validate the arguments into typed options, then walk rounds of ``n_walks`` permutations."""
    spec = sampling_spec(
        owner,
        as_game(game, n_players, owner),
        seed,
        progress,
        sampling=replace(Sampling.from_arguments(owner, *sampling), semivalue=semivalue),
        interval=interval.check(owner),
        truncation=Truncation.from_arguments(owner, *truncation),
        budget=Budget.from_arguments(owner, *budget),
        persistence=Persistence.from_arguments(owner, *persistence),
        backend=backend,
    )
    if not spec.budget.bounded:
        raise ValueError(
            f"{owner} needs a stopping rule: give n_permutations, max_evaluations or max_seconds."
        )
    n_permutations = spec.budget.n_permutations
    if spec.sampling.antithetic and n_permutations is not None and n_permutations % 2:
        raise ValueError(
            f"With antithetic=True, the 'n_walks' and 'n_permutations' parameters of {owner} must "
            f"be even (each permutation walks with its reverse). Got n_walks="
            f"{spec.sampling.n_walks}, n_permutations={n_permutations}."
        )
    every_player = RoundPlan(spec.sampling.n_walks)
    result = run_rounds(spec, lambda state: every_player)
    result.params["n_permutations"] = n_permutations
    return result
