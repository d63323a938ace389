"""Bad input gets a clear error that names the parameter, and costs no evaluation.

Every error is checked with ``pytest.raises(..., match=...)``. For errors raised while the
arguments are validated, the game's evaluation counter must still be 0 afterwards: a mistake
in the call must not be found out after an expensive part of the run ("loses nothing").
"""

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import neuronshapley as ns

Run = Callable[..., ns.ShapleyResult]

# Each sampling estimator with the least it needs to run.
SAMPLING: list[Any] = [
    pytest.param(
        lambda game, **kw: ns.permutation_shapley(game, **{"n_permutations": 4, **kw}),
        id="permutation_shapley",
    ),
    pytest.param(
        lambda game, **kw: ns.truncated_shapley(game, **{"n_permutations": 4, **kw}),
        id="truncated_shapley",
    ),
    pytest.param(
        lambda game, **kw: ns.tmab_shapley(game, **{"k": 2, "max_evaluations": 500, **kw}),
        id="tmab_shapley",
    ),
]
EXACT: list[Any] = [
    pytest.param(ns.exact_shapley, id="exact_shapley"),
    pytest.param(ns.exact_banzhaf, id="exact_banzhaf"),
]
ALL = EXACT + SAMPLING
TRUNCATING = SAMPLING[1:]  # permutation_shapley has no truncation arguments


def soum() -> ns.games.SOUM:
    return ns.games.SOUM(n_players=6, n_basis=8, seed=1)


@contextmanager
def refused_before_evaluating(
    game: Any, exception: type[Exception] | tuple[type[Exception], ...], match: str
) -> Iterator[None]:
    """``pytest.raises`` that also checks the game was never evaluated."""
    with pytest.raises(exception, match=match):
        yield
    assert game.n_evaluations == 0


# -- games ------------------------------------------------------------------------------------


def test_game_value_rejects_a_list() -> None:
    game = soum()
    with refused_before_evaluating(game, TypeError, r"coalitions .* numpy bool array"):
        game.value([[True] * 6])


def test_game_value_rejects_one_dimensional_coalitions() -> None:
    game = soum()
    with refused_before_evaluating(
        game, ValueError, r"shape \(n_coalitions, 6\).*coalitions\[None, :\]"
    ):
        game.value(np.ones(6, dtype=bool))


def test_game_value_rejects_wrong_number_of_players() -> None:
    game = soum()
    with refused_before_evaluating(
        game, ValueError, r"shape \(n_coalitions, 6\)\. Got shape \(3, 5\)"
    ):
        game.value(np.ones((3, 5), dtype=bool))


@pytest.mark.parametrize("dtype", [np.int64, np.float64, np.uint8])
def test_game_value_rejects_non_bool_dtype(dtype: type) -> None:
    game = soum()
    with refused_before_evaluating(game, TypeError, r"dtype bool.*astype\(bool\)"):
        game.value(np.ones((2, 6), dtype=dtype))


# -- tmab_shapley's k, tol, side ----------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 6, 7, -1])
def test_tmab_k_out_of_range(k: int) -> None:
    game = soum()
    with refused_before_evaluating(game, ValueError, r"'k' parameter of tmab_shapley.*\[1, 5\]"):
        ns.tmab_shapley(game, k, max_evaluations=100)


def test_tmab_k_not_an_int() -> None:
    game = soum()
    with refused_before_evaluating(game, TypeError, r"'k' parameter of tmab_shapley"):
        ns.tmab_shapley(game, 2.0, max_evaluations=100)  # type: ignore[arg-type]


def test_tmab_negative_tol() -> None:
    game = soum()
    with refused_before_evaluating(game, ValueError, r"'tol' parameter of tmab_shapley.*-0\.1"):
        ns.tmab_shapley(game, 2, tol=-0.1)


def test_tmab_zero_tol_needs_a_budget() -> None:
    game = soum()
    with refused_before_evaluating(game, ValueError, r"tol=0.*max_evaluations or max_seconds"):
        ns.tmab_shapley(game, 2, tol=0)
    # With a budget it runs.
    assert ns.tmab_shapley(game, 2, tol=0, max_evaluations=50, seed=0).n_evaluations == 50


def test_tmab_unknown_side() -> None:
    game = soum()
    with refused_before_evaluating(game, ValueError, r"'side' parameter.*'top'.*'middle'"):
        ns.tmab_shapley(game, 2, side="middle", max_evaluations=100)


