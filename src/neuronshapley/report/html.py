"""A self-contained HTML page summarising a Neuron Shapley run.

The page holds everything inline: the CSS in a ``<style>`` element and every figure as a PNG
``data:`` URI, so one file can be mailed, archived or opened offline. It loads no fonts,
scripts or other URLs, and every string that comes from the user (names, captions, table cells)
is escaped with :func:`html.escape`.
"""

import base64
import html
import io
import numbers
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from neuronshapley._internal.files import atomic_write
from neuronshapley._internal.validation import check_int
from neuronshapley.applications.removal import RemovalCurve
from neuronshapley.report.plots import layer_counts, removal_plot, value_histogram, values_by_layer
from neuronshapley.report.tables import check_layers, values_table
from neuronshapley.results.result import ShapleyResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_DPI = 110
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: #222; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.5rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.75rem 0; font-size: 0.9rem; }
th, td { padding: 0.2rem 0.6rem; border-bottom: 1px solid #e4e4e4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
table.summary th { background: none; font-weight: 600; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9rem; }
p.note, footer { color: #666; font-size: 0.85rem; }
"""


@dataclass(frozen=True)
class Section:
    """A part of a report page: a heading, then text, figures and a table (each optional).

    Attributes:
        heading: The section's heading (plain text).
        text: Plain text; blank lines separate paragraphs. Default ``""``.
        figures: ``(caption, figure)`` pairs, embedded as PNG images; a figure is a matplotlib
            ``Figure`` or the bytes of a PNG file (e.g. a figure saved earlier). Default ``()``.
        table: Rows as dicts; the first row's keys are the header. Default ``None``.
        table_limit: Most rows shown; a note counts the rest. Default 50.
    """

    heading: str
    text: str = ""
    figures: Sequence[tuple[str, "Figure | bytes"]] = ()
    table: Sequence[dict[str, Any]] | None = None
    table_limit: int = 50


def figure_to_png(fig: "Figure", dpi: int = DEFAULT_DPI) -> bytes:
    """The figure as PNG bytes.

    Args:
        fig: A matplotlib figure.
        dpi: Resolution in dots per inch. Default 110.
    """
    dpi = cast(int, check_int(dpi, "dpi", "figure_to_png", min_value=1))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # matplotlib warns when placing a legend at loc="best" took over a second: a note on
        # the machine's load (it failed a test under a load of 4 on 2 cores), not on the plot.
        warnings.filterwarnings("ignore", message='Creating legend with loc="best"')
        fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def figure_to_data_uri(fig: "Figure | bytes", dpi: int = DEFAULT_DPI) -> str:
    """The figure as a ``data:image/png;base64,...`` URI, for an inline ``<img>``.

    Args:
        fig: A matplotlib figure, or the bytes of a PNG file (embedded as they are).
        dpi: Resolution in dots per inch of a matplotlib figure. Default 110.
    """
    png = fig if isinstance(fig, bytes) else figure_to_png(fig, dpi)
    if not png.startswith(_PNG_SIGNATURE):
        raise ValueError("figure_to_data_uri: the bytes given are not a PNG file.")
    encoded = base64.b64encode(png).decode("ascii")
    return f"data:image/png;base64,{encoded}"


def render_html(
    *, title: str, summary: Sequence[tuple[str, str]], sections: Sequence[Section]
) -> str:
    """A self-contained HTML5 page: title, a key/value summary, then the sections.

    Args:
        title: The page title and top heading.
        summary: ``(key, value)`` pairs shown as a table under the title (may be empty).
        sections: The sections, in order.

    Returns:
        The page as a string.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_esc(title)}</h1>",
    ]
    if summary:
        parts.append('<table class="summary">')
        parts.extend(
            f"<tr><th>{_esc(key)}</th><td>{_esc(value)}</td></tr>" for key, value in summary
        )
        parts.append("</table>")
    for section in sections:
        parts.extend(_section(section))
    parts += ["<footer><p>Made with neuronshapley.</p></footer>", "</body>", "</html>", ""]
    return "\n".join(parts)


def write_html(path: str | os.PathLike[str], html_text: str) -> Path:
    """Write a page as UTF-8, atomically (temporary file, then rename).

    Args:
        path: The file to write (its directory must exist).
        html_text: The page, e.g. from :func:`render_html`.

    Returns:
        ``path`` as a ``Path``.
    """
    return atomic_write(path, html_text.encode("utf-8"))


