"""A checkpoint is one atomic file that belongs to its game: it cannot tear, cannot be resumed on
another game, and a damaged one is refused in one line.

The crash test kills a run with SIGKILL at random moments (checkpoints are written after every
round, so many kills land inside a write) and resumes it until it finishes: the result must equal
an uninterrupted run's bit for bit.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley.estimators.checkpoint import CHECKPOINT_FILE, CheckpointError, has_checkpoint
from neuronshapley.games import SOUM, sparse_soum
from tests.damage import DAMAGES, damage
from tests.estimators.test_progress import InterruptAfter

ROOT = Path(__file__).resolve().parents[2]
ARRAYS = ("values", "stderr", "ci_low", "ci_high", "n_samples", "variance")


def assert_same_values(a: ns.ShapleyResult, b: ns.ShapleyResult) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.n_evaluations == b.n_evaluations
    assert a.stop_reason == b.stop_reason
    assert a.diagnostics["n_permutations"] == b.diagnostics["n_permutations"]


# -- the crash test ---------------------------------------------------------------------------

CRASHING_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    import neuronshapley as ns
    from tests.estimators.test_checkpoint import crash_game, crash_run

    directory, estimator = Path(sys.argv[1]), sys.argv[2]
    (directory / "started").touch()  # imports done: the test times its kill from here
    game = crash_game(estimator)
    slow = ns.games.CallableGame(lambda c: (time.sleep(0.01), game.value(c))[1], 40)
    slow.fingerprint = game.fingerprint  # the same game, only slower
    checkpoint = directory / "checkpoint"
    resume = checkpoint if (checkpoint / "checkpoint.npz").is_file() else None
    options = dict(seed=11, checkpoint=checkpoint, checkpoint_every=0.0, resume=resume)
    result = crash_run(estimator, slow, **options)
    result.save(directory / "result")
    """
)


def crash_game(estimator: str) -> ns.Game:
    if estimator.startswith("permutation"):
        return sparse_soum(40, n_large=4, seed=3)
    # Players 2 and 3 tie at the top-3 boundary, so TMAB runs until its budget.
    return ns.games.AdditiveGame([5.0, 4.0, 3.0, 3.0] + [1.0 / (1 + i) for i in range(36)])


def crash_run(estimator: str, game: ns.Game, **options: Any) -> ns.ShapleyResult:
    """About 5 s of evaluations at 10 ms a batch: enough for a dozen kills."""
    if estimator == "permutation":
        return ns.permutation_shapley(game, n_permutations=400, n_walks=4, **options)
    if estimator == "permutation-tasks":  # checkpoints inside rounds: a task of one walk
        return ns.permutation_shapley(
            game, n_permutations=400, n_walks=8, walks_per_task=1, **options
        )
    return ns.tmab_shapley(
        game, k=3, tol=0.0, max_evaluations=14_000, truncation=0.2, n_walks=4, **options
    )


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["permutation", "permutation-tasks", "tmab"])
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(
    estimator: str, tmp_path: Path
) -> None:
    script = tmp_path / "run.py"
    script.write_text(CRASHING_RUN)
    rng = np.random.default_rng(0)
    kills = 0
    started = tmp_path / "started"
    for _ in range(40):
        started.unlink(missing_ok=True)
        process = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), estimator, str(ROOT)]
        )
        # Timed from the end of the imports (slow on a loaded machine, and no part of the
        # run), kills land anywhere in the run, writes too.
        deadline = time.monotonic() + 60.0
        while not started.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0.05, 0.9)))
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
    else:
        pytest.fail("the run never finished")
    assert process.returncode == 0
    assert kills >= 3, "too few kills to test anything; slow the game down"
    whole = crash_run(estimator, crash_game(estimator), seed=11)
    assert_same_values(ns.ShapleyResult.load(tmp_path / "result"), whole)
    # Only the one checkpoint file: no temporary file of a killed write was left behind.
    assert sorted(path.name for path in (tmp_path / "checkpoint").iterdir()) == [CHECKPOINT_FILE]


