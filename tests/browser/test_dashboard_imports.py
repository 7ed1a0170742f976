"""A site with figures imported from a Plausible archive (issue 30), in real Chromium
against a real ``beacon serve``: the dashboard offers "Include imported data" only for
such a site, and with it ticked the tiles, the sources panel and the goals add the imported days,
as the Stats API's ``with_imported=true`` does; the expected figures are summed here
from the archive's own rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Page, expect

from storage.imported import FILES
from tests.browser.browsing import DESKTOP_UA, sign_in_with_token
from tests.browser.test_dashboard import ready, tiles
from tests.server import BeaconServer, cli
from tests.test_plausible_archive import (
    CUSTOM_EVENTS,
    D1,
    D3,
    PAGES,
    PAGES_OLD_HEADER,
    SITE,
    SOURCES,
    VISITORS,
    hand_built,
    zipped,
)

PLAIN_SITE = "plain.test"


@contextmanager
def signed_in(browser, server, token: str, view: str) -> Iterator[Page]:
    """A new browser context on the dashboard's ``view`` (its query string), signed in and drawn."""
    context = browser.new_context(user_agent=DESKTOP_UA)
    page = context.new_page()
    try:
        page.goto(f"{server.url}/dashboard/?{view}")
        sign_in_with_token(page, token)
        ready(page)
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("imports-dashboard") / "data"
    archive = zipped(tmp_path_factory.mktemp("archive") / "plausible.zip", hand_built())
    with BeaconServer(data_dir) as server:
        for site in (SITE, PLAIN_SITE):
            cli("sites", "add", site, "--data-dir", str(data_dir))
        cli("import", "plausible", str(archive), "--site", SITE, "--data-dir", str(data_dir))
        cli("goals", "add", SITE, "--event", "Signup", "--data-dir", str(data_dir))
        token = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data_dir)).stdout.strip()
        yield server, token


def test_imported_figures_are_included_when_the_toggle_is_ticked(browser, imported):
    server, token = imported
    with signed_in(browser, server, token, f"site={SITE}&period=custom&date={D1},{D3}") as page:
        toggle = page.locator("#imports")
        assert toggle.is_visible() and not toggle.is_checked()
        assert page.locator("label[for=imports]").inner_text() == (
            f"Include imported data ({D1:%b} {D1.day}, {D1.year} – {D3:%b} {D3.day}, {D3.year})"
        )
        assert tiles(page)["visitors"] == "0"  # the site has no events of its own

        toggle.check()
        ready(page, renders=2)
        assert "imports=1" in page.url
        assert tiles(page)["visitors"] == str(sum(row[1] for row in VISITORS))
        assert tiles(page)["pageviews"] == str(sum(row[2] for row in VISITORS))
        visitors_at = FILES["imported_sources"].names.index("visitors")
        google = sum(row[visitors_at] for row in SOURCES if row[1] == "Google")
        sources = page.locator('[data-panel="sources"] table.rows tbody tr[data-value="Google"] td.num').first
        assert sources.inner_text() == str(google)
        # Pages are asked without engagement then, which the imported tables do not hold.
        pages_header = PAGES_OLD_HEADER.split(",")
        home = sum(row[pages_header.index("visitors")] for row in PAGES if row[2] == "/")
        page_row = page.locator('[data-panel="pages"] table.rows tbody tr[data-value="/"] td.num').first
        assert page_row.inner_text() == str(home)
        # A goal's conversions: its custom events' visitors (imported_custom_events).
        signups = sum(row[4] for row in CUSTOM_EVENTS if row[1] == "Signup")
        goal_row = page.locator('[data-panel="conversions"] table.rows tbody tr[data-value="Signup"] td.num').first
        assert goal_row.inner_text() == str(signups)

        page.goto(f"{server.url}/dashboard/?site={PLAIN_SITE}&period=30d&imports=1")
        ready(page)
        assert not page.locator("#imports").is_visible()  # nothing imported there: nothing offered