# -- arguments every sampling estimator shares ------------------------------------------------


@pytest.mark.parametrize("delta", [0, 1, 1.5, -0.1, 0.0, 1.0])
@pytest.mark.parametrize("run", SAMPLING)
def test_delta_outside_open_unit_interval(run: Run, delta: float) -> None:
    game = soum()
    with refused_before_evaluating(
        game,
        ValueError,
        rf"'delta' parameter .* float in \(0\.0, 1\.0\)\. Got {re.escape(repr(delta))}",
    ):
        run(game, delta=delta)


@pytest.mark.parametrize("budget", [0, -1, -100])
@pytest.mark.parametrize("run", SAMPLING)
def test_max_evaluations_not_positive(run: Run, budget: int) -> None:
    game = soum()
    with refused_before_evaluating(game, ValueError, rf"'max_evaluations' parameter.*{budget}"):
        run(game, max_evaluations=budget)


@pytest.mark.parametrize("run", ALL)
def test_batch_size_zero(run: Run) -> None:
    game = soum()
    with refused_before_evaluating(game, ValueError, r"'batch_size' parameter.*Got 0"):
        run(game, batch_size=0)


@pytest.mark.parametrize("run", SAMPLING)
def test_n_walks_zero(run: Run) -> None:
    game = soum()
    with refused_before_evaluating(game, ValueError, r"'n_walks' parameter.*Got 0"):
        run(game, n_walks=0)


@pytest.mark.parametrize("run", SAMPLING)
def test_unknown_bound(run: Run) -> None:
    game = soum()
    with refused_before_evaluating(game, ValueError, r"'bound' parameter.*'bernstein'.*'foo'"):
        run(game, bound="foo")


@pytest.mark.parametrize("run", TRUNCATING)
def test_unknown_truncation_mode(run: Run) -> None:
    game = soum()
    with refused_before_evaluating(
        game, ValueError, r"'truncation_mode' parameter.*'relative'.*'bogus'"
    ):
        run(game, truncation=0.1, truncation_mode="bogus")


@pytest.mark.parametrize("truncation", [1.0, 1.5, -0.1])
@pytest.mark.parametrize("run", TRUNCATING)
def test_relative_truncation_outside_unit_interval(run: Run, truncation: float) -> None:
    game = soum()
    with refused_before_evaluating(
        game,
        ValueError,
        rf"'truncation' parameter .*\[0\.0, 1\.0\)\. Got {re.escape(repr(truncation))}",
    ):
        run(game, truncation=truncation)


@pytest.mark.parametrize("run", TRUNCATING)
def test_absolute_truncation_takes_any_threshold(run: Run) -> None:
    # The [0, 1) rule is for the relative mode only.
    result = run(soum(), truncation=-1.5, truncation_mode="absolute", seed=0)
    assert result.n_evaluations > 0


@pytest.mark.parametrize("run", TRUNCATING)
def test_patience_zero(run: Run) -> None:
    game = soum()
    with refused_before_evaluating(game, ValueError, r"'patience' parameter.*Got 0"):
        run(game, truncation=0.1, patience=0)


@pytest.mark.parametrize("seed", [-1, -(2**40)])
@pytest.mark.parametrize("run", SAMPLING)
def test_negative_seed(run: Run, seed: int) -> None:
    game = soum()
    with refused_before_evaluating(game, ValueError, rf"'seed' parameter.*Got {seed}"):
        run(game, seed=seed)


@pytest.mark.parametrize("seed", ["abc", 1.5, True])
@pytest.mark.parametrize("run", SAMPLING)
def test_seed_of_wrong_type(run: Run, seed: Any) -> None:
    game = soum()
    with refused_before_evaluating(
        game, TypeError, rf"'seed' parameter.*Got {re.escape(repr(seed))}"
    ):
        run(game, seed=seed)


# -- permutation_shapley / truncated_shapley ----------------------------------------------------


@pytest.mark.parametrize(
    "estimator", [ns.permutation_shapley, ns.truncated_shapley], ids=lambda f: f.__name__
)
def test_no_stopping_rule(estimator: Run) -> None:
    game = soum()
    with refused_before_evaluating(
        game, ValueError, r"stopping rule: give n_permutations, max_evaluations or max_seconds"
    ):
        estimator(game)


