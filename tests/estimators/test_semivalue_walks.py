"""Semivalues on the engine's walks (``ns.permutation_semivalue``): the same permutations as
``permutation_shapley``, each marginal weighted by n p_k for the size k of the coalition it
joins. Checked against exact semivalues by enumeration, and for the engine's promises:
resume, budgets, merge, identity."""

from pathlib import Path

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley.data.semivalues import banzhaf_size_weights, beta_size_weights, exact_semivalue
from neuronshapley.estimators.checkpoint import CheckpointError
from neuronshapley.games import sparse_soum
from neuronshapley.results.result import interval_rule
from tests.estimators.test_checkpoint import assert_same_values

N = 9


def game() -> ns.Game:
    # Marginals of a SOUM with coefficients in [0, 1] lie in [0, 1] once scaled: range 1 holds.
    return ns.games.WeightedVotingGame([3, 2, 2, 1, 1, 1, 4, 2, 1], quota=9)


WEIGHTS = {
    "beta(16,1)": beta_size_weights(N, 16, 1),
    "beta(4,2)": beta_size_weights(N, 4, 2),
    "banzhaf": banzhaf_size_weights(N),
}


def test_uniform_weights_are_permutation_shapley_sample_for_sample() -> None:
    for antithetic in (False, True):
        options = {"seed": 4, "antithetic": antithetic, "value_range": 1.0}
        weighted = ns.permutation_semivalue(game(), np.full(N, 1 / N), 40, **options)
        plain = ns.permutation_shapley(game(), 40, **options)
        assert np.array_equal(weighted.values, plain.values)
        assert np.array_equal(weighted.ci_high, plain.ci_high)
        assert weighted.n_evaluations == plain.n_evaluations


@pytest.mark.parametrize("name", WEIGHTS)
@pytest.mark.parametrize("tail", [0.0, 0.05])
def test_sampled_semivalues_are_within_their_intervals_of_exact(name: str, tail: float) -> None:
    weights = WEIGHTS[name]
    exact = exact_semivalue(game(), weights).values
    result = ns.permutation_semivalue(
        game(), weights, 1_500, tail=tail, seed=0, value_range=1.0, union_bound=True
    )
    # Empirical Bernstein for all 9 players at once (range W for weighted samples of marginals
    # in [0, 1]), widened by the tail's bias bound: fails for at most 5% of seeds; fixed seed.
    assert (result.ci_low <= exact).all() and (exact <= result.ci_high).all()
    semivalue = result.params["semivalue"]
    assert semivalue["max_weight"] == pytest.approx(N * weights.max())
    assert semivalue["dropped_weight"] <= tail
    # And the estimate is useful: it is a few standard errors from the semivalue it samples
    # without bias, the one with the tail's weight left out.
    sampled = exact_semivalue(game(), kept_weights(weights, tail)).values
    assert (np.abs(result.values - sampled) <= 5 * result.stderr + 1e-12).all()


def kept_weights(weights: np.ndarray, tail: float) -> np.ndarray:
    """p with the sizes k >= K at 0, K the smallest size whose remaining weight is <= tail."""
    remaining = np.append(np.cumsum(weights[::-1])[::-1], 0.0)
    cut = int(np.flatnonzero(remaining <= tail)[0])
    return np.where(np.arange(len(weights)) < cut, weights, 0.0)


def test_a_tail_evaluates_only_the_small_coalitions_and_bounds_its_bias() -> None:
    weights = WEIGHTS["beta(16,1)"]
    result = ns.permutation_semivalue(game(), weights, 100, tail=0.05, seed=1, value_range=1.0)
    remaining = np.cumsum(weights[::-1])[::-1]
    cut = int(np.flatnonzero(remaining <= 0.05)[0])
    assert 1 < cut < N - 1
    # V(N) and V(empty), then the coalitions of 1 .. cut players in every walk.
    assert result.n_evaluations == 2 + 100 * cut
    bias = result.diagnostics["semivalue_bias_bound"]
    assert bias == pytest.approx(remaining[cut] * 1.0)
    exact_cut = exact_semivalue(game(), kept_weights(weights, 0.05)).values
    exact = exact_semivalue(game(), weights).values
    assert (np.abs(exact - exact_cut) <= bias + 1e-12).all()  # the bias bound holds


