"""The HTML run report in a real browser: headless Chromium renders every figure, no errors.

These tests skip, saying what is missing, without ``chromium``, ``chromedriver`` (Debian's
``chromium`` and ``chromium-driver``; ``make test`` installs them as root or with passwordless
sudo) or selenium. Deselect them with ``-k "not browser"``.

Set ``NEURONSHAPLEY_ARTIFACTS`` to a directory to keep the report's screenshot there as
``report-screenshot.png`` (it is always written under the test's ``tmp_path`` too).
"""

import os
import shutil
from pathlib import Path

import pytest

import neuronshapley as ns
from neuronshapley.applications.removal import removal_curve
from neuronshapley.report import render_html, run_report, write_html
from tests.browser import browser_or_skip, check_page

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TITLE = "Sparse game <run> & report"  # escaped in the HTML, plain text in the browser
N_PLAYERS = 40


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run report of a 40-unit sampling run in two layers, with every figure and a removal
    curve of the run's own ranking. Skips first, before any work, if there is no browser."""
    browser_or_skip()
    game = ns.games.sparse_soum(N_PLAYERS, n_large=5, n_basis=60, seed=0)
    result = ns.permutation_shapley(game, n_permutations=30, seed=0)
    order = [row.name for row in result.top(N_PLAYERS)]
    curve = removal_curve(game, order, counts=[0, 1, 2, 5, 10, 20], n_random=5, seed=0)
    layers = ["conv1"] * (N_PLAYERS // 2) + ["conv2"] * (N_PLAYERS // 2)
    return run_report(
        tmp_path_factory.mktemp("report") / "report.html",
        title=TITLE,
        result=result,
        layers=layers,
        curve=curve,
        summary=[("model", "sparse SOUM game"), ("metric", "value")],
        k=5,
    )


def test_browser_renders_the_run_report(report: Path, tmp_path: Path) -> None:
    page = report.read_text(encoding="utf-8")
    n_figures = page.count("<img")
    assert n_figures == 4  # histogram, values by layer, top units by layer, removal curve
    check = check_page(report, tmp_path / "report.png", expected_images=n_figures)

    assert not check.problems, check.problems
    assert len(check.images) == n_figures
    assert all(image["width"] > 100 for image in check.images)  # shown, not collapsed
    assert check.title == TITLE and check.headings[:1] == [TITLE]
    assert {"Top units", "Figures"} <= set(check.headings[1:])
    png = check.screenshot.read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 20_000
    artifacts = os.environ.get("NEURONSHAPLEY_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(check.screenshot, Path(artifacts) / "report-screenshot.png")


def test_browser_check_sees_broken_images_and_console_errors(tmp_path: Path) -> None:
    """The check can fail: a garbage PNG is not rendered, and console.error is SEVERE."""
    broken = tmp_path / "broken.html"
    write_html(broken, render_html(title="Broken", summary=[], sections=[]))
    page = broken.read_text(encoding="utf-8").replace(
        "</footer>",
        '</footer><img src="data:image/png;base64,bm90IGEgcG5n" alt="garbage">'
        '<script>console.error("x")</script>',
    )
    broken.write_text(page, encoding="utf-8")
    check = check_page(broken, tmp_path / "broken.png", expected_images=2)

    assert [image["alt"] for image in check.broken_images] == ["garbage"]
    assert len(check.images) == 1
    assert any('"x"' in entry["message"] for entry in check.severe), check.logs
    assert len(check.problems) == 3, check.problems  # the image, the count, the error
    assert check.screenshot.read_bytes().startswith(PNG_SIGNATURE)