@pytest.mark.parametrize(
    "estimator", [ns.permutation_shapley, ns.truncated_shapley], ids=lambda f: f.__name__
)
@pytest.mark.parametrize(
    ("n_walks", "n_permutations", "shown"),
    [(3, 4, "n_walks=3"), (4, 5, "n_permutations=5"), (5, 7, "n_walks=5")],
)
def test_antithetic_needs_even_counts(
    estimator: Run, n_walks: int, n_permutations: int, shown: str
) -> None:
    game = soum()
    with refused_before_evaluating(game, ValueError, rf"antithetic=True.*must be even.*{shown}"):
        estimator(game, n_permutations, antithetic=True, n_walks=n_walks)


# -- games that answer badly --------------------------------------------------------------------

BAD_ANSWERS = [
    pytest.param(
        lambda c: np.full(len(c), np.nan),
        ValueError,
        r"non-finite.*nan.*game must return finite",
        id="nan",
    ),
    pytest.param(
        lambda c: np.full(len(c), np.inf),
        ValueError,
        r"non-finite.*inf.*game must return finite",
        id="inf",
    ),
    pytest.param(
        lambda c: np.zeros(len(c) + 1),
        ValueError,
        r"must return an array of shape \((\d+),\), one value per coalition\. "
        r"Got shape \(\d+,\) for a batch of \1 coalitions",
        id="wrong_length",
    ),
    pytest.param(
        lambda c: np.zeros((len(c), 1)),
        ValueError,
        r"must return an array of shape \((\d+),\).*Got shape \(\1, 1\)",
        id="two_dimensional",
    ),
    pytest.param(
        lambda c: np.array(["a"] * len(c)),
        TypeError,
        r"must return an array of \d+ floats.*does not convert to floats",
        id="strings",
    ),
]


class ProtocolGame:
    """A game that follows the protocol without deriving from BaseGame (no checks of its own)."""

    def __init__(self, function: Callable[[np.ndarray], Any], n_players: int) -> None:
        self.function = function
        self.n_players = n_players
        self.player_names = [f"u{i}" for i in range(n_players)]
        self.n_evaluations = 0

    def value(self, coalitions: np.ndarray) -> Any:
        self.n_evaluations += len(coalitions)
        return self.function(coalitions)

    def __repr__(self) -> str:
        return "ProtocolGame()"


@pytest.mark.parametrize(("answer", "exception", "match"), BAD_ANSWERS)
@pytest.mark.parametrize("run", ALL)
def test_plain_callable_answering_badly(
    run: Run, answer: Callable[[np.ndarray], Any], exception: type[Exception], match: str
) -> None:
    # The message names the game (here CallableGame, the wrapper of the plain callable).
    with pytest.raises(exception, match=rf"(?i)game.*{match}"):
        run(answer, n_players=6)


@pytest.mark.parametrize(("answer", "exception", "match"), BAD_ANSWERS)
@pytest.mark.parametrize("run", ALL)
def test_protocol_game_answering_badly(
    run: Run, answer: Callable[[np.ndarray], Any], exception: type[Exception], match: str
) -> None:
    # A Game that checks nothing itself is checked by the estimator, which names it.
    with pytest.raises(exception, match=rf"The game ProtocolGame\(\).*{match}"):
        run(ProtocolGame(answer, 6))


# -- the game argument itself -------------------------------------------------------------------


@pytest.mark.parametrize("run", ALL)
def test_plain_callable_without_n_players(run: Run) -> None:
    calls = []

    def game(coalitions: np.ndarray) -> np.ndarray:
        calls.append(len(coalitions))
        return coalitions.sum(axis=1).astype(float)

    with pytest.raises(ValueError, match=r"plain callable as game, so the 'n_players' parameter"):
        run(game)
    assert calls == []


@pytest.mark.parametrize("run", ALL)
@pytest.mark.parametrize(
    "game", [42, "soum", None, np.zeros(3)], ids=["int", "str", "None", "array"]
)
def test_game_not_callable(run: Run, game: Any) -> None:
    with pytest.raises(TypeError, match=r"'game' parameter .* must be a Game or a callable"):
        run(game, n_players=6)


@pytest.mark.parametrize("run", ALL)
def test_n_players_disagreeing_with_the_game(run: Run) -> None:
    game = soum()
    with refused_before_evaluating(game, ValueError, r"'n_players' parameter .* is 7 .* 6 players"):
        run(game, n_players=7)


