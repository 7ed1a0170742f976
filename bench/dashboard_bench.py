#!/usr/bin/env python
"""How long the dashboard takes to show everything, in real headless Chromium.

    python bench/dashboard_bench.py                        # 1M events, 5 loads of each kind
    python bench/dashboard_bench.py --events 10000000      # the issue's figure (target ≤ 1 s)
    python bench/dashboard_bench.py --screenshot docs/dashboard.png
    python bench/dashboard_bench.py --filter goal=Signup               # the goal view, 30 days
    python bench/dashboard_bench.py --filter page=/ --period 6mo       # a page, 6 months

It fills a temporary data directory with synthetic traffic made inside ClickHouse
(bench/stats_traffic.py: 3 sites, 180 days, Zipf pages, sources and countries,
returning visitors), builds the visits as the running server would, registers the
sites and three goals, makes an analyst token, starts ``beacon serve`` and signs in once. Then it
opens the dashboard of the biggest site (30 days, or ``--period``; filtered by each
``--filter``) again and again and reads, from
the browser's Performance API, the time from the start of the navigation to the
``dashboard:rendered`` mark, which the page sets when its last panel has drawn:

  first visit   a new browser context each time (no cached assets; the session
                cookie is set on the context)
  repeat visit  the same context, reloaded (assets from the cache)

Chromium is Debian's (/usr/bin/chromium, or $BEACON_CHROMIUM), driven by
Playwright for Python (pip install playwright; never `playwright install`).
A benchmark, not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.stats_traffic import EVENTS_PER_VISIT, SITES, generation_sql  # noqa: E402
from tests.server import BeaconServer  # noqa: E402

CHROMIUM = os.environ.get("BEACON_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DAYS = 180
PAGES = 2000
VISITS_PER_INSERT = 1_000_000
GOALS = ("Signup", "Purchase", "Download")  # event names stats_traffic makes
# --filter's short names (NAME=VALUE); any other NAME is a Stats API property (visit:country=DE).
FILTER_NAMES = {"goal": "event:goal", "page": "event:page", "source": "visit:source", "country": "visit:country"}


def dashboard_filter(given: str) -> str:
    """A --filter (``goal=Signup``, ``page=/``, ``visit:device=mobile``) as the page's
    URL writes it (``event:goal==Signup``)."""
    name, sep, value = given.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"a filter is NAME=VALUE (goal=Signup, page=/), got {given!r}")
    prop = FILTER_NAMES.get(name, name)
    if ":" not in prop:
        raise argparse.ArgumentTypeError(f"unknown filter {name!r}: use {', '.join(FILTER_NAMES)} or a property")
    return f"{prop}=={value}"


def load(data_dir: Path, events: int) -> tuple[str, int]:
    """Fill the store (this process opens it: the server is not running yet); return
    an analyst token and the events stored."""
    from rollups.visit_builder import build_closed_visits
    from storage.clickhouse import ClickHouseStore, dsn_for_data_dir
    from storage.goals import add_goal
    from storage.migrations import migrate
    from storage.sites import add_site
    from storage.tokens import create_token

    store = ClickHouseStore(dsn_for_data_dir(data_dir))
    try:
        migrate(store)
        for site, _ in SITES:
            add_site(store, site)
            for name in GOALS:
                add_goal(store, site, "event", name)
        visits = max(1, round(events / EVENTS_PER_VISIT))
        now = datetime.now(timezone.utc)
        started = time.monotonic()
        for first in range(0, visits, VISITS_PER_INSERT):
            store.command(generation_sql(min(VISITS_PER_INSERT, visits - first), DAYS, now, PAGES, first_visit=first))
        ((stored,),) = store.rows("SELECT count() FROM beacon.events")
        print(f"loaded {stored:,} events in {time.monotonic() - started:.1f} s", flush=True)
        started = time.monotonic()
        build_closed_visits(store, now)
        print(f"visits built in {time.monotonic() - started:.1f} s", flush=True)
        secret, _ = create_token(store, "analyst")
        return secret, stored
    finally:
        store.close()


def sign_in(server: BeaconServer, token: str) -> str:
    r = httpx.post(f"{server.url}/dashboard/session", json={"token": token}, timeout=30)
    r.raise_for_status()
    return r.cookies["beacon_session"]


def rendered_ms(page, url: str, reload: bool = False) -> float:
    if reload:
        page.reload()
    else:
        page.goto(url)
    page.wait_for_function("() => performance.getEntriesByName('dashboard:rendered').length > 0", timeout=120_000)
    return page.evaluate("() => performance.getEntriesByName('dashboard:rendered')[0].startTime")


def summary(times: list[float]) -> dict:
    return {
        "runs": len(times),
        "median_ms": round(statistics.median(times)),
        "max_ms": round(max(times)),
        "all_ms": [round(t) for t in times],
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=1_000_000, help="events to store (default 1,000,000)")
    ap.add_argument("--runs", type=int, default=5, help="loads of each kind (default 5)")
    ap.add_argument("--period", default="30d", help="the dashboard's period: 30d, 6mo, 12mo… (default 30d)")
    ap.add_argument(
        "--filter",
        type=dashboard_filter,
        action="append",
        default=[],
        help="filter the view, e.g. goal=Signup, page=/, source=google, visit:device=mobile (repeatable)",
    )
    ap.add_argument("--screenshot", type=Path, help="also save a screenshot of the dashboard here (1280 px wide)")
    ap.add_argument("--keep", action="store_true", help="keep the data directory (printed)")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("Playwright for Python is missing: pip install playwright (never `playwright install`)", file=sys.stderr)
        return 2
    if shutil.which(CHROMIUM) is None:
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="beacon-dashboard-bench-"))
    try:
        token, stored = load(work / "data", args.events)
        site = SITES[0][0]
        with BeaconServer(work / "data") as server, sync_playwright() as playwright:
            cookie = {
                "name": "beacon_session",
                "value": sign_in(server, token),
                "url": server.url,
                "httpOnly": True,
                "sameSite": "Strict",
            }
            view = {"site": site, "period": args.period} | ({"filters": ";".join(args.filter)} if args.filter else {})
            url = f"{server.url}/dashboard?{urlencode(view)}"
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            first, repeat = [], []
            for _ in range(args.runs):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                context.add_cookies([cookie])
                first.append(rendered_ms(context.new_page(), url))
                context.close()
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies([cookie])
            page = context.new_page()
            rendered_ms(page, url)
            failed = page.locator('[data-panel][data-state="failed"]').evaluate_all(
                "ps => ps.map(p => p.dataset.panel)"
            )
            for _ in range(args.runs):
                repeat.append(rendered_ms(page, url, reload=True))
            if args.screenshot:
                page.wait_for_timeout(300)  # the map's shades and the chart's last frame
                page.screenshot(path=str(args.screenshot), full_page=True)
                print(f"screenshot: {args.screenshot}")
            browser.close()
        figures = {
            "events": stored,
            "site": site,
            "period": args.period,
            "filters": args.filter,
            "panels_failed": failed,  # drawn as an error (the API refused the view's query): still counted as drawn
            "first_visit": summary(first),
            "repeat_visit": summary(repeat),
        }
        print(json.dumps(figures, indent=2))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        if args.keep:
            print(f"data directory kept: {work / 'data'}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