def test_a_resumed_semivalue_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    weights = WEIGHTS["beta(4,2)"]
    options = {"seed": 7, "value_range": 1.0, "walks_per_task": 2, "tail": 0.01}
    whole = ns.permutation_semivalue(game(), weights, 64, **options)
    first = ns.permutation_semivalue(
        game(), weights, 64, max_evaluations=150, checkpoint=tmp_path, **options
    )
    assert first.stop_reason == "max_evaluations"
    resumed = ns.permutation_semivalue(game(), weights, 64, resume=tmp_path, **options)
    assert_same_values(resumed, whole)
    with pytest.raises(CheckpointError, match="semivalue"):
        ns.permutation_semivalue(game(), WEIGHTS["banzhaf"], 64, resume=tmp_path, **options)


def test_runs_with_the_same_weights_merge_and_others_do_not() -> None:
    weights = WEIGHTS["beta(16,1)"]
    a = ns.permutation_semivalue(game(), weights, 30, seed=1, value_range=1.0, tail=0.05)
    b = ns.permutation_semivalue(game(), weights, 30, seed=2, value_range=1.0, tail=0.05)
    merged = a.merge(b)
    assert np.allclose(merged.values, (a.values + b.values) / 2, atol=1e-12)
    # Merged intervals are recomputed on the weighted samples and widened by the same bias.
    assert merged.diagnostics["semivalue_bias_bound"] == a.diagnostics["semivalue_bias_bound"]
    assert (merged.ci_high - merged.values < a.ci_high - a.values + 1e-12).all()
    other = ns.permutation_semivalue(game(), WEIGHTS["banzhaf"], 30, seed=3, value_range=1.0)
    with pytest.raises(ValueError, match="different 'semivalue'"):
        a.merge(other)


def test_saved_and_loaded_semivalue_results_keep_their_intervals(tmp_path: Path) -> None:
    result = ns.permutation_semivalue(
        sparse_soum(30, seed=0), beta_size_weights(30, 16, 1), 20, seed=0, tail=0.01
    )
    result.save(tmp_path / "r.json")
    loaded = ns.ShapleyResult.load(tmp_path / "r.json")
    assert loaded.params["semivalue"] == result.params["semivalue"]
    assert np.array_equal(loaded.ci_low, result.ci_low)
    assert loaded.interval_guarantee == result.interval_guarantee


@pytest.mark.parametrize(
    ("weights", "tail", "match"),
    [
        (np.full(N - 1, 1 / (N - 1)), 0.0, r"'size_weights' .* must hold 9 numbers"),
        (np.full(N, 0.2), 0.0, r"'size_weights' .* must sum to 1"),
        (np.r_[-0.1, np.full(N - 1, 1.1 / (N - 1))], 0.0, r"finite non-negative"),
        (np.full(N, 1 / N), 1.0, r"'tail' parameter"),
    ],
)
def test_bad_weights_are_named(weights, tail, match) -> None:
    with pytest.raises(ValueError, match=match):
        ns.permutation_semivalue(game(), weights, 10, tail=tail, seed=0)


def test_the_samples_interval_holds_the_anytime_bounds_first_guess_whatever_the_tail() -> None:
    # Half of p on the largest size, cut by the tail: the kept weights n p_k are 5/9 < 1. The
    # anytime bound guesses a player's first sample by (V(N) - V(empty)) / n, a mean of
    # marginals, so the samples' interval [W a, W b] must hold [a, b]: W is at least 1.
    n = 10
    weights = np.r_[np.full(n - 1, 0.5 / (n - 1)), 0.5]
    count = ns.games.AdditiveGame(np.ones(n))  # every marginal is 1: [a, b] = [0, 1]
    result = ns.permutation_semivalue(
        count, weights, 20, tail=0.5, seed=0, bound="anytime", value_range=1.0
    )
    assert result.params["semivalue"]["dropped_weight"] == pytest.approx(0.5)
    assert result.sample_range == pytest.approx((0.0, 5 / 9))
    guess = (result.diagnostics["v_full"] - result.diagnostics["v_empty"]) / n
    assert guess == pytest.approx(1.0)
    assert guess <= interval_rule(result.params).value_range  # the samples' interval [0, W]
