"""Reports: value tables, plots (headless, without pyplot) and the self-contained HTML page."""

import base64
import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import neuronshapley as ns
from neuronshapley.applications.removal import RemovalCurve
from neuronshapley.report import (
    Section,
    figure_to_data_uri,
    figure_to_png,
    layer_counts,
    removal_plot,
    render_html,
    run_report,
    save_run_plots,
    value_histogram,
    values_by_layer,
    values_table,
    write_html,
    write_values_csv,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLUMNS = ["unit", "layer", "value", "stderr", "ci_low", "ci_high", "samples"]
LAYERS = ["conv1"] * 20 + ["conv2"] * 20
EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def result() -> ns.ShapleyResult:
    """A 40-unit sampling result: a few large values, many near zero, nonzero errors."""
    game = ns.games.sparse_soum(40, n_large=5, n_basis=60, seed=0)
    return ns.permutation_shapley(game, n_permutations=30, seed=0)


@pytest.fixture(scope="module")
def evil_result() -> ns.ShapleyResult:
    """An exact result whose first (and best) unit's name is an HTML injection."""
    names = [EVIL] + [f"fc.{i}" for i in range(1, 12)]
    weights = [5.0] + [float(i) / 10 for i in range(1, 12)]
    return ns.exact_shapley(ns.games.AdditiveGame(weights, player_names=names))


def make_curve(n_random: int = 4) -> RemovalCurve:
    counts = np.array([0, 1, 2, 5, 10], dtype=np.int64)
    return RemovalCurve(
        counts=counts,
        ranked=np.array([0.9, 0.7, 0.5, 0.3, 0.1]),
        random_mean=np.array([0.9, 0.89, 0.88, 0.85, 0.8]),
        random_std=np.array([0.0, 0.01, 0.02, 0.02, 0.03]) if n_random > 1 else np.zeros(5),
        order=[f"p{i}" for i in range(10)],
        metric="accuracy",
        ranking="Shapley value, highest first",
        n_random=n_random,
    )


def labelled(fig: object) -> None:
    for ax in fig.axes:  # type: ignore[attr-defined]
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


# -- tables ---------------------------------------------------------------------------------
def test_values_table_is_in_rank_order_with_layers(result: ns.ShapleyResult) -> None:
    rows = values_table(result, LAYERS)
    assert len(rows) == 40
    assert all(list(row) == COLUMNS for row in rows)
    values = [row["value"] for row in rows]
    assert values == sorted(values, reverse=True)
    index = {name: i for i, name in enumerate(result.player_names)}
    for row in rows:
        i = index[row["unit"]]
        assert row["layer"] == LAYERS[i]
        assert row["value"] == result.values[i]
        assert row["stderr"] == result.stderr[i]
        assert (row["ci_low"], row["ci_high"]) == (result.ci_low[i], result.ci_high[i])
        assert row["samples"] == result.n_samples[i]
        assert type(row["value"]) is float and type(row["samples"]) is int


def test_values_csv_round_trips_at_full_precision(result: ns.ShapleyResult, tmp_path: Path) -> None:
    path = write_values_csv(tmp_path / "values.csv", result, LAYERS)
    assert path == tmp_path / "values.csv"
    assert [p.name for p in tmp_path.iterdir()] == ["values.csv"]  # no temporary file left
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == COLUMNS
        rows = list(reader)
    assert len(rows) == result.n_players
    order = result.top_indices(result.n_players)
    for row, i in zip(rows, order, strict=True):
        assert row[0] == result.player_names[i]
        assert row[1] == LAYERS[i]
        assert float(row[2]) == result.values[i]  # repr precision: exact round trip
        assert float(row[3]) == result.stderr[i]
        assert (float(row[4]), float(row[5])) == (result.ci_low[i], result.ci_high[i])
        assert int(row[6]) == result.n_samples[i]
    values = [float(row[2]) for row in rows]
    assert values == sorted(values, reverse=True)


def test_layers_must_match_the_players(result: ns.ShapleyResult) -> None:
    with pytest.raises(ValueError, match=r"'layers' parameter of values_table .* 40 players.*39"):
        values_table(result, LAYERS[:-1])
    with pytest.raises(TypeError, match="'layers' parameter of layer_counts must be a sequence"):
        layer_counts(result, "conv1", 5)
    with pytest.raises(TypeError, match=r"must hold strings\. Got 3"):
        values_by_layer(result, [*LAYERS[:-1], 3])  # type: ignore[list-item]


# -- plots ----------------------------------------------------------------------------------
def test_value_histogram(result: ns.ShapleyResult) -> None:
    fig = value_histogram(result, bins=12)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    labelled(fig)
    assert len(ax.patches) == 12
    assert sum(patch.get_height() for patch in ax.patches) == result.n_players
    assert not ax.lines and ax.get_legend() is None


def test_value_histogram_marks_the_top_k_threshold(result: ns.ShapleyResult) -> None:
    ax = value_histogram(result, highlight_top=5).axes[0]
    assert len(ax.patches) == 50
    assert ax.lines[0].get_xdata()[0] == np.sort(result.values)[-5]
    assert "top 5" in ax.get_legend().get_texts()[0].get_text()
    with pytest.raises(ValueError, match="'bins' parameter of value_histogram"):
        value_histogram(result, bins=0)
    with pytest.raises(TypeError, match="'highlight_top' parameter of value_histogram"):
        value_histogram(result, highlight_top=2.5)  # type: ignore[arg-type]


def test_values_by_layer(result: ns.ShapleyResult) -> None:
    layers = ["conv2"] * 10 + ["conv1"] * 30  # first appearance decides the order
    fig = values_by_layer(result, layers, top=7)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    labelled(fig)
    units, top = ax.collections
    offsets = units.get_offsets()
    np.testing.assert_array_equal(offsets[:, 1], result.values)
    np.testing.assert_array_equal(np.rint(offsets[:, 0]), [0] * 10 + [1] * 30)  # jitter < 0.5
    best = result.top_indices(7)
    np.testing.assert_array_equal(top.get_offsets(), offsets[best])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["conv2", "conv1"]
    again = values_by_layer(result, layers, top=7).axes[0].collections[0].get_offsets()
    np.testing.assert_array_equal(again, offsets)  # the jitter has a fixed seed
    assert len(values_by_layer(result, layers, top=None).axes[0].collections) == 1


def test_removal_plot(result: ns.ShapleyResult) -> None:
    curve = make_curve(n_random=4)
    fig = removal_plot(curve)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    labelled(fig)
    assert ax.get_ylabel() == "accuracy"
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), curve.counts)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), curve.ranked)
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), curve.random_mean)
    assert ax.lines[2].get_linestyle() == ":"
    assert set(ax.lines[2].get_ydata()) == {0.9}
    assert len(ax.collections) == 1  # the +-1 sd band
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["Shapley value, highest first", "random (4 draws)"]


