"""The Ray backend gives the local result bit for bit: for any number of workers, for TMAB with
truncation and a budget, for a NeuronGame whose model comes from a user's file, and when a
worker's process is killed mid-task. An address nobody answers is a clear error, fast.

One local Ray cluster (3 CPUs) serves the whole module.
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley._internal.specs import load_spec
from neuronshapley.games import sparse_soum
from neuronshapley.games.base import BaseGame
from neuronshapley.typing import CoalitionMatrix, GameValues
from tests.estimators.test_checkpoint import assert_same_values

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'neuronshapley[ray]'")

from neuronshapley.backends import RayBackend  # noqa: E402
from neuronshapley.cli import main  # noqa: E402
from tests.test_cli_run import FACTORY  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    """A local Ray cluster of 3 CPUs for the module (the backends find it initialised)."""
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


RUNS: dict[str, Callable[..., ns.ShapleyResult]] = {
    "permutation": lambda game, **kw: ns.permutation_shapley(game, n_permutations=24, **kw),
    "tmab": lambda game, **kw: ns.tmab_shapley(
        game, k=3, tol=0.0, truncation=0.3, max_evaluations=3_001, **kw
    ),
}


def game() -> ns.Game:
    return sparse_soum(30, n_large=3, seed=2)


def assert_identical(remote: ns.ShapleyResult, local: ns.ShapleyResult) -> None:
    assert_same_values(remote, local)
    assert remote.diagnostics == local.diagnostics


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("name", RUNS)
def test_any_number_of_workers_gives_the_local_result(name: str, workers: int) -> None:
    local = RUNS[name](game(), seed=3, walks_per_task=2)
    here = game()
    remote = RUNS[name](here, seed=3, walks_per_task=2, backend=RayBackend(workers=workers))
    assert_identical(remote, local)
    # The workers walked: this process evaluated V(N) and V(empty), and under a budget the one
    # task that crosses it.
    assert here.n_evaluations == 2 if name == "permutation" else here.n_evaluations < 300
    if name == "tmab":
        assert remote.stop_reason == "max_evaluations" and remote.n_evaluations == 3_001
        assert remote.diagnostics["n_walks_truncated"] > 0


def test_unbiased_truncation_draws_its_coins_from_the_seed_on_any_worker() -> None:
    def run(**kw: Any) -> ns.ShapleyResult:
        return ns.truncated_shapley(
            game(), n_permutations=24, truncation=0.3, patience=2, continue_probability=0.5, **kw
        )

    local = run(seed=3, walks_per_task=2)
    remote = run(seed=3, walks_per_task=2, backend=RayBackend(workers=2))
    assert_identical(remote, local)
    assert local.diagnostics["n_walks_continued"] > 0 and local.diagnostics["n_walks_truncated"] > 0


USER_MODEL = textwrap.dedent(
    """
    import torch
    from torch import nn


    class UserNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(8, 12)
            self.relu = nn.ReLU()
            self.fc2 = nn.Linear(12, 3)

        def forward(self, x):
            return self.fc2(self.relu(self.fc1(x)))


    def make():
        torch.manual_seed(0)
        return UserNet().eval()
    """
)


def test_a_neuron_game_from_a_users_file_gives_the_local_result(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "user_model.py"
    path.write_text(USER_MODEL)
    model = load_spec(f"{path}:make", "model")
    path.unlink()  # the workers get the model's code with the game, not from the file
    generator = torch.Generator().manual_seed(1)
    x, reference = torch.randn(40, 8, generator=generator), torch.randn(40, 8, generator=generator)
    y = model(x).argmax(1)
    x[:10] += torch.randn(10, 8, generator=generator)  # some mistakes, so units matter

    def run(**kw: Any) -> ns.ShapleyResult:
        neuron_game = ns.NeuronGame(model, data=(x, y), reference=reference)
        return ns.permutation_shapley(neuron_game, n_permutations=12, seed=4, **kw)

    local = run(walks_per_task=3)
    remote = run(walks_per_task=3, backend=RayBackend(workers=2))
    assert_identical(remote, local)
    assert np.any(local.values != 0)


class DiesOnce(BaseGame):
    """``sparse_soum``, except that its first evaluation in a process other than the one that
    made it SIGKILLs that process, once (a marker file remembers)."""

    fingerprint_ignores = ("driver", "marker")

    def __init__(self, marker: Path) -> None:
        self.inner = game()
        super().__init__(self.inner.n_players, self.inner.player_names)
        self.driver, self.marker = os.getpid(), str(marker)

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        if os.getpid() != self.driver and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.value(coalitions)


@pytest.mark.parametrize("name", RUNS)
def test_a_worker_killed_mid_task_is_retried_and_changes_nothing(name: str, tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    local = RUNS[name](DiesOnce(marker), seed=5, walks_per_task=2)
    assert not marker.exists()
    remote = RUNS[name](DiesOnce(marker), seed=5, walks_per_task=2, backend=RayBackend(workers=2))
    assert marker.exists(), "no worker was killed"
    assert int(marker.read_text()) != os.getpid()
    assert_identical(remote, local)


class NotOnWorkers(BaseGame):
    """A game that cannot be rebuilt in another process, as a model whose module the workers
    cannot import: unpickling it anywhere but in the driver raises ImportError."""

    def __init__(self) -> None:
        super().__init__(30)
        self.inner = game()
        self.driver = os.getpid()

    def __setstate__(self, state: dict[str, Any]) -> None:
        if os.getpid() != state["driver"]:
            raise ImportError("No module named 'my_lab_models'")
        self.__dict__.update(state)

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        return self.inner.value(coalitions)


def test_a_game_the_workers_cannot_rebuild_is_a_clear_error() -> None:
    with pytest.raises(
        RuntimeError,
        match=r"Ray workers could not rebuild the game .*No module named 'my_lab_models'",
    ):
        ns.permutation_shapley(
            NotOnWorkers(), n_permutations=4, seed=0, backend=RayBackend(workers=1)
        )


def test_an_address_nobody_answers_is_a_clear_error_within_the_timeout() -> None:
    started = time.perf_counter()
    backend = RayBackend(address="127.0.0.1:1", connect_timeout=2.0)
    with pytest.raises(
        ConnectionError, match=r"'address' .* no Ray cluster answers at 127.0.0.1:1"
    ):
        ns.permutation_shapley(game(), n_permutations=4, seed=0, backend=backend)
    assert time.perf_counter() - started < 2.0 + 1.0


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"workers": 0}, ValueError, r"'workers' parameter of RayBackend must be an int in \[1"),
        ({"address": "head-node"}, ValueError, r"'address' parameter .* must be 'host:port'"),
        ({"address": 6379}, TypeError, r"'address' parameter .* must be 'host:port'"),
        ({"connect_timeout": 0}, ValueError, r"'connect_timeout' parameter .* \(0.0, inf\]"),
    ],
)
def test_bad_options_name_the_parameter(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RayBackend(**options)


def test_more_workers_than_the_cluster_has_cpus_is_an_error_not_a_hang() -> None:
    with pytest.raises(ValueError, match=r"asks for 4 workers .* the Ray cluster has 3 CPUs"):
        ns.permutation_shapley(game(), n_permutations=4, seed=0, backend=RayBackend(workers=4))


def test_importing_the_backends_imports_neither_ray_nor_torch() -> None:
    code = (
        "import sys, neuronshapley, neuronshapley.backends; "
        "print(sorted({'ray', 'torch'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# -- the command line ----------------------------------------------------------------------------


def run_command(factory: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--model",
        f"{factory}:model",
        "--data",
        f"{factory}:data",
        "--k",
        "3",
        "--budget",
        "1200",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


@pytest.fixture
def factory(tmp_path: Path) -> Path:
    path = tmp_path / "mine.py"
    path.write_text(FACTORY)
    return path


def test_run_on_ray_gives_the_values_of_a_local_run(factory: Path, tmp_path: Path) -> None:
    assert main(run_command(factory, tmp_path / "local", "--walks-per-task", "2")) == 0
    ray_run = ["--backend", "ray", "--workers", "2", "--walks-per-task", "2"]
    assert main(run_command(factory, tmp_path / "ray", *ray_run)) == 0
    local = ns.ShapleyResult.load(tmp_path / "local")
    remote = ns.ShapleyResult.load(tmp_path / "ray")
    assert_identical(remote, local)
    assert remote.params["walks_per_task"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backend", "ray", "--workers", "0"], r"argument --workers: must be an int >= 1"),
        (
            ["--backend", "ray", "--address", "127.0.0.1:1"],
            r"error: --address: no Ray cluster answers at 127.0.0.1:1",
        ),
        (["--backend", "ray", "--address", "nowhere"], r"error: --address must be 'host:port'"),
        (["--workers", "2"], r"error: --workers needs --backend ray"),
    ],
)
def test_bad_backend_options_are_one_line_errors(
    factory: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    assert main(run_command(factory, tmp_path / "run", *extra)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()


# Runs the command with a checkpoint after every round (the command's is every 30 s).
EVERY_ROUND = textwrap.dedent(
    """
    import sys
    import neuronshapley.workflows.runs as runs
    from neuronshapley.cli import main

    tmab = runs.tmab_shapley
    runs.tmab_shapley = lambda *a, **kw: tmab(*a, **{**kw, "checkpoint_every": 0.0})
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_a_driver_killed_after_a_checkpoint_resumes_to_the_uninterrupted_result(
    factory: Path, tmp_path: Path
) -> None:
    ray_run = ["--backend", "ray", "--workers", "2"]
    out = tmp_path / "killed"
    script = tmp_path / "every_round.py"
    script.write_text(EVERY_ROUND)
    # Its own Ray cluster, started by the command: killed with it (its process group).
    driver = subprocess.Popen(
        [sys.executable, str(script), *run_command(factory, out, *ray_run)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.perf_counter() + 120
        while not (out / "checkpoint" / "checkpoint.npz").exists():
            assert driver.poll() is None, "the run ended before its first checkpoint"
            assert time.perf_counter() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    assert main(run_command(factory, out, *ray_run, "--resume")) == 0
    # Uninterrupted, and local: the default --walks-per-task of --backend ray is 1.
    assert main(run_command(factory, tmp_path / "whole", "--walks-per-task", "1")) == 0
    assert_identical(ns.ShapleyResult.load(out), ns.ShapleyResult.load(tmp_path / "whole"))
