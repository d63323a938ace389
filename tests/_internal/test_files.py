"""The one atomic writer: a reader sees the old file or the whole new one, never a part."""

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuronshapley._internal.files import atomic_write, json_text, jsonable


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model.pt"
    with pytest.raises(FileNotFoundError):
        atomic_write(target, b"old")
    atomic_write(target, b"old", make_parents=True)

    def fail(file: Any) -> None:
        file.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, fail)
    assert list(target.parent.iterdir()) == [target]
    assert target.read_bytes() == b"old"


def test_bytes_or_a_writer_function(tmp_path: Path) -> None:
    atomic_write(tmp_path / "a", b"whole")
    atomic_write(tmp_path / "b", lambda file: file.write(b"whole"))
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == b"whole"
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it


def test_json_text_is_strict_json_of_numpy_values() -> None:
    value = {"x": np.float64(1.5), "n": np.int64(3), "a": np.arange(2), "bad": math.nan}
    assert json.loads(json_text(value)) == {"x": 1.5, "n": 3, "a": [0, 1], "bad": None}
    assert jsonable((np.int32(1), Path("p"))) == [1, "p"]
