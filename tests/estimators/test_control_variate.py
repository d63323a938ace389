"""control_variate_shapley: unbiased on closed-form games, no loss without correlation, less
variance with it, and clear errors.

The statistical checks run the estimator over a fixed set of seeds and compare with exact values
(closed forms) and exact moments (every order of a 6-player game enumerated). Tolerances:

- a mean over R seeds is within Z standard errors of the exact value, Z = 4.5 (two-sided
  probability 7e-6 per player and case for a normal mean, so the whole file fails by chance
  with probability below 1e-3);
- a sample variance over R seeds of a (nearly normal) estimate is below sigma^2 times the
  chi-square quantile chi2_{R-1}(1 - 1e-5) / (R - 1) <= 1 + 4.3 sqrt(2 / (R - 1)).
"""

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley.estimators.control_variate import control_variate_shapley

Z = 4.5
SEEDS = 400
# chi2_{R-1} upper 1e-5 quantile over R - 1, by the Wilson-Hilferty bound used loosely.
CHI2_MARGIN = 1.0 + 4.3 * math.sqrt(2.0 / (SEEDS - 1))


def _soum_pair() -> tuple[ns.games.SOUM, ns.games.SOUM]:
    """A random SOUM and a surrogate that keeps two thirds of its terms, coefficients scaled by
    random factors in [0.5, 1.5]: its marginals correlate with the game's, partly."""
    game = ns.games.SOUM(6, 20, seed=3, max_order=3)
    rng = np.random.default_rng(5)
    keep = [k for k in range(game.n_basis) if k % 3]
    scale = rng.uniform(0.5, 1.5, len(keep))
    surrogate = ns.games.SOUM.from_basis(
        6, [game.basis[k].tolist() for k in keep], (game.coefficients[keep] * scale).tolist()
    )
    return game, surrogate


def _airport_pair() -> tuple[ns.games.AirportGame, ns.games.AirportGame]:
    """An airport game and one with perturbed runway costs (closed-form values for both)."""
    costs = [0.1, 0.25, 0.3, 0.6, 0.75, 1.0]
    return ns.games.AirportGame(costs), ns.games.AirportGame([c**1.5 for c in costs])


