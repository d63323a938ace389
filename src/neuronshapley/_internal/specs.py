"""``path/to/file.py:function`` specs: the one loader of a user's model and data factories.

A spec names a Python file and a function in it; loading it **imports the file and calls the
function**, so it runs whatever code the file holds. Specs are saved (in a run's ``run.json``, in
a repaired model's ``.pt``) and loaded again later, so they are saved with the file's absolute
path and the SHA-256 of its bytes: a later load refuses a file that changed since, rather than
run other code than the run was made with.
"""

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


class SpecError(ValueError):
    """A spec that cannot be loaded; the message is one line for the user."""


def is_spec(text: str) -> bool:
    """Whether ``text`` names ``path/to/file.py:function`` (else, e.g., a bundled model)."""
    path, _, name = text.rpartition(":")
    return bool(path) and bool(name) and path.endswith(".py")


def _split(spec: str, what: str) -> tuple[Path, str]:
    if not is_spec(spec):
        raise SpecError(
            f"--{what} must be a bundled name or 'path/to/file.py:function'. Got {spec!r}."
        )
    path, _, name = spec.rpartition(":")
    return Path(path), name


def absolute_spec(spec: str, base: str | Path | None = None) -> str:
    """``spec`` with its file made absolute (relative to ``base``, default the current directory).

    A spec that is not a file spec (a bundled name) is returned unchanged.
    """
    if not is_spec(spec):
        return spec
    path, name = _split(spec, "model")
    if not path.is_absolute():
        path = (Path(base) if base is not None else Path.cwd()) / path
    return f"{path.resolve()}:{name}"


def file_digest(spec: str) -> str | None:
    """The SHA-256 (hex) of the file a spec names, or ``None`` when the file cannot be read."""
    if not is_spec(spec):
        return None
    try:
        return hashlib.sha256(_split(spec, "model")[0].read_bytes()).hexdigest()
    except OSError:
        return None


def load_spec(
    spec: str,
    what: str,
    *,
    base: str | Path | None = None,
    sha256: str | None = None,
    call: bool = True,
) -> Any:
    """Import the file of ``spec``, call its function and return what it returns (or, with
    ``call=False``, return the function itself: a metric, a forward, an output selector).

    This executes the file's code. Errors become :class:`SpecError` naming ``--what``.

    Args:
        spec: ``"path/to/file.py:function"``.
        what: The option the spec came from (``"model"``, ``"data"``), for the messages.
        base: Where a relative path is resolved; default the current directory. A spec read
            from a saved file is resolved relative to that file's folder, never the current
            directory.
        sha256: The file's SHA-256 when the spec was saved; a file that no longer matches is
            refused. Default ``None``: not checked.
        call: Call the function and return its result (a factory). Default ``True``.
    """
    given, _ = _split(spec, what)
    path, name = _split(absolute_spec(spec, base), what)
    if not path.is_file():
        # As typed on the command line; resolved when it came from a saved file.
        shown = given if base is None else path
        raise SpecError(f"--{what}: the file {shown} does not exist.")
    if sha256 is not None and file_digest(f"{path}:{name}") != sha256:
        raise SpecError(
            f"--{what}: {path} changed since the run was made (its SHA-256 no longer matches); "
            "restore the file, or make the run again."
        )
    module_name = f"_neuronshapley_user_{what}_{hashlib.sha256(str(path).encode()).hexdigest()}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise SpecError(f"--{what}: cannot import {path} as a Python file.")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    # Importing would write __pycache__/ beside the user's file: their folder stays as it was.
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        loader_spec.loader.exec_module(module)
    except Exception as error:
        raise SpecError(
            f"--{what}: importing {path} raised {type(error).__name__}: {error}"
        ) from error
    finally:
        sys.dont_write_bytecode = writes_bytecode
    factory = getattr(module, name, None)
    if not callable(factory):
        names = [n for n in vars(module) if callable(vars(module)[n]) and not n.startswith("_")]
        raise SpecError(
            f"--{what}: {path} has no function {name!r}. "
            f"Functions there: {', '.join(names) or 'none'}."
        )
    if not call:
        return factory
    try:
        return factory()
    except Exception as error:
        raise SpecError(f"--{what}: {spec} raised {type(error).__name__}: {error}") from error
