"""The files a run and its studies wrote: ``manifest.json`` in the run directory.

``--overwrite``, ``--resume`` and a new study delete old outputs; they delete only files listed
here, and only while a file still has the SHA-256 it was written with. A file a user put in the
directory, or one of ours a user has since changed, is never deleted.
"""

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from neuronshapley._internal.files import atomic_write, json_text

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
# The recorded "digest" of a file a run is writing as it goes (its checkpoint, its result): ours
# whatever it holds, since a run killed mid-way cannot record the digest of its last write.
LIVE = "written by a run in progress"


def digest(path: Path) -> str | None:
    """The SHA-256 (hex) of a file, or ``None`` when it cannot be read."""
    hasher = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
    except OSError:
        return None
    return hasher.hexdigest()


def read_manifest(directory: Path) -> dict[str, str]:
    """``{relative path: SHA-256}`` of the files ours in ``directory`` (empty if none recorded).

    A damaged manifest counts as empty: then nothing is deleted, which is the safe side.
    """
    try:
        saved = json.loads((directory / MANIFEST_FILE).read_text())
        files = saved["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(files, dict):
        return {}
    # Only names inside the directory: a hand-edited manifest must not point us elsewhere.
    return {str(name): str(sha) for name, sha in files.items() if _inside(str(name))}


def _inside(name: str) -> bool:
    path = Path(name)
    return not path.is_absolute() and ".." not in path.parts and name not in ("", ".")


def _write(directory: Path, files: dict[str, str]) -> None:
    record = {"format": MANIFEST_FORMAT, "files": dict(sorted(files.items()))}
    atomic_write(directory / MANIFEST_FILE, json_text(record).encode())


def _relative(directory: Path, path: str | os.PathLike[str]) -> str:
    name = Path(path)
    if name.is_absolute():
        name = name.relative_to(directory.resolve())
    return name.as_posix()


def record_files(directory: Path, paths: Iterable[str | os.PathLike[str]]) -> None:
    """Add (or refresh) files just written in ``directory`` to its manifest.

    Args:
        directory: The run directory.
        paths: The files, relative to ``directory`` (or absolute, inside it).
    """
    files = read_manifest(directory)
    for path in paths:
        name = _relative(directory, path)
        sha = digest(directory / name)
        if sha is not None:
            files[name] = sha
    _write(directory, files)


def record_live(directory: Path, names: Iterable[str]) -> None:
    """Mark files a run is about to write, and may rewrite until it ends, as ours (``LIVE``).

    :func:`record_files` pins them to their digest once the run has written them for good.
    """
    files = read_manifest(directory)
    files.update({_relative(directory, name): LIVE for name in names})
    _write(directory, files)


def is_ours(directory: Path, name: str, files: dict[str, str] | None = None) -> bool:
    """Whether ``directory/name`` is a file we wrote and nobody changed since."""
    files = read_manifest(directory) if files is None else files
    return name in files and (files[name] == LIVE or digest(directory / name) == files[name])


def foreign(directory: Path, names: Iterable[str]) -> list[str]:
    """Those of ``names`` that exist in ``directory`` but are not ours (we must not replace)."""
    files = read_manifest(directory)
    return [
        name
        for name in names
        if (directory / name).exists() and not is_ours(directory, name, files)
    ]


def delete_ours(directory: Path, *, under: str = "", keep: Iterable[str] = ()) -> None:
    """Delete the files of the manifest (those below ``under``, if given) that are still ours.

    Files listed in ``keep`` stay. Folders emptied by the deletion are removed; a folder still
    holding anything (a user's file) stays. The manifest forgets every deleted file, and any
    listed file that no longer exists.
    """
    files = read_manifest(directory)
    kept = set(keep)
    prefix = f"{under.rstrip('/')}/" if under else ""
    for name in sorted(files):
        if name in kept or not name.startswith(prefix):
            continue
        path = directory / name
        if path.is_file() and is_ours(directory, name, files):
            path.unlink()
            _remove_empty_parents(directory, path.parent)
        if not path.exists():
            del files[name]
    _write(directory, files)


def _remove_empty_parents(directory: Path, folder: Path) -> None:
    root = directory.resolve()
    while folder.resolve() != root and root in folder.resolve().parents:
        try:
            folder.rmdir()
        except OSError:  # not empty: something of someone else's is in it
            return
        folder = folder.parent
