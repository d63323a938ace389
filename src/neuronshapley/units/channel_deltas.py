"""Linear layers run on channel deltas: blocks that share a parent prefix cost a few channels each.

Under prefix reuse (:mod:`.reuse`) a hooked layer receives one block of examples per distinct
prefix of the earlier layers' masks. Blocks that extend the same parent prefix had the same
inputs up to the previous hooked layer, so they differ only in what that layer's masks changed:
in a walk batch, a few channels. When the layer is linear in its input (a convolution or a
``Linear``), W·x_j + b = (W·x_0 + b) + W[:, U]·(x_j - x_0)[U], where x_0 is the first block of
x_j's family and U the input channels where any block differs from its family's first. So the
layer runs fully once per family and on |U| channels for every other block.

On the 1,152-filter digits-cnn-wide (conv 128/256/768), a batch of 64 walk steps holds about 6
distinct conv1 prefixes and 18 distinct (conv1, conv2) prefixes: conv2 runs on 1 block and
differences, not 6, and conv3 on about 6 blocks and differences, not 18.

U is read off the data (where the blocks differ), not assumed from the masks, so a layer whose
inputs mix channels before it (anything between the two hooked layers) is still exact: its
differences are just wide, and when U holds more than a quarter of the channels the layer runs
the plain way (deltas would save little more than they cost). The two terms are rounded before
they are added, so the error is about the float precision times the largest term dropped, not
times the result: in float32 about 1e-7 of a cross-entropy on the bundled networks. Half
precision, TF32 and non-finite inputs therefore run the plain way. The extra tensors (the
differences, about the size of the layer's input) are not counted in the game's
``memory_budget``.
"""

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional

# Layers whose class runs the stock forward (a subclass that overrides it may not be linear).
_LINEAR_FORWARDS = (nn.Linear.forward, nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward)


@dataclass(frozen=True)
class Families:
    """The blocks of a layer's input grouped by the parent prefix they extend.

    Attributes:
        bases: The first block of each family (run fully), ascending.
        others: Every other block (run on differences), ascending.
        base_of: For each of ``others``, the position of its family's base in ``bases``.
    """

    bases: torch.Tensor
    others: torch.Tensor
    base_of: torch.Tensor


def families(parents: NDArray[np.intp] | None, device: torch.device) -> Families | None:
    """The families of blocks with parent ``parents[j]``, or ``None`` if no two share one."""
    if parents is None:
        return None
    _, first, inverse = np.unique(parents, return_index=True, return_inverse=True)
    base_block = first[inverse.ravel()]
    is_base = base_block == np.arange(len(parents))
    if is_base.all():
        return None
    bases, others = np.flatnonzero(is_base), np.flatnonzero(~is_base)
    base_of = np.searchsorted(bases, base_block[others])
    return Families(*(torch.from_numpy(a).to(device) for a in (bases, others, base_of)))


# Multiply-adds each input element feeds below which deltas cost more than they save: the
# compare, the copies and the sum are a few passes over the input whatever the layer, and pay
# only against a wide output. Walks measured with deltas on every layer against prefix reuse
# alone (benchmarks/channel_deltas.py, docs/efficiency.md): digits-cnn-wide's convolutions
# (256 x 9 and 768 x 9 per input element) 1.71x faster; digits-cnn's (64 x 9) 1.03x,
# mnist1d-cnn's (64 x 5) 0.88x, digits-mlp-wide's fc2 (512) 0.93x, adult-mlp's fc2 (64) 0.83x.
MIN_MACS_PER_INPUT = 1_000


def pays_for_deltas(module: nn.Module) -> bool:
    """Whether ``module`` (see :func:`runs_on_deltas`) is wide enough for deltas to pay: each of
    its input elements feeds at least ``MIN_MACS_PER_INPUT`` multiply-adds."""
    weight = cast(torch.Tensor, module.weight)
    return weight.numel() // weight.shape[1] >= MIN_MACS_PER_INPUT


def runs_on_deltas(module: nn.Module) -> bool:
    """Whether ``module`` is linear in its input channels as a whole: a stock convolution with
    one group, or a stock ``Linear``, with no ``forward`` of its own set on the instance."""
    return (
        type(module).forward in _LINEAR_FORWARDS
        and getattr(module, "groups", 1) == 1
        and "forward" not in vars(module)
    )