def test_a_view_the_imports_cannot_answer_says_they_are_left_out(browser, imported):
    """Cities are GeoNames ids in Plausible's archive and names in beacon: asked with
    imports, the Cities view is answered without them (meta.imports_skip_reason is
    unsupported_query), and says so; Countries, which the archive holds, says nothing."""
    server, token = imported
    with signed_in(browser, server, token, f"site={SITE}&period=custom&date={D1},{D3}&imports=1") as page:
        locations = page.locator('[data-panel="locations"]')
        sources = page.locator('[data-panel="sources"]')
        assert locations.get_attribute("data-state") == "ready"
        assert locations.locator(".imports-left-out").count() == 0  # countries: imported
        assert sources.locator(".imports-left-out").count() == 0
        locations.get_by_role("button", name="Cities").click()
        notice = locations.locator(".imports-left-out")
        notice.wait_for(state="visible")
        assert "Imported data is not included in this view" in notice.inner_text()
        # Measured against the site's own visitors (none): no GeoIP hint for imported visitors.
        assert locations.locator(".notice.geoip").count() == 0
        locations.get_by_role("button", name="Countries").click()
        notice.wait_for(state="detached")

        page.goto(f"{server.url}/dashboard/?site={SITE}&period=custom&date={D1},{D3}")
        ready(page)
        with page.expect_response(lambda answer: "city" in answer.url and "breakdown" in answer.url) as answer:
            locations.get_by_role("button", name="Cities").click()
        assert "with_imported" not in answer.value.url
        expect(locations).to_have_attribute("data-state", "ready")  # "loading" from before the request until drawn
        assert locations.locator(".imports-left-out").count() == 0  # not asked with imports: nothing to say


def test_an_admin_imports_an_archive_from_the_dashboard(browser, imported, tmp_path):
    """Uploaded by an admin, an archive is imported as by the CLI: the toggle then offers
    its days and the tiles add them; a malformed archive is refused whole, saying why;
    an analyst sees no form, and the route refuses it."""
    server, analyst = imported
    site = "upload.test"
    cli("sites", "add", site, "--data-dir", str(server.data_dir))
    admin = cli("tokens", "create", "--role", "admin", "--data-dir", str(server.data_dir)).stdout.strip()
    context = browser.new_context(user_agent=DESKTOP_UA)
    page = context.new_page()
    try:
        page.goto(f"{server.url}/dashboard/?site={site}&period=custom&date={D1},{D3}")
        sign_in_with_token(page, admin)
        ready(page)
        assert not page.locator("#imports").is_visible()
        page.click(".archive-import summary")
        broken = tmp_path / "broken.zip"
        broken.write_bytes(b"not a zip")
        page.set_input_files("#archive-file", str(broken))
        page.click(".archive-import button[type=submit]")
        page.wait_for_function("() => /nothing imported/.test(document.querySelector('.archive-status').textContent)")
        page.set_input_files("#archive-file", str(zipped(tmp_path / "plausible.zip", hand_built())))
        page.click(".archive-import button[type=submit]")
        page.wait_for_function("() => /^Imported /.test(document.querySelector('.archive-status').textContent)")
        ready(page, renders=2)
        assert page.locator("#imports").is_checked() and "imports=1" in page.url
        assert tiles(page)["visitors"] == str(sum(row[1] for row in VISITORS))

        other = context.new_page()  # a fresh page of an analyst's session: no form, and refused
        context.clear_cookies()
        other.goto(f"{server.url}/dashboard/?site={site}")
        sign_in_with_token(other, analyst)
        ready(other)
        assert other.locator(".archive-import").is_hidden()
        refused = other.request.post(
            f"{server.url}/dashboard/import/plausible?site={site}",
            headers={"content-type": "application/zip", "origin": server.url},
            data=b"PK",
        )
        assert refused.status == 403
    finally:
        context.close()
