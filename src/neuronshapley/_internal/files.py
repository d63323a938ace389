"""Files on disk: the one atomic writer, and JSON for the numbers we record.

Every file the package writes (results, checkpoints, run records, reports, cached models) goes
through :func:`atomic_write`, so a reader sees the old file or the whole new one, never half of
one, and a crash or a kill at any moment leaves no partial file behind.
"""

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

# The process's umask, read once (os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | Callable[[IO[bytes]], Any],
    *,
    make_parents: bool = False,
) -> Path:
    """Write ``path`` through a temporary file beside it, flushed to disk, then renamed onto it.

    Args:
        path: The file to (re)place.
        data: The bytes to write, or a function that writes them into the open file.
        make_parents: Create the file's directory if it does not exist. Default ``False``: a
            missing directory is the caller's mistake, reported as ``FileNotFoundError``.

    Returns:
        ``path`` as a ``Path``.
    """
    target = Path(path)
    if make_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    # A unique name in the same directory, so the rename stays on one file system and two
    # writers never share a temporary file.
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            if isinstance(data, bytes | bytearray):
                file.write(data)
            else:
                data(file)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp creates the file private (0600); ours are ordinary files, as open() would
        # make them under the user's umask.
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_directory(target.parent)
    return target


def _sync_directory(directory: Path) -> None:
    # The rename is durable once the directory entry is on disk (POSIX); not possible on Windows.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return value


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for numpy numbers and arrays and paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_text(value: Any) -> str:
    """Strict JSON of ``value`` (non-finite floats as ``null``), indented, ending in a newline."""
    return json.dumps(finite(value), indent=2, allow_nan=False, default=json_default) + "\n"


def jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (numpy numbers as Python numbers, tuples as lists)."""
    return json.loads(json_text(value))
