"""Content hashes: what identifies a game, so a checkpoint or a result cannot meet another game.

A digest must be the same in every process for the same content (no memory addresses, no set
order, no hash randomisation) and differ when the content differs. Values are fed by content:
arrays by dtype, shape and bytes; dicts in key order; sets sorted; functions by their code (nested
code objects included), defaults and captured values; other objects by their type and
attributes. What cannot be fed by content (an object whose only description is its address) is
fed by its type alone, which errs on the side of "same game".
"""

import hashlib
import types
from typing import Any

import numpy as np

# How deep attributes of plain objects are followed (a game holding a model holding layers ...).
_MAX_DEPTH = 6


def digest(*parts: Any) -> str:
    """A SHA-256 hex digest of ``parts`` by content (see the module notes)."""
    hasher = hashlib.sha256()
    for part in parts:
        _feed(hasher, part, 0)
    return hasher.hexdigest()


def _tag(hasher: Any, text: str) -> None:
    hasher.update(f"{len(text)}:{text}|".encode())


def _feed(hasher: Any, value: Any, depth: int) -> None:
    if depth > 4 * _MAX_DEPTH:  # a structure that contains itself (a recursive closure, ...)
        _tag(hasher, "deeper")
        return
    if value is None or isinstance(value, bool | int | float | complex | str | np.generic):
        _tag(hasher, f"{type(value).__name__} {value!r}")
    elif isinstance(value, bytes | bytearray):
        _tag(hasher, f"bytes {len(value)}")
        hasher.update(value)
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        if array.dtype.hasobject:
            _tag(hasher, f"object array {array.shape}")
            for item in array.ravel():
                _feed(hasher, item, depth + 1)
        else:
            _tag(hasher, f"array {array.dtype.str} {array.shape}")
            hasher.update(array.tobytes())
    elif isinstance(value, dict):
        _tag(hasher, f"dict {len(value)}")
        for key in sorted(value, key=repr):
            _feed(hasher, key, depth + 1)
            _feed(hasher, value[key], depth + 1)
    elif isinstance(value, list | tuple):
        _tag(hasher, f"{type(value).__name__} {len(value)}")
        if value and all(type(item) is str for item in value):
            # Names of 20,000 players in one update, not 20,000 (each with its length).
            hasher.update(b"".join(f"{len(item)}:{item}|".encode() for item in value))
            return
        for item in value:
            _feed(hasher, item, depth + 1)
    elif isinstance(value, set | frozenset):
        _tag(hasher, f"set {len(value)}")
        for item in sorted(value, key=repr):
            _feed(hasher, item, depth + 1)
    elif isinstance(value, types.CodeType):
        _feed_code(hasher, value, depth)
    elif isinstance(value, types.FunctionType):
        _tag(hasher, f"function {value.__module__}.{value.__qualname__}")
        _feed_code(hasher, value.__code__, depth)
        _feed(hasher, value.__defaults__, depth + 1)
        _feed(hasher, value.__kwdefaults__, depth + 1)
        # What it captured (references, a scale, a model), but not mutable containers: a list
        # or dict in a closure is usually state (a counter, a cache) that must not make the
        # same function another. Module globals are not followed, for the same reason.
        cells = [cell.cell_contents for cell in value.__closure__ or ()]
        _feed(hasher, [item for item in cells if not _is_state(item)], depth + 1)
    elif _is_tensor(value):
        _feed(hasher, _tensor_array(value), depth + 1)
    elif _is_module(value):
        _tag(hasher, f"module {type(value).__module__}.{type(value).__qualname__}")
        _feed(hasher, dict(value.state_dict()), depth + 1)
    elif isinstance(value, types.MethodType):
        _tag(hasher, "method")
        _feed(hasher, value.__func__, depth + 1)
        _feed(hasher, value.__self__, depth + 1)
    else:
        _feed_object(hasher, value, depth)


def _is_tensor(value: Any) -> bool:
    # Duck-typed: this module must not import torch (the core is torch-free).
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _is_module(value: Any) -> bool:
    # An nn.Module, duck-typed: its weights are its content.
    return callable(getattr(value, "state_dict", None)) and hasattr(value, "named_parameters")


def _tensor_array(tensor: Any) -> np.ndarray:
    """A tensor's content as a numpy array (bfloat16 and friends widened to float32, exactly)."""
    tensor = tensor.detach().cpu()
    if not tensor.is_floating_point() or tensor.element_size() >= 4:
        try:
            return np.asarray(tensor.numpy())
        except TypeError:
            pass
    return np.asarray(tensor.float().numpy())


def _is_state(value: Any) -> bool:
    return isinstance(value, list | dict | set | bytearray)


def _feed_code(hasher: Any, code: types.CodeType, depth: int) -> None:
    # co_consts holds nested code objects (lambdas, comprehensions), whose repr carries an
    # address: hash them by their own content instead.
    _tag(hasher, f"code {code.co_name}")
    hasher.update(code.co_code)
    _feed(hasher, code.co_names, depth + 1)
    _feed(hasher, list(code.co_consts), depth + 1)


def _feed_object(hasher: Any, value: Any, depth: int) -> None:
    kind = type(value)
    _tag(hasher, f"object {kind.__module__}.{kind.__qualname__}")
    if depth >= _MAX_DEPTH:
        return
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        # A class may name attributes that do not set what it computes (a metric's declared
        # bounds), so that adding one leaves every earlier digest as it was.
        ignored = getattr(kind, "__fingerprint_ignore__", ())
        if ignored:
            attributes = {key: item for key, item in attributes.items() if key not in ignored}
        _feed(hasher, attributes, depth + 1)
        return
    text = repr(value)
    if " at 0x" not in text:  # an address is not content
        _tag(hasher, text)
