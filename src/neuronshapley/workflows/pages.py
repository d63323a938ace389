"""A run's ``report.html``: the run's own sections, then one per study saved in ``studies/``.

Both :mod:`neuronshapley.workflows.runs` (a run writes its page) and
:mod:`neuronshapley.workflows.studies` (a study adds its section) write the page; it lives here,
below both, so neither imports the other to do it.
"""

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from neuronshapley.report.html import Section
from neuronshapley.results.result import ShapleyResult
from neuronshapley.workflows.manifest import record_files

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STUDIES_DIR = "studies"
STUDIES = (
    "critical",
    "classes",
    "fairness",
    "adversarial",
    "dropout",
    "units",
    "heads",
    "interactions",
)
# Sections written by other commands ('neuronshapley repair'), shown after the studies.
REPORT_ORDER = (*STUDIES, "repair")
SECTION_FILE = "section.json"
REPORT_FILE = "report.html"


class ReportConfig(Protocol):
    """What the page needs of a run's configuration (``RunConfig`` has it)."""

    @property
    def model(self) -> str: ...
    @property
    def ablation(self) -> str: ...
    @property
    def k(self) -> int: ...
    @property
    def n_random(self) -> int: ...
    @property
    def seed(self) -> int: ...


def write_report(
    directory: str | os.PathLike[str],
    game: Any,
    result: ShapleyResult,
    config: ReportConfig,
    curve: Any = None,
) -> Path:
    """Write the run's ``report.html``: its own sections, then one per study in ``studies/``.

    Args:
        directory: The run directory.
        game: The run's game.
        result: The run's values.
        config: The run's configuration.
        curve: The run's removal curve; default ``None`` computes it again (same seed, same
            curve).

    Returns:
        The page's path.
    """
    from neuronshapley import report
    from neuronshapley.applications.removal import removal_curve

    out = Path(directory)
    top = [row.name for row in result.top(config.k)]
    if curve is None:
        curve = removal_curve(game, top, config.k, n_random=config.n_random, seed=config.seed)
    mean, std = float(curve.random_mean[-1]), float(curve.random_std[-1])
    summary = [
        ("Model", config.model),
        ("Metric", game.metric.name),
        ("Ablation", config.ablation),
        (f"{game.metric.name} of the full model", f"{curve.ranked[0]:.4f}"),
        (f"… without the top {config.k}", f"{curve.ranked[-1]:.4f}"),
        (
            f"… without {config.k} random units",
            f"{mean:.4f} ± {std:.4f} ({config.n_random} draws)",
        ),
    ]
    page = report.run_report(
        out / REPORT_FILE,
        title=f"Neuron Shapley: {config.model}",
        result=result,
        # Results carry each unit's layer; one saved by an older version takes the game's.
        layers=None if result.groups is not None else game.unit_layers,
        curve=curve,
        summary=summary,
        k=config.k,
        extra_sections=study_sections(out),
    )
    record_files(out, [REPORT_FILE])
    return Path(page)


def study_sections(run_dir: str | Path) -> list[Section]:
    """The report sections of the studies saved in a run directory, in :data:`STUDIES` order.

    A study whose ``section.json`` cannot be read is shown as a section saying so; a missing
    figure file is left out with a note, so a damaged study never stops the report.
    """
    root = Path(run_dir) / STUDIES_DIR
    if not root.is_dir():
        return []
    names = sorted(
        (path.name for path in root.iterdir() if (path / SECTION_FILE).is_file()),
        key=lambda name: (
            REPORT_ORDER.index(name) if name in REPORT_ORDER else len(REPORT_ORDER),
            name,
        ),
    )
    sections = []
    for name in names:
        folder = root / name
        try:
            saved = json.loads((folder / SECTION_FILE).read_text())
            heading, text = str(saved["heading"]), str(saved.get("text", ""))
            figures: list[tuple[str, Figure | bytes]] = []
            for entry in saved.get("figures", []):
                path = folder / str(entry["file"])
                if path.resolve().parent != folder.resolve():
                    # Only the study's own figures: a hand-edited section.json must not pull
                    # another file of the machine into the page.
                    text += f"\n\n(The figure {entry['file']!r} is not in {folder}; left out.)"
                elif path.is_file():
                    figures.append((str(entry["caption"]), path.read_bytes()))
                else:
                    text += f"\n\n(The figure {path.name} is missing.)"
            table = saved.get("table") or None
        except (OSError, ValueError, KeyError, TypeError) as error:
            sections.append(Section(f"Study {name}", text=f"Cannot read {folder}: {error}"))
            continue
        sections.append(Section(heading, text=text, figures=figures, table=table))
    return sections
