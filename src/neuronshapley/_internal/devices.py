"""The one place that turns what users pass as ``device`` into a ``torch.device`` it can run on.

Every entry point that takes a ``device`` (``NeuronGame``, the unit visualisation, the attacks)
goes through :func:`resolve_device`, so a device that does not exist here ("gpu", ``"cuda"``
without a GPU, ``"cuda:7"`` on a machine with two) is one ``ValueError`` naming the parameter,
not an ``AssertionError`` or a ``RuntimeError`` from deep inside torch at the first forward pass.
Devices come back canonical (``"cuda"`` as ``"cuda:<current>"``, ``"cpu:0"`` as ``"cpu"``), so
two devices are the same exactly when they compare equal.
"""

import os
from typing import Any

import torch
from torch import nn

_EXAMPLES = "'cpu', 'cuda', 'cuda:0' or 'mps'"


def resolve_device(device: Any, owner: str, parameter: str = "device") -> torch.device:
    """``device`` as a canonical ``torch.device`` that exists on this machine.

    Args:
        device: A string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) or a ``torch.device``.
        owner: Who asks, for messages (e.g. ``"NeuronGame"``).
        parameter: The parameter ``device`` came in, for messages. Default ``"device"``.

    Raises:
        ValueError: the device is of another type, unknown to torch, ``meta`` (tensors without
            values) or not available here.
    """
    where = f"The {parameter!r} parameter of {owner}"
    if not isinstance(device, str | torch.device):
        raise ValueError(
            f"{where} must be a device name such as {_EXAMPLES}, or a torch.device. "
            f"Got {device!r} ({type(device).__name__}) instead."
        )
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"{where} must be a device name such as {_EXAMPLES}. Got {device!r} instead ({error})."
        ) from None
    return _available(parsed, where, repr(device))


def model_device(model: nn.Module, default: torch.device | None = None) -> torch.device:
    """The device of ``model``'s first parameter or buffer, canonical; ``default`` if it has none.

    ``default`` is the CPU unless given.
    """
    for parameter in model.parameters():
        return canonical(parameter.device)
    for buffer in model.buffers():
        return canonical(buffer.device)
    return torch.device("cpu") if default is None else canonical(default)


def canonical(device: torch.device) -> torch.device:
    """``cpu:0`` as ``cpu``; ``cuda`` (and other indexed types) with the current index."""
    if device.type == "cpu":
        return torch.device("cpu")
    if device.index is None and device.type == "cuda" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def check_not_meta(tensor: torch.Tensor, what: str, owner: str) -> None:
    """Refuse a ``meta`` tensor: it has a shape but no values to compute with."""
    if tensor.is_meta:
        raise ValueError(
            f"The {what} passed to {owner} is on the 'meta' device: it has a shape but no values. "
            f"Materialise it (e.g. load its weights or data) on a real device, and choose where "
            f"to evaluate with the 'device' parameter."
        )


def available_memory(device: torch.device) -> int | None:
    """Bytes free on ``device`` now (RAM for the CPU), or ``None`` when it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:  # Linux: what can be allocated without swapping
        with open("/proc/meminfo", encoding="ascii") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # other POSIX systems: the physical memory
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def _available(device: torch.device, where: str, shown: str) -> torch.device:
    if device.type == "meta":
        raise ValueError(
            f"{where} cannot be 'meta': meta tensors have shapes but no values to evaluate. "
            f"Use {_EXAMPLES}. Got {shown} instead."
        )
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"{where} asks for CUDA, but no CUDA GPU is available here "
                f"(torch.cuda.is_available() is False). Use 'cpu'. Got {shown} instead."
            )
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"{where} must name one of the {count} CUDA device(s) here, 'cuda:0' to "
                f"'cuda:{count - 1}'. Got {shown} instead."
            )
        return canonical(device)
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(
                f"{where} asks for 'mps', which is not available here "
                f"(torch.backends.mps.is_available() is False). Got {shown} instead."
            )
        return device
    try:  # another backend: usable if a tensor can be made on it
        torch.empty(0, device=device)
    except Exception as error:
        raise ValueError(
            f"{where} names a device torch cannot use here ({type(error).__name__}: {error}). "
            f"Use {_EXAMPLES}. Got {shown} instead."
        ) from None
    return device
