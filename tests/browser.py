"""Open an HTML page in headless Chromium and report what the browser saw.

Any test that writes a page (the run report, a study's page) can check that it renders::

    from tests.browser import check_page

    check = check_page(page, tmp_path / "page.png", expected_images=4)
    assert not check.problems, check.problems

:func:`check_page` skips the calling test (with the reason and how to fix it) when Chromium,
chromedriver or selenium is missing; it never passes silently. ``make test`` installs Debian's
``chromium`` and ``chromium-driver`` where it may (as root or with passwordless sudo).

Only the local ``chromium`` and ``chromedriver`` on PATH are used: the driver's path is given to
selenium, so Selenium Manager (which would download a driver) is never run, and it is told to
stay offline (``SE_OFFLINE``) in case a later selenium calls it anyway.
"""

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest

INSTALL_HINT = (
    "run `make test` as root, or `sudo apt-get install chromium chromium-driver` "
    "(any Chromium and its matching chromedriver on PATH will do)"
)
WIDTH = 1280
HEIGHT = 2000
MAX_SCREENSHOT_HEIGHT = 16_000  # Chromium fails on taller captures; the page is cut there.
TIMEOUT_S = 30

# Every <img>: whether it finished loading, its decoded size and its size on the page.
_IMAGES_JS = """
return Array.from(document.images, (img) => ({
    src: img.currentSrc.slice(0, 64),
    alt: img.alt,
    complete: img.complete,
    naturalWidth: img.naturalWidth,
    naturalHeight: img.naturalHeight,
    width: img.getBoundingClientRect().width,
}));
"""


class Browser(NamedTuple):
    """Paths of the local browser and its driver."""

    chromium: str
    chromedriver: str


@dataclass(frozen=True)
class PageCheck:
    """What the browser saw of a page.

    Attributes:
        title: ``document.title``.
        headings: Text of each ``<h1>`` and ``<h2>``, in document order.
        images: One dict per ``<img>``: ``src`` (first 64 characters), ``alt``, ``complete``,
            ``naturalWidth``, ``naturalHeight`` and ``width`` (CSS pixels on the page).
        logs: The browser console log: dicts with ``level``, ``message``, ``source``.
        screenshot: The PNG written.
        expected_images: How many images the page should hold, or ``None`` for no check.
    """

    title: str
    headings: list[str]
    images: list[dict[str, Any]]
    logs: list[dict[str, Any]]
    screenshot: Path
    expected_images: int | None = None
    problems: list[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "problems", self._problems())

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        """The images that did not load or decode (not complete, or of width 0)."""
        return [i for i in self.images if not (i["complete"] and i["naturalWidth"] > 0)]

    @property
    def severe(self) -> list[dict[str, Any]]:
        """Console entries of level SEVERE (``console.error``, failed loads, script errors)."""
        return [entry for entry in self.logs if entry.get("level") == "SEVERE"]

    def _problems(self) -> list[str]:
        problems = [f"image not rendered: {image}" for image in self.broken_images]
        if self.expected_images is not None and len(self.images) != self.expected_images:
            problems.append(f"{len(self.images)} images, expected {self.expected_images}")
        problems += [f"console error: {entry.get('message')}" for entry in self.severe]
        return problems


def browser_or_skip() -> Browser:
    """The local Chromium and chromedriver; skips the calling test, saying why, if either (or
    selenium) is missing."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if missing:
        pytest.skip(f"browser test needs {' and '.join(missing)} on PATH: {INSTALL_HINT}")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("browser test needs selenium: pip install -e '.[dev]' (or `make test`)")
    return Browser(str(shutil.which("chromium")), str(shutil.which("chromedriver")))


def check_page(path: Path, screenshot: Path, expected_images: int | None = None) -> PageCheck:
    """Load ``path`` in headless Chromium, collect what it rendered and save a screenshot.

    Waits for ``document.readyState == "complete"`` (all images loaded or failed), reads every
    ``<img>``, the ``<h1>``/``<h2>`` headings and the console log, then grows the window to the
    page's height and saves ``screenshot`` (PNG). Skips the calling test if there is no browser.

    Args:
        path: The HTML file.
        screenshot: Where to write the PNG (its directory must exist).
        expected_images: How many ``<img>`` the page must hold; ``None`` for no check.

    Returns:
        The facts; ``check.problems`` lists every failure, empty when the page is fine.
    """
    local = browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = local.chromium
    # No sandbox: tests may run as root (CI containers), where Chromium refuses the sandbox.
    # /dev/shm is often tiny in containers; --disable-dev-shm-usage writes to /tmp instead.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={WIDTH},{HEIGHT}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(options=options, service=Service(local.chromedriver))
    try:
        driver.set_page_load_timeout(TIMEOUT_S)
        driver.get(Path(path).resolve().as_uri())
        WebDriverWait(driver, TIMEOUT_S).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )
        images = driver.execute_script(_IMAGES_JS)
        headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "h1, h2")]
        title = driver.title
        logs = driver.get_log("browser")
        # The window is taller than the viewport by the browser's frame: add it back.
        height = driver.execute_script(
            "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight"
        )
        driver.set_window_size(WIDTH, min(max(int(height), HEIGHT), MAX_SCREENSHOT_HEIGHT))
        if not driver.save_screenshot(str(screenshot)):
            raise RuntimeError(f"Chromium could not write the screenshot {screenshot}")
        logs += driver.get_log("browser")  # anything logged since, e.g. on resize
    finally:
        driver.quit()
    return PageCheck(title, headings, images, logs, Path(screenshot), expected_images)
