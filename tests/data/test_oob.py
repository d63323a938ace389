"""Data-OOB (Kwon & Zou 2023) against a hand computation, and on a planted flipped label."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from neuronshapley.data import data_oob
from neuronshapley.data.oob import bootstrap_sample

# Five points on a line, pairwise distances all different (no ties for 1-NN).
X_LINE = np.array([[0.0], [1.0], [3.0], [7.0], [12.0]])
Y_LINE = np.array([0, 0, 1, 1, 0])


def one_nearest_neighbour(x, y):
    def predict(x_out):
        distances = np.abs(x_out[:, None, 0] - x[None, :, 0])
        return y[np.argmin(distances, axis=1)]

    return predict


def test_bootstrap_samples_follow_the_documented_rule() -> None:
    rng = np.random.default_rng([7, 2])
    bag, model_seed = bootstrap_sample(5, 7, 2)
    np.testing.assert_array_equal(bag, rng.integers(0, 5, size=5))
    assert model_seed == rng.integers(0, 2**31 - 1)
    assert [bootstrap_sample(5, 7, b)[0].tolist() for b in range(4)] == SAMPLES[7]


# The first four bootstrap samples of five points for seeds 7 and 11, as drawn by the rule above.
SAMPLES = {
    7: [[4, 3, 3, 4, 2], [4, 3, 4, 0, 1], [1, 1, 0, 2, 2], [3, 4, 2, 4, 1]],
    11: [[0, 0, 3, 2, 2], [1, 1, 1, 4, 4], [0, 4, 3, 1, 4], [0, 4, 1, 4, 0]],
}
# 1-NN on the line x = 0, 1, 3, 7, 12 with labels 0, 0, 1, 1, 0, by hand:
# seed 7:  sample 0 = {2, 3, 4}: out of bag 0 (-> x=3, label 1: wrong), 1 (-> x=3: wrong)
#          sample 1 = {0, 1, 3, 4}: out of bag 2 (x=3 -> x=1, label 0: wrong)
#          sample 2 = {0, 1, 2}: out of bag 3 (x=7 -> x=3, label 1: right), 4 (-> x=3: wrong)
#          sample 3 = {1, 2, 3, 4}: out of bag 0 (-> x=1, label 0: right)
#          values 1/2, 0/1, 0/1, 1/1, 0/1; 4 fits
# seed 11: sample 0 = {0, 2, 3}: out of bag 1 (x=1 -> x=0, label 0: right), 4 (-> x=7: wrong)
#          sample 1 = {1, 4}, labels all 0: the constant 0, no fit; out of bag 0 (right),
#          2 and 3 (y = 1: wrong)
#          sample 2 = {0, 1, 3, 4}: out of bag 2 (x=3 -> x=1, label 0: wrong)
#          sample 3 = {0, 1, 4}, labels all 0: constant; out of bag 2, 3 (wrong)
#          values 1/1, 1/1, 0/3, 0/2, 0/1; 2 fits
HAND = {
    7: ([0.5, 0.0, 0.0, 1.0, 0.0], [2, 1, 1, 1, 1], 4, 0),
    11: ([1.0, 1.0, 0.0, 0.0, 0.0], [1, 1, 3, 2, 1], 2, 2),
}


@pytest.mark.parametrize("seed", [7, 11])
@pytest.mark.parametrize(
    "fit", [one_nearest_neighbour, KNeighborsClassifier(n_neighbors=1)], ids=["callable", "sklearn"]
)
def test_values_equal_a_hand_computation(fit, seed) -> None:
    assert [bootstrap_sample(5, seed, b)[0].tolist() for b in range(4)] == SAMPLES[seed]
    values, out_of_bag, fits, constant = HAND[seed]
    result = data_oob(X_LINE, Y_LINE, fit=fit, n_models=4, seed=seed)
    np.testing.assert_array_equal(result.values, values)
    np.testing.assert_array_equal(result.n_samples, out_of_bag)
    assert result.n_evaluations == fits
    assert result.diagnostics["constant_bags"] == constant
    assert result.estimator == "data_oob" and result.seed == seed
    assert result.player_names == [f"train:{i}" for i in range(5)]
    assert (result.ci_low <= result.values).all() and (result.values <= result.ci_high).all()


def test_more_models_extend_the_same_samples() -> None:
    x, y, _ = blobs(5)
    fewer = data_oob(x, y, n_models=20, seed=0)
    more = data_oob(x, y, n_models=30, seed=0)
    # The first 20 samples are shared: the counts grow by those of samples 20-29 alone.
    bags = [bootstrap_sample(60, 0, b)[0] for b in range(20, 30)]
    extra = sum(np.bincount(bag, minlength=60) == 0 for bag in bags)
    np.testing.assert_array_equal(more.n_samples, fewer.n_samples + extra)


def blobs(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Two Gaussian blobs 10 standard deviations apart, 30 points each, one label flipped."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], 30)
    x = rng.normal(size=(60, 2)) + 10.0 * y[:, None]
    flipped = 7
    y = y.copy()
    y[flipped] = 1
    return x, y, flipped


@pytest.mark.parametrize(
    "fit", [None, LogisticRegression(solver="liblinear")], ids=["forest", "logistic"]
)
def test_a_planted_flipped_label_is_valued_lowest(fit) -> None:
    x, y, flipped = blobs(0)
    result = data_oob(x, y, fit=fit, n_models=100, seed=0)
    # The blobs are 10 sd apart: every model fitted on a bag of the other 59 points predicts
    # the flipped point's blob label (value 0), and the clean points' own labels. No
    # tolerance is needed, but only the ordering is asserted: a tree may misplace a clean
    # point near the flipped one in some bags.
    others = np.delete(result.values, flipped)
    assert result.values[flipped] < others.min()
    assert result.values[flipped] == 0.0


def test_same_seed_same_values_other_seed_other_draws() -> None:
    x, y, _ = blobs(1)
    first = data_oob(x, y, n_models=30, seed=3)
    again = data_oob(x, y, n_models=30, seed=3)
    other = data_oob(x, y, n_models=30, seed=4)
    np.testing.assert_array_equal(first.values, again.values)
    np.testing.assert_array_equal(first.n_samples, again.n_samples)
    assert not np.array_equal(first.n_samples, other.n_samples)


def test_a_point_never_out_of_bag_is_an_error_naming_the_count() -> None:
    x, y, _ = blobs(2)
    # One bootstrap sample holds about 63% of the 60 points: the others are never out of bag.
    never = int(np.isin(np.arange(60), bootstrap_sample(60, 0, 0)[0]).sum())
    with pytest.raises(
        ValueError, match=rf"'n_models'.* {never} of the 60 points .* none of the 1 "
    ):
        data_oob(x, y, n_models=1, seed=0)


def test_bad_input_is_named() -> None:
    x, y, _ = blobs(3)
    with pytest.raises(ValueError, match="'n_models' parameter of data_oob"):
        data_oob(x, y, n_models=0)
    with pytest.raises(TypeError, match="'seed' parameter of data_oob"):
        data_oob(x, y, seed=1.5)
    with pytest.raises(ValueError, match="'delta' parameter of data_oob"):
        data_oob(x, y, delta=1.0)
    with pytest.raises(ValueError, match=r"'y_train' parameter of data_oob .*\(60,\)"):
        data_oob(x, y[:10])
    with pytest.raises(ValueError, match=r"'y_train' .* regression is not built.*float64"):
        data_oob(x, y.astype(float))
    with pytest.raises(ValueError, match="'x_train' parameter of data_oob"):
        data_oob(x[:1], y[:1])
    with pytest.raises(TypeError, match=r"'fit' parameter of data_oob .* Got int"):
        data_oob(x, y, fit=3)


def test_a_raising_fit_names_the_bootstrap_sample() -> None:
    x, y, _ = blobs(4)

    def broken(x_bag, y_bag):
        raise ArithmeticError("no")

    with pytest.raises(RuntimeError, match="'fit' of data_oob failed on a bootstrap sample of 60"):
        data_oob(x, y, fit=broken, n_models=30)


def test_a_fit_whose_predictions_cannot_be_scored_is_refused() -> None:
    x = np.arange(40, dtype=float).reshape(20, 2)
    y = np.array([0, 1] * 10)
    too_few = lambda xs, ys: lambda xo: np.zeros(max(len(xo) - 1, 0), dtype=int)  # noqa: E731
    with pytest.raises(ValueError, match="one label per point"):
        data_oob(x, y, fit=too_few, n_models=20)
    strings = lambda xs, ys: lambda xo: np.array(["a"] * len(xo))  # noqa: E731
    with pytest.raises(ValueError, match="never equals a label"):
        data_oob(x, y, fit=strings, n_models=20)


def test_the_intervals_say_what_they_are_and_results_do_not_pool() -> None:
    x = np.arange(40, dtype=float).reshape(20, 2)
    y = np.array([0, 1] * 10)
    result = data_oob(x, y, n_models=30)
    assert "Bernstein" in result.interval_guarantee or "bernstein" in result.interval_guarantee
    with pytest.raises(ValueError, match="data_oob"):
        result.merge(result)


def test_nested_random_states_are_seeded_so_runs_repeat() -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 3)), rng.integers(0, 2, 60)
    learner = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3))
    one = data_oob(x, y, fit=learner, n_models=15, seed=1)
    two = data_oob(x, y, fit=learner, n_models=15, seed=1)
    np.testing.assert_array_equal(one.values, two.values)
