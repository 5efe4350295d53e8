"""A real chromium (Debian's `chromium` and `chromium-driver`) driven by selenium, against a
real server: the dashboard as a user's browser runs it.

Without chromium the browser tests skip, saying why; with the CI variable set they fail
instead, so a CI run never passes them by skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import ServerProcess, kickoff_cmd, wait_until

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
CHROME_FLAGS = (  # headless as root in a container, and quiet: no request of its own
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--window-size=1440,1000",
)


def _first(paths: tuple[str, ...], name: str) -> str | None:
    found = next((p for p in paths if os.access(p, os.X_OK)), None)
    return found or shutil.which(name)


def browser_paths() -> tuple[str, str]:
    """chromium and chromedriver; skips (fails under CI) when either is missing."""
    chromium = _first(CHROMIUM, "chromium")
    driver = _first(CHROMEDRIVER, "chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        driver = None
    if chromium and driver:
        return chromium, driver
    message = (
        "browser tests need Debian's chromium and chromium-driver (apt-get install chromium "
        "chromium-driver) and selenium (pip install -e '.[test]'); "
        f"found chromium={chromium}, chromedriver={driver}"
    )
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: not skipping)")
    pytest.skip(message)


@dataclass
class Browser:
    """One chromium with a fresh profile; `requests` are the URLs of every request it made
    (from its performance log)."""

    driver: Any
    server: ServerProcess
    requests: list[str] = field(default_factory=list)

    def login(self) -> None:
        url = login_link(self.server)
        self.driver.get(url)
        self.wait_for('[data-testid="counts"] .count')

    def wait_for(self, css: str, timeout: float = 15) -> Any:
        from selenium.webdriver.common.by import By

        def found() -> Any:
            elements = self.driver.find_elements(By.CSS_SELECTOR, css)
            return elements[0] if elements else None

        return wait_until(found, timeout, what=f"an element {css!r}")

    def click(self, css: str, timeout: float = 15) -> None:
        """Click the first element matching `css`, once it exists (found anew if the page
        redrew it in between)."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        def clicked() -> bool:
            try:
                elements = self.driver.find_elements(By.CSS_SELECTOR, css)
                if elements:
                    elements[0].click()
                    return True
            except StaleElementReferenceException:
                pass
            return False

        wait_until(clicked, timeout, what=f"a click on {css!r}")

    def text_of(self, css: str) -> str:
        """The text of the first element matching `css`; "" if none (or it was just
        redrawn: the page redraws on events, callers wait_until what they expect)."""
        return self.attribute_of(css, None)

    def attribute_of(self, css: str, name: str | None) -> str:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        try:
            elements = self.driver.find_elements(By.CSS_SELECTOR, css)
            if not elements:
                return ""
            found = elements[0].text if name is None else elements[0].get_attribute(name)
        except StaleElementReferenceException:
            return ""
        return str(found or "")

    def collect_requests(self) -> list[str]:
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
        return self.requests

    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]


def login_link(server: ServerProcess) -> str:
    """What `kickoff dashboard` prints, from the real CLI."""
    done = subprocess.run(
        [*kickoff_cmd(), "dashboard"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def make_browser(server: ServerProcess) -> Iterator[Callable[[], Browser]]:
    chromium, driver_path = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    started: list[Browser] = []

    def make() -> Browser:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in CHROME_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='kickoff-chromium-')}")
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
        browser = Browser(driver, server)
        started.append(browser)
        return browser

    yield make
    for browser in started:
        browser.driver.quit()


@pytest.fixture
def browser(make_browser: Callable[[], Browser]) -> Browser:
    return make_browser()


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


SCREENSHOT_ENV = "KICKOFF_SCREENSHOT"


def screenshot_path(tmp_path: Path) -> Path:
    """Where the screenshot test writes: docs/dashboard.png (the README's picture) only
    when KICKOFF_SCREENSHOT=1 asks for it, otherwise the test's own directory, so a test
    run leaves the checkout clean (a screenshot's bytes differ on every run: times, ages)."""
    if os.environ.get(SCREENSHOT_ENV) == "1":
        return Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
    return tmp_path / "dashboard.png"
