"""The package's import graph: no cycles, and every import points down the layers.

The layers (docs/design.md), lowest first. A module may import from its own layer's package and
from any layer below; never from a layer above. Imports inside functions count too: a lazy import
upward is still a dependency upward. The top-level ``neuronshapley/__init__.py`` is the public
face of every layer and is left out. Drawing is the report's: no layer below it imports matplotlib.
"""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "neuronshapley"

LAYERS: list[tuple[str, ...]] = [
    ("typing", "_internal"),
    ("games",),
    ("results",),
    ("estimators",),
    ("backends",),
    ("pytorch",),
    ("units", "features", "data"),  # the three player kinds: none imports another
    ("zoo",),
    ("applications",),
    ("report",),
    ("workflows",),
    ("cli",),
]
PLAYER_KINDS = ("units", "features", "data")
LEVEL = {package: level for level, group in enumerate(LAYERS) for package in group}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports (``from a import b`` counts ``a.b`` if a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in modules:
                    found.add(submodule)
                elif node.module in modules:
                    found.add(node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imported_modules(path, set(paths)) for name, path in paths.items()}


def layer_of(module: str) -> tuple[str, int] | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the top-level package
    return parts[1], LEVEL[parts[1]]


def test_every_package_has_a_layer() -> None:
    names = [module_name(path).split(".") for path in PACKAGE.rglob("*.py")]
    packages = {parts[1] for parts in names if len(parts) > 1}
    assert packages - set(LEVEL) == set(), "add the new package to LAYERS and docs/design.md"


def test_imports_point_down() -> None:
    upward = []
    for module, imports in sorted(import_graph().items()):
        here = layer_of(module)
        if here is None:
            continue
        for target in sorted(imports):
            there = layer_of(target)
            if there is None:
                upward.append(f"{module} imports the top-level package ({target})")
            elif there[1] > here[1]:
                upward.append(f"{module} ({here[0]}) imports {target} ({there[0]})")
            elif here[0] in PLAYER_KINDS and there[0] in PLAYER_KINDS and here[0] != there[0]:
                upward.append(f"{module} ({here[0]}) imports another player kind: {target}")
    assert upward == []


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules, or ``None`` (depth-first search)."""
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state[target] == 1:
                return [*stack[stack.index(target) :], target]
            if state[target] == 0 and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state[node] == 0 and (cycle := visit(node)):
            return cycle
    return None


def without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # A package's __init__ re-exports its modules, which import each other through it: that is
    # not a cycle of dependencies. Edges into a package's own __init__ from inside it are.
    return {
        module: {
            target for target in targets if not (module.startswith(target + ".") and target != "")
        }
        for module, targets in graph.items()
    }


def test_no_import_cycles() -> None:
    assert find_cycle(without_package_inits(import_graph())) is None


@pytest.mark.parametrize(
    ("graph", "has_cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"a"}}, True),
    ],
)
def test_the_cycle_check_can_fail(graph: dict[str, set[str]], has_cycle: bool) -> None:
    assert (find_cycle(graph) is not None) is has_cycle


# -- drawing stays in report/ and above ---------------------------------------------------------

LAZY_IMPORTERS = {"require", "import_module", "__import__"}


def imported_packages(source: str) -> set[str]:
    """The top-level packages ``source`` imports, lazily (``require("a.b", ...)``) included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) in LAZY_IMPORTERS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value.split(".")[0])
    return found


def test_only_report_and_above_draw() -> None:
    # applications/ computes, report/ draws: nothing below report may import matplotlib.
    drawing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = layer_of(module_name(path))
        below_report = here is not None and here[1] < LEVEL["report"]
        if below_report and "matplotlib" in imported_packages(path.read_text()):
            drawing.append(f"{module_name(path)} imports matplotlib")
    assert drawing == []


@pytest.mark.parametrize(
    ("source", "draws"),
    [
        ("import matplotlib.pyplot as plt", True),
        ("from matplotlib.figure import Figure", True),
        ("if TYPE_CHECKING:\n    from matplotlib.axes import Axes", True),
        ('figure = require("matplotlib.figure", "plot", "plots")', True),
        ('figure = importlib.import_module("matplotlib.figure")', True),
        ("import numpy as np\nfrom neuronshapley.report.studies import plot_critical", False),
        ('attr = require("captum.attr", "studies", "conductance")', False),
    ],
)
def test_the_matplotlib_check_can_fail(source: str, draws: bool) -> None:
    assert ("matplotlib" in imported_packages(source)) is draws
