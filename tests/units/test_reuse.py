"""Prefix reuse: which models may expand the batch at their hooked layers, and values that are
exactly those of the plain (tiled) evaluation, on walk batches and random ones alike."""

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from neuronshapley.units import NeuronGame
from neuronshapley.units.reuse import group_prefixes, plan_reuse
from tests.units._models import (
    N_CLASSES,
    TinyCNN,
    activation_bytes_per_example,
    fitted,
    images,
    random_coalitions,
    seeded,
    trained,
    walk_batch,
)


class Residual(nn.Module):
    """conv1 -> relu -> (conv2 -> relu) + skip -> fc: conv2 is not a cut (the skip crosses it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 5, 3, padding=1)
        self.fc = nn.Linear(5 * 36, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h)) + h
        return self.fc(torch.relu(self.conv3(h)).flatten(1))


class BatchFromInput(nn.Module):
    """Reads the batch size off the input and uses it after the hooked layer: no cut at all."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 36, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        return self.fc(torch.relu(self.conv(x)).reshape(n, -1))


class Untraceable(TinyCNN):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return super().forward(x)
        return super().forward(-x)


def layer_order(game: NeuronGame) -> list[str]:
    assert game.reuse is not None
    return [game.layers[i].path for i in game.reuse.order]


def test_sequential_layers_all_expand() -> None:
    game = NeuronGame(fitted("cnn"), data=images(8, seed=1), ablation="zero")
    assert game.reuse is not None
    assert layer_order(game) == ["conv1", "conv2"]
    assert game.reuse.n_expanding == 2


def test_a_skip_connection_stops_the_expansion_before_it() -> None:
    game = NeuronGame(seeded(Residual), data=images(8, seed=1), ablation="zero")
    assert game.reuse is not None
    assert layer_order(game) == ["conv1", "conv2", "conv3"]
    assert game.reuse.n_expanding == 1  # conv1 expands to whole coalitions; the skip crosses conv2


@pytest.mark.parametrize("build", [BatchFromInput, Untraceable])
def test_models_without_a_first_cut_are_evaluated_plainly(build: Any) -> None:
    game = NeuronGame(seeded(build), data=images(8, seed=1), ablation="zero")
    assert game.reuse is None


def test_layers_are_ordered_by_execution_not_by_registration() -> None:
    class Backwards(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.late = nn.Conv2d(4, 3, 3, padding=1)
            self.early = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(3 * 36, N_CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.late(torch.relu(self.early(x)))).flatten(1))

    game = NeuronGame(seeded(Backwards), data=images(4, seed=1), ablation="zero")
    assert [layer.path for layer in game.layers] == ["late", "early"]
    assert layer_order(game) == ["early", "late"]


def test_reuse_can_be_turned_off() -> None:
    model = fitted("cnn")
    assert plan_reuse(model, NeuronGame(model, data=images(4, 1), ablation="zero").layers)
    assert NeuronGame(model, data=images(4, 1), ablation="zero", reuse_prefixes=False).reuse is None


def both_ways(build: Any, **kwargs: Any) -> tuple[NeuronGame, NeuronGame]:
    data = images(40, seed=3)
    model = trained(build, images(64, seed=0), steps=40)
    options = {"data": data, "reference": images(30, seed=2)[0], **kwargs}
    return NeuronGame(model, reuse_prefixes=False, **options), NeuronGame(model, **options)


@pytest.mark.parametrize("build", [TinyCNN, Residual])
@pytest.mark.parametrize("metric", ["accuracy", "neg_cross_entropy"])
def test_values_equal_the_plain_evaluation(build: Any, metric: str) -> None:
    plain, reused = both_ways(build, metric=metric)
    n = plain.n_players
    batches = [
        walk_batch(n, seed=0, start=0, count=n + 1),
        walk_batch(n, seed=1, start=3, count=7),
        random_coalitions(20, n, seed=4),
        np.repeat(random_coalitions(3, n, seed=5), 4, axis=0),  # duplicates
    ]
    for coalitions in batches:
        np.testing.assert_allclose(
            reused.value(coalitions), plain.value(coalitions), rtol=1e-6, atol=1e-9
        )
    assert reused.n_forward_examples == plain.n_forward_examples  # asked-for rows, both ways


def test_values_equal_with_a_unit_subset_and_small_passes() -> None:
    plain, reused = both_ways(
        TinyCNN, units=["conv1:0-2", "conv2:1", "conv2:4"], memory_budget=4000
    )
    coalitions = np.concatenate(
        [walk_batch(plain.n_players, seed=2, start=0, count=6), random_coalitions(9, 5, seed=6)]
    )
    np.testing.assert_allclose(reused.value(coalitions), plain.value(coalitions), rtol=1e-6)


def test_a_pass_takes_every_coalition_on_a_slice_of_the_examples() -> None:
    # The budget holds 160 rows: a walk batch of 8 coalitions on 40 examples takes passes of
    # about 20 examples, each sharing the prefixes of all 8 coalitions.
    model = trained(TinyCNN, images(64, seed=0), steps=40)
    bytes_per_example = activation_bytes_per_example(model, images(2, seed=0)[0])
    plain, reused = both_ways(TinyCNN, memory_budget=160 * bytes_per_example)
    batch_sizes: list[int] = []
    handle = reused.model.register_forward_pre_hook(
        lambda _, inputs: batch_sizes.append(len(inputs[0]))
    )
    coalitions = walk_batch(plain.n_players, seed=3, start=2, count=8)
    try:
        values = reused.value(coalitions)
    finally:
        handle.remove()
    per_pass = reused._rows_per_pass // 8  # about 20 (the game counts bytes its own way)
    assert 1 < per_pass < 40
    assert batch_sizes == [len(part) for part in torch.arange(40).split(per_pass)]
    np.testing.assert_allclose(values, plain.value(coalitions), rtol=1e-6, atol=1e-9)
    assert reused.n_forward_examples == 8 * 40


def test_values_equal_per_walk_contexts() -> None:
    plain, reused = both_ways(TinyCNN, examples_per_walk=10)
    coalitions = random_coalitions(12, plain.n_players, seed=7)
    contexts = np.repeat(np.arange(3), 4)
    np.testing.assert_allclose(
        reused.value_in_contexts(coalitions, contexts),
        plain.value_in_contexts(coalitions, contexts),
        rtol=1e-6,
    )


def test_group_prefixes_matches_brute_force() -> None:
    rng = np.random.default_rng(8)
    base = rng.random((6, 11)) < 0.5
    coalitions = base[rng.integers(0, 6, size=30)]
    coalitions[::4, :3] = True  # agree on the first layer more often
    columns = [slice(0, 3), slice(3, 7), slice(7, 11)]
    groups = group_prefixes(coalitions, columns, n_expanding=3)
    previous = np.zeros(len(coalitions), dtype=int)
    for level in range(3):
        prefix = coalitions[:, : columns[level].stop if level < 2 else 11]
        keys = [row.tobytes() for row in prefix]
        distinct = list(dict.fromkeys(keys))  # in order of first occurrence
        expected = np.array([distinct.index(key) for key in keys])
        first = groups.rows[level]
        assert [keys[row] for row in first] == distinct
        parents = groups.parents[level]
        if parents is None:
            assert len(distinct) == len(set(previous.tolist()))
        else:
            np.testing.assert_array_equal(parents, previous[first])
        previous = expected
    np.testing.assert_array_equal(groups.inverse, previous)
