"""Plausible's official npm tracker, pointed at beacon's POST /api/event, in real
headless Chromium: its page views and custom events are stored as rows."""

from __future__ import annotations

from tests.browser.browsing import DESKTOP_UA, rows_when

ROWS = "SELECT type, name, path, props FROM beacon.events WHERE site = 'plausible.test'"


def test_plausibles_tracker_switches_to_beacon_by_its_endpoint(browser, deployment):
    server, site = deployment
    context = browser.new_context(user_agent=DESKTOP_UA)
    page = context.new_page()
    endpoint = f"{server.url}/api/event"

    def sent(name: str):
        return lambda response: response.url == endpoint and response.request.post_data_json["n"] == name

    with page.expect_response(sent("pageview")) as first_view:
        page.goto(f"{site.origin}/plausible/")
    page.wait_for_function("typeof window.trackSignup == 'function'")
    with page.expect_response(sent("pageview")) as second_view:
        page.evaluate("history.pushState({}, '', '/plausible/pricing')")  # the tracker follows SPA routes
    with page.expect_response(sent("Signup")) as signup:
        page.evaluate("trackSignup()")
    for answer in (first_view.value, second_view.value, signup.value):
        assert (answer.status, answer.body()) == (202, b"ok")  # as Plausible answers
    page.close(run_before_unload=True)

    def views_and_events(rows: list[dict]) -> list[tuple]:
        return sorted(
            (r["type"], r["name"], r["path"], tuple(sorted(r["props"].items())))
            for r in rows
            if r["name"] != "engagement"
        )

    expected = sorted(
        [
            ("pageview", "", "/plausible/", ()),
            ("pageview", "", "/plausible/pricing", ()),
            ("event", "Signup", "/plausible/pricing", (("plan", "pro"), ("seats", "3"))),
        ]
    )

    def engagements(rows: list[dict]) -> list[dict]:
        return [r for r in rows if r["name"] == "engagement"]

    # Its engagement events: one at least on leaving the first route (the tracker sends
    # one for a page whose scroll depth it has not reported yet), perhaps more as it
    # decides (when scrolled, after 3 s, on closing the page).
    rows = rows_when(
        server,
        ROWS,
        lambda rows: (
            len(views_and_events(rows)) >= len(expected) and "/plausible/" in {r["path"] for r in engagements(rows)}
        ),
    )
    assert views_and_events(rows) == expected
    assert "/plausible/" in {r["path"] for r in engagements(rows)}, rows
    for row in engagements(rows):  # they keep their time and scroll depth, on the pages viewed
        assert row["path"] in {"/plausible/", "/plausible/pricing"}
        assert int(row["props"]["engaged_ms"]) >= 0 and 0 <= int(row["props"]["scroll_depth"]) <= 100
    context.close()
