"""The funnel panel in real headless Chromium against a real ``beacon serve``: each
step's visitors, conversion and drop-off as the traffic gives them (counted here in
plain Python), another funnel chosen in the panel, a filter, and the hint shown for a
site without funnels."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from storage.control import RemoteStore, socket_path
from tests.browser.browsing import DESKTOP_UA, sign_in_with_token
from tests.server import BeaconServer, cli
from tests.traffic import Event

SITE, BARE = "funnel.test", "bare.test"
FUNNELS = {
    "Signup": ["page:/pricing", "event:Signup"],
    "Blog": ["page:/blog/**", "page:/pricing", "event:Signup", "event:Paid"],
}
# Per visitor: the visit's (path or event name), a minute apart; and its source.
JOURNEYS = (
    [(["/", "/pricing", "Signup"], "google")] * 6
    + [(["/blog/a", "/pricing", "Signup", "Paid"], "google")] * 3
    + [(["/blog/x/y", "/pricing"], "")] * 4
    + [(["/pricing"], "")] * 5
    + [(["Signup", "/pricing"], "google")] * 2  # out of order: step 1 only
)


def yesterday() -> date:
    return datetime.now(timezone.utc).date() - timedelta(days=1)


def traffic() -> list[Event]:
    start = datetime.combine(yesterday(), datetime.min.time(), timezone.utc) + timedelta(hours=9)
    events = []
    for n, (journey, source) in enumerate(JOURNEYS):
        for i, what in enumerate(journey):
            at = start + timedelta(minutes=10 * n + i)
            if what.startswith("/"):
                events.append(Event(SITE, n + 1, at, path=what, source=source))
            else:
                events.append(Event(SITE, n + 1, at, type="event", name=what, path="/pricing", source=source))
    return events


def reached(steps: list[str], source: str | None = None) -> list[int]:
    """Visitors per step, in plain Python: each journey is one visit of one visitor."""

    def done(what: str, step: str) -> bool:
        kind, value = step.split(":", 1)
        if kind == "event":
            return what == value
        return what == value or (value.endswith("/**") and what.startswith(value[:-2]))

    levels = []
    for journey, from_source in JOURNEYS:
        if source is not None and from_source != source:
            continue
        level = 0
        for what in journey:
            if level < len(steps) and done(what, steps[level]):
                level += 1
        levels.append(level)
    return [sum(1 for lv in levels if lv >= k) for k in range(1, len(steps) + 1)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("funnel-panel") / "data"
    with BeaconServer(data) as server:
        for site in (SITE, BARE):
            cli("sites", "add", site, "--data-dir", str(data))
        for name, steps in FUNNELS.items():
            cli("funnels", "add", SITE, name, *[f"--step={s}" for s in steps], "--data-dir", str(data))
        store = RemoteStore(socket_path(data))
        try:
            rows = "\n".join(json.dumps(e.row()) for e in traffic())
            store.command("INSERT INTO beacon.events FORMAT JSONEachRow\n" + rows)
        finally:
            store.close()
        server.analyst = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data)).stdout.strip()
        yield server


@pytest.fixture
def open_panel(browser, served):
    contexts, errors = [], []

    def open_at(query: str):
        context = browser.new_context(user_agent=DESKTOP_UA)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(f"{served.url}/dashboard?{query}")
        sign_in_with_token(page, served.analyst)
        page.wait_for_selector('[data-panel="funnels"][data-state="ready"]', timeout=30000)
        return page

    yield open_at
    assert errors == []
    for context in contexts:
        context.close()


def shown_steps(page) -> list[dict]:
    return [
        {
            "label": li.locator(".funnel-label").inner_text(),
            "visitors": int(li.get_attribute("data-visitors")),
            "figures": li.locator(".funnel-figures").inner_text(),
            "width": float(li.locator(".funnel-bar").evaluate("e => e.style.width").removesuffix("%")),
        }
        for li in page.locator('[data-panel="funnels"] .funnel-step').all()
    ]


def expected_steps(steps: list[str], counts: list[int]) -> list[dict]:
    out = []
    for i, (step, n) in enumerate(zip(steps, counts)):
        kind, value = step.split(":", 1)
        label = f"{i + 1}. {value if kind == 'event' else 'Visit ' + value}"
        if i == 0:
            figures = "Entered the funnel"
        else:
            before = counts[i - 1]
            figures = (
                f"{100 * n / counts[0]:.1f}% of the first step · {100 * n / before:.1f}% of the previous · "
                f"{before - n:,} dropped off ({100 * (before - n) / before:.1f}%)"
            )
        out.append({"label": label, "visitors": n, "figures": figures, "width": pytest.approx(100 * n / counts[0])})
    return out


def test_the_panel_shows_each_steps_visitors_conversion_and_dropoff(open_panel):
    page = open_panel(f"site={SITE}&period=7d")
    counts = reached(FUNNELS["Blog"])
    assert counts == [7, 7, 3, 3] and reached(FUNNELS["Signup"]) == [20, 9]  # the traffic as meant
    # The first funnel by name is shown first.
    assert shown_steps(page) == expected_steps(FUNNELS["Blog"], counts)
    summary = page.locator(".funnel-summary").inner_text()
    assert summary == f"7 of 20 visitors entered the funnel; {100 * 3 / 7:.1f}% of them completed it."


def test_another_funnel_is_chosen_in_the_panel_and_a_filter_applies(open_panel):
    page = open_panel(f"site={SITE}&period=7d")
    page.select_option('[data-panel="funnels"] select', "Signup")
    page.wait_for_function(
        "() => document.querySelector('[data-panel=funnels] .funnel-label')?.textContent === '1. Visit /pricing'"
        " && document.querySelector('[data-panel=funnels]').dataset.state === 'ready'"
    )
    assert shown_steps(page) == expected_steps(FUNNELS["Signup"], reached(FUNNELS["Signup"]))
    filtered = open_panel(f"site={SITE}&period=7d&filters={quote('visit:source==google')}")
    assert shown_steps(filtered) == expected_steps(FUNNELS["Blog"], reached(FUNNELS["Blog"], source="google"))


def test_a_site_without_funnels_says_how_to_add_one(open_panel):
    page = open_panel(f"site={BARE}&period=7d")
    hint = page.locator('[data-panel="funnels"] .notice').inner_text()
    assert (
        hint == f"No funnel yet. Funnels are set on the server: beacon funnels add {BARE} Signup --step "
        "page:/pricing --step event:Signup."
    )
    assert page.locator('[data-panel="funnels"] select').is_hidden()


def test_a_goal_filter_is_said_to_be_no_filter_for_a_funnel(open_panel, served):
    cli("goals", "add", SITE, "--event", "Signup", "--data-dir", str(served.data_dir))
    page = open_panel(f"site={SITE}&period=7d&filters={quote('event:goal==Signup')}")
    notice = page.locator('[data-panel="funnels"] .notice')
    assert notice.inner_text() == "The funnel Blog: a funnel cannot be filtered by event:goal: its steps are its goals"
    assert notice.get_attribute("class") == "notice"
