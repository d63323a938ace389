"""Pricing data sources (chapter Example 10.2.1, §10.5): payments are exact Shapley values of
the grouped DataGame, they add up to V(N) - V(empty), and the interactions show synergy and
redundancy that the payments average away."""

import math

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

import neuronshapley as ns
from neuronshapley.data import DataGame, price_sources
from neuronshapley.data.pricing import MAX_EXACT_SOURCES, price_game
from neuronshapley.games.closed_form import dataset_pricing_game


def learner() -> LogisticRegression:
    # liblinear's primal solver, deterministic; at its default tolerance (1e-4) the same points
    # in another row order (a duplicated source) can fit differently enough to flip a test
    # prediction (measured on Adult); at 1e-10 the two fits agree far more closely than any
    # test point here lies to the decision boundary.
    return LogisticRegression(C=1.0, solver="liblinear", tol=1e-10, random_state=0)


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, ...]:
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:120], order[300:500]
    return x[train], y[train], x[test], y[test]


def annotators(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Five annotators of 24 points each; annotator 'e' flips every label it gives."""
    sources = np.repeat(np.array(["a", "b", "c", "d", "e"]), len(y) // 5)
    noisy = y.copy()
    noisy[sources == "e"] = 1 - noisy[sources == "e"]
    return sources, noisy


def test_payments_are_exact_shapley_of_the_grouped_data_game_and_add_up(cancer) -> None:
    x, y, x_test, y_test = cancer
    sources, noisy = annotators(y)
    result = price_sources(x, noisy, x_test, y_test, sources, fit=learner())
    game = DataGame(x, noisy, x_test, y_test, fit=learner(), groups=sources)
    exact = ns.exact_shapley(game)
    # Same fits in the same summation order; 1e-12 leaves room for a different rounding only.
    np.testing.assert_allclose(result.payments, exact.values, rtol=0, atol=1e-12)
    # Efficiency: m 2^(m-1) = 80 terms, each at most 1 in size, rounding 1.1e-16 each: < 1e-13.
    assert abs(result.efficiency_gap) <= 1e-12
    v_full = game.value(np.ones((1, 5), bool))[0]
    v_empty = game.value(np.zeros((1, 5), bool))[0]
    assert result.gain == pytest.approx(v_full - v_empty, abs=1e-15)
    assert result.total_payment == pytest.approx(v_full - v_empty, abs=1e-12)
    # The annotator who flips every label is paid least, and less than nothing.
    assert result.payments.argmin() == result.sources.index("e")
    assert result.payments[result.sources.index("e")] < 0
    # Every coalition fitted once (32 coalitions, minus the empty one and any of one class).
    assert result.n_fits <= 31
    assert result.n_points.tolist() == [24] * 5  # type: ignore[union-attr]


def test_standalone_and_leave_one_out_are_the_games_values(cancer) -> None:
    x, y, x_test, y_test = cancer
    sources, noisy = annotators(y)
    result = price_sources(x, noisy, x_test, y_test, sources, fit=learner())
    game = DataGame(x, noisy, x_test, y_test, fit=learner(), groups=sources)
    alone = np.eye(5, dtype=bool)
    v_empty = game.value(np.zeros((1, 5), bool))[0]
    v_full = game.value(np.ones((1, 5), bool))[0]
    np.testing.assert_allclose(result.standalone, game.value(alone) - v_empty, atol=1e-15)
    np.testing.assert_allclose(result.leave_one_out, v_full - game.value(~alone), atol=1e-15)
    assert result.value_of(["a", "c"]) == game.value(np.array([[1, 0, 1, 0, 0]], bool))[0]
    rows = result.table()
    assert [row.source for row in rows] == list("abcde")
    assert rows[0].share == pytest.approx(result.payments[0] / result.gain)


def test_two_one_class_sources_split_their_synergy_equally(cancer) -> None:
    x, y, x_test, y_test = cancer
    # Each source holds one class: alone, the constant predictor (balanced accuracy 0.5, the
    # same as no data); together, a real classifier.
    sources = np.where(y == 1, "positives", "negatives")
    result = price_sources(
        x, y, x_test, y_test, sources, fit=learner(), metric=balanced_accuracy_score
    )
    assert result.value_empty == 0.5
    np.testing.assert_array_equal(result.standalone, [0.0, 0.0])
    gain = result.value_full - 0.5
    assert gain > 0.3  # a fitted classifier: measured 0.47 on these 200 test points
    # Two players: each payment is half the synergy, which is the interaction index.
    np.testing.assert_allclose(result.payments, [gain / 2, gain / 2], atol=1e-15)
    assert result.interaction("negatives", "positives") == pytest.approx(gain, abs=1e-15)


def test_a_planted_synergy_has_a_positive_interaction_and_is_paid_above_standalone(
    cancer,
) -> None:
    x, y, x_test, y_test = cancer
    # Points 0..79 go to two one-class sources; the last 40 are an ordinary mixed source.
    sources = np.where(y == 1, "positives", "negatives").astype(object)
    sources[80:] = "mixed"
    result = price_sources(
        x, y, x_test, y_test, sources, fit=learner(), metric=balanced_accuracy_score
    )
    pair = ("negatives", "positives")
    assert result.interaction(*pair) > 0
    assert result.pairs()[0][:2] == pair  # the most synergistic pair
    for name in pair:
        i = result.sources.index(name)
        assert result.standalone[i] == 0.0
        assert result.payments[i] > result.standalone[i]


def test_a_duplicated_source_is_paid_the_same_as_its_twin(cancer) -> None:
    x, y, x_test, y_test = cancer
    sources, noisy = annotators(y)
    twin = sources == "a"
    x2 = np.concatenate([x, x[twin]])
    y2 = np.concatenate([noisy, noisy[twin]])
    sources2 = np.concatenate([sources, np.full(int(twin.sum()), "a-copy")])
    result = price_sources(x2, y2, x_test, y_test, sources2, fit=learner())
    a, copy = result.sources.index("a"), result.sources.index("a-copy")
    # Symmetry: V(S + a) = V(S + a-copy) for every S (the same points in another row order,
    # fitted to a tolerance of 1e-10); so their payments agree.
    assert result.payments[a] == pytest.approx(result.payments[copy], abs=1e-12)
    assert result.interaction("a", "a-copy") < 0  # a copy is redundant with its original
    assert abs(result.efficiency_gap) <= 1e-12


def test_the_chapters_problem_10_5_1() -> None:
    result = price_game(dataset_pricing_game())
    np.testing.assert_allclose(result.payments, [115 / 3, 85 / 3, 100 / 3], atol=1e-12)
    assert result.efficiency_gap == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(result.standalone, [50, 20, 25])
    np.testing.assert_allclose(result.leave_one_out, [10, 20, 25])
    # B and C are the synergy (I = 20); A is redundant with each (I = -20), by hand from the
    # table: I_BC = (45 + (-5)) / 2.
    assert result.interaction("B", "C") == pytest.approx(20.0)
    assert result.interaction("A", "B") == pytest.approx(-20.0)
    assert result.value_of(["B", "C"]) == 90.0 > result.value_of(["A", "C"])


def test_a_budget_prices_many_sources_with_intervals(cancer) -> None:
    x, y, x_test, y_test = cancer
    sources = np.arange(len(y)) % (MAX_EXACT_SOURCES + 1)
    result = price_sources(x, y, x_test, y_test, sources, fit=learner(), budget=4, seed=0)
    assert result.method == "permutation"
    assert result.interactions is None and result.coalition_values is None
    # Each permutation's marginals telescope to V(N) - V(empty); 13 terms of rounding.
    assert abs(result.efficiency_gap) <= 1e-12
    assert (result.payment_low <= result.payments).all()
    assert (result.payments <= result.payment_high).all()
    assert result.shapley.n_samples.tolist() == [4] * 13
    with pytest.raises(ValueError, match="no interactions"):
        result.interaction("0", "1")
    assert result.pairs() == []


def test_bad_input_is_named(cancer) -> None:
    x, y, x_test, y_test = cancer
    with pytest.raises(
        ValueError, match=r"'sources' .* one source label per .* Got shape \(118,\)"
    ):
        price_sources(x, y, x_test, y_test, ["a", "b"] * 59, fit=learner())
    with pytest.raises(ValueError, match=r"at least 2 sources .* Got 1"):
        price_sources(x, y, x_test, y_test, ["a"] * 120, fit=learner())
    many = np.arange(120) % (MAX_EXACT_SOURCES + 1)
    with pytest.raises(ValueError, match=r"13 sources; .* refused above 12 .* 'budget'"):
        price_sources(x, y, x_test, y_test, many, fit=learner())
    with pytest.raises(ValueError, match=r"'budget' parameter of price_sources .* Got 1"):
        price_sources(x, y, x_test, y_test, ["a", "b"] * 60, fit=learner(), budget=1)
    result = price_sources(x, y, x_test, y_test, ["a", "b"] * 60, fit=learner())
    with pytest.raises(ValueError, match=r"'first' parameter .* Got 'z'"):
        result.interaction("z", "a")
    with pytest.raises(ValueError, match="two sources"):
        result.interaction("a", "a")
    with pytest.raises(ValueError, match=r"'sources' parameter of PricingResult.value_of"):
        result.value_of(["q"])
    assert not math.isnan(result.table()[0].share)
    # Checked even where exact pricing does not use them: a mistake never passes silently.
    with pytest.raises(ValueError, match="'value_range'"):
        price_game(dataset_pricing_game(), value_range=-5)
    with pytest.raises(ValueError, match="'seed'"):
        price_game(dataset_pricing_game(), seed=-3)


def test_int_source_labels_name_the_sources_everywhere(cancer) -> None:
    x, y, x_test, y_test = cancer
    result = price_sources(x, y, x_test, y_test, np.arange(len(y)) % 3, fit=learner())
    assert result.interaction(0, 1) == result.interaction("0", "1")
    assert result.value_of([0, 1]) == result.value_of(["0", "1"])


def test_the_docstring_example_runs() -> None:
    import doctest

    import neuronshapley.data.pricing as pricing

    outcome = doctest.testmod(pricing, raise_on_error=True)
    assert outcome.attempted >= 4