def _exact_moments(
    game: ns.games.Game, surrogate: ns.games.Game
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Var(x), Var(u) and Cov(x, u) per player over all orders (x: the game's marginal)."""
    n = game.n_players
    xs, us = [], []
    for order in itertools.permutations(range(n)):
        masks = np.ones((n + 1, n), dtype=bool)
        for t, player in enumerate(order):
            masks[t + 1 :, player] = False
        v_game, v_surrogate = game.value(masks), surrogate.value(masks)
        x, u = np.empty(n), np.empty(n)
        x[list(order)] = v_game[:-1] - v_game[1:]
        u[list(order)] = v_surrogate[:-1] - v_surrogate[1:]
        xs.append(x)
        us.append(u)
    x_all, u_all = np.array(xs), np.array(us)
    cov = ((x_all - x_all.mean(0)) * (u_all - u_all.mean(0))).mean(0)
    return x_all.var(axis=0), u_all.var(axis=0), cov


def _runs(game: ns.games.Game, surrogate: ns.games.Game, **kwargs: Any) -> list[ns.ShapleyResult]:
    return [control_variate_shapley(game, surrogate, seed=seed, **kwargs) for seed in range(SEEDS)]


@pytest.mark.parametrize(
    ("pair", "options"),
    [
        # Folds of 4 samples: a noisy coefficient, the case where fitting it on the samples it
        # adjusts would bias the estimate most.
        ("soum", {"n_permutations": 8, "exact": True}),
        ("soum", {"n_permutations": 8, "surrogate_permutations": 8}),
        ("soum", {"n_permutations": 16, "surrogate_permutations": 16, "antithetic": True}),
        ("airport", {"n_permutations": 8, "exact": True}),
        ("airport", {"n_permutations": 8, "surrogate_permutations": 8}),
        # One coefficient for every player, cross-fitted too.
        ("soum", {"n_permutations": 8, "exact": True, "pooled": True}),
        ("airport", {"n_permutations": 8, "surrogate_permutations": 8, "pooled": True}),
    ],
)
def test_unbiased_on_closed_form_games(pair: str, options: dict) -> None:
    game, surrogate = _soum_pair() if pair == "soum" else _airport_pair()
    options = dict(options)
    if options.pop("exact", False):
        options["surrogate_values"] = surrogate.shapley_values()
    estimates = np.array([r.values for r in _runs(game, surrogate, **options)])
    error = estimates.mean(axis=0) - game.shapley_values()
    standard_error = estimates.std(axis=0, ddof=1) / math.sqrt(SEEDS)
    # A player whose estimate never varies (its marginal is the surrogate's plus a constant)
    # must be exact up to round-off.
    assert np.all(np.abs(error) <= Z * standard_error + 1e-12), (error, standard_error)


def test_variance_falls_by_the_squared_correlation() -> None:
    """With exact surrogate values the best coefficient leaves Var(x)(1 - rho^2) / M; fitting
    it on a fold of M_k samples adds about 1 / M_k of that (the regression's own error)."""
    game, surrogate = _soum_pair()
    var_x, var_u, cov = _exact_moments(game, surrogate)
    rho2 = cov**2 / (var_x * var_u)
    m = 64
    runs = _runs(game, surrogate, n_permutations=m, surrogate_values=surrogate.shapley_values())
    estimates = np.array([r.values for r in runs])
    ratio = estimates.var(axis=0, ddof=1) / (var_x / m)
    bound = (1.0 - rho2) * (1.0 + 3.0 / (m // 2)) * CHI2_MARGIN
    assert np.all(ratio <= bound), (ratio, bound)
    # The surrogate keeps most of the structure here: at least one player gains 10x or more.
    assert ratio.min() < 0.1
    # The reported standard errors match the spread over seeds (both ways, same margin).
    reported = np.array([r.stderr**2 for r in runs]).mean(axis=0)
    observed = estimates.var(axis=0, ddof=1)
    assert np.all(reported <= observed * CHI2_MARGIN * 1.05)
    assert np.all(observed <= reported * CHI2_MARGIN * 1.05)


def test_estimated_surrogate_values_add_their_variance() -> None:
    """With phi_U estimated from N_s walks, the reported standard error includes its error:
    it matches the spread over seeds, which is larger than with exact values."""
    game, surrogate = _soum_pair()
    m = 64
    runs = _runs(game, surrogate, n_permutations=m, surrogate_permutations=m)
    estimates = np.array([r.values for r in runs])
    reported = np.array([r.stderr**2 for r in runs]).mean(axis=0)
    observed = estimates.var(axis=0, ddof=1)
    assert np.all(reported <= observed * CHI2_MARGIN * 1.05)
    assert np.all(observed <= reported * CHI2_MARGIN * 1.05)
    share = np.array([r.diagnostics["surrogate_estimate_variance"] for r in runs]).mean(axis=0)
    assert np.all(share > 0)


def test_no_loss_with_an_unrelated_surrogate() -> None:
    """A surrogate of other terms: the variance stays within the cost of fitting c (1 / M_k of
    the residual variance) of plain sampling's, reduced by whatever correlation there is."""
    game, _ = _soum_pair()
    other = ns.games.SOUM(6, 20, seed=99, max_order=3)
    var_x, var_u, cov = _exact_moments(game, other)
    rho2 = cov**2 / (var_x * var_u)
    m = 64
    runs = _runs(game, other, n_permutations=m, surrogate_values=other.shapley_values())
    ratio = np.array([r.values for r in runs]).var(axis=0, ddof=1) / (var_x / m)
    assert np.all(ratio <= (1.0 - rho2) * (1.0 + 3.0 / (m // 2)) * CHI2_MARGIN)


def test_beta_zero_and_constant_surrogates_are_plain_sampling() -> None:
    game, surrogate = _soum_pair()
    plain = ns.permutation_shapley(game, 40, seed=7)
    zero = control_variate_shapley(game, surrogate, 40, beta=0.0, seed=7)
    np.testing.assert_allclose(zero.values, plain.values, rtol=0, atol=1e-12)
    assert zero.n_evaluations == plain.n_evaluations
    # Every run reports the plain estimate of its own walks beside the adjusted one.
    adjusted = control_variate_shapley(game, surrogate, 40, seed=7)
    np.testing.assert_allclose(adjusted.diagnostics["plain_values"], plain.values, atol=1e-12)
    # A linear surrogate has constant marginals: its fitted coefficient is 0.
    linear = ns.games.AdditiveGame([0.3, -1.0, 2.0, 0.0, 0.5, 1.5])
    additive = control_variate_shapley(game, linear, 40, seed=7)
    np.testing.assert_allclose(additive.values, plain.values, rtol=0, atol=1e-12)
    assert np.all(np.array(additive.diagnostics["coefficients"]) == 0.0)
    antithetic = ns.permutation_shapley(game, 40, antithetic=True, seed=7)
    zero_antithetic = control_variate_shapley(
        game, surrogate, 40, beta=0.0, antithetic=True, seed=7
    )
    np.testing.assert_allclose(zero_antithetic.values, antithetic.values, rtol=0, atol=1e-12)


def test_result_is_reproducible_and_round_trips(tmp_path: Path) -> None:
    game, surrogate = _soum_pair()
    first = control_variate_shapley(game, surrogate, 20, seed=3)
    again = control_variate_shapley(game, surrogate, 20, seed=3)
    np.testing.assert_array_equal(first.values, again.values)
    assert first.estimator == "control_variate_shapley"
    assert "normal approximation" in first.interval_guarantee
    assert "cross-fitted" in first.interval_guarantee
    loaded = ns.ShapleyResult.load(first.save(tmp_path / "cv"))
    np.testing.assert_array_equal(loaded.values, first.values)
    assert loaded.diagnostics["coefficients"] == first.diagnostics["coefficients"]
    # A regression-adjusted mean is not one mean of samples: merging would pool it wrongly.
    other = control_variate_shapley(game, surrogate, 20, seed=4)
    with pytest.raises(ValueError, match="Cannot merge control_variate_shapley"):
        first.merge(other)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"surrogate": ns.games.AdditiveGame([1.0] * 5)}, ValueError, "same players"),
        (
            {"surrogate": ns.games.AdditiveGame([1.0] * 6, [f"q{i}" for i in range(6)])},
            ValueError,
            "name its players",
        ),
        ({"surrogate_values": [0.0] * 5}, ValueError, "'surrogate_values'"),
        ({"surrogate_values": [math.nan] * 6}, ValueError, "non-finite"),
        (
            {"surrogate_values": [0.0] * 6, "surrogate_permutations": 10},
            ValueError,
            "not both",
        ),
        ({"n_permutations": 3}, ValueError, "'n_permutations'"),
        ({"n_permutations": 6, "antithetic": True}, ValueError, "at least 8"),
        ({"surrogate_permutations": 1}, ValueError, "'surrogate_permutations'"),
        ({"delta": 1.5}, ValueError, "'delta'"),
        ({"beta": math.inf}, ValueError, "'beta'"),
        ({"antithetic": 1}, TypeError, "'antithetic'"),
        ({"surrogate": "nope"}, TypeError, "'surrogate' parameter"),
        ({"truncation": 1.5}, ValueError, "'truncation'"),
        ({"pooled": True, "beta": 0.5}, ValueError, "not both"),
        ({"pooled": 1}, TypeError, "'pooled'"),
        ({"truncation": 0.1, "patience": 0}, ValueError, "'patience'"),
        ({"truncation": 0.1, "truncation_mode": "dead"}, ValueError, "'truncation_mode'"),
        ({"continue_probability": 0.5}, ValueError, "needs truncation"),
        ({"n_permutations": None}, ValueError, "needs a stopping rule"),
        # Two folds of two samples: V(N), V(empty) and 4 walks of n - 1 = 5 coalitions.
        ({"n_permutations": None, "max_evaluations": 21}, ValueError, "at least 22"),
        (
            {"n_permutations": None, "max_evaluations": 41, "antithetic": True},
            ValueError,
            "at least 42",
        ),
        ({"max_evaluations": 0}, ValueError, "'max_evaluations'"),
        ({"n_walks": 0}, ValueError, "'n_walks'"),
        ({"n_permutations": 8, "n_walks": 3, "antithetic": True}, ValueError, "'n_walks'"),
        (
            {"n_permutations": None, "max_evaluations": 500, "surrogate_permutations": 40},
            ValueError,
            "give n_permutations too",
        ),
        ({"progress": "print"}, TypeError, "'progress'"),
    ],
)
def test_bad_input(kwargs: dict, error: type, match: str) -> None:
    game, surrogate = _soum_pair()
    arguments = {"surrogate": surrogate, "n_permutations": 8, **kwargs}
    with pytest.raises(error, match=match):
        control_variate_shapley(game, seed=0, **arguments)


# -- budgets and progress ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"antithetic": True, "pooled": True},
        {"surrogate_values": "exact"},
        {"truncation": "dead", "truncation_mode": "absolute", "patience": 1},
    ],
)
def test_progress_reads_what_a_run_of_that_many_walks_returns(options: dict) -> None:
    """The estimate reported after w walks is the result of a run of w walks, same seed: the
    orders depend on the walk's number only, and the surrogate's own walks keep pace."""
    game, surrogate = _monotone_pair()
    if options.get("surrogate_values") == "exact":
        options = {**options, "surrogate_values": surrogate.shapley_values()}
    if options.get("truncation") == "dead":
        options = {**options, "truncation": _dead_level(game)}
    reported: list[tuple[int, int, np.ndarray]] = []
    control_variate_shapley(
        game,
        surrogate,
        40,
        n_walks=8,
        seed=5,
        progress=lambda p: reported.append((p.n_permutations, p.n_evaluations, p.values.copy())),
        **options,
    )
    assert [walks for walks, _, _ in reported] == [8, 16, 24, 32, 40]
    for walks, evaluations, values in reported:  # each read against a run of its own
        alone = control_variate_shapley(game, surrogate, walks, seed=5, **options)
        np.testing.assert_allclose(values, alone.values, rtol=1e-12, atol=1e-12)
        assert evaluations == alone.n_evaluations


@pytest.mark.parametrize("options", [{}, {"antithetic": True}, {"truncation": 0.1}])
def test_max_evaluations_is_never_exceeded(options: dict) -> None:
    """A budget stops the run before a round that could exceed it; untruncated, the run spends
    all but less than a round of it."""
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.5, 1.5, 30)
    game = ns.games.DeadNetworkGame(weights, min_players=20)
    surrogate = ns.games.DeadNetworkGame(weights * rng.uniform(0.8, 1.2, 30), min_players=18)
    round_cost = 8 * (game.n_players - 1)
    for budget in (2 + 8 * 29, 1_000, 1_234, 3_000):
        result = control_variate_shapley(game, surrogate, max_evaluations=budget, seed=1, **options)
        assert result.n_evaluations <= budget
        assert result.stop_reason == "max_evaluations"
        assert result.params["max_evaluations"] == budget
        # The surrogate's own walks kept pace: 10 for every game walk, as in a run of that many.
        assert result.params["surrogate_permutations"] == 10 * result.params["n_permutations"]
        if "truncation" not in options:
            assert result.n_evaluations > budget - round_cost
        again = control_variate_shapley(
            game, surrogate, result.params["n_permutations"], seed=1, **options
        )
        np.testing.assert_allclose(result.values, again.values, rtol=1e-12, atol=1e-12)


