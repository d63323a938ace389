"""What ``FeatureGame`` and ``dasp`` share: the example, its baseline, the groups of features.

Both take one example ``x`` (without its batch axis), a baseline (``"zero"``, a number, a tensor
of x's shape, or a background set of shape ``(m, *x.shape)``) and optional groups of features,
and check them the same way, with messages that name the parameter, the rule and the value.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from neuronshapley._internal.devices import check_not_meta, model_device
from neuronshapley.pytorch.modes import evaluation_mode as evaluation_mode


@dataclass(frozen=True)
class Players:
    """The players of an example: which flat features each holds, and their names.

    Attributes:
        members: For each player, the flat indices (into ``x.reshape(-1)``) of its features.
        owner_of: For each flat feature, the index of the player holding it.
        names: One name per player (``"x[3]"``, ``"pixel(2,5)"`` or the group's label).
        grouped: Whether the players are groups given by the user.
    """

    members: tuple[NDArray[np.int64], ...]
    owner_of: NDArray[np.int64]
    names: list[str]
    grouped: bool


def check_model(model: Any, owner: str) -> torch.device:
    """The device of ``model`` if it is an ``nn.Module`` with real (not meta) tensors."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"The 'model' parameter of {owner} must be a torch.nn.Module. "
            f"Got {type(model).__name__} instead."
        )
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        check_not_meta(tensor, f"model tensor {name!r}", owner)
    return model_device(model)


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's first floating parameter (float32 if it has none)."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