def run_report(
    path: str | os.PathLike[str],
    *,
    title: str,
    result: ShapleyResult,
    layers: Sequence[str] | None = None,
    curve: RemovalCurve | None,
    summary: Sequence[tuple[str, str]],
    k: int = 10,
    extra_sections: Sequence[Section] = (),
) -> Path:
    """Write the standard page of a Neuron Shapley run.

    The page shows ``summary`` followed by facts about ``result`` (estimator, units,
    evaluations, stop reason, seed, time), a table of the top ``2 k`` units, the value
    histogram with the top-``k`` threshold, the values by layer, the top-``k`` units per layer
    and, if given, the removal curve.

    Args:
        path: The HTML file to write (its directory must exist).
        title: The page title.
        result: The Shapley values of the run.
        layers: ``layers[i]`` is the layer (module path) of player ``i``; one per player.
            Default ``None``: the groups the result carries.
        curve: A removal curve, or ``None`` to leave that figure out.
        summary: ``(key, value)`` pairs to show first (e.g. model, data, metric).
        k: Size of the top set highlighted in the figures. Default 10.
        extra_sections: Sections appended after the run's own (e.g. the studies run on it).
            Default ``()``.

    Returns:
        ``path`` as a ``Path``.
    """
    owner = "run_report"
    layers = check_layers(layers, result, owner)
    k = min(cast(int, check_int(k, "k", owner, min_value=1)), result.n_players)
    rows = values_table(result, layers)[: 2 * k]
    sections = [
        Section(
            "Top units",
            text=(
                f"The {len(rows)} units with the largest Shapley values, of {result.n_players}; "
                "ci_low and ci_high bound each value's confidence interval."
            ),
            table=rows,
            table_limit=len(rows),
        ),
        Section("Figures", figures=_run_figures(result, layers, curve, k)),
        *extra_sections,
    ]
    page = render_html(
        title=title, summary=[*summary, *_result_summary(result, layers)], sections=sections
    )
    return write_html(path, page)


def save_run_plots(
    directory: str | os.PathLike[str],
    result: ShapleyResult,
    layers: Sequence[str] | None = None,
    curve: RemovalCurve | None = None,
    k: int = 10,
    *,
    dpi: int = 150,
) -> list[Path]:
    """Save the figures of :func:`run_report` as PNG files (each written atomically).

    Files: ``value_histogram.png``, ``values_by_layer.png``, ``top_units_by_layer.png`` and,
    if ``curve`` is given, ``removal_curve.png``.

    Args:
        directory: Where to write them (created if needed).
        result: The Shapley values of the run.
        layers: ``layers[i]`` is the layer of player ``i``; one per player.
            Default ``None``: the groups the result carries.
        curve: A removal curve, or ``None``. Default ``None``.
        k: Size of the top set highlighted in the figures. Default 10.
        dpi: Resolution in dots per inch. Default 150.

    Returns:
        The paths written, in the order above.
    """
    owner = "save_run_plots"
    layers = check_layers(layers, result, owner)
    k = min(cast(int, check_int(k, "k", owner, min_value=1)), result.n_players)
    dpi = cast(int, check_int(dpi, "dpi", owner, min_value=1))
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    stems = ["value_histogram", "values_by_layer", "top_units_by_layer", "removal_curve"]
    written = []
    for stem, (_, fig) in zip(stems, _run_figures(result, layers, curve, k), strict=False):
        written.append(atomic_write(folder / f"{stem}.png", figure_to_png(fig, dpi)))
    return written


def _run_figures(
    result: ShapleyResult, layers: list[str], curve: RemovalCurve | None, k: int
) -> list[tuple[str, "Figure"]]:
    figures = [
        (
            f"Distribution of the Shapley values; the dashed line is the top-{k} threshold.",
            value_histogram(result, highlight_top=k),
        ),
        (
            f"Shapley values of each layer's units (jittered); stars mark the top {k}.",
            values_by_layer(result, layers, top=k),
        ),
        (f"How many of the top {k} units each layer holds.", layer_counts(result, layers, k)),
    ]
    if curve is not None:
        figures.append(
            (
                f"{curve.metric} after removing units: {curve.ranking} against random draws.",
                removal_plot(curve),
            )
        )
    return figures


def _result_summary(result: ShapleyResult, layers: list[str]) -> list[tuple[str, str]]:
    return [
        ("Estimator", result.estimator),
        ("Units", f"{result.n_players:,} in {len(set(layers))} layers"),
        ("Evaluations", f"{result.n_evaluations:,}"),
        ("Stopped", result.stop_reason),
        ("Intervals", result.interval_guarantee),
        ("Seed", str(result.seed)),
        ("Time", f"{result.elapsed_seconds:.2f} s"),
    ]


def _section(section: Section) -> list[str]:
    parts = ["<section>", f"<h2>{_esc(section.heading)}</h2>"]
    for paragraph in re.split(r"\n\s*\n", section.text.strip()):
        if paragraph:
            parts.append(f"<p>{_esc(paragraph)}</p>")
    for caption, fig in section.figures:
        parts.append(
            f'<figure><img src="{figure_to_data_uri(fig)}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>"
        )
    if section.table is not None:
        parts.extend(_table(section.table, section.table_limit))
    parts.append("</section>")
    return parts


def _table(rows: Sequence[dict[str, Any]], limit: int) -> list[str]:
    limit = cast(int, check_int(limit, "table_limit", "Section", min_value=0))
    if not rows:
        return ['<p class="note">(no rows)</p>']
    columns = list(rows[0])
    parts = ["<table>", "<tr>" + "".join(f"<th>{_esc(c)}</th>" for c in columns) + "</tr>"]
    for row in rows[:limit]:
        cells = []
        for column in columns:
            value = row.get(column, "")
            numeric = isinstance(value, numbers.Number) and not isinstance(value, bool)
            css = ' class="num"' if numeric else ""
            cells.append(f"<td{css}>{_esc(_format(value))}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    if len(rows) > limit:
        parts.append(f'<p class="note">… {len(rows) - limit} more rows in values.csv</p>')
    return parts


def _format(value: Any) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{float(value):.4g}"
    return str(value)


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)