def test_the_first_budget_that_fits_two_folds_runs() -> None:
    game, surrogate = _soum_pair()
    result = control_variate_shapley(game, surrogate, max_evaluations=22, seed=0)
    assert (result.n_evaluations, int(result.n_samples[0])) == (22, 4)
    both = control_variate_shapley(game, surrogate, 16, max_evaluations=10_000, seed=0)
    assert both.stop_reason == "n_permutations" and int(both.n_samples[0]) == 16


# -- truncation --------------------------------------------------------------------------------


def _monotone_pair() -> tuple[ns.games.SOUM, ns.games.SOUM]:
    """``_soum_pair`` with every coefficient made positive: a monotone game (adding a player
    never lowers the value), so a truncated tail's marginals lie between 0 and its total."""
    game, surrogate = _soum_pair()
    return (
        ns.games.SOUM.from_basis(6, [b.tolist() for b in game.basis], np.abs(game.coefficients)),
        ns.games.SOUM.from_basis(
            6, [b.tolist() for b in surrogate.basis], np.abs(surrogate.coefficients)
        ),
    )


def _dead_level(game: ns.games.Game) -> float:
    """An absolute dead level that cuts walks early and hides real marginals in their tails:
    a third of V(N), where V(empty) = 0."""
    return float(game.value(np.ones((1, game.n_players), dtype=bool))[0]) / 3.0


