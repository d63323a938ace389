"""Labelled examples as the PyTorch adapter sees them: a ``Split`` of inputs, labels and groups.

A ``Split`` is a plain container of tensors that live in memory: the bundled datasets are small,
and Neuron Shapley evaluates the same few hundred examples millions of times, so they are best
held as one tensor (tiled across coalitions in one forward pass) rather than streamed by a
DataLoader. ``as_split`` turns what users have at hand (a tuple of tensors or arrays, a
``TensorDataset``) into one, with errors that say what was expected.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Split:
    """Examples of one split (train, reference or test).

    Attributes:
        x: Inputs, shape ``(n_examples, ...)``.
        y: Integer class labels, shape ``(n_examples,)`` (int64).
        groups: Optional integer group of each example, shape ``(n_examples,)`` (int64), used by
            the fairness metrics (e.g. the four sex x race groups of UCI Adult).
        group_names: Optional name of each group id (``group_names[g]`` names group ``g``).
        name: What the split is called in messages and reports.
    """

    x: torch.Tensor
    y: torch.Tensor
    groups: torch.Tensor | None = None
    group_names: tuple[str, ...] | None = None
    name: str = "data"

    def __post_init__(self) -> None:
        n = len(self.x)
        if self.x.ndim < 1 or n == 0:
            raise ValueError(f"The split {self.name!r} is empty: it needs at least one example.")
        for what, labels in (("labels", self.y), ("groups", self.groups)):
            if labels is not None and (
                labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool
            ):
                raise TypeError(
                    f"The {what} of split {self.name!r} must be an integer tensor (class or "
                    f"group ids). Got dtype {labels.dtype}; convert with .long()."
                )
        if self.y.shape != (n,):
            raise ValueError(
                f"The labels of split {self.name!r} must have shape ({n},), one per example. "
                f"Got shape {tuple(self.y.shape)} instead."
            )
        if self.groups is not None and self.groups.shape != (n,):
            raise ValueError(
                f"The groups of split {self.name!r} must have shape ({n},), one per example. "
                f"Got shape {tuple(self.groups.shape)} instead."
            )

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index: torch.Tensor | Sequence[int], name: str | None = None) -> "Split":
        """The examples at ``index``, as a new split."""
        index = torch.as_tensor(index, dtype=torch.long)
        return Split(
            self.x[index],
            self.y[index],
            None if self.groups is None else self.groups[index],
            self.group_names,
            self.name if name is None else name,
        )

    def to(self, device: torch.device | str) -> "Split":
        """The same split with its tensors on ``device``."""
        return Split(
            self.x.to(device),
            self.y.to(device),
            None if self.groups is None else self.groups.to(device),
            self.group_names,
            self.name,
        )


@dataclass(frozen=True)
class Bundle:
    """A bundled dataset: fixed train, reference and test splits.

    Attributes:
        train: Examples the model was trained on.
        reference: Held-out examples for the ablation fill (the mean output of a unit); never
            the examples the values are computed on.
        test: Held-out examples to compute values and report accuracy on.
        classes: Name of each class.
        description: Where the data comes from and how the splits were drawn.
    """

    train: Split
    reference: Split
    test: Split
    classes: tuple[str, ...]
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def _as_tensor(value: Any, what: str, owner: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise TypeError(
        f"The {what} passed to {owner} must be a torch.Tensor or a numpy array. "
        f"Got {type(value).__name__} instead."
    )


def _as_labels(value: Any, what: str, owner: str) -> torch.Tensor:
    tensor = _as_tensor(value, what, owner)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        if tensor.is_floating_point() and torch.equal(tensor, tensor.round()):
            return tensor.long()
        raise TypeError(
            f"The {what} passed to {owner} must hold integers (class ids). "
            f"Got dtype {tensor.dtype} with non-integer values."
        )
    return tensor.long()


def as_split(data: Any, name: str, owner: str) -> Split:
    """Turn ``data`` into a :class:`Split`.

    Accepted: a ``Split``; a tuple ``(x, y)`` or ``(x, y, groups)`` of tensors or numpy arrays;
    a ``torch.utils.data.TensorDataset`` with two or three tensors.

    Args:
        data: The examples.
        name: The parameter the data came in (for messages, e.g. ``"data"``).
        owner: Who asks (for messages, e.g. ``"NeuronGame"``).
    """
    if isinstance(data, Split):
        return data
    if isinstance(data, torch.utils.data.TensorDataset):
        data = tuple(data.tensors)
    if not isinstance(data, tuple | list) or len(data) not in (2, 3):
        raise TypeError(
            f"The {name!r} parameter of {owner} must be a Split, a tuple (x, y) or "
            f"(x, y, groups) of tensors or arrays, or a TensorDataset. "
            f"Got {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, tuple | list) else "")
            + " instead."
        )
    x = _as_tensor(data[0], f"inputs of {name!r}", owner)
    y = _as_labels(data[1], f"labels of {name!r}", owner)
    groups = _as_labels(data[2], f"groups of {name!r}", owner) if len(data) == 3 else None
    if len(x) == 0:
        raise ValueError(f"The {name!r} parameter of {owner} holds no examples.")
    if len(y) != len(x) or y.ndim != 1:
        raise ValueError(
            f"The {name!r} parameter of {owner} has {len(x)} inputs but labels of shape "
            f"{tuple(y.shape)}; it needs one label per input, shape ({len(x)},)."
        )
    if groups is not None and (groups.ndim != 1 or len(groups) != len(x)):
        raise ValueError(
            f"The {name!r} parameter of {owner} has {len(x)} inputs but groups of shape "
            f"{tuple(groups.shape)}; it needs one group per input, shape ({len(x)},)."
        )
    return Split(x, y, groups, None, name)
