"""Labelled examples as the PyTorch adapter sees them: a ``Split`` of inputs, labels and groups.

A ``Split`` is a plain container of tensors that live in memory: the bundled datasets are small,
and Neuron Shapley evaluates the same few hundred examples millions of times, so they are best
held as one tensor (tiled across coalitions in one forward pass) rather than streamed by a
DataLoader. ``as_split`` turns what users have at hand (a tuple of tensors or arrays, a
``TensorDataset``, tokenized inputs) into one, with errors that say what was expected.

Inputs need not be one tensor: a transformer takes a dict of tensors (``input_ids``,
``attention_mask``, ``token_type_ids``, ...) or a tuple of them. Every tensor's first dimension
is the example, and the helpers here (:func:`n_examples`, :func:`take`, :func:`repeat_rows`,
:func:`split_rows`, :func:`move`) treat the three forms alike. Examples without labels carry the
label -1 (as examples in no group carry the group -1): label-free metrics need none.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import torch

ModelInputs = torch.Tensor | dict[str, torch.Tensor] | tuple[torch.Tensor, ...]
"""The inputs of a model: one tensor, a dict of tensors (``model(**x)``) or a tuple (``model(*x)``).
Every tensor's first dimension is the example."""

X = TypeVar("X", bound=ModelInputs)

NO_LABEL = -1
"""The label of an example without one (label-free metrics need none)."""


@dataclass(frozen=True)
class Split(Generic[X]):
    """Examples of one split (train, reference or test).

    Attributes:
        x: Inputs: a tensor of shape ``(n_examples, ...)``, or a dict or tuple of such tensors
            (tokenized inputs: ``{"input_ids": ..., "attention_mask": ...}``).
        y: Integer class labels, shape ``(n_examples,)`` (int64); -1 for an example without a
            label (see :meth:`unlabelled`).
        groups: Optional integer group of each example, shape ``(n_examples,)`` (int64), used by
            the fairness metrics (e.g. the four sex x race groups of UCI Adult).
        group_names: Optional name of each group id (``group_names[g]`` names group ``g``).
        name: What the split is called in messages and reports.
    """

    x: X
    y: torch.Tensor
    groups: torch.Tensor | None = None
    group_names: tuple[str, ...] | None = None
    name: str = "data"

    def __post_init__(self) -> None:
        n = n_examples(self.x, f"split {self.name!r}")
        if n == 0:
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

    @classmethod
    def unlabelled(cls, x: X, name: str = "data") -> "Split[X]":
        """A split of inputs without labels (every label -1), for label-free metrics."""
        n = n_examples(x, f"split {name!r}")
        device = next(iter(tensors(x))).device
        return cls(x, torch.full((n,), NO_LABEL, dtype=torch.long, device=device), name=name)

    @property
    def labelled(self) -> bool:
        """Whether the examples carry labels (not all -1)."""
        return bool((self.y != NO_LABEL).any())

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: torch.Tensor | Sequence[int], name: str | None = None) -> "Split[X]":
        """The examples at ``index``, as a new split."""
        index = torch.as_tensor(index, dtype=torch.long)
        return Split(
            take(self.x, index),
            self.y[index],
            None if self.groups is None else self.groups[index],
            self.group_names,
            self.name if name is None else name,
        )

    def to(self, device: torch.device | str) -> "Split[X]":
        """The same split with its tensors on ``device``."""
        return Split(
            move(self.x, device),
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


def as_split(data: Any, name: str, owner: str) -> Split[Any]:
    """Turn ``data`` into a :class:`Split`.

    Accepted: a ``Split``; a tuple ``(x, y)`` or ``(x, y, groups)`` of tensors or numpy arrays;
    a ``torch.utils.data.TensorDataset`` with two or three tensors; a dict of tensors (tokenized
    inputs, no labels). In a tuple, ``x`` may also be a dict or a tuple of tensors (the model's
    inputs), and ``y`` may be ``None`` (no labels): ``(inputs, labels)`` or ``((ids, mask), None)``.

    Args:
        data: The examples.
        name: The parameter the data came in (for messages, e.g. ``"data"``).
        owner: Who asks (for messages, e.g. ``"NeuronGame"``).
    """
    if isinstance(data, Split):
        return data
    if isinstance(data, torch.utils.data.TensorDataset):
        data = tuple(data.tensors)
    if isinstance(data, Mapping):
        data = (data, None)
    if not isinstance(data, tuple | list) or len(data) not in (2, 3):
        raise TypeError(
            f"The {name!r} parameter of {owner} must be a Split, a tuple (x, y) or "
            f"(x, y, groups) of tensors or arrays, a TensorDataset, or a dict of tensors. "
            f"Got {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, tuple | list) else "")
            + " instead."
        )
    x = _as_inputs(data[0], f"inputs of {name!r}", owner)
    count = n_examples(x, f"the {name!r} parameter of {owner}")
    if count == 0:
        raise ValueError(f"The {name!r} parameter of {owner} holds no examples.")
    if data[1] is None:
        y = torch.full((count,), NO_LABEL, dtype=torch.long)
    else:
        y = _as_labels(data[1], f"labels of {name!r}", owner)
    groups = _as_labels(data[2], f"groups of {name!r}", owner) if len(data) == 3 else None
    if len(y) != count or y.ndim != 1:
        raise ValueError(
            f"The {name!r} parameter of {owner} has {count} inputs but labels of shape "
            f"{tuple(y.shape)}; it needs one label per input, shape ({count},)."
        )
    if groups is not None and (groups.ndim != 1 or len(groups) != count):
        raise ValueError(
            f"The {name!r} parameter of {owner} has {count} inputs but groups of shape "
            f"{tuple(groups.shape)}; it needs one group per input, shape ({count},)."
        )
    return Split(x, y, groups, None, name)


def _as_inputs(value: Any, what: str, owner: str) -> ModelInputs:
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"The {what} passed to {owner} is an empty dict: it needs tensors.")
        return {
            str(key): _as_tensor(item, f"{what}[{key!r}]", owner) for key, item in value.items()
        }
    if isinstance(value, tuple | list) and value and not isinstance(value[0], int | float):
        return tuple(_as_tensor(item, f"{what}[{i}]", owner) for i, item in enumerate(value))
    return _as_tensor(value, what, owner)


