"""Real headless Chromium (Debian's ``chromium``, driven by Playwright for Python)
against a real ``beacon serve`` and a test site on another loopback origin.

Chromium comes from the system (``apt-get install chromium``), never from
``playwright install``. Where it or Playwright is missing the tests skip, except in
CI (``CI=true``), which must have them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.browser.browsing import CHROMIUM, CHROMIUM_ARGS
from tests.browser.site import DemoSite
from tests.server import BeaconServer, cli

SITES = ("shop.test", "csp.test", "plausible.test", "retry.test")
TRACKER = Path(__file__).resolve().parents[2] / "tracker"
PLAUSIBLE_FILE = Path("@plausible-analytics/tracker/plausible.js")


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


# Package scope: Playwright's sync API runs an event loop in this thread while it is
# open, and tests outside this package call asyncio.run(), which refuses to run then.
@pytest.fixture(scope="package")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    if shutil.which(CHROMIUM) is None:
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def plausible_tracker(tmp_path_factory) -> Path:
    """Plausible's npm tracker at the version tracker/package-lock.json pins: from
    tracker/node_modules when installed there, else installed (npm ci) for the tests."""
    installed = TRACKER / "node_modules" / PLAUSIBLE_FILE
    if installed.exists():
        return installed
    if shutil.which("npm") is None:
        _unavailable("npm is missing: Plausible's tracker cannot be installed")
    work = tmp_path_factory.mktemp("npm")
    for name in ("package.json", "package-lock.json"):
        shutil.copy(TRACKER / name, work / name)
    npm = subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert npm.returncode == 0, npm.stderr
    return work / "node_modules" / PLAUSIBLE_FILE


@pytest.fixture(scope="session")
def deployment(tmp_path_factory, plausible_tracker) -> tuple[BeaconServer, DemoSite]:
    """The collector, and the site whose origin is registered for every test site."""
    data_dir: Path = tmp_path_factory.mktemp("browser") / "data"
    server = BeaconServer(data_dir)
    site = DemoSite(server.url, plausible_tracker).start()
    for domain in SITES:
        cli("sites", "add", "--data-dir", str(data_dir), domain, "--origin", site.origin)
    server.start()
    yield server, site
    server.kill()
    site.stop()


@pytest.fixture(scope="session")
def artefacts() -> Path:
    """Where the browser tests keep screenshots for a person to look at: tmp/artefacts
    in the repository (git-ignored), or $BEACON_ARTEFACTS."""
    where = Path(os.environ.get("BEACON_ARTEFACTS") or Path(__file__).resolve().parents[2] / "tmp" / "artefacts")
    where.mkdir(parents=True, exist_ok=True)
    return where
