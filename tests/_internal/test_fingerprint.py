"""Fingerprints are content: equal in every process for the same game, different otherwise."""

import subprocess
import sys
from pathlib import Path

import numpy as np

import neuronshapley as ns
from neuronshapley._internal.fingerprint import digest
from neuronshapley.games import game_fingerprint

ROOT = Path(__file__).resolve().parents[2]

# Games whose naive reprs differ between processes: a nested generator's code object, a set.
GAMES = """
import numpy as np
import neuronshapley as ns
from neuronshapley.games import game_fingerprint

def nested(coalitions):
    return np.array([sum(1.0 for x in row if x) for row in coalitions])

class Tagged(ns.games.AdditiveGame):
    def __init__(self):
        super().__init__([1.0, 2.0, 3.0])
        self.tags = {"alpha", "beta", "gamma", "delta"}

print(game_fingerprint(ns.games.CallableGame(nested, 3)), game_fingerprint(Tagged()))
"""


def run_in_a_new_process(seed: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", GAMES],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONHASHSEED": seed, "PATH": ""},
    )
    return done.stdout.strip()


def test_the_same_game_has_the_same_fingerprint_in_every_process() -> None:
    assert run_in_a_new_process("1") == run_in_a_new_process("2")


def make(scale: float):
    def value(coalitions: np.ndarray) -> np.ndarray:
        return scale * coalitions.sum(axis=1)

    return value


def test_a_closure_counts_what_it_captured() -> None:
    one, five = ns.games.CallableGame(make(1.0), 3), ns.games.CallableGame(make(5.0), 3)
    assert game_fingerprint(one) != game_fingerprint(five)
    assert game_fingerprint(one) == game_fingerprint(ns.games.CallableGame(make(1.0), 3))


def test_counters_listed_as_ignored_do_not_change_the_fingerprint() -> None:
    class Counting(ns.games.AdditiveGame):
        fingerprint_ignores = ("calls",)

        def __init__(self) -> None:
            super().__init__([1.0, 2.0])
            self.calls = 0

        def _value(self, coalitions: np.ndarray) -> np.ndarray:
            self.calls += 1
            return super()._value(coalitions)

    game = Counting()
    before = game_fingerprint(game)
    game.value(np.ones((1, 2), dtype=bool))
    assert game.calls == 1
    assert game_fingerprint(game) == before


def test_digest_is_by_content() -> None:
    assert digest({"b": 1, "a": np.arange(3)}) == digest({"a": np.arange(3), "b": 1})
    assert digest(np.arange(3)) != digest(np.arange(3.0))
    assert digest({3, 1, 2}) == digest({1, 2, 3})
    assert digest([1, [2]]) != digest([[1], 2])


def test_tensors_and_modules_a_function_captures_count_by_content() -> None:
    import torch
    from torch import nn

    def make(t: torch.Tensor):
        return lambda x: (x * t).sum()

    assert digest(make(torch.zeros(4))) != digest(make(torch.ones(4)))
    assert digest(make(torch.ones(4))) == digest(make(torch.ones(4)))
    torch.manual_seed(0)
    first, second = nn.Linear(3, 2), nn.Linear(3, 2)
    assert digest(first) != digest(second)
    assert len(digest(first.bfloat16())) == 64  # bfloat16 has no numpy dtype: widened, hashed


def test_a_counter_a_function_keeps_does_not_make_it_another() -> None:
    calls: list[int] = []

    def counted(x: float) -> float:
        calls.append(1)
        return 2 * x

    before = digest(counted)
    counted(1.0)
    assert digest(counted) == before
