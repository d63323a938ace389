"""Semivalues of training points: Beta Shapley and Data Banzhaf against exact values by
enumeration (closed forms and a 10-point DataGame), and leave-one-out on a DataGame."""

import math

import numpy as np
import pytest
from sklearn.datasets import load_wine

import neuronshapley as ns
from neuronshapley.data import DataGame
from neuronshapley.data.semivalues import (
    banzhaf_size_weights,
    beta_shapley,
    beta_size_weights,
    data_banzhaf,
    exact_beta_shapley,
    exact_semivalue,
    leave_one_out_values,
)
from neuronshapley.estimators.checkpoint import CheckpointError
from tests.data.test_game import nearest_centroid

N_POINTS = 10


@pytest.fixture(scope="module")
def wine_game() -> DataGame:
    x, y = load_wine(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:N_POINTS], order[100:160]
    return DataGame(x[train], y[train], x[test], y[test], fit=nearest_centroid)


def test_size_weights_are_distributions_and_beta_1_1_is_shapley() -> None:
    for n in (1, 2, 7, 300):
        for alpha, beta in ((1, 1), (16, 1), (4, 2), (0.5, 0.5)):
            assert beta_size_weights(n, alpha, beta).sum() == pytest.approx(1.0, abs=1e-12)
        assert banzhaf_size_weights(n).sum() == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(beta_size_weights(9, 1, 1), 1 / 9, rtol=1e-12, atol=0)
    # Beta(16, 1) favours small coalitions: p_k decreases with k.
    assert (np.diff(beta_size_weights(9, 16, 1)) < 0).all()


def test_exact_semivalue_reproduces_shapley_and_banzhaf(wine_game) -> None:
    n = wine_game.n_players
    shapley = exact_semivalue(wine_game, np.full(n, 1 / n)).values
    assert np.allclose(shapley, ns.exact_shapley(wine_game).values, atol=1e-12)
    banzhaf = exact_semivalue(wine_game, banzhaf_size_weights(n)).values
    assert np.allclose(banzhaf, ns.exact_banzhaf(wine_game).values, atol=1e-12)
    beta_1_1 = exact_beta_shapley(wine_game, alpha=1, beta=1).values
    assert np.allclose(beta_1_1, shapley, atol=1e-12)


@pytest.mark.parametrize(("alpha", "beta"), [(16.0, 1.0), (4.0, 2.0), (1.0, 3.0)])
def test_exact_beta_shapley_of_a_unanimity_game_is_its_closed_form(alpha, beta) -> None:
    # Unanimity on T (|T| = t): member i's marginal is 1 iff S holds the other t - 1 members,
    # which a size-k subset of the n - 1 others does with probability C(n-t, k-t+1) / C(n-1, k).
    n, members = 8, [0, 2, 5]
    t = len(members)
    p = beta_size_weights(n, alpha, beta)
    member = sum(p[k] * math.comb(n - t, k - t + 1) / math.comb(n - 1, k) for k in range(t - 1, n))
    values = exact_beta_shapley(ns.games.UnanimityGame(n, members), alpha=alpha, beta=beta).values
    expected = np.zeros(n)
    expected[members] = member
    assert np.allclose(values, expected, atol=1e-14)


@pytest.mark.parametrize("tail", [0.0, 0.02])
def test_beta_shapley_sampling_is_within_its_bound_of_exact(wine_game, tail) -> None:
    exact = exact_beta_shapley(wine_game, alpha=16, beta=1).values
    result = beta_shapley(
        wine_game, alpha=16, beta=1, n_permutations=600, seed=0, tail=tail, union_bound=True
    )
    # Empirical Bernstein (Maurer & Pontil) at delta = 0.05 for all 10 players at once, on the
    # weighted samples (range 2 W R, R = 1 for accuracy), plus the tail's bias bound. At a fixed
    # seed the check is deterministic; it fails for at most 5% of seeds.
    # The intervals include the tail's bias bound: the weight left out times the marginals'
    # range, 2 (accuracy in [0, 1]).
    half_width = (result.ci_high - result.ci_low) / 2
    semivalue = result.params["semivalue"]
    assert semivalue["dropped_weight"] <= tail
    bias = result.diagnostics.get("semivalue_bias_bound", 0.0)
    assert bias == pytest.approx(2.0 * semivalue["dropped_weight"])
    assert (np.abs(result.values - exact) <= half_width).all()
    # V(N) and V(empty) once; a walk evaluates the coalitions of 1 .. K players (K < n with a
    # tail), or all but the two ends.
    cut = beta_cut(N_POINTS, tail)
    assert result.n_evaluations == 2 + 600 * min(cut, N_POINTS - 1)
    if tail:
        assert cut < N_POINTS and "widened by" in result.interval_guarantee
    assert result.interval_guarantee.startswith("95% for all players at once")


