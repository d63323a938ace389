"""The backend seam: a round's tasks give the same result wherever and in whatever order they
run, and a budget stops a distributed run exactly where it stops a local one.

``Elsewhere`` is a backend in this process that behaves like remote workers: each task is
walked by a fresh walker built from the job (as a worker would), with no budget, and the tasks
run in reverse order.
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley.data.semivalues import beta_size_weights
from neuronshapley.estimators.backend import Backend, BackendRun, WalkJob, split_round
from neuronshapley.estimators.walks import RangeStats, WalkRange
from neuronshapley.games import sparse_soum
from tests.estimators.test_checkpoint import assert_same_values


class ElsewhereRun:
    def __init__(self, game: ns.Game, job: WalkJob, log: list[int]) -> None:
        self.game, self.job, self.log = game, job, log

    def walk(self, tasks: Sequence[WalkRange]) -> list[RangeStats]:
        done = {task.first: self.job.walker(self.game).walk(task) for task in reversed(tasks)}
        self.log.append(len(tasks))
        return [done[task.first] for task in tasks]

    def close(self) -> None:
        self.log.append(-1)


class Elsewhere:
    def __init__(self) -> None:
        self.log: list[int] = []

    def start(self, game: ns.Game, job: WalkJob) -> BackendRun:
        return ElsewhereRun(game, job, self.log)


RUNS: dict[str, Callable[..., ns.ShapleyResult]] = {
    "permutation": lambda game, **kw: ns.permutation_shapley(game, n_permutations=48, **kw),
    "antithetic": lambda game, **kw: ns.permutation_shapley(
        game, n_permutations=48, antithetic=True, **kw
    ),
    "truncated": lambda game, **kw: ns.truncated_shapley(
        game, n_permutations=48, truncation=0.3, patience=2, **kw
    ),
    "tmab": lambda game, **kw: ns.tmab_shapley(
        game, k=3, tol=0.0, truncation=0.3, **{"max_evaluations": 6_000, **kw}
    ),
    # A semivalue's weights travel with the job: workers weigh the marginals alike.
    "beta semivalue": lambda game, **kw: ns.permutation_semivalue(
        game, beta_size_weights(30, 16, 1), n_permutations=48, tail=0.01, **kw
    ),
    # Each walk's coin (go on past the truncation point?) comes from its seed, not the worker.
    "unbiased truncated": lambda game, **kw: ns.truncated_shapley(
        game, n_permutations=48, truncation=0.3, patience=2, continue_probability=0.5, **kw
    ),
    "unbiased tmab": lambda game, **kw: ns.tmab_shapley(
        game,
        k=3,
        tol=0.0,
        truncation=0.3,
        continue_probability=0.5,
        **{"max_evaluations": 6_000, **kw},
    ),
}


def game() -> ns.Game:
    return sparse_soum(30, n_large=3, seed=2)


def test_a_round_is_cut_into_consecutive_tasks() -> None:
    tasks = split_round(WalkRange(16, 8), 3)
    assert [(t.first, t.count) for t in tasks] == [(16, 3), (19, 3), (22, 2)]
    assert split_round(WalkRange(16, 8), None) == [WalkRange(16, 8)]


@pytest.mark.parametrize("name", RUNS)
def test_tasks_run_elsewhere_in_any_order_give_the_local_result(name: str) -> None:
    local = RUNS[name](game(), seed=3, walks_per_task=2)
    backend = Elsewhere()
    assert isinstance(backend, Backend)
    remote = RUNS[name](game(), seed=3, walks_per_task=2, backend=backend)
    assert_same_values(remote, local)
    assert remote.diagnostics == {**local.diagnostics}
    assert backend.log[-1] == -1, "the backend was not closed"
    assert set(backend.log[:-1]) == {4}, "every round should be cut into 4 tasks"


@pytest.mark.parametrize("budget", [2, 3, 40, 61, 62, 500, 777, 1_000])
@pytest.mark.parametrize(
    "name", ["permutation", "truncated", "tmab", "unbiased truncated", "beta semivalue"]
)
def test_a_budget_stops_a_distributed_run_where_it_stops_a_local_one(
    name: str, budget: int
) -> None:
    options: dict[str, Any] = {"seed": 5, "walks_per_task": 2, "max_evaluations": budget}
    local = RUNS[name](game(), **options)
    remote = RUNS[name](game(), backend=Elsewhere(), **options)
    assert_same_values(remote, local)
    assert remote.n_evaluations <= budget


def test_walks_per_task_is_part_of_the_run(tmp_path: Path) -> None:
    whole = ns.permutation_shapley(game(), n_permutations=48, seed=3)
    cut = ns.permutation_shapley(game(), n_permutations=48, seed=3, walks_per_task=2)
    assert cut.params["walks_per_task"] == 2 and whole.params["walks_per_task"] is None
    np.testing.assert_allclose(cut.values, whole.values, rtol=1e-12)  # same samples
    ns.permutation_shapley(game(), n_permutations=16, seed=3, walks_per_task=2, checkpoint=tmp_path)
    with pytest.raises(ValueError, match=r"walks_per_task=2; this call has walks_per_task=None"):
        ns.permutation_shapley(
            game(), n_permutations=48, seed=3, resume=tmp_path, walks_per_task=None
        )
    # Left to the run ("auto", the default), a resumed run takes the checkpoint's.
    resumed = ns.permutation_shapley(game(), n_permutations=48, seed=3, resume=tmp_path)
    assert resumed.params["walks_per_task"] == 2
    np.testing.assert_array_equal(resumed.values, cut.values)


def test_a_distributed_run_resumes_a_local_checkpoint(tmp_path: Path) -> None:
    options: dict[str, Any] = {"seed": 7, "walks_per_task": 2}
    whole = RUNS["tmab"](game(), **options)
    RUNS["tmab"](game(), checkpoint=tmp_path, **{**options, "max_evaluations": 1_500})
    resumed = RUNS["tmab"](game(), backend=Elsewhere(), resume=tmp_path, **options)
    assert_same_values(resumed, whole)


def test_a_backend_must_be_a_backend() -> None:
    with pytest.raises(TypeError, match="'backend' parameter of permutation_shapley must be"):
        ns.permutation_shapley(game(), n_permutations=8, backend="ray")  # type: ignore[arg-type]


def test_antithetic_tasks_hold_whole_pairs() -> None:
    with pytest.raises(ValueError, match=r"'walks_per_task' parameter .* must be even"):
        ns.permutation_shapley(game(), n_permutations=8, antithetic=True, walks_per_task=3)
