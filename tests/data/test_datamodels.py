"""Datamodels: a planted linear datamodel is recovered, LDS near its noise ceiling, runs resume."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from neuronshapley.data import datamodels
from neuronshapley.data.datamodels import correct_class_margin, lds, subset_mask, train_subsets

N_TRAIN, N_TEST, SIGMA = 60, 5, 0.5
_rng = np.random.default_rng(0)
# Sparse true datamodels: about 12 of 60 points matter to each test example.
W = _rng.normal(size=(N_TEST, N_TRAIN)) * (_rng.random((N_TEST, N_TRAIN)) < 0.2)
X_TRAIN, Y_TRAIN = np.arange(N_TRAIN)[:, None], np.zeros(N_TRAIN)
X_TEST, Y_TEST = np.zeros((N_TEST, 1)), np.zeros(N_TEST)


def planted_fit(x, y):
    # The "model" is the subset itself (the training inputs are the points' indices).
    return np.sort(x[:, 0].astype(int))


FIT_CALLS: list[int] = []


def counted_fit(x, y):
    FIT_CALLS.append(len(x))
    return planted_fit(x, y)


def planted_output(model, x_test, y_test):
    # outputs = mask @ w + noise, the noise a function of the subset so a retrained model agrees.
    noise = np.random.default_rng(model).normal(size=N_TEST) * SIGMA
    return W[:, model].sum(axis=1) + noise


def planted(**kwargs):
    options = {"fit": planted_fit, "output": planted_output, "seed": 1} | kwargs
    return datamodels(X_TRAIN, Y_TRAIN, X_TEST, Y_TEST, **options)


def test_a_planted_linear_datamodel_is_recovered_and_its_lds_reaches_the_noise_ceiling() -> None:
    result = planted(n_models=400, n_heldout=100)
    assert result.weights.shape == (N_TEST, N_TRAIN)
    for z in range(N_TEST):
        assert np.corrcoef(result.weights[z], W[z])[0, 1] > 0.95  # measured 0.994-0.997
    # The best any predictor can do: Var(mask @ w) for half of n points drawn without
    # replacement is p(1-p) n/(n-1) sum (w - mean w)^2; with noise sigma the Pearson ceiling is
    # sqrt(s^2 / (s^2 + sigma^2)), and Spearman of a Gaussian pair is (6/pi) asin(rho/2).
    signal = 0.25 * N_TRAIN / (N_TRAIN - 1) * ((W - W.mean(axis=1, keepdims=True)) ** 2).sum(1)
    ceiling = 6 / np.pi * np.arcsin(np.sqrt(signal / (signal + SIGMA**2)) / 2)
    # 100 held-out subsets: Spearman's standard error is below (1 - rho^2) / sqrt(100) ~ 0.01
    # here; 0.05 leaves room for that and for the lasso's shrinkage.
    assert np.all(result.lds_per_example > ceiling - 0.05)
    assert result.lds == pytest.approx(result.lds_per_example.mean())
    np.testing.assert_array_equal(
        lds(result.weights, result.heldout_masks, result.heldout_outputs), result.lds_per_example
    )
    assert result.lds > 0.9
    np.testing.assert_allclose(
        result.predict(result.masks[:3]), result.masks[:3] @ result.weights.T + result.intercepts
    )
    assert result.n_lasso_unconverged == 0


def test_lds_scores_true_weights_1_and_shuffled_weights_about_0() -> None:
    # A planted linear datamodel without noise: outputs = masks @ w, so the true weights rank
    # every held-out subset exactly (continuous weights, no ties).
    n_train, n_subsets, n_test = 300, 300, 50
    rng = np.random.default_rng(5)
    w = rng.normal(size=(n_test, n_train))
    masks = np.array([subset_mask(7, j, n_train, n_train // 2) for j in range(n_subsets)])
    outputs = masks @ w.T
    np.testing.assert_allclose(lds(w, masks, outputs), 1.0, atol=1e-12)
    # Ranks ignore a positive scale and an intercept; a negated attribution ranks backwards.
    np.testing.assert_allclose(lds(3 * w + 1, masks, outputs), 1.0, atol=1e-12)
    np.testing.assert_allclose(lds(-w, masks, outputs), -1.0, atol=1e-12)
    # Each row's weights shuffled among the training points: for half-subsets drawn without
    # replacement the Pearson correlation of the two subset sums is the sample correlation of
    # (w_i, w_pi(i)), mean -1/(n_train - 1) and variance about 1/(n_train - 1) over pi, and
    # Spearman over n_subsets subsets adds about 1/(n_subsets - 1): per example a variance
    # near 2/299 (measured 0.0085 here); allow sigma^2 = 4/299. Given the masks the 50
    # examples are independent (own w and pi), each in [-1, 1], so Bernstein's inequality
    # bounds the mean's deviation t with 2 exp(-50 t^2 / (2 sigma^2 + 2t/3)) ~ 1e-3 at
    # t = 0.13 (measured: 0.002).
    shuffled = np.array([row[rng.permutation(n_train)] for row in w])
    assert abs(lds(shuffled, masks, outputs).mean()) < 0.13
    # A constant prediction ranks nothing.
    assert (lds(np.zeros_like(w), masks, outputs) == 0).all()


def test_lds_names_bad_shapes() -> None:
    masks = np.ones((4, 6), dtype=bool)
    with pytest.raises(ValueError, match=r"'masks' parameter of lds .*n_subsets >= 2.*\(1, 6\)"):
        lds(np.zeros((2, 6)), masks[:1], np.zeros((1, 2)))
    with pytest.raises(
        ValueError, match=r"'attributions' parameter of lds .*n_train = 6.*\(2, 5\)"
    ):
        lds(np.zeros((2, 5)), masks, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"'outputs' parameter of lds .*\(4, 2\).*\(4, 3\)"):
        lds(np.zeros((2, 6)), masks, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="'outputs' parameter of lds holds non-finite"):
        lds(np.zeros((2, 6)), masks, np.full((4, 2), np.nan))


def test_subsets_are_their_own_seeds_and_hold_the_fraction() -> None:
    result = planted(n_models=6, n_heldout=3, fraction=0.3)
    assert (result.masks.sum(axis=1) == 18).all()
    for j in range(6):
        np.testing.assert_array_equal(result.masks[j], subset_mask(1, j, N_TRAIN, 18))
    np.testing.assert_array_equal(
        result.heldout_masks[2], subset_mask(1, 2, N_TRAIN, 18, heldout=True)
    )
    assert not any((result.heldout_masks[j] == result.masks).all(axis=1).any() for j in range(3))


def test_a_resumed_run_trains_only_the_missing_models_and_gives_the_same_result(tmp_path) -> None:
    calls = FIT_CALLS
    calls.clear()
    options = {"fit": counted_fit, "output": planted_output, "seed": 3, "block_size": 8}
    first = train_subsets(
        X_TRAIN, Y_TRAIN, X_TEST, Y_TEST, n_models=20, n_heldout=5, directory=tmp_path, **options
    )
    assert first.n_trained == 25 and len(calls) == 25
    assert len(list(tmp_path.glob("train_*.npz"))) == 3  # blocks of 8, 8, 4
    resumed = train_subsets(
        X_TRAIN, Y_TRAIN, X_TEST, Y_TEST, n_models=30, n_heldout=5, directory=tmp_path, **options
    )
    assert resumed.n_trained == 10 and len(calls) == 35
    fresh = train_subsets(X_TRAIN, Y_TRAIN, X_TEST, Y_TEST, n_models=30, n_heldout=5, **options)
    for name in ("masks", "outputs", "heldout_masks", "heldout_outputs"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(fresh, name))
    again = planted(
        n_models=30, n_heldout=5, seed=3, block_size=8, fit=counted_fit, directory=tmp_path
    )
    assert len(calls) == 70  # the 35 of `fresh`; nothing retrained from the directory
    np.testing.assert_array_equal(again.outputs, fresh.outputs)
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(ValueError, match="belongs to another run"):
        planted(n_models=30, n_heldout=5, seed=4, directory=tmp_path)


def test_the_default_output_is_the_correct_class_margin() -> None:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    logits = model.decision_function(x)
    expected = [logits[i, y[i]] - np.delete(logits[i], y[i]).max() for i in range(len(y))]
    np.testing.assert_allclose(correct_class_margin(model, x, y), expected)
    binary = LogisticRegression(max_iter=1000).fit(x[:100], y[:100])
    s = binary.decision_function(x[:100])
    np.testing.assert_allclose(
        correct_class_margin(binary, x[:100], y[:100]), np.where(y[:100] == 1, s, -s)
    )
    with pytest.raises(ValueError, match="without class 2"):
        correct_class_margin(binary, x[100:], y[100:])
    result = datamodels(
        x[::3],
        y[::3],
        x[1::15],
        y[1::15],
        fit=LogisticRegression(max_iter=1000),
        n_models=8,
        n_heldout=4,
    )
    assert result.outputs.shape == (8, 10) and np.isfinite(result.outputs).all()


def test_bad_input_is_named() -> None:
    for fraction in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"'fraction' parameter of datamodels .*\(0.0, 1.0\)"):
            planted(fraction=fraction)
    with pytest.raises(ValueError, match="'n_models' parameter of datamodels"):
        planted(n_models=1)
    with pytest.raises(ValueError, match="'n_heldout' parameter of datamodels"):
        planted(n_heldout=1)
    with pytest.raises(ValueError, match=r"'y_train' parameter of datamodels .*\(60\)"):
        datamodels(X_TRAIN, Y_TRAIN[:5], X_TEST, Y_TEST, fit=planted_fit)
    with pytest.raises(ValueError, match=r"'x_test' parameter of datamodels .*\(1,\).*\(2,\)"):
        datamodels(X_TRAIN, Y_TRAIN, np.zeros((N_TEST, 2)), Y_TEST, fit=planted_fit)
    with pytest.raises(ValueError, match=r"'output' parameter of datamodels .*\(5,\).*\(3,\)"):
        planted(output=lambda model, x, y: np.zeros(3))

    def broken(x, y):
        raise ZeroDivisionError("boom")

    with pytest.raises(
        RuntimeError, match="model 0 on a subset of 30 points raised ZeroDivisionError"
    ):
        planted(fit=broken)