@pytest.mark.parametrize("run", EXACT)
def test_exact_refuses_26_players_without_evaluating(run: Run) -> None:
    calls = []

    def expensive(coalitions: np.ndarray) -> np.ndarray:
        calls.append(len(coalitions))
        return np.zeros(len(coalitions))

    with pytest.raises(ValueError, match=r"refuses n_players > 25 \(this game has 26: 2\^26"):
        run(expensive, n_players=26)
    assert calls == []


# -- resuming -----------------------------------------------------------------------------------


@pytest.mark.parametrize("run", SAMPLING)
def test_resume_from_empty_directory(run: Run, tmp_path: Path) -> None:
    game = soum()
    with refused_before_evaluating(
        game, FileNotFoundError, r"'resume' parameter .* holds no checkpoint"
    ):
        run(game, resume=tmp_path)


@pytest.mark.parametrize("run", SAMPLING)
def test_checkpoint_that_is_a_file(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "not_a_directory"
    path.write_text("x")
    game = soum()
    with refused_before_evaluating(game, (ValueError, OSError), r"'checkpoint'"):
        run(game, checkpoint=path)


@pytest.fixture
def tmab_checkpoint(tmp_path: Path) -> Path:
    ns.tmab_shapley(soum(), 2, seed=0, max_evaluations=40, checkpoint=tmp_path)
    return tmp_path


def test_resume_with_different_k(tmab_checkpoint: Path) -> None:
    game = soum()
    with refused_before_evaluating(game, ValueError, r"made with k=2; this call has k=3"):
        ns.tmab_shapley(game, 3, seed=0, max_evaluations=80, resume=tmab_checkpoint)


def test_resume_with_different_seed(tmab_checkpoint: Path) -> None:
    game = soum()
    with refused_before_evaluating(game, ValueError, r"made with seed 0; this call has seed 1"):
        ns.tmab_shapley(game, 2, seed=1, max_evaluations=80, resume=tmab_checkpoint)


def test_resume_with_different_tol(tmab_checkpoint: Path) -> None:
    game = soum()
    with refused_before_evaluating(
        game, ValueError, r"made with tol=0\.001; this call has tol=0\.1"
    ):
        ns.tmab_shapley(game, 2, tol=0.1, max_evaluations=80, resume=tmab_checkpoint)


@pytest.mark.parametrize(
    "estimator", [ns.permutation_shapley, ns.truncated_shapley], ids=lambda f: f.__name__
)
def test_resume_with_different_estimator(estimator: Run, tmab_checkpoint: Path) -> None:
    game = soum()
    with refused_before_evaluating(
        game, ValueError, rf"written by tmab_shapley, not {estimator.__name__}"
    ):
        estimator(game, max_evaluations=80, resume=tmab_checkpoint)


def test_resume_with_a_game_of_another_size(tmab_checkpoint: Path) -> None:
    game = ns.games.SOUM(n_players=7, n_basis=8, seed=1)
    with refused_before_evaluating(game, ValueError, r"for 6 players; the game has 7"):
        ns.tmab_shapley(game, 2, max_evaluations=80, resume=tmab_checkpoint)


# -- loading results ----------------------------------------------------------------------------


def test_load_of_a_directory_without_files(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"not a saved ShapleyResult: expected result\.json"
    ):
        ns.ShapleyResult.load(tmp_path)


def test_load_of_a_directory_with_only_the_json(tmp_path: Path) -> None:
    result = ns.exact_shapley(soum())
    result.save(tmp_path)
    (tmp_path / "result.npz").unlink()
    assert json.loads((tmp_path / "result.json").read_text())["format_version"] == 3
    with pytest.raises(FileNotFoundError, match=r"result\.json and result\.npz"):
        ns.ShapleyResult.load(tmp_path)


def test_a_plain_callable_that_raises_is_named_with_its_error_as_cause() -> None:
    def broken(coalitions: np.ndarray) -> np.ndarray:
        return coalitions.sum(axis=1) / 0 if coalitions.shape[0] < 0 else 1 / 0

    with pytest.raises(
        RuntimeError, match=r"The game function you passed \(broken\) raised ZeroDivisionError"
    ) as error:
        ns.permutation_shapley(broken, n_players=4, n_permutations=2, seed=0)
    assert isinstance(error.value.__cause__, ZeroDivisionError)
