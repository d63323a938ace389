"""Loading a ``file.py:function`` spec leaves the user's folder as it was."""

import sys
from pathlib import Path

import pytest

from neuronshapley._internal.specs import load_spec


def test_loading_a_spec_writes_no_bytecode_beside_the_users_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "user.py").write_text("def answer():\n    return 42\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    # Python would write __pycache__/user.cpython-*.pyc here unless told not to.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert load_spec(f"{tmp_path / 'user.py'}:answer", "model") == 42
    assert sorted(p.name for p in tmp_path.iterdir()) == before == ["user.py"]
    assert sys.dont_write_bytecode is False  # the setting is given back