@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("continue_probability", [None, 0.5])
def test_truncated_walks_are_truncated_shapleys(
    antithetic: bool, continue_probability: float | None
) -> None:
    """beta = 0 gives the truncated samples' mean: truncated_shapley's estimate, same seed."""
    game, surrogate = _monotone_pair()
    rule = {
        "truncation": _dead_level(game),
        "truncation_mode": "absolute",
        "patience": 1,
        "continue_probability": continue_probability,
    }
    plain = ns.truncated_shapley(game, 40, antithetic=antithetic, seed=7, **rule)
    zero = control_variate_shapley(
        game, surrogate, 40, beta=0.0, antithetic=antithetic, seed=7, **rule
    )
    np.testing.assert_allclose(zero.values, plain.values, rtol=0, atol=1e-12)
    assert zero.diagnostics["n_walks_truncated"] > 0
    assert zero.params["truncation"] == rule["truncation"]


def test_truncated_walks_skip_the_dead_network() -> None:
    """On a network that dies with a third of its units gone, a walk stops about there."""
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.5, 1.5, 60)
    game = ns.games.DeadNetworkGame(weights, min_players=40)
    surrogate = ns.games.DeadNetworkGame(weights * rng.uniform(0.8, 1.2, 60), min_players=36)
    result = control_variate_shapley(game, surrogate, 8, truncation=0.1, batch_size=16, seed=0)
    assert result.diagnostics["n_walks_truncated"] == 8
    # 20 alive steps, 5 dead ones, and at most one batch share wasted per walk.
    assert result.n_evaluations <= 2 + 8 * (20 + 5 + 16)
    # The dead tail hides nothing in this game: every walk's marginals still add up to
    # V(N) - V(empty) (the plain estimate of the same walks; adjusted ones need not).
    np.testing.assert_allclose(
        np.sum(result.diagnostics["plain_values"]), weights.sum(), rtol=0, atol=1e-9
    )


