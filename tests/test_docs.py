"""Every ```python block of the README runs, so the examples cannot drift from the code."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(path: Path) -> list[str]:
    """The source of each ```python fenced block in ``path``, in order."""
    return _BLOCK.findall(path.read_text(encoding="utf-8"))


def test_readme_has_python_examples() -> None:
    assert python_blocks(README), f"{README} has no ```python block to test"


@pytest.mark.parametrize("index", range(len(python_blocks(README))))
def test_readme_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Files the example saves (run/) land in tmp_path, not in the checkout.
    monkeypatch.chdir(tmp_path)
    source = python_blocks(README)[index]
    code = compile(source, f"README.md, python block {index + 1}", "exec")
    exec(code, {"__name__": "__readme__"})
