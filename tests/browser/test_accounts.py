"""Accounts in real headless Chromium against a real ``beacon serve``: an invitation
(``beacon users invite``) accepted, two-factor turned on from its QR code's key, then
a sign-in with the password and a TOTP code; each page checked with axe-core and
watched for Content-Security-Policy violations. Single sign-on through a real Ory
Hydra is in tests/browser/test_oidc.py."""

from __future__ import annotations

import re
import time

import pyotp
import pytest

from tests.browser.browsing import DESKTOP_UA
from tests.browser.test_dashboard import Watched, axe_source, ready
from tests.server import BeaconServer, cli

__all__ = ["axe_source"]  # the fixture, imported for this module

SITE = "shop.test"
EMAIL = "ana@example.com"
PASSWORD = "a long enough passphrase"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("accounts") / "data"
    with BeaconServer(data_dir) as server:
        cli("sites", "add", SITE, "--data-dir", str(data_dir))
        yield server


def invite(server: BeaconServer, email: str) -> str:
    made = cli(
        "users",
        "invite",
        email,
        "--role",
        "analyst",
        "--site",
        SITE,
        "--data-dir",
        str(server.data_dir),
        "--public-url",
        server.url,
    )
    return made.stdout.strip()


def serious_violations(page, axe_source: str) -> list:
    page.evaluate(axe_source)  # through DevTools: the page's own CSP allows no injected script
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.fixture
def watched(browser):
    opened: list[Watched] = []

    def open_context() -> Watched:
        context = browser.new_context(user_agent=DESKTOP_UA)
        opened.append(Watched(context, context.new_page()))
        return opened[-1]

    yield open_context
    for w in opened:
        assert w.complaints == [], w.complaints  # no CSP violation, no script error
        w.context.close()


def test_an_invitation_accepted_then_two_factor_then_sign_in_with_password_and_totp(served, watched, axe_source):
    link = invite(served, EMAIL)
    page = watched().page
    page.goto(link)
    page.wait_for_selector("form.invitation")
    assert "#invitation" not in page.url  # the secret leaves the address bar and the history
    assert page.input_value("#invited-email") == EMAIL
    assert serious_violations(page, axe_source) == []
    page.fill("#new-password", PASSWORD)
    page.fill("#new-password-again", PASSWORD)
    page.click("form.invitation button[type=submit]")
    ready(page)
    assert page.inner_text("details.account summary").endswith(EMAIL)

    page.click("details.account summary")
    assert serious_violations(page, axe_source) == []  # the account menu, open
    page.click("details.account a[href='#two-factor']")
    page.wait_for_selector(".two-factor .totp-key")
    page.wait_for_function("() => document.querySelector('img.qr').naturalWidth > 0")  # the QR code's SVG loaded
    assert serious_violations(page, axe_source) == []
    key = page.inner_text(".totp-key")
    page.fill("#totp-code", pyotp.TOTP(key).now())
    page.click(".two-factor button[type=submit]")
    page.wait_for_selector(".recovery-codes")
    codes = page.locator(".recovery-codes li").all_inner_texts()
    assert len(codes) == 10 and all(re.fullmatch(r"[0-9a-f]{10}", c) for c in codes)
    page.click(".two-factor button.back")
    ready(page)

    page.click("button.sign-out")
    page.wait_for_selector("form.sign-in #email")
    assert serious_violations(page, axe_source) == []
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("form.sign-in button[type=submit]")
    page.wait_for_selector("#code", state="visible")  # the password was right: now the second factor
    page.fill("#code", pyotp.TOTP(key).at(time.time() + 30))  # the next step's: the one shown was used to confirm
    page.click("form.sign-in button[type=submit]")
    ready(page)
    assert page.inner_text("details.account summary").endswith(EMAIL)
    assert PASSWORD not in served.log.read_text()  # the server's whole log so far


def test_a_wrong_password_is_refused_on_the_page(served, watched):
    invite(served, "bo@example.com")
    page = watched().page
    page.goto(f"{served.url}/dashboard")
    page.fill("#email", "bo@example.com")
    page.fill("#password", "not the password at all")
    page.click("form.sign-in button[type=submit]")
    page.wait_for_function("() => document.querySelector('.form-error').textContent.includes('wrong')")
    assert not [c for c in page.context.cookies() if c["name"] == "beacon_session"]
