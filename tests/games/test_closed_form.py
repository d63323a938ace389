"""The closed-form games against brute force over all coalitions, and their input checks."""

import itertools
import math
import time
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest

from neuronshapley.games import (
    SOUM,
    AdditiveGame,
    AirportGame,
    BaseGame,
    DeadNetworkGame,
    Game,
    GloveGame,
    TabularGame,
    UnanimityGame,
    WeightedVotingGame,
    corner_detector_game,
    dataset_pricing_game,
)


def all_coalitions(n: int) -> np.ndarray:
    """Row ``mask`` holds player ``i`` iff bit ``i`` of ``mask`` is set."""
    return (np.arange(2**n)[:, None] >> np.arange(n)) & 1 == 1


def brute_force_shapley(game: BaseGame) -> np.ndarray:
    """Eq. (1) of Ghorbani & Zou (2020) with exact weights |S|! (n-|S|-1)! / n!."""
    n = game.n_players
    values = game.value(all_coalitions(n))
    phi = np.empty(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        terms = []
        for size in range(n):
            weight = Fraction(
                math.factorial(size) * math.factorial(n - size - 1), math.factorial(n)
            )
            for subset in itertools.combinations(others, size):
                mask = sum(1 << j for j in subset)
                terms.append(float(weight) * (values[mask | (1 << i)] - values[mask]))
        phi[i] = math.fsum(terms)
    return phi


GAMES: dict[str, Callable[[], BaseGame]] = {
    "unanimity-n1": lambda: UnanimityGame(1, [0]),
    "unanimity-n5": lambda: UnanimityGame(5, [1, 3]),
    "unanimity-n8-all": lambda: UnanimityGame(8, range(8)),
    "soum-n1": lambda: SOUM(1, 3, seed=1),
    "soum-n6": lambda: SOUM(6, 10, seed=2),
    "soum-n10-order5": lambda: SOUM(10, 20, seed=3, max_order=5, coefficient_scale=2.5),
    "soum-from-basis": lambda: SOUM.from_basis(
        4, [[0], [1, 2], [0, 1, 2, 3], [1, 2]], [1, -2, 3, 0.5]
    ),
    "glove-1-1": lambda: GloveGame(1, 1),
    "glove-2-3": lambda: GloveGame(2, 3),
    "glove-3-3": lambda: GloveGame(3, 3),
    "glove-1-6": lambda: GloveGame(1, 6),
    "glove-6-4": lambda: GloveGame(6, 4),
    "airport-n1": lambda: AirportGame([3.0]),
    "airport-n4": lambda: AirportGame([4.0, 1.0, 3.0, 2.0]),
    "airport-ties": lambda: AirportGame([2.0, 5.0, 2.0, 0.0, 5.0, 1.5, 2.0]),
    "airport-n10": lambda: AirportGame(np.random.default_rng(0).uniform(0, 10, size=10)),
    "voting-n1": lambda: WeightedVotingGame([2], 1),
    "voting-n4": lambda: WeightedVotingGame([4, 3, 2, 1], 6),
    "voting-zeros": lambda: WeightedVotingGame([0, 5, 0, 2, 3, 0], 5),
    "voting-heavy": lambda: WeightedVotingGame([7, 1, 1, 2], 5),
    "voting-unreachable": lambda: WeightedVotingGame([1, 1, 1], 4),
    "voting-n10": lambda: WeightedVotingGame([5, 9, 1, 0, 3, 3, 7, 2, 4, 6], 21),
    "additive-n3": lambda: AdditiveGame([1.0, -2.0, 0.5]),
    "dead-n1": lambda: DeadNetworkGame([2.0], 1, dead_value=0.5),
    "dead-n6-m1": lambda: DeadNetworkGame([1.0, 2.0, 0.0, -1.0, 3.0, 0.5], 1),
    "dead-n6-m3": lambda: DeadNetworkGame([1.0, 2.0, 0.0, -1.0, 3.0, 0.5], 3, dead_value=0.25),
    "dead-n6-mn": lambda: DeadNetworkGame([1.0, 2.0, 0.0, -1.0, 3.0, 0.5], 6, dead_value=-2.0),
    "dead-n9-m4": lambda: DeadNetworkGame(np.arange(9.0), 4, dead_value=1.0),
    "dataset-pricing": dataset_pricing_game,
    "corner-detector": corner_detector_game,
    "tabular-random-n5": lambda: TabularGame(
        {
            tuple(f"x{i}" for i in range(5) if mask >> i & 1): float(v)
            for mask, v in enumerate(np.random.default_rng(4).normal(size=32))
        },
        [f"x{i}" for i in range(5)],
    ),
}


@pytest.mark.parametrize("name", list(GAMES))
def test_shapley_values_match_brute_force(name: str) -> None:
    game = GAMES[name]()
    phi = game.shapley_values()  # type: ignore[attr-defined]
    assert phi.dtype == np.float64
    assert phi.shape == (game.n_players,)
    np.testing.assert_allclose(phi, brute_force_shapley(game), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(GAMES))
def test_efficiency_and_protocol(name: str) -> None:
    game = GAMES[name]()
    assert isinstance(game, Game)
    ends = game.value(np.array([[True] * game.n_players, [False] * game.n_players]))
    np.testing.assert_allclose(game.shapley_values().sum(), ends[0] - ends[1], atol=1e-12)  # type: ignore[attr-defined]


def test_dataset_pricing_hand_derived() -> None:
    # phi_A = 50/3 + (55 + 55)/6 + 10/3, phi_B = 20/3 + (25 + 65)/6 + 20/3,
    # phi_C = 25/3 + (30 + 70)/6 + 25/3; they sum to V(ABC) = 100.
    game = dataset_pricing_game()
    assert game.player_names == ["A", "B", "C"]
    np.testing.assert_allclose(game.shapley_values(), [115 / 3, 85 / 3, 100 / 3], rtol=1e-14)
    assert math.isclose(game.shapley_values().sum(), 100.0)


def test_corner_detector_hand_derived() -> None:
    game = corner_detector_game()
    assert game.player_names == ["TL", "TR", "BL", "BR"]
    np.testing.assert_allclose(game.shapley_values(), [1 / 3, 1 / 3, 1 / 3, 0.0], rtol=1e-15)
    assert game.value(
        np.array([[True, True, True, False], [True, True, False, True]])
    ).tolist() == [
        1.0,
        0.0,
    ]


def test_glove_known_value() -> None:
    # One left glove, two right: the left player is pivotal unless it comes first (1/3 chance of
    # being first), so phi_left = 2/3 and each right player gets 1/6.
    np.testing.assert_allclose(GloveGame(1, 2).shapley_values(), [2 / 3, 1 / 6, 1 / 6])


def test_voting_large_is_exact_and_efficient() -> None:
    rng = np.random.default_rng(5)
    weights = rng.integers(0, 50, size=60)
    game = WeightedVotingGame(weights, int(weights.sum()) // 2 + 1)
    phi = game.shapley_values()
    assert math.isclose(phi.sum(), 1.0, rel_tol=1e-12)
    # Equal weights have equal power (symmetry), zero weights none (null player).
    for w in np.unique(weights):
        np.testing.assert_allclose(phi[weights == w], phi[weights == w][0], rtol=1e-12)
    assert np.all(phi[weights == 0] == 0.0)


def test_evaluation_counter_grows_by_batch_size() -> None:
    game = GloveGame(2, 3)
    assert game.n_evaluations == 0
    game.value(all_coalitions(5)[:7])
    assert game.n_evaluations == 7
    game(all_coalitions(5)[:1])
    assert game.n_evaluations == 8
    game.value(np.zeros((0, 5), dtype=bool))
    assert game.n_evaluations == 8


def test_soum_attributes_and_seed() -> None:
    game = SOUM(12, 30, seed=7, max_order=4)
    assert len(game.basis) == 30
    assert game.coefficients.shape == (30,)
    assert all(1 <= len(term) <= 4 and len(set(term.tolist())) == len(term) for term in game.basis)
    same = SOUM(12, 30, seed=np.random.default_rng(7), max_order=4)
    np.testing.assert_array_equal(game.coefficients, same.coefficients)
    assert all(np.array_equal(a, b) for a, b in zip(game.basis, same.basis, strict=True))


def test_soum_large_batch_matches_reference_and_is_fast() -> None:
    n_players, n_basis = 2000, 500
    game = SOUM(n_players, n_basis, seed=0)
    coalitions = np.random.default_rng(1).random((64, n_players)) < 0.9
    values = game.value(coalitions)
    for row in (0, 17, 63):
        expected = sum(
            c
            for term, c in zip(game.basis, game.coefficients, strict=True)
            if all(coalitions[row, j] for j in term)
        )
        assert math.isclose(values[row], expected, rel_tol=1e-12, abs_tol=1e-12)
    phi = game.shapley_values()
    ends = game.value(np.array([[True] * n_players, [False] * n_players]))
    assert math.isclose(phi.sum(), ends[0] - ends[1], rel_tol=1e-12, abs_tol=1e-12)
    start = time.perf_counter()
    for _ in range(20):
        game.value(coalitions)
    # Generous bound (target is < 1 ms per batch) so that a loaded CI machine does not fail.
    assert (time.perf_counter() - start) / 20 < 0.02


def test_tabular_accepts_string_and_frozenset_keys() -> None:
    table = {(): 0.0, "a": 1.0, frozenset({"b"}): 2.0, ("b", "a"): 5.0}
    game = TabularGame(table, ["a", "b"])
    np.testing.assert_allclose(game.shapley_values(), [2.0, 3.0])


@pytest.mark.parametrize(
    ("coalitions", "error", "match"),
    [
        (np.ones((2, 4), dtype=bool), ValueError, r"must have shape \(n_coalitions, 3\)"),
        (np.ones((2, 3), dtype=int), TypeError, "must have dtype bool"),
        (np.ones(3, dtype=bool), ValueError, r"coalitions\[None, :\]"),
        ([[True, False, True]], TypeError, "must be a numpy bool array"),
    ],
)
def test_bad_coalitions(coalitions: object, error: type[Exception], match: str) -> None:
    game = AdditiveGame([1.0, 2.0, 3.0])
    with pytest.raises(error, match=match):
        game.value(coalitions)  # type: ignore[arg-type]
    assert game.n_evaluations == 0


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: AirportGame([1.0, -0.5]), ValueError, r"'costs'.*non-negative.*-0\.5"),
        (lambda: AirportGame([]), ValueError, "'costs'.*non-empty"),
        (lambda: WeightedVotingGame([1, 2], 0), ValueError, r"'quota'.*\[1, inf\]. Got 0"),
        (lambda: WeightedVotingGame([1, 2], -3), ValueError, "'quota'.*Got -3"),
        (lambda: WeightedVotingGame([1.5, 2], 2), TypeError, "'weights'.*ints"),
        (lambda: WeightedVotingGame([1, -2], 2), ValueError, "'weights'.*non-negative.*-2"),
        (lambda: DeadNetworkGame([1.0, 2.0], 0), ValueError, r"'min_players'.*\[1, 2\]. Got 0"),
        (lambda: DeadNetworkGame([1.0, 2.0], 3), ValueError, r"'min_players'.*\[1, 2\]. Got 3"),
        (lambda: DeadNetworkGame([1.0], 1, dead_value=np.nan), ValueError, "'dead_value'"),
        (lambda: GloveGame(0, 2), ValueError, "'n_left'.*Got 0"),
        (lambda: UnanimityGame(3, []), ValueError, "'coalition'.*at least one"),
        (lambda: UnanimityGame(3, [0, 3]), ValueError, r"'coalition'.*\[0, 2\]. Got 3"),
        (lambda: UnanimityGame(3, [1, 1]), ValueError, "'coalition'.*repeat"),
        (lambda: SOUM(3, 0), ValueError, "'n_basis'.*Got 0"),
        (lambda: SOUM(3, 2, max_order=0), ValueError, "'max_order'.*Got 0"),
        (lambda: SOUM(3, 2, coefficient_scale=-1.0), ValueError, "'coefficient_scale'"),
        (
            lambda: SOUM.from_basis(3, [[0, 1], [2, 5]], [1.0, 2.0]),
            ValueError,
            r"'basis\[1\]'.*Got 5",
        ),
        (lambda: SOUM.from_basis(3, [[0], []], [1.0, 2.0]), ValueError, r"'basis\[1\]'.*at least"),
        (lambda: SOUM.from_basis(3, [[0, 0]], [1.0]), ValueError, r"'basis\[0\]'.*repeat"),
        (lambda: SOUM.from_basis(3, [], []), ValueError, "'basis'.*non-empty"),
        (lambda: SOUM.from_basis(3, [[0], [1]], [1.0]), ValueError, "'coefficients'.*one number"),
        (
            lambda: TabularGame({(): 0.0, ("a",): 1.0, ("a", "b"): 2.0}, ["a", "b"]),
            ValueError,
            r"all 4 coalitions. 1 are missing, e.g. \{b\}",
        ),
        (
            lambda: TabularGame({(): 0.0, ("a",): 1.0, ("c",): 2.0}, ["a", "b"]),
            ValueError,
            "unknown player 'c'",
        ),
        (
            lambda: TabularGame({(): 0.0, ("a",): 1.0, "a": 1.0, ("a", "b"): 2.0}, ["a", "b"]),
            ValueError,
            "twice",
        ),
        (lambda: TabularGame({}, [f"x{i}" for i in range(21)]), ValueError, "1 to 20 names"),
    ],
)
def test_bad_arguments(make: Callable[[], object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()