def test_unbiased_truncation_stays_unbiased() -> None:
    """With continue_probability the estimate's mean is the game's value (no truncation bias),
    the coefficient cross-fitted; plain truncation on the same game is measurably biased."""
    game, surrogate = _monotone_pair()
    rule = {"truncation": _dead_level(game), "truncation_mode": "absolute", "patience": 1}
    exact = game.shapley_values()
    options = {"n_permutations": 8, "surrogate_values": surrogate.shapley_values()}
    unbiased = np.array(
        [r.values for r in _runs(game, surrogate, continue_probability=0.5, **rule, **options)]
    )
    error = unbiased.mean(axis=0) - exact
    assert np.all(np.abs(error) <= Z * unbiased.std(axis=0, ddof=1) / math.sqrt(SEEDS))
    truncated = np.array([r.values for r in _runs(game, surrogate, **rule, **options)])
    bias = truncated.mean(axis=0) - exact
    assert np.any(np.abs(bias) > Z * truncated.std(axis=0, ddof=1) / math.sqrt(SEEDS))


def test_plain_truncation_widens_intervals_to_hold_the_value() -> None:
    """Plain truncation estimates the truncated game; its intervals, widened by what the tails
    hide, hold the game's own values (a monotone game) about as often as delta says."""
    game, surrogate = _monotone_pair()
    rule = {"truncation": _dead_level(game), "truncation_mode": "absolute", "patience": 1}
    runs = _runs(game, surrogate, n_permutations=32, delta=0.1, **rule)
    low = np.array([r.ci_low for r in runs])
    high = np.array([r.ci_high for r in runs])
    values = np.array([r.values for r in runs])
    assert np.all(low <= values) and np.all(values <= high)
    exact = game.shapley_values()
    missed = ((exact < low) | (exact > high)).mean(axis=0)
    # Per player a miss rate of at most delta = 0.1 (asymptotically), plus 4.5 binomial
    # standard errors over the seeds.
    assert np.all(missed <= 0.1 + Z * math.sqrt(0.1 * 0.9 / SEEDS)), missed
    # The values alone would miss far more often: the truncation bias is not small here.
    half = np.array([r.stderr for r in runs]) * 1.6449
    raw_missed = ((exact < values - half) | (exact > values + half)).mean(axis=0)
    assert raw_missed.max() > 0.1 + Z * math.sqrt(0.1 * 0.9 / SEEDS)
    assert "truncated" in runs[0].interval_guarantee


def test_truncation_refuses_games_that_score_walks_on_their_own_data() -> None:
    game, surrogate = _soum_pair()

    class PerWalk(ns.games.BaseGame):
        uses_contexts = True

        def __init__(self) -> None:
            super().__init__(6)

        def _value(self, coalitions: np.ndarray) -> np.ndarray:
            return game.value(coalitions)

        def value_in_contexts(self, coalitions: np.ndarray, contexts: np.ndarray) -> np.ndarray:
            return game.value(coalitions)

    with pytest.raises(ValueError, match="'truncation' parameter"):
        control_variate_shapley(PerWalk(), surrogate, 8, truncation=0.1, seed=0)