@contextmanager
def delta_forwards(
    modules: dict[int, nn.Module], current: Callable[[int], Families | None]
) -> Iterator[None]:
    """Run each module of ``modules`` (by layer index) on differences while ``current(index)``
    gives its input's families; each module's own ``forward`` is back on exit.

    The instance's ``forward`` is replaced, not hooked: a hook cannot skip the module's own
    computation, which is the cost this saves.
    """
    with ExitStack() as stack:
        for index, module in modules.items():
            # Checked again now: a forward set on the instance since (by the user, or by this
            # game's own evaluation further up the stack) is left alone, and so kept.
            if not runs_on_deltas(module):
                continue
            plain = module.forward
            stack.callback(vars(module).pop, "forward", None)
            module.forward = _by_deltas(module, plain, partial(current, index))
        yield


def _by_deltas(
    module: nn.Module,
    plain: Callable[[torch.Tensor], torch.Tensor],
    current: Callable[[], Families | None],
) -> Callable[[torch.Tensor], torch.Tensor]:
    linear = isinstance(module, nn.Linear)
    # W[:, U] applied without the bias: F.linear, or the convolution's own (with its padding).
    apply = functional.linear if linear else cast(Any, module)._conv_forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        family = current()
        if family is None or not isinstance(x, torch.Tensor) or not _exact_enough(x, linear):
            return plain(x)
        n_blocks = len(family.bases) + len(family.others)
        if x.dim() < 2 or len(x) % n_blocks:
            return plain(x)  # not the blocked batch prefix reuse makes: nothing to share
        blocks = x.reshape(n_blocks, -1, *x.shape[1:])  # a view unless x is oddly strided
        channel = blocks.dim() - 1 if linear else 2
        # The first example of every block first: where it already differs in too many
        # channels, the layer runs the plain way without the cost of the whole difference.
        if _too_wide(_changed(blocks[:, :1], family, channel)):
            return plain(x)
        bases = blocks.index_select(0, family.bases)
        difference = blocks.index_select(0, family.others) - bases.index_select(0, family.base_of)
        used = _changed(difference, None, channel).nonzero().squeeze(1)
        # An inf or a NaN in a block makes W·x_0 + W·(x_j - x_0) NaN (inf - inf) where the plain
        # sum may be finite: such blocks run the plain way.
        if _too_wide(used, x.shape[channel - 1]) or not difference.isfinite().all():
            return plain(x)
        base_out = plain(bases.flatten(0, 1))
        base_out = base_out.view(len(family.bases), -1, *base_out.shape[1:])
        other_out = base_out.index_select(0, family.base_of)
        if len(used):
            part = difference.index_select(channel, used).flatten(0, 1)
            change = apply(part, cast(torch.Tensor, module.weight).index_select(1, used), None)
            other_out = other_out + change.view(other_out.shape)
        out = base_out.new_empty((n_blocks, *base_out.shape[1:]))
        out[family.bases] = base_out
        out[family.others] = other_out
        return out.flatten(0, 1)

    return forward


# Deltas pay only where few channels changed: on the 160-filter bundled CNNs, whose layers change
# in a third of their 32-64 channels over a batch of 64 walk steps, the compare and the copies
# cost about what the narrower convolution saves; on digits-cnn-wide (7 of 128 and 14 of 256)
# and digits-mlp-wide (32 of 512) they pay.
_MOST_CHANGED = 0.25


def _changed(blocks: torch.Tensor, family: Families | None, channel: int) -> torch.Tensor:
    """Bool per input channel: where any of ``family.others`` differs from its base in
    ``blocks`` (or, with ``family=None``, where the differences ``blocks`` are not zero)."""
    if family is None:
        differs = blocks != 0
    else:
        others = blocks.index_select(0, family.others)
        differs = others != blocks.index_select(0, family.bases[family.base_of])
    return differs.movedim(channel, 0).flatten(1).any(1)


def _too_wide(changed: torch.Tensor, n_channels: int | None = None) -> bool:
    """Whether more channels changed than deltas pay for (a bool mask, or the changed indices
    out of ``n_channels``)."""
    if n_channels is None:
        return int(changed.sum()) > _MOST_CHANGED * len(changed)
    return len(changed) > _MOST_CHANGED * n_channels


def _exact_enough(x: torch.Tensor, linear: bool) -> bool:
    """Whether W·x_0 + W·(x_j - x_0) rounds like W·x_j: in float32 or float64, without TF32.

    W·x_0 and W·(x_j - x_0) are each rounded to the output's precision before they are added,
    so the error scales with the terms x_j drops, not with the result: in bfloat16 an ablated
    channel of 300 leaves nothing of a result of 0.6. TF32 (cuDNN's default for convolutions
    on CUDA) rounds the inputs of the products to 10 bits alike.
    """
    if x.dtype not in (torch.float32, torch.float64):
        return False
    if x.is_cuda and x.dtype == torch.float32:
        return not (
            torch.backends.cuda.matmul.allow_tf32 if linear else torch.backends.cudnn.allow_tf32
        )
    return True
