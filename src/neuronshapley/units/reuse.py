"""Computing each distinct prefix once: the coalitions of a batch share the layers they agree on.

A batch of coalitions is evaluated on the same examples. Everything before the first hooked
layer is the same for all of them, and two coalitions that agree on the masks of the first i
hooked layers (in execution order) have the same activations up to layer i + 1. Consecutive
coalitions of a permutation walk differ by one unit, so most of them agree on the early layers:
in a batch of 32 walk steps of the 160-filter digits CNN, about 7 distinct conv1 masks and 20
distinct (conv1, conv2) masks occur, and the later layers see far fewer rows than 32 x examples.

So the model runs on the examples once (not tiled), and the hook of each layer *expands* the
batch: its input holds one block of examples per distinct prefix so far, its output one block per
distinct prefix including this layer's mask. This is only correct when nothing computed before a
hooked layer is used after it except that layer's output (a residual connection around it would
meet a batch of another size, or worse, broadcast). ``plan_reuse`` checks exactly that on the
model's ``torch.fx`` graph, and returns how many of the hooked layers (in execution order) can
expand. Models that fx cannot trace, or whose first hooked layer is not such a cut, are evaluated
the plain way (examples tiled across coalitions).
"""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import fx, nn

from neuronshapley.typing import CoalitionMatrix
from neuronshapley.units.selection import Layer


@dataclass(frozen=True)
class ReusePlan:
    """Which hooked layers expand the batch.

    Attributes:
        order: Indices into the game's layers, in execution order; the first ``n_expanding``
            are cuts of the graph and expand the batch of distinct prefixes.
        n_expanding: How many layers expand (at least 1). The last of them expands to the
            distinct coalitions; the layers after it mask one row block per coalition.
    """

    order: tuple[int, ...]
    n_expanding: int


def plan_reuse(model: nn.Module, layers: Sequence[Layer]) -> ReusePlan | None:
    """The reuse plan of ``model``, or ``None`` when the batch cannot expand at any hooked layer."""
    if any(layer.kind in ("heads", "mha") for layer in layers):
        return None  # hooked through pre-hooks or recomputed internals, not a module's output
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = fx.symbolic_trace(model).graph
    except Exception:  # control flow, unsupported ops...: fx says no in many ways
        return None
    nodes = list(graph.nodes)
    position = {node: i for i, node in enumerate(nodes)}
    calls: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        if node.op == "call_module":
            calls.setdefault(str(node.target), []).append(i)
    located = []
    for index, layer in enumerate(layers):
        found = calls.get(layer.path, [])
        if len(found) != 1:  # not traced as a module of its own (inside a leaf), or called twice
            return None
        located.append((found[0], index))
    located.sort()
    # last_use[i]: the furthest position that uses node i. A hooked node at position p is a cut
    # when no earlier node other than parameters (get_attr) is used after p.
    last_use = [
        max((position[user] for user in node.users), default=i) for i, node in enumerate(nodes)
    ]
    reach = -1  # the furthest use of any batch-dependent node before the current one
    cut = []
    previous = 0
    for at, _ in located:
        for i in range(previous, at):
            if nodes[i].op != "get_attr":
                reach = max(reach, last_use[i])
        previous = at
        cut.append(reach <= at)
    n_expanding = 0
    while n_expanding < len(cut) and cut[n_expanding]:
        n_expanding += 1
    if n_expanding == 0:
        return None
    return ReusePlan(tuple(index for _, index in located), n_expanding)


@dataclass
class PrefixGroups:
    """How a batch of coalitions splits into distinct prefixes at each expanding layer.

    Attributes:
        parents: Per expanding layer, for each of its groups, the group of the previous
            expanding layer it extends (``None`` when the groups did not change).
        rows: Per expanding layer, one coalition (row of the batch) of each of its groups: the
            group's mask is that row's.
        inverse: The group of the last expanding layer (a distinct coalition) of every row.
    """

    parents: list[NDArray[np.intp] | None]
    rows: list[NDArray[np.intp]]
    inverse: NDArray[np.intp]


def group_prefixes(
    coalitions: CoalitionMatrix,
    columns: Sequence[slice | NDArray[np.intp]],
    n_expanding: int,
) -> PrefixGroups:
    """Group the rows of ``coalitions`` by their masks on the layers in execution order.

    Args:
        coalitions: Bool, shape ``(n_coalitions, n_players)``.
        columns: The players of each layer (or block), in execution order.
        n_expanding: How many layers expand; the last one groups by whole coalitions.
    """
    n = len(coalitions)
    group = np.zeros(n, dtype=np.intp)
    n_groups = 1
    parents: list[NDArray[np.intp] | None] = []
    rows: list[NDArray[np.intp]] = []
    for level in range(n_expanding):
        if level < n_expanding - 1:
            block = coalitions[:, columns[level]]
        else:  # the last expanding layer separates whole coalitions
            block = np.concatenate([coalitions[:, c] for c in columns[level:]], axis=1)
        first, inverse = _unique_rows(group, block)
        parents.append(None if len(first) == n_groups else group[first])
        rows.append(first)
        group, n_groups = inverse, len(first)
    return PrefixGroups(parents, rows, group)


def _unique_rows(
    group: NDArray[np.intp], block: NDArray[np.bool_]
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """First row of each distinct (group, block row) and the new group of every row.

    Groups are numbered in order of first occurrence, so a batch with one coalition per group
    keeps its order.
    """
    packed = np.packbits(block, axis=1)
    keys = np.concatenate([group.astype("<i8").view(np.uint8).reshape(len(group), 8), packed], 1)
    keys = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    # np.unique numbers groups by sorted key; renumber by first occurrence.
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.ravel()]


def as_index(indices: NDArray[np.intp] | None, device: torch.device) -> torch.Tensor | None:
    """An index array as a tensor on ``device`` (``None`` stays ``None``)."""
    return None if indices is None else torch.from_numpy(indices).to(device)
