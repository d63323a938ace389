"""harmful_points: TMAB (Ghorbani & Zou 2020) for the k lowest Data Shapley values."""

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley.data import DataGame, harmful_points

FLIPPED = [0, 3]


def one_nearest_neighbour(x, y):
    def predict(x_query):
        return y[np.argmin(((x_query[:, None] - x[None]) ** 2).sum(-1), axis=1)]

    return predict


def planted_game() -> DataGame:
    """Ten points in two blobs 3 sd apart, the labels of points 0 and 3 flipped; 40 test points."""
    rng = np.random.default_rng(0)
    y = np.arange(10) % 2
    x = rng.normal(size=(10, 2)) + 3.0 * y[:, None]
    y_test = np.arange(40) % 2
    x_test = rng.normal(size=(40, 2)) + 3.0 * y_test[:, None]
    y[FLIPPED] = 1 - y[FLIPPED]
    return DataGame(x, y, x_test, y_test, fit=one_nearest_neighbour)


def test_the_bottom_k_is_the_planted_harmful_points_with_tmab_s_guarantee() -> None:
    game = planted_game()
    exact = ns.exact_shapley(game).values  # 2^10 fits
    # The flipped points are the two lowest by a margin (-0.165, -0.122 against 0.028 next).
    assert sorted(np.argsort(exact)[:2]) == FLIPPED
    gap = np.sort(exact)[2] - np.sort(exact)[1]
    tol = 1e-3
    assert gap > 2 * tol
    # Untruncated walks: when TMAB ends "separated", with probability >= 1 - delta (anytime
    # Bernstein intervals, range 2 for accuracy) no left-out point is valued below a returned
    # one by more than 2 tol; the gap exceeds 2 tol, so the returned pair must be the exact
    # bottom two (fixed seed: this run is one draw of that event).
    result = harmful_points(game, 2, tolerance=None, tol=tol, delta=0.05, seed=0)
    assert result.stop_reason == "separated"
    assert result.diagnostics["n_undecided"] == 0
    assert sorted(result.bottom_indices(2)) == FLIPPED
    assert result.estimator == "tmab_shapley"


def test_truncated_walks_find_them_too_and_sample_the_decided_points_less() -> None:
    game = planted_game()
    result = harmful_points(game, 2, seed=1)  # TMC's truncation at 0.01
    # With truncation the guarantee is about the truncated game's values, which keep the
    # flipped points lowest here (the walks truncate late: 10 points, accuracy moves by 1/40).
    assert result.stop_reason == "separated"
    assert sorted(result.bottom_indices(2)) == FLIPPED
    # Adaptive sampling: a point decided early (far from the threshold) holds fewer samples
    # than the most sampled one.
    assert result.n_samples.min() < result.n_samples.max()


def test_options_it_sets_itself_are_refused() -> None:
    game = planted_game()
    with pytest.raises(TypeError, match="harmful_points sets 'side' itself"):
        harmful_points(game, 2, side="top")
    with pytest.raises(TypeError, match="harmful_points sets 'truncation' itself"):
        harmful_points(game, 2, truncation=0.1)
    with pytest.raises(ValueError, match="'tolerance' parameter of harmful_points"):
        harmful_points(game, 2, tolerance=-1.0)
    with pytest.raises(ValueError, match="'k' parameter of tmab_shapley"):
        harmful_points(game, 10)
