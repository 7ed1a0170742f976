"""Single sign-on with OpenID Connect in real headless Chromium, against a real Ory
Hydra v2.3.0 (in memory, free ports) and a real ``beacon serve`` configured for it.

The test plays Hydra's login and consent app: a small HTTP server that accepts each
login challenge with a subject and each consent challenge with the e-mail address and
groups the test chose, through Hydra's admin API, and sends the browser on. Hydra is
built by .ci/run (``go build -tags sqlite`` of v2.3.0's module: ``go install …@v2.3.0``
refuses its replace directives, and DSN=memory needs the sqlite tag) into
``$HOME/.cache/beacon-tools/bin``; where it is missing the test skips, except in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.browser.browsing import DESKTOP_UA
from tests.browser.test_dashboard import ready
from tests.server import BeaconServer, cli, free_port
from tests.tools import unavailable

SITE = "shop.test"
TOOLS = Path.home() / ".cache" / "beacon-tools" / "bin"
CLIENT_SECRET = "a-client-secret-for-the-test-" + "x" * 8


def hydra_binary() -> str:
    found = shutil.which("hydra", path=f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        unavailable(f"Ory Hydra is not built in {TOOLS} (.ci/run builds it)")
    return found


class Provider:
    """Hydra, and the login and consent app that answers for the person ``signing_in``."""

    def __init__(self, work: Path):
        self.public, self.admin, self.app_port = free_port(), free_port(), free_port()
        self.issuer = f"http://127.0.0.1:{self.public}"
        self.admin_url = f"http://127.0.0.1:{self.admin}"
        self.signing_in: dict = {}
        self.log = work / "hydra.log"
        env = os.environ | {
            "DSN": "memory",
            "SECRETS_SYSTEM": "a-system-secret-of-32-characters-at-least",
            "URLS_SELF_ISSUER": self.issuer,
            "URLS_LOGIN": f"http://127.0.0.1:{self.app_port}/login",
            "URLS_CONSENT": f"http://127.0.0.1:{self.app_port}/consent",
            "SERVE_PUBLIC_PORT": str(self.public),
            "SERVE_PUBLIC_HOST": "127.0.0.1",
            "SERVE_ADMIN_PORT": str(self.admin),
            "SERVE_ADMIN_HOST": "127.0.0.1",
            "LOG_LEVEL": "warn",
        }
        self._log_file = open(self.log, "wb")
        self.process = subprocess.Popen(
            [hydra_binary(), "serve", "all", "--dev", "--sqa-opt-out"],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.app = ThreadingHTTPServer(("127.0.0.1", self.app_port), self._handler())
        threading.Thread(target=self.app.serve_forever, daemon=True).start()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.admin_url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"hydra not ready in {timeout}s:\n{self.log.read_text()}")

    def create_client(self) -> str:
        made = httpx.post(
            f"{self.admin_url}/admin/clients",
            json={
                "client_secret": CLIENT_SECRET,
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "scope": "openid email profile",
                "token_endpoint_auth_method": "client_secret_basic",
            },
        )
        assert made.status_code == 201, made.text
        return made.json()["client_id"]

    def redirect_to(self, client_id: str, redirect_uri: str) -> None:
        patched = httpx.patch(
            f"{self.admin_url}/admin/clients/{client_id}",
            json=[{"op": "add", "path": "/redirect_uris", "value": [redirect_uri]}],
        )
        assert patched.status_code == 200, patched.text

    def _handler(self):
        provider = self

        class LoginAndConsent(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/login":
                    to = provider.accept("login", query["login_challenge"], {"subject": provider.signing_in["email"]})
                else:
                    to = provider.accept_consent(query["consent_challenge"])
                self.send_response(302)
                self.send_header("location", to)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        return LoginAndConsent

    def accept(self, kind: str, challenge: str, body: dict) -> str:
        accepted = httpx.put(
            f"{self.admin_url}/admin/oauth2/auth/requests/{kind}/accept",
            params={f"{kind}_challenge": challenge},
            json=body,
        )
        assert accepted.status_code == 200, accepted.text
        return accepted.json()["redirect_to"]

    def accept_consent(self, challenge: str) -> str:
        asked = httpx.get(
            f"{self.admin_url}/admin/oauth2/auth/requests/consent", params={"consent_challenge": challenge}
        ).json()
        person = provider_claims(self.signing_in)
        return self.accept(
            "consent",
            challenge,
            {
                "grant_scope": asked["requested_scope"],
                "grant_access_token_audience": asked["requested_access_token_audience"],
                "session": {"id_token": person},
            },
        )

    def stop(self) -> None:
        self.app.shutdown()
        self.process.terminate()
        self.process.wait(10)
        self._log_file.close()


def provider_claims(person: dict) -> dict:
    return {"email": person["email"], "email_verified": True, "groups": person["groups"]}


@pytest.fixture(scope="module")
def sso(tmp_path_factory):
    work = tmp_path_factory.mktemp("oidc")
    provider = Provider(work)
    client_id = provider.create_client()
    server = BeaconServer(
        work / "data",
        "--oidc-issuer", provider.issuer,
        "--oidc-client-id", client_id,
        "--oidc-allowed-domain", "example.com",
        "--oidc-role", "marketing=analyst@" + SITE,
        "--oidc-role", "ops=admin",
    )  # fmt: skip
    provider.redirect_to(client_id, f"{server.url}/dashboard/oidc/callback")
    os.environ["BEACON_OIDC_CLIENT_SECRET"] = CLIENT_SECRET  # a secret goes in the environment, not argv
    try:
        server.start()
    finally:
        del os.environ["BEACON_OIDC_CLIENT_SECRET"]
    cli("sites", "add", SITE, "--data-dir", str(server.data_dir))
    cli("sites", "add", "other.test", "--data-dir", str(server.data_dir))
    yield provider, server
    server.stop()
    provider.stop()


def sign_in_through_sso(browser, provider: Provider, server: BeaconServer, person: dict):
    provider.signing_in = person
    context = browser.new_context(user_agent=DESKTOP_UA)
    page = context.new_page()
    page.goto(f"{server.url}/dashboard")
    page.click("form.sign-in a.sso")
    return context, page


def session_cookie(context) -> str | None:
    return next((c["value"] for c in context.cookies() if c["name"] == "beacon_session"), None)


def test_an_oidc_sign_in_through_hydra_lands_on_the_dashboard_with_the_groups_role(browser, sso):
    provider, server = sso
    context, page = sign_in_through_sso(
        browser, provider, server, {"email": "mia@example.com", "groups": ["marketing"]}
    )
    try:
        ready(page)
        assert page.url == f"{server.url}/dashboard"
        assert page.inner_text("details.account summary").endswith("mia@example.com")
        cookie = {"Cookie": f"beacon_session={session_cookie(context)}"}
        who = httpx.get(f"{server.url}/dashboard/session", headers=cookie).json()
        assert who["sites"] == [SITE] and who["user"]["roles"] == [{"site": SITE, "role": "analyst"}]
        assert who["user"]["sso"] is True
        other = httpx.get(f"{server.url}/api/v1/stats/aggregate", params={"site_id": "other.test"}, headers=cookie)
        assert other.status_code == 403
        listed = cli("users", "list", "--data-dir", str(server.data_dir)).stdout
        assert f"mia@example.com\tanalyst@{SITE}\tsso" in listed
    finally:
        context.close()


@pytest.mark.parametrize(
    "person",
    [
        {"email": "eve@elsewhere.test", "groups": ["marketing"]},  # a domain not allowed
        {"email": "sam@example.com", "groups": ["sales"]},  # no group that maps to a role
    ],
    ids=["domain", "group"],
)
def test_a_user_whose_domain_or_group_is_not_allowed_is_refused(browser, sso, person):
    provider, server = sso
    context, page = sign_in_through_sso(browser, provider, server, person)
    try:
        page.wait_for_function("() => document.querySelector('.form-error')?.textContent.includes('refused')")
        assert urlsplit(page.url).path == "/dashboard/" and session_cookie(context) is None
        assert person["email"] not in cli("users", "list", "--data-dir", str(server.data_dir)).stdout
    finally:
        context.close()


def test_a_callback_without_our_state_is_refused(sso):
    provider, server = sso
    forged = httpx.get(f"{server.url}/dashboard/oidc/callback", params={"code": "stolen", "state": "guessed"})
    assert forged.status_code == 302 and forged.headers["location"] == "/dashboard/#sso=failed"
    assert "beacon_session" not in forged.headers.get("set-cookie", "")
