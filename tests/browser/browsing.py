"""What the browser tests share: how Chromium is started, and reading rows."""

from __future__ import annotations

import os
import time

from tests.server import BeaconServer

CHROMIUM = os.environ.get("BEACON_CHROMIUM", "/usr/bin/chromium")
# Headless Chromium says "HeadlessChrome", which the bot filter rightly drops. The
# contexts set this UA, and so does the command line: a beacon sent while its page is
# being left goes out after the context's override no longer applies to it.
DESKTOP_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    f"--user-agent={DESKTOP_UA}",
]


def rows_when(server: BeaconServer, sql: str, ready, timeout: float = 30) -> list[dict]:
    """The rows ``sql`` selects once ``ready(rows)`` holds, or at the deadline (the
    caller's assertion then shows what arrived)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = server.query(sql)
        if ready(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def sign_in_with_token(page, token: str) -> None:
    """The sign-in form asks for an e-mail and a password first: switch it to a token."""
    page.click("form.sign-in button.switch")
    page.fill("#token", token)
    page.click("form.sign-in button[type=submit]")
