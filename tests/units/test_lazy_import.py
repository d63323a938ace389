"""``import neuronshapley`` stays free of torch; the PyTorch side loads on first use."""

import subprocess
import sys

import pytest

import neuronshapley as ns

CHECK = """
import sys
import neuronshapley as ns
assert "torch" not in sys.modules, "import neuronshapley imported torch"
assert "neuronshapley.units" not in sys.modules
assert "matplotlib" not in sys.modules and "pandas" not in sys.modules

units = ns.units  # the first use loads the PyTorch side
assert "torch" in sys.modules
import neuronshapley.units
assert units is neuronshapley.units
assert callable(units.conv_filters) and callable(units.heads)

from neuronshapley.units.game import NeuronGame
assert ns.NeuronGame is NeuronGame
from neuronshapley.pytorch.data import Split
assert ns.Split is Split
import neuronshapley.pytorch.metrics
assert ns.metrics is neuronshapley.pytorch.metrics
print("ok")
"""


def test_import_does_not_load_torch_and_torch_names_resolve_lazily() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_lazy_names_are_the_torch_objects() -> None:
    import neuronshapley.units as units
    from neuronshapley.pytorch import Bundle, Split, metrics
    from neuronshapley.units import NeuronGame

    assert ns.NeuronGame is NeuronGame
    assert ns.Split is Split
    assert ns.Bundle is Bundle
    assert ns.units is units
    assert ns.metrics is metrics
    assert {"NeuronGame", "units", "metrics", "Split", "Bundle"} <= set(ns.__all__)


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NeuronGamee'"):
        ns.NeuronGamee  # noqa: B018