def as_example(x: Any, owner: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``x`` as a finite tensor on ``device``: one example, without its batch axis."""
    try:
        tensor = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"The 'x' parameter of {owner} must be a tensor or array holding one example "
            f"(without its batch axis). Got {type(x).__name__} instead."
        ) from None
    if tensor.dim() == 0 or tensor.numel() == 0:
        raise ValueError(
            f"The 'x' parameter of {owner} must be one example with at least one feature, "
            f"without its batch axis (e.g. shape (13,) or (1, 8, 8)). Got shape "
            f"{tuple(tensor.shape)} instead."
        )
    tensor = tensor.detach().to(device=device, dtype=dtype)
    if not torch.isfinite(tensor).all():
        raise ValueError(
            f"The 'x' parameter of {owner} holds NaN or inf: every feature must be finite."
        )
    return tensor


def as_baseline(baseline: Any, x: torch.Tensor, owner: str) -> tuple[torch.Tensor, str]:
    """The baseline as a background set ``(m, *x.shape)`` and a word for what it was.

    ``"zero"``, a number and a tensor of x's shape become one row; a tensor of shape
    ``(m, *x.shape)`` is a background set of m rows (the game averages over them).
    """
    shape = tuple(x.shape)
    rule = (
        f"'zero', a number, a tensor of x's shape {shape}, or a background set of shape "
        f"(m, {', '.join(map(str, shape))})"
    )
    if isinstance(baseline, str):
        if baseline != "zero":
            raise ValueError(
                f"The 'baseline' parameter of {owner} must be {rule}. Got {baseline!r} instead."
            )
        return torch.zeros((1, *shape), dtype=x.dtype, device=x.device), "zero"
    if isinstance(baseline, bool):
        raise TypeError(
            f"The 'baseline' parameter of {owner} must be {rule}. Got {baseline!r} instead."
        )
    if isinstance(baseline, int | float | np.number):
        value = float(baseline)
        if not np.isfinite(value):
            raise ValueError(
                f"The 'baseline' parameter of {owner} must be finite. Got {baseline!r} instead."
            )
        return torch.full((1, *shape), value, dtype=x.dtype, device=x.device), "constant"
    try:
        tensor = torch.as_tensor(
            baseline if isinstance(baseline, torch.Tensor) else np.asarray(baseline)
        )
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"The 'baseline' parameter of {owner} must be {rule}. "
            f"Got {type(baseline).__name__} instead."
        ) from None
    tensor = tensor.detach().to(device=x.device, dtype=x.dtype)
    if tuple(tensor.shape) == shape:
        rows, kind = tensor[None], "per_feature"
    elif tensor.dim() == len(shape) + 1 and tuple(tensor.shape[1:]) == shape and len(tensor):
        rows, kind = tensor, "background"
    else:
        raise ValueError(
            f"The 'baseline' parameter of {owner} must be {rule}. "
            f"Got a tensor of shape {tuple(tensor.shape)} instead."
        )
    if not torch.isfinite(rows).all():
        raise ValueError(
            f"The 'baseline' parameter of {owner} holds NaN or inf: every value must be finite."
        )
    return rows.contiguous(), kind


def feature_names(shape: tuple[int, ...]) -> list[str]:
    """``x[i]`` for a vector, ``pixel(r,c)`` for an image of one channel, else ``x[i,j,...]``."""
    if len(shape) == 1:
        return [f"x[{i}]" for i in range(shape[0])]
    spatial = shape[-2:]
    if len(shape) in (2, 3) and all(size == 1 for size in shape[:-2]):
        return [f"pixel({r},{c})" for r in range(spatial[0]) for c in range(spatial[1])]
    return ["x[" + ",".join(map(str, index)) + "]" for index in np.ndindex(*shape)]


def image_patches(shape: Sequence[int], size: int | tuple[int, int]) -> NDArray[np.str_]:
    """A label per feature of an image of ``shape`` (``(H, W)`` or ``(C, H, W)``): its patch.

    Pass the result as ``groups`` to make each ``size``-by-``size`` patch (all channels) one
    player, named ``"patch(r,c)"`` by the patch's row and column. Edge patches are smaller when
    ``size`` does not divide the image.

    Args:
        shape: The example's shape, without the batch axis.
        size: The patch's height and width (an int for a square).
    """
    dims = tuple(int(s) for s in shape)
    if len(dims) not in (2, 3):
        raise ValueError(
            "The 'shape' parameter of image_patches must be (H, W) or (C, H, W). "
            f"Got {dims} instead."
        )
    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1:
        raise ValueError(
            f"The 'size' parameter of image_patches must be positive. Got {size!r} instead."
        )
    rows = np.arange(dims[-2])[:, None] // height
    cols = np.arange(dims[-1])[None, :] // width
    labels = np.char.add(
        np.char.add(np.char.add("patch(", rows.astype(str)), ","),
        np.char.add(cols.astype(str), ")"),
    )
    return np.broadcast_to(labels, dims).copy()


def resolve_players(groups: Any, shape: tuple[int, ...], owner: str) -> Players:
    """The players of an example of ``shape`` under ``groups`` (see ``FeatureGame``)."""
    n_features = int(np.prod(shape))
    if groups is None:
        members = tuple(np.array([f], dtype=np.int64) for f in range(n_features))
        owner_of = np.arange(n_features, dtype=np.int64)
        return Players(members, owner_of, feature_names(shape), grouped=False)
    labels = _as_labels(groups, shape, n_features)
    if labels is not None:
        # Players in order of first appearance, named by their labels.
        names, first, owner_of = np.unique(labels, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        owner_of = rank[owner_of.reshape(-1)].astype(np.int64)
        members = tuple(np.flatnonzero(owner_of == p).astype(np.int64) for p in range(len(order)))
        return Players(members, owner_of, [str(names[p]) for p in order], grouped=True)
    return _index_groups(groups, n_features, owner)


def _as_labels(groups: Any, shape: tuple[int, ...], n_features: int) -> NDArray[Any] | None:
    """``groups`` as one label per feature, or ``None`` if it is a list of index arrays."""
    if isinstance(groups, np.ndarray | torch.Tensor):
        array = np.asarray(groups.cpu() if isinstance(groups, torch.Tensor) else groups)
    elif isinstance(groups, Sequence) and not isinstance(groups, str):
        if len(groups) != n_features or not all(
            isinstance(g, str | int | np.integer) for g in groups
        ):
            return None
        array = np.asarray([str(g) if isinstance(g, str) else int(g) for g in groups])
    else:
        return None
    if array.dtype == object or array.shape not in (shape, (n_features,)):
        return None
    return array.reshape(-1)


def _index_groups(groups: Any, n_features: int, owner: str) -> Players:
    rule = (
        f"a label per feature ({n_features} labels, or an array of x's shape) or a list of "
        "index arrays (flat indices into x.reshape(-1)) covering every feature exactly once"
    )
    if not isinstance(groups, Sequence) or isinstance(groups, str) or not len(groups):
        raise ValueError(
            f"The 'groups' parameter of {owner} must be {rule}. Got {groups!r} instead."
        )
    members = []
    for k, group in enumerate(groups):
        array = np.asarray(group.cpu() if isinstance(group, torch.Tensor) else group)
        if array.ndim != 1 or len(array) == 0 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"The 'groups' parameter of {owner} must be {rule}. Group {k} is not a "
                f"non-empty 1-d array of ints: {group!r}."
            )
        members.append(array.astype(np.int64))
    flat = np.concatenate(members)
    outside = flat[(flat < 0) | (flat >= n_features)]
    if len(outside):
        raise ValueError(
            f"The 'groups' parameter of {owner} must hold feature indices in [0, "
            f"{n_features - 1}]. Got {outside[:5].tolist()} instead."
        )
    counts = np.bincount(flat, minlength=n_features)
    missing, repeated = np.flatnonzero(counts == 0), np.flatnonzero(counts > 1)
    if len(missing) or len(repeated):
        problems = []
        if len(missing):
            problems.append(f"{len(missing)} feature(s) in no group, first {missing[:5].tolist()}")
        if len(repeated):
            problems.append(
                f"{len(repeated)} feature(s) in more than one group, first {repeated[:5].tolist()}"
            )
        raise ValueError(
            f"The 'groups' parameter of {owner} must cover every feature exactly once. Got "
            + " and ".join(problems)
            + "."
        )
    owner_of = np.empty(n_features, dtype=np.int64)
    for p, member in enumerate(members):
        owner_of[member] = p
    names = [f"group{k}" for k in range(len(members))]
    return Players(tuple(members), owner_of, names, grouped=True)