def test_a_write_cut_short_leaves_the_previous_checkpoint_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = sparse_soum(20, n_large=3, seed=1)
    whole = ns.permutation_shapley(game, n_permutations=32, seed=5)
    ns.permutation_shapley(game, n_permutations=16, seed=5, checkpoint=tmp_path)
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()

    def crash(file: Any, *args: Any, **kwargs: Any) -> None:
        file.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt  # as a kill would, mid-write

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        ns.permutation_shapley(
            game, n_permutations=32, seed=5, checkpoint=tmp_path, resume=tmp_path
        )
    monkeypatch.undo()
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == [CHECKPOINT_FILE]
    resumed = ns.permutation_shapley(game, n_permutations=32, seed=5, resume=tmp_path)
    assert_same_values(resumed, whole)


# -- a checkpoint belongs to its game ---------------------------------------------------------


def soum_with(coefficient: float) -> SOUM:
    return SOUM.from_basis(12, [[0, 1], [2, 3, 4], [5]], [1.0, coefficient, 0.5])


def test_a_checkpoint_of_another_game_with_as_many_players_is_refused(tmp_path: Path) -> None:
    ns.permutation_shapley(soum_with(2.0), n_permutations=8, seed=1, checkpoint=tmp_path)
    with pytest.raises(ValueError, match=r"belongs to another game: the players match in number"):
        ns.permutation_shapley(soum_with(2.5), n_permutations=16, seed=1, resume=tmp_path)
    resumed = ns.permutation_shapley(soum_with(2.0), n_permutations=16, seed=1, resume=tmp_path)
    assert resumed.diagnostics["n_permutations"] == 16


def test_results_of_different_games_with_the_same_names_do_not_merge() -> None:
    a = ns.permutation_shapley(soum_with(2.0), n_permutations=8, seed=1)
    b = ns.permutation_shapley(soum_with(2.5), n_permutations=8, seed=2)
    assert a.player_names == b.player_names
    assert a.game_fingerprint != b.game_fingerprint
    with pytest.raises(ValueError, match="Cannot merge results of different games"):
        a.merge(b)
    c = ns.permutation_shapley(soum_with(2.0), n_permutations=8, seed=2)
    assert a.merge(c).n_samples.tolist() == [16] * 12


def test_the_fingerprint_survives_save_and_load(tmp_path: Path) -> None:
    result = ns.permutation_shapley(soum_with(2.0), n_permutations=4, seed=1)
    result.save(tmp_path)
    assert ns.ShapleyResult.load(tmp_path).game_fingerprint == result.game_fingerprint


# -- damaged checkpoints ----------------------------------------------------------------------


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_checkpoint_is_one_clear_error(tmp_path: Path, how: str) -> None:
    game = sparse_soum(20, n_large=3, seed=1)
    ns.permutation_shapley(game, n_permutations=8, seed=5, checkpoint=tmp_path)
    damage(tmp_path / CHECKPOINT_FILE, how)
    with pytest.raises(ValueError, match=r"checkpoint .*checkpoint\.npz is damaged") as error:
        ns.permutation_shapley(game, n_permutations=16, seed=5, resume=tmp_path)
    assert "\n" not in str(error.value)


def test_a_checkpoint_whose_arrays_disagree_with_its_record_is_refused(tmp_path: Path) -> None:
    game = sparse_soum(20, n_large=3, seed=1)
    ns.permutation_shapley(game, n_permutations=8, seed=5, checkpoint=tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["mean"] = arrays["mean"][:-1]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="do not hold 20 entries, one per player"):
        ns.permutation_shapley(game, n_permutations=16, seed=5, resume=tmp_path)


def test_has_checkpoint(tmp_path: Path) -> None:
    assert not has_checkpoint(tmp_path)
    ns.permutation_shapley(sparse_soum(30, seed=0), n_permutations=8, seed=0, checkpoint=tmp_path)
    assert has_checkpoint(tmp_path)
    assert os.listdir(tmp_path) == [CHECKPOINT_FILE]


def test_a_resume_with_a_budget_already_spent_evaluates_nothing(tmp_path: Path) -> None:
    """A smaller budget on resume is honoured: the run stops at once, never exceeds it."""
    first = ns.permutation_shapley(
        sparse_soum(30, seed=0), max_evaluations=500, seed=1, checkpoint=tmp_path
    )
    game = sparse_soum(30, seed=0)
    resumed = ns.permutation_shapley(game, max_evaluations=100, seed=1, resume=tmp_path)
    assert game.n_evaluations == 0
    assert resumed.stop_reason == "max_evaluations"
    # The checkpoint's last complete round: the round the first budget cut is not in it.
    assert resumed.n_evaluations <= first.n_evaluations
    assert resumed.diagnostics["n_permutations"] == first.diagnostics["n_permutations"]


