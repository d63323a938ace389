"""Block reuse: each block of a transformer stack computed once per distinct prefix of masks.

``torch.fx`` cannot trace Hugging Face models, so prefix reuse (:mod:`.reuse`) does not apply to
them. But their layers are a chain of blocks, an ``nn.ModuleList`` called in order
(``encoder.layer`` of BERT, ``h`` of GPT-2), and when every hooked layer lies inside one of the
blocks, the hidden states entering block b depend only on the masks of blocks 0..b-1. Coalitions
of a batch that agree on the masks of blocks 0..b therefore give block b the same inputs and
get the same outputs: a permutation walk changes one head per step, so most consecutive steps
agree on the early blocks.

The model still runs on the examples tiled across the coalitions (as on the plain path, so
everything outside the stack sees the batch it expects). A pre-hook on block b keeps only one
coalition's rows per distinct prefix (of the hidden states and of every other per-example tensor
argument, such as the attention mask), and a hook on its output copies each result back to the
rows of every coalition of that prefix. This relies on what the plain path relies on already
(every module treats the examples of a batch independently, as in evaluation mode) and on two
more things: no module of the stack is sequence-first (``batch_first=False``), and (checked
while running) the blocks are called in order, once each, with the hidden states of one row
per tiled example first. Anything else raises ``BlockReuseError`` and the game
goes back to the plain path.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from neuronshapley.typing import CoalitionMatrix
from neuronshapley.units.reuse import group_prefixes
from neuronshapley.units.selection import Layer


class BlockReuseError(RuntimeError):
    """The model did not run its blocks as block reuse needs (order, once each, batch rows)."""


@dataclass(frozen=True)
class BlockPlan:
    """The stack of blocks and where the hooked layers lie in it.

    Attributes:
        path: Module path of the ``nn.ModuleList`` of blocks.
        n_blocks: How many blocks it holds.
        block_of_layer: The block of each of the game's layers.
    """

    path: str
    n_blocks: int
    block_of_layer: tuple[int, ...]


def plan_blocks(model: nn.Module, layers: Sequence[Layer]) -> BlockPlan | None:
    """The innermost ``nn.ModuleList`` holding every hooked layer in its blocks, or ``None``."""
    best: BlockPlan | None = None
    for path, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or not path:
            continue
        if any(getattr(inner, "batch_first", True) is False for inner in module.modules()):
            # Sequence-first blocks: the first dimension of their hidden states is not the
            # example, and could match the tiled batch by chance.
            continue
        blocks = []
        for layer in layers:
            head, _, rest = layer.path.partition(f"{path}.") if layer.path else ("", "", "")
            index = rest.split(".")[0]
            if head or not rest or not index.isdigit() or "." not in rest:
                break  # outside the list, or the block itself (not a layer inside it)
            blocks.append(int(index))
        else:
            if best is None or len(path) > len(best.path):
                best = BlockPlan(path, len(module), tuple(blocks))
    return best


@dataclass
class BlockSteps:
    """What the block hooks do for one batch of coalitions.

    Attributes:
        n_coalitions: Coalitions tiled in the batch.
        n_examples: Examples of each coalition in the batch.
        rows: Per block, one coalition of each distinct prefix of masks on blocks 0..b
            (``None``: every coalition is distinct, the block runs on the whole batch).
        inverse: Per block, the distinct prefix of every coalition (``None`` with ``rows``).
        next_block: The block expected to run next.
    """

    n_coalitions: int
    n_examples: int
    rows: list[torch.Tensor | None]
    inverse: list[torch.Tensor | None]
    next_block: int = 0


def block_steps(
    coalitions: CoalitionMatrix,
    plan: BlockPlan,
    offsets: NDArray[np.intp],
    device: torch.device,
) -> tuple[BlockSteps, list[NDArray[np.intp]]]:
    """The block hooks' steps for ``coalitions``, and the representative rows of each block.

    Args:
        coalitions: Bool, shape ``(n_coalitions, n_players)``.
        plan: The stack.
        offsets: The game's first player of each layer (and the total at the end).
    """
    columns: list[NDArray[np.intp]] = [np.zeros(0, dtype=np.intp) for _ in range(plan.n_blocks)]
    for layer, block in enumerate(plan.block_of_layer):
        players = np.arange(offsets[layer], offsets[layer + 1], dtype=np.intp)
        columns[block] = np.concatenate([columns[block], players])
    groups = group_prefixes(coalitions, columns, plan.n_blocks)
    # The group of every coalition at each block, from the last block's back to the first.
    inverse = [groups.inverse]
    for parents in groups.parents[:0:-1]:
        inverse.append(inverse[-1] if parents is None else parents[inverse[-1]])
    inverse.reverse()
    n = len(coalitions)
    steps = BlockSteps(n, 0, [], [])  # n_examples: set per pass
    for rows, group in zip(groups.rows, inverse, strict=True):
        distinct = len(rows) < n
        steps.rows.append(torch.from_numpy(rows).to(device) if distinct else None)
        steps.inverse.append(torch.from_numpy(group).to(device) if distinct else None)
    return steps, groups.rows


@contextmanager
def block_hooks(
    model: nn.Module, plan: BlockPlan, steps: Callable[[], BlockSteps | None]
) -> Iterator[None]:
    """Hook the blocks of ``plan``; they act while ``steps()`` is not ``None``. All go on exit."""
    blocks = model.get_submodule(plan.path)
    if not isinstance(blocks, nn.ModuleList):  # plan_blocks found one; the model changed since
        raise BlockReuseError(f"{plan.path!r} is no longer an nn.ModuleList")
    with ExitStack() as stack:
        for index, block in enumerate(blocks):
            pre, post = _hooks(index, steps)
            stack.callback(block.register_forward_pre_hook(pre, with_kwargs=True).remove)
            stack.callback(block.register_forward_hook(post).remove)
        yield


def _hooks(index: int, current: Callable[[], BlockSteps | None]) -> tuple[Any, Any]:
    def pre_hook(
        _: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        steps = current()
        if steps is None:
            return None
        if steps.next_block != index:
            raise BlockReuseError(
                f"block {index} ran when block {steps.next_block} was expected: the blocks are "
                "not called in order, once each"
            )
        steps.next_block += 1
        hidden = args[0] if args else next(iter(kwargs.values()), None)
        n_rows = steps.n_coalitions * steps.n_examples
        if not isinstance(hidden, torch.Tensor) or hidden.dim() < 2 or len(hidden) != n_rows:
            raise BlockReuseError(
                f"block {index} did not receive the hidden states of the tiled batch first"
            )
        rows = steps.rows[index]
        if rows is None:
            return None
        pick = _rows(lambda t: _select(t, rows, steps.n_coalitions), n_rows)
        return tuple(pick(a) for a in args), {k: pick(v) for k, v in kwargs.items()}

    def hook(_: nn.Module, __: tuple[Any, ...], output: Any) -> Any:
        steps = current()
        if steps is None:
            return None
        rows, inverse = steps.rows[index], steps.inverse[index]
        if rows is None or inverse is None:  # no reuse at this block (the two are set together)
            return None
        first = output if isinstance(output, torch.Tensor) else output[0]
        n_rows = len(rows) * steps.n_examples
        if not isinstance(first, torch.Tensor) or len(first) != n_rows:
            raise BlockReuseError(f"block {index} did not return the hidden states first")
        spread = _rows(lambda t: _select(t, inverse, len(rows)), n_rows)
        return spread(output)

    return pre_hook, hook


def _rows(select: Callable[[torch.Tensor], torch.Tensor], n_rows: int) -> Callable[[Any], Any]:
    """Apply ``select`` to every per-example tensor (2 dims or more, ``n_rows`` rows) in a value.

    One-dimensional tensors are left alone: ``cache_position`` and the like index positions,
    not examples, and may happen to have ``n_rows`` entries.
    """

    def apply(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return select(value) if value.dim() >= 2 and len(value) == n_rows else value
        if type(value) in (tuple, list):
            return type(value)(apply(item) for item in value)
        return value

    return apply


def _select(tensor: torch.Tensor, blocks: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """The row blocks ``blocks`` of ``tensor``, which holds ``n_blocks`` blocks of examples."""
    split = tensor.reshape(n_blocks, -1, *tensor.shape[1:])
    return split.index_select(0, blocks).reshape(-1, *tensor.shape[1:])
