"""The progress callback and a clean stop on Ctrl-C (KeyboardInterrupt) with a resumable state."""

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley.games import sparse_soum

ESTIMATORS = {
    "permutation": lambda game, **kw: ns.permutation_shapley(game, n_permutations=48, **kw),
    "truncated": lambda game, **kw: ns.truncated_shapley(game, n_permutations=48, **kw),
    "tmab": lambda game, **kw: ns.tmab_shapley(game, k=3, max_evaluations=6_000, **kw),
}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_progress_reports_every_round(name: str) -> None:
    reports: list[ns.estimators.Progress] = []
    result = ESTIMATORS[name](
        sparse_soum(30, n_large=3, seed=0),
        seed=1,
        progress=lambda p: reports.append(p),
    )
    assert reports, "the callback was never called"
    evaluations = [report.n_evaluations for report in reports]
    assert evaluations == sorted(evaluations)
    assert evaluations[-1] <= result.n_evaluations
    assert all(report.values.shape == (30,) for report in reports)
    if name == "tmab":
        assert all(report.n_undecided is not None for report in reports)
    else:
        assert all(report.n_undecided is None for report in reports)


class InterruptAfter:
    """A game that raises KeyboardInterrupt (as Ctrl-C would) on its n-th call."""

    def __init__(self, game: ns.Game, calls: int) -> None:
        self.game = game
        self.calls = calls
        self.n_players = game.n_players
        self.player_names = game.player_names
        self.n_evaluations = 0

    def value(self, coalitions: np.ndarray) -> np.ndarray:
        self.calls -= 1
        if self.calls == 0:
            raise KeyboardInterrupt
        self.n_evaluations += len(coalitions)
        return self.game.value(coalitions)

    def fingerprint(self) -> str:
        # The same game behind a wrapper: its checkpoint resumes on the game itself.
        return ns.games.game_fingerprint(self.game)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_ctrl_c_checkpoints_and_resume_matches_uninterrupted(name: str, tmp_path) -> None:
    game = sparse_soum(30, n_large=3, seed=0)
    run = ESTIMATORS[name]
    full = run(game, seed=2)
    stopped = run(InterruptAfter(game, calls=12), seed=2, checkpoint=tmp_path)
    assert stopped.stop_reason == "interrupted"
    assert stopped.n_evaluations < full.n_evaluations
    assert (tmp_path / "checkpoint.npz").exists()
    resumed = run(game, seed=2, resume=tmp_path)
    np.testing.assert_array_equal(resumed.values, full.values)
    np.testing.assert_array_equal(resumed.n_samples, full.n_samples)
    assert resumed.stop_reason == full.stop_reason
