"""Data Shapley on the engine: DataGame's values, TMC-Shapley against exact enumeration, and the
coalitions a learner cannot fit."""

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression

import neuronshapley as ns
from neuronshapley.data import DataGame, tmc_shapley


def nearest_centroid(x: np.ndarray, y: np.ndarray):
    """A learner that costs microseconds: predict the class of the nearest class mean."""
    classes = np.unique(y)
    centroids = np.stack([x[y == c].mean(axis=0) for c in classes])

    def predict(x_test: np.ndarray) -> np.ndarray:
        distances = ((x_test[:, None, :] - centroids[None]) ** 2).sum(axis=2)
        return classes[distances.argmin(axis=1)]

    return predict


@pytest.fixture(scope="module")
def wine() -> tuple[np.ndarray, ...]:
    x, y = load_wine(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:8], order[100:160]
    return x[train], y[train], x[test], y[test]


def test_tmc_shapley_matches_exact_data_shapley_within_its_interval(wine) -> None:
    game = DataGame(*wine, fit=nearest_centroid)
    exact = ns.exact_shapley(game)
    assert exact.values.sum() == pytest.approx(
        game.value(np.ones((1, 8), bool))[0] - game.value(np.zeros((1, 8), bool))[0]
    )
    result = tmc_shapley(
        game, tolerance=0.01, n_permutations=400, seed=0, value_range=2.0, union_bound=True
    )
    assert result.diagnostics["n_walks_truncated"] > 0  # truncation did happen: TMC, not MC
    # Bernstein intervals at delta=0.05 over all 8 players at once (range 2: accuracy's
    # marginals lie in [-1, 1]). The truncation's bias is at most the tolerance per truncated
    # walk and player when later marginals are of one sign; measured gap 0.010 against
    # half-widths 0.09-0.10.
    half_width = (result.ci_high - result.ci_low) / 2
    assert (np.abs(result.values - exact.values) <= half_width + 0.01).all()


def test_unfittable_coalitions_score_as_the_best_constant_predictor(wine) -> None:
    x, y, x_test, y_test = wine
    game = DataGame(x, y, x_test, y_test, fit=LogisticRegression())
    empty = game.value(np.zeros((1, 8), bool))[0]
    best = max(np.mean(y_test == c) for c in np.unique(y))
    assert empty == best
    one_class = np.zeros(8, bool)
    one_class[y == y[0]] = True
    assert game.value(one_class[None])[0] == np.mean(y_test == y[0])
    assert game.n_fits == 0  # neither coalition reached scikit-learn
    assert (
        DataGame(x, y, x_test, y_test, fit=nearest_centroid, empty_value=0.25).value(
            np.zeros((1, 8), bool)
        )[0]
        == 0.25
    )


def test_a_fit_that_raises_is_wrapped_naming_the_coalition_size(wine) -> None:
    def broken(x, y):
        raise np.linalg.LinAlgError("singular matrix")

    game = DataGame(*wine, fit=broken)
    coalition = np.zeros((1, 8), bool)
    coalition[0, :5] = True
    classes = len(np.unique(wine[1][:5]))
    with pytest.raises(RuntimeError, match=rf"coalition of 5 training point\(s\) with {classes} "):
        game.value(coalition)


def test_groups_are_players_and_hold_their_points(wine) -> None:
    x, y, x_test, y_test = wine
    sources = np.array(["a", "a", "b", "b", "b", "c", "c", "c"])
    game = DataGame(x, y, x_test, y_test, fit=nearest_centroid, groups=sources)
    assert game.player_names == ["a", "b", "c"]
    per_point = DataGame(x, y, x_test, y_test, fit=nearest_centroid)
    coalition = np.array([[True, False, True]])
    points = np.array([[True, True, False, False, False, True, True, True]])
    assert game.value(coalition)[0] == per_point.value(points)[0]


def test_the_fingerprint_follows_the_data_the_learner_and_the_metric(wine) -> None:
    x, y, x_test, y_test = wine
    base = DataGame(x, y, x_test, y_test, fit=LogisticRegression(C=1.0)).fingerprint()
    assert base == DataGame(x, y, x_test, y_test, fit=LogisticRegression(C=1.0)).fingerprint()
    assert base != DataGame(x, y, x_test, y_test, fit=LogisticRegression(C=2.0)).fingerprint()
    moved = x.copy()
    moved[0, 0] += 1e-9
    assert base != DataGame(moved, y, x_test, y_test, fit=LogisticRegression()).fingerprint()
    assert (
        base
        != DataGame(
            x, y, x_test, y_test, fit=LogisticRegression(), metric=lambda a, b: 0.0
        ).fingerprint()
    )


def test_bad_input_is_named(wine) -> None:
    x, y, x_test, y_test = wine
    with pytest.raises(ValueError, match=r"'x_test' parameter of DataGame .*\(13,\).*\(12,\)"):
        DataGame(x, y, x_test[:, :12], y_test, fit=nearest_centroid)
    with pytest.raises(ValueError, match="'y_train' parameter of DataGame"):
        DataGame(x, y[:3], x_test, y_test, fit=nearest_centroid)
    with pytest.raises(TypeError, match="'fit' parameter of DataGame"):
        DataGame(x, y, x_test, y_test, fit=3)
    with pytest.raises(ValueError, match="'groups' parameter of DataGame"):
        DataGame(x, y, x_test, y_test, fit=nearest_centroid, groups=[1, 2])
    with pytest.raises(TypeError, match="tmc_shapley sets 'truncation'"):
        tmc_shapley(DataGame(*wine, fit=nearest_centroid), truncation=0.1, n_permutations=1)