def beta_cut(n: int, tail: float) -> int:
    """K: the smallest size whose remaining Beta(16, 1) weight is at most ``tail``."""
    remaining = np.cumsum(beta_size_weights(n, 16, 1)[::-1])[::-1]
    return int(np.flatnonzero(np.append(remaining, 0.0) <= tail)[0])


def test_beta_shapley_with_alpha_beta_one_is_permutation_sampling(wine_game) -> None:
    # Unit weights: the mean marginal over the walks, whose sum is V(N) - V(empty) per walk.
    result = beta_shapley(wine_game, alpha=1, beta=1, n_permutations=20, seed=3)
    full, empty = wine_game.value(np.array([[True] * N_POINTS, [False] * N_POINTS]))
    assert result.values.sum() == pytest.approx(full - empty, abs=1e-12)
    again = beta_shapley(wine_game, alpha=1, beta=1, n_permutations=20, seed=3, batch_size=7)
    assert np.array_equal(result.values, again.values)  # batching does not change the walks


def test_data_banzhaf_msr_is_within_its_bound_of_exact(wine_game) -> None:
    exact = ns.exact_banzhaf(wine_game).values
    result = data_banzhaf(wine_game, n_samples=2000, seed=0, union_bound=True)
    # Each side (coalitions with i, without i) is a mean of i.i.d. accuracies in [0, 1] given
    # its count: empirical Bernstein at delta / 2 per side, all 10 players at once.
    half_width = (result.ci_high - result.ci_low) / 2
    assert (np.abs(result.values - exact) <= half_width).all()
    assert result.n_evaluations == 2000
    assert np.array_equal(result.values, data_banzhaf(wine_game, n_samples=2000).values)
    assert (half_width < 0.1).all()  # the bound is informative at this size


def test_data_banzhaf_results_are_not_merged_as_one_mean() -> None:
    game = ns.games.AdditiveGame(np.linspace(0.0, 0.1, 6))
    first = data_banzhaf(game, n_samples=50, seed=0, metric_range=1.0)
    second = data_banzhaf(game, n_samples=50, seed=1, metric_range=1.0)
    with pytest.raises(ValueError, match=r"Cannot merge data_banzhaf results: .* two means"):
        first.merge(second)


def test_data_banzhaf_gives_the_trivial_interval_to_a_player_never_left_out() -> None:
    # Two samples for 12 players: all 12 seen on both sides has probability 2^-12.
    game = ns.games.AdditiveGame(np.linspace(0.0, 0.1, 12))
    metric_range = float(np.sum(np.linspace(0.0, 0.1, 12)))
    result = data_banzhaf(game, n_samples=2, seed=0, metric_range=metric_range)
    unseen = result.values == 0.0
    assert result.diagnostics["players_unseen_on_a_side"] == unseen.sum() > 0
    assert np.allclose(result.ci_low[unseen], -metric_range)
    assert np.allclose(result.ci_high[unseen], metric_range)