def test_the_old_torn_pair_is_refused_not_resumed(tmp_path: Path) -> None:
    """Before 0.1 a checkpoint was state.npz + state.json, renamed one after the other; a kill
    between the renames resumed silently with the statistics of one round and the position of
    another (reproduced on 4f4f7e1: 72 samples per player instead of 64, values off by 0.0024).
    Such a pair is now refused, and the one-file checkpoint has no such moment."""
    (tmp_path / "state.json").write_text('{"checkpoint_version": 1}')
    (tmp_path / "state.npz").write_bytes(b"PK")
    with pytest.raises(ValueError, match=r"written by an older version .* cannot be resumed"):
        ns.permutation_shapley(sparse_soum(30, seed=0), n_permutations=8, resume=tmp_path)


@pytest.mark.parametrize("name", ["permutation", "tmab"])
def test_a_checkpoint_inside_a_round_resumes_the_round_where_it_stopped(
    name: str, tmp_path: Path
) -> None:
    """With tasks of one walk, a stop inside a round of 8 keeps the walks already done: the
    resumed run finishes the round with the same plan and equals an uninterrupted run."""
    options: dict[str, Any] = {"seed": 3, "n_walks": 8, "walks_per_task": 1}
    if name == "permutation":
        run = lambda g, **kw: ns.permutation_shapley(g, n_permutations=32, **options, **kw)  # noqa: E731
    else:
        run = lambda g, **kw: ns.tmab_shapley(  # noqa: E731
            g, k=3, tol=0.0, max_evaluations=4_000, truncation=0.2, **options, **kw
        )
    whole = run(sparse_soum(30, n_large=3, seed=1))
    # Two batches of 32 per walk of 31 coalitions: the 7th call is inside the first round.
    stopped = run(
        InterruptAfter(sparse_soum(30, n_large=3, seed=1), calls=7),
        checkpoint=tmp_path,
        checkpoint_every=0.0,
    )
    assert stopped.stop_reason == "interrupted"
    assert 0 < stopped.diagnostics["n_permutations"] < 8, "the stop should fall inside a round"
    game = sparse_soum(30, n_large=3, seed=1)
    resumed = run(game, resume=tmp_path)
    assert_same_values(resumed, whole)
    # Only what was left was evaluated again: not the walks done before the stop.
    assert game.n_evaluations == whole.n_evaluations - stopped.n_evaluations


def _as_version_2(path: Path) -> None:
    """Rewrite a checkpoint as version 2 wrote it: no variance process, no tails, no
    truncation_bias in the identity."""
    with np.load(path, allow_pickle=False) as data:
        record = json.loads(str(data["record"]))
        arrays = {
            name: data[name]
            for name in data.files
            if name not in ("record", "variance_process") and not name.startswith("tails_")
        }
    record["checkpoint_version"] = 2
    record["identity"].pop("truncation_bias", None)
    record.pop("tails", None)
    np.savez(path, record=np.array(json.dumps(record)), **arrays)


def test_a_version_2_checkpoint_resumes_with_a_block_variance_process(tmp_path: Path) -> None:
    """Version 2 kept no variance process: the run resumes with all earlier samples as one
    block guessed by the mean of all values (valid for the anytime bound)."""
    game = sparse_soum(40, n_large=4, seed=0)
    part = ns.tmab_shapley(game, k=3, seed=1, max_evaluations=2_000, checkpoint=tmp_path)
    _as_version_2(tmp_path / CHECKPOINT_FILE)
    rest = ns.tmab_shapley(game, k=3, resume=tmp_path, max_evaluations=4_000)
    assert rest.n_evaluations > part.n_evaluations
    assert rest.variance_process is not None and np.isfinite(rest.ci_high).all()


def test_a_version_2_checkpoint_of_a_truncated_run_is_refused_with_its_reason(
    tmp_path: Path,
) -> None:
    game = sparse_soum(40, n_large=4, seed=0)
    ns.truncated_shapley(game, seed=1, max_evaluations=2_000, checkpoint=tmp_path)
    _as_version_2(tmp_path / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match=r"before truncated runs kept what their truncated"):
        ns.truncated_shapley(game, resume=tmp_path, max_evaluations=4_000)