@pytest.mark.parametrize(
    ("continue_probability", "bias", "says"),
    [
        (None, "bounded", "widened by the truncation bias bound"),
        (0.5, "unbiased", "unbiased truncation (walks go on with probability 0.5"),
    ],
)
def test_truncated_results_say_how_their_intervals_treat_the_bias(
    continue_probability: float | None, bias: str, says: str
) -> None:
    """``interval_guarantee`` reads ``params['truncation_bias']``, as for truncated_shapley: a
    truncated result without it was described as an earlier version's, its bias not included."""
    game, surrogate = _monotone_pair()
    result = control_variate_shapley(
        game,
        surrogate,
        8,
        truncation=_dead_level(game),
        truncation_mode="absolute",
        patience=1,
        continue_probability=continue_probability,
        seed=0,
    )
    assert result.params["truncation_bias"] == bias
    assert says in result.interval_guarantee
    assert "bias not included" not in result.interval_guarantee
    untruncated = control_variate_shapley(game, surrogate, 8, seed=0)
    assert untruncated.params["truncation_bias"] is None


def test_plain_truncation_says_when_the_game_is_not_monotone() -> None:
    """The tails' bound holds for a monotone game only; a marginal of the wrong sign refutes
    it, and the result says so as truncated_shapley's does (same walks, same verdict)."""
    rule = {"truncation_mode": "absolute", "patience": 1, "seed": 7}
    for game, surrogate in (_soum_pair(), _monotone_pair()):
        level = {"truncation": _dead_level(game)}
        result = control_variate_shapley(game, surrogate, 40, **level, **rule)
        plain = ns.truncated_shapley(game, 40, **level, **rule)
        assert result.diagnostics["monotone_refuted"] == plain.diagnostics["monotone_refuted"]
        assert ("this one is not" in result.interval_guarantee) == bool(
            plain.diagnostics["monotone_refuted"]
        )
    # The first pair's game has negative coefficients: a wrong-signed marginal is seen.
    game, surrogate = _soum_pair()
    refuted = control_variate_shapley(game, surrogate, 40, truncation=_dead_level(game), **rule)
    assert refuted.diagnostics["monotone_refuted"] is True


@pytest.mark.parametrize(("antithetic", "n_permutations"), [(False, 11), (True, 14)])
def test_truncated_walks_pair_with_the_surrogates_orders(
    monkeypatch: pytest.MonkeyPatch, antithetic: bool, n_permutations: int
) -> None:
    """The game's walks (``Walker.walk_marginals``) and the surrogate's (``_orders``) follow
    the same order in every walk, across blocks too: with a rule that never truncates, the
    truncated path gives the untruncated result exactly (a walk paired with another order's
    surrogate marginals would change the coefficients and the values)."""
    from neuronshapley.estimators import control_variate

    # Blocks of 4 walks on 6 players: 11 or 14 walks span several, the last one short.
    monkeypatch.setattr(control_variate, "_BLOCK_BYTES", 8 * 4 * 7 * 4)
    game, surrogate = _soum_pair()
    options = {"antithetic": antithetic, "seed": 3}
    whole = control_variate_shapley(game, surrogate, n_permutations, **options)
    never = control_variate_shapley(
        game, surrogate, n_permutations, truncation=-1e9, truncation_mode="absolute", **options
    )
    assert never.diagnostics["n_walks_truncated"] == 0
    assert never.n_evaluations == whole.n_evaluations == 2 + n_permutations * (6 - 1)
    # Equal but for rounding: the two paths batch the coalitions differently, and a game's sums
    # (20 terms of size below 1 here) may round differently by 1e-16 per term; another order's
    # marginals move the values by far more than 1e-12.
    for field in ("values", "stderr", "ci_low", "ci_high"):
        np.testing.assert_allclose(getattr(never, field), getattr(whole, field), rtol=0, atol=1e-12)


def test_pooled_coefficient_is_one_regression_over_all_players() -> None:
    """pooled=True fits each fold's c as sum_i Cov_i(x, u) / sum_i Var_i(u) on the other fold:
    one number for every player, between the players' own slopes."""
    game, surrogate = _soum_pair()
    exact = surrogate.shapley_values()
    per_player = control_variate_shapley(game, surrogate, 40, surrogate_values=exact, seed=2)
    pooled = control_variate_shapley(
        game, surrogate, 40, surrogate_values=exact, pooled=True, seed=2
    )
    for own, shared in zip(
        per_player.diagnostics["coefficients"], pooled.diagnostics["coefficients"], strict=True
    ):
        assert len(set(shared)) == 1
        assert min(own) <= shared[0] <= max(own)
    np.testing.assert_allclose(
        pooled.diagnostics["plain_values"], per_player.diagnostics["plain_values"]
    )
    assert "one c for every player" in pooled.interval_guarantee