def test_removal_plot_without_band_and_bad_shapes() -> None:
    ax = removal_plot(make_curve(n_random=1)).axes[0]
    assert not ax.collections
    assert ax.get_legend().get_texts()[1].get_text() == "random (1 draws)"
    curve = make_curve()
    broken = RemovalCurve(**{**curve.__dict__, "ranked": curve.ranked[:-1]})
    with pytest.raises(ValueError, match=r"one 'ranked' value per count: expected shape \(5,\)"):
        removal_plot(broken)


def test_layer_counts(result: ns.ShapleyResult) -> None:
    layers = [f"block{i % 3}" for i in range(40)]
    fig = layer_counts(result, layers, 8)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    labelled(fig)
    expected = [0, 0, 0]
    for i in result.top_indices(8):
        expected[i % 3] += 1
    assert [patch.get_height() for patch in ax.patches] == expected
    assert [t.get_text() for t in ax.get_xticklabels()] == ["block0", "block1", "block2"]
    with pytest.raises(ValueError, match="'k' parameter of layer_counts"):
        layer_counts(result, layers, 0)


# -- html -----------------------------------------------------------------------------------
def test_figure_to_data_uri_holds_a_png(result: ns.ShapleyResult) -> None:
    uri = figure_to_data_uri(value_histogram(result), dpi=40)
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    assert base64.b64decode(uri[len(prefix) :], validate=True).startswith(PNG_SIGNATURE)


def test_png_bytes_are_embedded_as_they_are_and_other_bytes_refused(
    result: ns.ShapleyResult,
) -> None:
    png = figure_to_png(value_histogram(result), dpi=40)
    uri = figure_to_data_uri(png)
    assert base64.b64decode(uri.split(",", 1)[1]) == png
    with pytest.raises(ValueError, match="not a PNG"):
        figure_to_data_uri(b"GIF89a....")


def assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in page
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page  # neither scripts nor unescaped user strings
    assert "<link" not in page and "@import" not in page and "url(" not in page