# -- inputs of any form: a tensor, a dict or a tuple of tensors --------------------------------


def tensors(inputs: ModelInputs) -> list[torch.Tensor]:
    """The tensors of ``inputs``, in order."""
    if isinstance(inputs, torch.Tensor):
        return [inputs]
    if isinstance(inputs, dict):
        return list(inputs.values())
    return list(inputs)


def n_examples(inputs: ModelInputs, where: str = "the inputs") -> int:
    """The number of examples: the first dimension, which every tensor must share."""
    if isinstance(inputs, torch.Tensor):
        if inputs.ndim < 1:
            return 0
        return len(inputs)
    if isinstance(inputs, dict | tuple) and inputs:
        items = list(inputs.items()) if isinstance(inputs, dict) else list(enumerate(inputs))
        sizes = {}
        for key, tensor in items:
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(
                    f"The inputs of {where} must be tensors. Got {type(tensor).__name__} at "
                    f"{key!r} instead."
                )
            sizes[key] = len(tensor) if tensor.ndim else 0
        if len(set(sizes.values())) > 1:
            shown = ", ".join(f"{key!r}: {size}" for key, size in sizes.items())
            raise ValueError(
                f"The inputs of {where} must all have the same first dimension (the example). "
                f"Got {shown}."
            )
        return next(iter(sizes.values()))
    raise TypeError(
        f"The inputs of {where} must be a tensor, a non-empty dict or a non-empty tuple of "
        f"tensors. Got {type(inputs).__name__} instead."
    )


def take(inputs: X, index: torch.Tensor | slice) -> X:
    """The examples at ``index`` (a slice or an index tensor) of every tensor."""
    if isinstance(inputs, torch.Tensor):
        return inputs[index]  # type: ignore[return-value]
    if isinstance(inputs, dict):
        return {key: tensor[index] for key, tensor in inputs.items()}  # type: ignore[return-value]
    return tuple(tensor[index] for tensor in inputs)  # type: ignore[return-value]


def repeat_rows(inputs: X, times: int) -> X:
    """Every tensor repeated ``times`` along the examples (all examples, then all again, ...)."""

    def repeat(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.repeat((times,) + (1,) * (tensor.dim() - 1))

    if isinstance(inputs, torch.Tensor):
        return repeat(inputs)  # type: ignore[return-value]
    if isinstance(inputs, dict):
        return {key: repeat(tensor) for key, tensor in inputs.items()}  # type: ignore[return-value]
    return tuple(repeat(tensor) for tensor in inputs)  # type: ignore[return-value]


def split_rows(inputs: X, size: int) -> list[X]:
    """Consecutive chunks of at most ``size`` examples."""
    if isinstance(inputs, torch.Tensor):
        return list(inputs.split(size))
    total = n_examples(inputs)
    return [take(inputs, slice(start, start + size)) for start in range(0, total, size)]


def move(inputs: X, device: torch.device | str) -> X:
    """Every tensor on ``device``."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)  # type: ignore[return-value]
    if isinstance(inputs, dict):
        return {key: tensor.to(device) for key, tensor in inputs.items()}  # type: ignore[return-value]
    return tuple(tensor.to(device) for tensor in inputs)  # type: ignore[return-value]


def describe_inputs(inputs: ModelInputs) -> str:
    """Each tensor's shape per example and dtype, for messages."""
    if isinstance(inputs, torch.Tensor):
        return f"shape {tuple(inputs.shape[1:])} per example ({inputs.dtype})"
    items = list(inputs.items()) if isinstance(inputs, dict) else list(enumerate(inputs))
    return ", ".join(f"{key!r}: {tuple(t.shape[1:])} ({t.dtype})" for key, t in items)
