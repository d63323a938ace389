"""Content hashes: what identifies a game, so a checkpoint or a result cannot meet another game."""

import hashlib
from typing import Any

import numpy as np


def digest(*parts: Any) -> str:
    """A SHA-256 hex digest of nested values: arrays by dtype, shape and bytes, the rest by repr.

    Dicts are hashed in key order, so equal contents give equal digests whatever their order.
    """
    hasher = hashlib.sha256()
    for part in parts:
        _feed(hasher, part)
    return hasher.hexdigest()


def _feed(hasher: Any, value: Any) -> None:
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        hasher.update(f"array {array.dtype.str} {array.shape}|".encode())
        hasher.update(array.tobytes())
    elif isinstance(value, dict):
        hasher.update(f"dict {len(value)}|".encode())
        for key in sorted(value, key=repr):
            _feed(hasher, key)
            _feed(hasher, value[key])
    elif isinstance(value, list | tuple):
        hasher.update(f"{type(value).__name__} {len(value)}|".encode())
        for item in value:
            _feed(hasher, item)
    elif isinstance(value, bytes):
        hasher.update(f"bytes {len(value)}|".encode())
        hasher.update(value)
    else:
        text = repr(value)
        hasher.update(f"{type(value).__name__} {len(text)}|{text}".encode())
