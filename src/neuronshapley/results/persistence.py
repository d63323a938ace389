"""One way to save a result: its arrays in ``STEM.npz`` (no pickle) and a JSON record that
names their SHA-256, written in that order, each atomically. A save cut between the two leaves
files that :func:`read_saved` refuses, never a silent mix of two saves."""

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from neuronshapley._internal.files import atomic_write, json_text
from neuronshapley._internal.fingerprint import digest


def write_saved(directory: Path, stem: str, arrays: dict[str, Any], record: dict[str, Any]) -> Path:
    """Write ``arrays``, then ``record`` with their hash, into ``directory`` (made if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    meta = {**record, "arrays_sha256": digest(arrays)}
    atomic_write(directory / f"{stem}.npz", lambda f: np.savez(f, **arrays))
    atomic_write(directory / f"{stem}.json", json_text(meta).encode())
    return directory


def read_saved(
    directory: Path,
    stem: str,
    *,
    kind: str,
    arrays: Iterable[str],
    optional: Iterable[str] = (),
    versions: Iterable[int],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The record and arrays :func:`write_saved` wrote, checked: both files there, a JSON
    object of a readable format version, the arrays whole and of this record's save."""
    meta_path, array_path = directory / f"{stem}.json", directory / f"{stem}.npz"
    if not meta_path.is_file() or not array_path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a saved {kind}: expected {stem}.json and {stem}.npz in it "
            f"(written by {kind}.save)."
        )
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict):
            raise ValueError("it does not hold a JSON object")
    except (OSError, ValueError) as error:
        raise ValueError(damaged(meta_path, error)) from None
    readable = tuple(versions)
    if meta.get("format_version") not in readable:
        raise ValueError(
            f"{meta_path} has format version {meta.get('format_version')!r}; this version "
            f"of neuronshapley reads versions {', '.join(map(str, readable))}."
        )
    try:
        # Our own handle: np.load leaks its file when it fails on a damaged one.
        with open(array_path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            loaded = {name: np.asarray(data[name]) for name in arrays}
            loaded.update({name: np.asarray(data[name]) for name in optional if name in data})
    except Exception as error:  # BadZipFile, EOFError, zlib and CRC errors, KeyError, ...
        raise ValueError(damaged(array_path, error)) from None
    expected = meta.get("arrays_sha256")
    if expected is not None and digest(loaded) != expected:
        raise ValueError(
            f"{array_path} does not belong to {meta_path} (their contents come from "
            "different saves, e.g. a save cut short); save the result again."
        )
    return meta, loaded


def damaged(path: Path, error: Exception) -> str:
    """The one-line message for a saved file that cannot be read."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"{path} is damaged and cannot be read ({type(error).__name__}: {reason}); "
        "compute or save the result again."
    )