def test_leave_one_out_values_on_a_data_game(wine_game) -> None:
    result = leave_one_out_values(wine_game)
    full = np.ones((1, N_POINTS), bool)
    for i in (0, 7):
        without = full.copy()
        without[0, i] = False
        assert result.values[i] == wine_game.value(full)[0] - wine_game.value(without)[0]
    assert result.n_evaluations == N_POINTS + 1
    # Leave-one-out is the semivalue with all weight on size n - 1.
    weights = np.zeros(N_POINTS)
    weights[-1] = 1.0
    assert np.allclose(exact_semivalue(wine_game, weights).values, result.values, atol=1e-12)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda g: beta_shapley(g, alpha=0), r"'alpha' parameter of beta_shapley must be a float"),
        (lambda g: beta_shapley(g, tail=1.0), r"'tail' parameter of beta_shapley .* \[0.0, 1.0\)"),
        (lambda g: beta_shapley(g, n_permutations=0), r"'n_permutations' .* \[1, inf\]"),
        (lambda g: data_banzhaf(g, metric_range=0), r"'metric_range' parameter of data_banzhaf"),
        (lambda g: data_banzhaf(g, delta=1.5), r"'delta' parameter of data_banzhaf"),
        (lambda g: exact_semivalue(g, [0.5, 0.5]), r"must hold 4 finite non-negative numbers"),
        (lambda g: exact_semivalue(g, [1, -1, 0, 1]), r"finite non-negative numbers. Got"),
    ],
)
def test_bad_arguments_are_named(call, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        call(ns.games.AdditiveGame([1.0, 2.0, 3.0, 4.0]))


def test_sampled_semivalues_save_load_and_leave_the_game_alone(wine_game, tmp_path) -> None:
    before = wine_game.fingerprint()
    for result in (
        beta_shapley(wine_game, n_permutations=5, seed=1, tail=0.05),
        data_banzhaf(wine_game, n_samples=50, seed=1),
        leave_one_out_values(wine_game),
    ):
        loaded = ns.ShapleyResult.load(result.save(tmp_path / result.estimator))
        assert np.array_equal(loaded.values, result.values)
        assert np.array_equal(loaded.ci_low, result.ci_low)
        assert loaded.params == result.params and loaded.estimator == result.estimator
        assert loaded.game_fingerprint == before
    assert wine_game.fingerprint() == before


def test_data_banzhaf_resumes_a_budget_cut_or_ctrl_c_to_the_uninterrupted_values(
    wine_game, tmp_path
) -> None:
    options = {"n_samples": 300, "seed": 2, "batch_size": 64}
    whole = data_banzhaf(wine_game, **options)
    cut = data_banzhaf(wine_game, max_evaluations=100, checkpoint=tmp_path / "a", **options)
    assert cut.stop_reason == "max_evaluations" and cut.n_evaluations == 100
    resumed = data_banzhaf(wine_game, resume=tmp_path / "a", **options)
    assert resumed.stop_reason == "n_samples" and resumed.n_evaluations == 300
    for name in ("values", "ci_low", "ci_high", "n_samples"):
        assert np.array_equal(getattr(resumed, name), getattr(whole, name)), name

    seen: list[int] = []

    def ctrl_c_after_two_calls(progress) -> None:
        seen.append(progress.n_evaluations)
        if len(seen) == 2:
            raise KeyboardInterrupt

    stopped = data_banzhaf(
        wine_game, checkpoint=tmp_path / "b", progress=ctrl_c_after_two_calls, **options
    )
    assert stopped.stop_reason == "interrupted" and stopped.n_evaluations == seen[-1] == 128
    again = data_banzhaf(wine_game, resume=tmp_path / "b", checkpoint=tmp_path / "b", **options)
    assert np.array_equal(again.values, whole.values)
    # A larger n_samples continues the same stream of coalitions: the first 300 are kept.
    more = data_banzhaf(wine_game, resume=tmp_path / "b", **{**options, "n_samples": 400})
    assert np.array_equal(
        more.values, data_banzhaf(wine_game, **{**options, "n_samples": 400}).values
    )


def test_data_banzhaf_with_no_time_left_evaluates_nothing_and_resumes(wine_game, tmp_path) -> None:
    options = {"n_samples": 50, "seed": 0}
    late = data_banzhaf(wine_game, max_seconds=1e-9, checkpoint=tmp_path, **options)
    assert late.stop_reason == "max_seconds" and late.n_evaluations == 0
    assert (late.ci_high - late.ci_low == 2.0).all()  # nothing seen: the trivial interval
    done = data_banzhaf(wine_game, resume=tmp_path, **options)
    assert np.array_equal(done.values, data_banzhaf(wine_game, **options).values)


def test_a_data_banzhaf_checkpoint_of_another_run_is_refused(wine_game, tmp_path) -> None:
    data_banzhaf(wine_game, n_samples=20, seed=0, checkpoint=tmp_path)
    with pytest.raises(CheckpointError, match="seed=0; this call has seed=1"):
        data_banzhaf(wine_game, n_samples=20, seed=1, resume=tmp_path)
    other = ns.games.AdditiveGame(np.linspace(0.0, 0.1, N_POINTS))
    with pytest.raises(CheckpointError, match="belongs to another game"):
        data_banzhaf(other, n_samples=20, seed=0, resume=tmp_path)
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        data_banzhaf(wine_game, n_samples=20, resume=tmp_path / "missing")
    (tmp_path / "coalitions.npz").write_bytes(b"torn")
    with pytest.raises(CheckpointError, match="damaged"):
        data_banzhaf(wine_game, n_samples=20, seed=0, resume=tmp_path)


def test_a_smaller_data_banzhaf_resume_keeps_every_coalition_in_its_checkpoint(
    wine_game, tmp_path
) -> None:
    # Each coalition is a model fit: a quick look with fewer samples must not throw the rest of
    # the checkpoint away, or a later resume with the full n_samples would fit them again.
    options = {"seed": 4, "checkpoint": tmp_path}
    data_banzhaf(wine_game, n_samples=120, **options)
    fewer = data_banzhaf(wine_game, n_samples=40, resume=tmp_path, **options)
    assert np.array_equal(fewer.values, data_banzhaf(wine_game, n_samples=40, seed=4).values)
    fits = wine_game.n_fits
    again = data_banzhaf(wine_game, n_samples=120, resume=tmp_path, **options)
    assert wine_game.n_fits == fits  # all 120 came from the checkpoint
    assert np.array_equal(again.values, data_banzhaf(wine_game, n_samples=120, seed=4).values)
