"""Task size and calls to the game chosen from the measured cost of an evaluation (issue 13).

An expensive game (a transformer: seconds per coalition) is cut into tasks of about a minute,
so that a kill or a budget cut loses about a minute of work, and under a time budget a batch is
evaluated in short calls, so that the budget overshoots by one short call at most, with no value
changed. A cheap game keeps what every run did before: whole rounds. The games here run on a
fake clock that advances by a fixed cost per coalition, so the choices are exact and the tests
take no time.
"""

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley.estimators import driver, walks
from neuronshapley.estimators.checkpoint import CheckpointError
from neuronshapley.estimators.options import (
    AUTO,
    CALL_SHARE_OF_TIME,
    TASK_SECONDS,
    TASKS_PER_TIME_BUDGET,
    Sampling,
)
from neuronshapley.games import AirportGame


class Clock:
    """A fake ``time.perf_counter`` that the game below advances."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class CostlyGame:
    """An airport game whose every coalition costs ``seconds`` on the fake clock."""

    def __init__(self, n_players: int, seconds: float, clock: Clock) -> None:
        self.game = AirportGame([float(c) for c in range(1, n_players + 1)])
        self.n_players = n_players
        self.player_names = self.game.player_names
        self.seconds = seconds
        self.clock = clock
        self.calls: list[int] = []
        self.n_evaluations = 0

    def value(self, coalitions: np.ndarray) -> np.ndarray:
        self.clock.now += self.seconds * len(coalitions)
        self.calls.append(len(coalitions))
        self.n_evaluations += len(coalitions)
        return self.game.value(coalitions)

    def fingerprint(self) -> str:
        # The game, whatever it costs: a checkpoint resumes on a cheaper machine.
        return ns.games.game_fingerprint(self.game)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    for module in (driver, walks):
        monkeypatch.setattr(module, "time", SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def same_result(a: ns.ShapleyResult, b: ns.ShapleyResult) -> None:
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.ci_low, b.ci_low)
    np.testing.assert_array_equal(a.ci_high, b.ci_high)
    assert a.n_evaluations == b.n_evaluations


def test_a_cheap_game_keeps_whole_rounds(clock: Clock) -> None:
    game = lambda: CostlyGame(30, 1e-4, clock)  # noqa: E731
    chosen = ns.permutation_shapley(game(), n_permutations=24, seed=0)
    assert chosen.params["walks_per_task"] is None
    # The same bits as a run with the setting every run had before it was chosen.
    given = ns.permutation_shapley(game(), n_permutations=24, seed=0, walks_per_task=None)
    same_result(chosen, given)


def test_an_expensive_game_is_cut_into_tasks_of_about_a_minute(clock: Clock) -> None:
    # 2 s per coalition, 11 coalitions per walk of 12 players: 22 s a walk, 2 walks a minute.
    seconds, n = 2.0, 12
    walk_seconds = seconds * (n - 1)
    expected = int(TASK_SECONDS // walk_seconds)
    assert 1 <= expected < 8
    chosen = ns.permutation_shapley(CostlyGame(n, seconds, clock), n_permutations=16, seed=0)
    assert chosen.params["walks_per_task"] == expected
    given = ns.permutation_shapley(
        CostlyGame(n, seconds, clock), n_permutations=16, seed=0, walks_per_task=expected
    )
    same_result(chosen, given)


def test_progress_is_reported_after_every_task(clock: Clock) -> None:
    reports: list[ns.estimators.Progress] = []
    result = ns.permutation_shapley(
        CostlyGame(12, 2.0, clock), n_permutations=16, seed=0, progress=reports.append
    )
    tasks = 16 // result.params["walks_per_task"]
    assert len(reports) == tasks
    assert [r.n_permutations for r in reports] == list(range(2, 17, 2))


def test_a_time_budget_overshoots_by_at_most_one_short_call(clock: Clock) -> None:
    seconds, max_seconds = 2.0, 100.0
    game = CostlyGame(40, seconds, clock)
    result = ns.permutation_shapley(game, max_seconds=max_seconds, seed=0)
    call = int(CALL_SHARE_OF_TIME * max_seconds / seconds)
    assert call == 2
    assert max(game.calls[1:]) <= call  # every call after V(N) and V(empty)
    assert result.params["batch_size"] == 32  # the batches are planned as without a budget
    assert result.stop_reason == "max_seconds"
    assert max_seconds <= result.elapsed_seconds <= max_seconds + call * seconds


def test_a_time_budget_shorter_than_a_round_keeps_finished_walks(clock: Clock) -> None:
    """A 30 s budget on rounds of 8 walks of 5.5 s (44 s): tasks of at most 30 / 4 s keep the
    walks finished before the time ran out (whole rounds would keep none)."""
    seconds, n, max_seconds = 0.5, 12, 30.0
    result = ns.permutation_shapley(CostlyGame(n, seconds, clock), max_seconds=max_seconds, seed=0)
    walk_seconds = seconds * (n - 1)
    assert result.params["walks_per_task"] == int(
        max_seconds / TASKS_PER_TIME_BUDGET // walk_seconds
    )
    assert result.diagnostics["n_permutations"] >= 4
    assert result.n_samples.min() >= 4


def test_calls_under_a_time_budget_change_no_value(clock: Clock, tmp_path: Path) -> None:
    """A first call with a time budget (short calls) resumed without one ends exactly where a
    run without it ends: the calls cut the batches, not the plan of the walks (truncation
    included, where the plan decides what a dead walk wastes)."""
    options: dict[str, Any] = {
        "seed": 4, "truncation": 0.2, "max_evaluations": 600, "walks_per_task": None,
    }  # fmt: skip
    whole = ns.truncated_shapley(CostlyGame(30, 0.05, clock), **options)
    first = ns.truncated_shapley(
        CostlyGame(30, 0.05, clock), max_seconds=6.0, checkpoint=tmp_path, **options
    )
    assert first.stop_reason == "max_seconds"
    resumed = ns.truncated_shapley(CostlyGame(30, 0.05, clock), resume=tmp_path, **options)
    same_result(resumed, whole)


def test_a_resumed_run_measures_when_the_first_call_stopped_before_measuring(
    clock: Clock, tmp_path: Path
) -> None:
    options: dict[str, Any] = {"n_permutations": 16, "seed": 2}
    whole = ns.permutation_shapley(CostlyGame(12, 2.0, clock), **options)
    stopped = ns.permutation_shapley(
        CostlyGame(12, 2.0, clock), max_evaluations=1, checkpoint=tmp_path, **options
    )
    assert stopped.n_samples.sum() == 0
    resumed = ns.permutation_shapley(CostlyGame(12, 2.0, clock), resume=tmp_path, **options)
    assert resumed.params["walks_per_task"] == whole.params["walks_per_task"] == 2
    same_result(resumed, whole)


def test_a_resumed_run_keeps_the_choice_of_the_run_it_continues(
    clock: Clock, tmp_path: Path
) -> None:
    """The choice depends on the machine; a resumed run takes the checkpoint's, so it ends
    where the uninterrupted run ends even where the game has become cheap."""
    options: dict[str, Any] = {"n_permutations": 16, "seed": 2}
    whole = ns.permutation_shapley(CostlyGame(12, 2.0, clock), **options)
    stopped = ns.permutation_shapley(
        CostlyGame(12, 2.0, clock),
        max_evaluations=60,
        checkpoint=tmp_path,
        checkpoint_every=0.0,
        **options,
    )
    assert stopped.stop_reason == "max_evaluations"
    resumed = ns.permutation_shapley(CostlyGame(12, 1e-4, clock), resume=tmp_path, **options)
    assert resumed.params["walks_per_task"] == whole.params["walks_per_task"] == 2
    same_result(resumed, whole)


def test_a_given_setting_must_match_the_checkpoint(clock: Clock, tmp_path: Path) -> None:
    ns.permutation_shapley(
        CostlyGame(12, 2.0, clock), n_permutations=8, seed=2, checkpoint=tmp_path
    )
    with pytest.raises(CheckpointError, match="walks_per_task=2"):
        ns.permutation_shapley(
            CostlyGame(12, 2.0, clock),
            n_permutations=16,
            seed=2,
            resume=tmp_path,
            walks_per_task=4,
        )


@pytest.mark.parametrize(
    ("sampling", "seconds", "walk", "max_seconds", "tasks"),
    [
        (Sampling(), 0.01, 159, None, None),  # given: whole rounds
        (Sampling(walks_per_task=AUTO), 0.01, 159, None, None),  # digits-cnn: 1.6 s a walk
        (Sampling(walks_per_task=AUTO), 1.0, 71, 1000.0, 1),  # MiniLM: 71 s a walk
        (Sampling(walks_per_task=AUTO), 0.01, 159, 20.0, 3),  # a round of 13 s against 20 s
        (Sampling(antithetic=True, walks_per_task=AUTO), 1.0, 71, None, 2),
        (Sampling(antithetic=True, walks_per_task=AUTO), 0.2, 71, None, 4),
        (Sampling(walks_per_task=3), 1.0, 71, None, 3),
    ],
)
def test_resolved_settings(
    sampling: Sampling, seconds: float, walk: int, max_seconds: float | None, tasks: int | None
) -> None:
    resolved = sampling.resolved(seconds, walk, max_seconds)
    assert resolved.chosen
    assert resolved.walks_per_task == tasks


def test_an_old_checkpoint_resumes_with_its_own_setting() -> None:
    auto = Sampling(walks_per_task=AUTO)
    assert auto.adopted({"batch_size": 32, "walks_per_task": None}).walks_per_task is None
    assert auto.adopted({}).walks_per_task is None  # before tasks existed: whole rounds
    assert auto.adopted({"walks_per_task": 2}).walks_per_task == 2
    assert not auto.adopted({"walks_per_task": AUTO}).chosen  # stopped before measuring


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("batch_size", "auto", TypeError),
        ("batch_size", 0, ValueError),
        ("batch_size", None, TypeError),
        ("walks_per_task", "many", ValueError),
        ("walks_per_task", 0, ValueError),
        ("walks_per_task", 1.5, TypeError),
    ],
)
def test_bad_settings_are_refused_with_the_parameters_name(
    option: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=option):
        ns.permutation_shapley(AirportGame([1.0, 2.0, 3.0]), n_permutations=8, **{option: value})