def test_render_html_escapes_and_embeds(result: ns.ShapleyResult) -> None:
    table = [{"unit": EVIL, "value": 0.123456789, "samples": 3, "note": "a & b"}] * 7
    sections = [
        Section(EVIL, text=f"First {EVIL}.\n\nSecond\nparagraph."),
        Section(
            "Figures",
            figures=[(EVIL, value_histogram(result)), ("curve", removal_plot(make_curve()))],
            table=table,
            table_limit=5,
        ),
    ]
    summary = [("model", EVIL), ("k", "10")]
    page = render_html(title=f"Run {EVIL}", summary=summary, sections=sections)
    assert_self_contained(page)
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f"<title>Run {escaped}</title>" in page
    assert f"<h2>{escaped}</h2>" in page
    assert f"<p>First {escaped}.</p>" in page and "<p>Second\nparagraph.</p>" in page
    assert f"<th>model</th><td>{escaped}</td>" in page
    assert page.count("<img") == 2
    assert f'alt="{escaped}"' in page and f"<figcaption>{escaped}</figcaption>" in page
    for uri in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        assert base64.b64decode(uri, validate=True).startswith(PNG_SIGNATURE)
    assert "<th>unit</th><th>value</th><th>samples</th><th>note</th>" in page
    assert page.count(f"<tr><td>{escaped}</td>") == 5  # table_limit
    assert '<td class="num">0.1235</td>' in page  # 4 significant digits
    assert '<td class="num">3</td>' in page and "<td>a &amp; b</td>" in page
    assert "… 2 more rows in values.csv" in page


def test_write_html_is_atomic_utf8(tmp_path: Path) -> None:
    page = render_html(title="Über φ", summary=[], sections=[Section("Empty")])
    path = write_html(tmp_path / "report.html", page)
    assert path.read_text(encoding="utf-8") == page
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.parametrize("with_curve", [True, False])
def test_run_report(evil_result: ns.ShapleyResult, tmp_path: Path, with_curve: bool) -> None:
    layers = ["fc"] * 6 + ["out"] * 6
    curve = make_curve() if with_curve else None
    path = run_report(
        tmp_path / "report.html",
        title="Demo run",
        result=evil_result,
        layers=layers,
        curve=curve,
        summary=[("model", "MLP"), ("metric", "accuracy")],
        k=3,
    )
    page = path.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert "<title>Demo run</title>" in page and "<h2>Top units</h2>" in page
    assert "<th>metric</th><td>accuracy</td>" in page
    assert "<th>Estimator</th><td>exact_shapley</td>" in page
    assert page.count("<img") == (4 if with_curve else 3)
    table = page[page.index("<table>") :]
    assert table.count("<tr>") == 1 + 6  # header and the top 2 k units
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td><td>fc</td>" in table
    assert '<td class="num">5</td>' in table  # the best unit, first


def test_save_run_plots(evil_result: ns.ShapleyResult, tmp_path: Path) -> None:
    layers = ["fc"] * 6 + ["out"] * 6
    paths = save_run_plots(tmp_path / "plots", evil_result, layers, make_curve(), k=3, dpi=40)
    names = ["value_histogram", "values_by_layer", "top_units_by_layer", "removal_curve"]
    assert [p.name for p in paths] == [f"{n}.png" for n in names]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in paths)
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in paths)
    fewer = save_run_plots(tmp_path / "few", evil_result, layers, None, k=3, dpi=40)
    assert [p.name for p in fewer] == [f"{n}.png" for n in names[:3]]


# -- optional dependency ----------------------------------------------------------------------
def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_import_does_not_load_matplotlib() -> None:
    done = run_python(
        "import sys, neuronshapley.report\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    assert done.returncode == 0, done.stderr


def test_missing_matplotlib_names_the_extra() -> None:
    done = run_python(
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "import neuronshapley as ns\n"
        "from neuronshapley.report import value_histogram\n"
        "result = ns.exact_shapley(ns.games.AdditiveGame([1.0, 2.0]))\n"
        "try:\n"
        "    value_histogram(result)\n"
        "except ImportError as error:\n"
        "    print(error)\n"
        "else:\n"
        "    raise SystemExit('no ImportError')\n"
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'neuronshapley[plot]'" in done.stdout
    assert "Plots need the 'matplotlib' package" in done.stdout


def test_the_layers_default_to_the_groups_the_result_carries(tmp_path: Path) -> None:
    result = ns.ShapleyResult.from_values(
        [0.3, -0.1, 0.2, 0.05], ["a:0", "a:1", "b:0", "b:1"], groups=["a", "a", "b", "b"]
    )
    from neuronshapley.report import values_table

    assert [row["layer"] for row in values_table(result)] == ["a", "b", "b", "a"]
    page = run_report(
        tmp_path / "page.html", title="t", result=result, curve=None, summary=[], k=2
    ).read_text()
    assert "4 in 2 layers" in page
    assert "for each player on its own" not in page  # given values: no sampling interval
    assert "given values" in page


def test_a_result_without_groups_needs_layers() -> None:
    from neuronshapley.report import values_table

    with pytest.raises(ValueError, match=r"carries no groups .* pass layers="):
        values_table(ns.ShapleyResult.from_values([1.0, 2.0]))
