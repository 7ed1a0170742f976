"""E-mailed reports end to end: ``beacon serve`` with its mail scheduler and a real SMTP
server in the test (aiosmtpd). Generated traffic over the site's last two local weeks
(carrying device ids, IPs and a visitor's e-mail); a report's numbers are checked
against the Stats API's for the same periods and against the same numbers worked out
in plain Python from the events (``tests.traffic.Oracle``)."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest

from queries.model import StatsQuery
from storage.control import RemoteStore, socket_path
from tests.server import BeaconServer, cli
from tests.smtp_inbox import Arrived, Inbox, smtp_server
from tests.traffic import Oracle, person_visit

SITE, ZONE = "report.example", "America/Toronto"
SENDER = "reports@beacon.test"
BASE = "https://stats.beacon.test"
HEADLINE = {
    "Visitors": "visitors",
    "Pageviews": "pageviews",
    "Bounce rate": "bounce_rate",
    "Visit duration": "visit_duration",
}
DEVICE_ID, IP, VISITOR_EMAIL = "device-5be1a7c0d2", "203.0.113.0", "sam.visitor@example.org"
GOAL = "/pricing"


def local_weeks(now: datetime) -> tuple[date, date]:
    """The Mondays of the site's last closed week (an hour after it ends, as the
    scheduler waits) and of the week before it."""
    today = (now - timedelta(hours=1)).astimezone(ZoneInfo(ZONE)).date()
    last = today - timedelta(days=today.weekday() + 7)
    return last, last - timedelta(days=7)


def local_start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), ZoneInfo(ZONE)).astimezone(timezone.utc)


def generated_traffic(earlier: date, until: datetime) -> list:
    rng = random.Random(29)
    start = local_start(earlier)
    span = (until - start).total_seconds() - 3 * 3600  # every visit ends before `until`
    events = []
    for _ in range(60):
        person = rng.getrandbits(40) | 1
        for _ in range(rng.choice((1, 1, 2, 3))):
            events += person_visit(rng, SITE, person, start + timedelta(seconds=rng.uniform(0, span)), {})
    for e in events:  # a visitor's hash is salted per local day, as the privacy filter's
        e.visitor_id = e.visitor_id << 20 | e.ts.astimezone(ZoneInfo(ZONE)).date().toordinal() % (1 << 20)
    return events


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    with smtp_server() as running:
        yield running


@pytest.fixture(scope="module")
def served(tmp_path_factory, inbox):
    data = tmp_path_factory.mktemp("reports") / "data"
    mail = ["--smtp-host", "127.0.0.1", "--smtp-port", str(inbox.port), "--smtp-security", "none"]
    mail += ["--mail-from", SENDER, "--public-url", BASE]
    args = [*mail, "--report-interval", "0.5", "--visit-build-interval", "0.5"]
    running = BeaconServer(data, *args).start()
    now = datetime.now(timezone.utc)
    last, earlier = local_weeks(now)
    events = generated_traffic(earlier, local_start(last + timedelta(days=7)))
    cli("sites", "add", SITE, "--timezone", ZONE, "--data-dir", str(data))
    cli("goals", "add", SITE, "--page", GOAL, "--data-dir", str(data))
    rows = [e.row() | {"device_id": DEVICE_ID, "ip_truncated": IP, "props": {"email": VISITOR_EMAIL}} for e in events]
    store = RemoteStore(socket_path(data))
    store.command("INSERT INTO beacon.events FORMAT JSONEachRow\n" + "\n".join(json.dumps(r) for r in rows))
    store.close()
    token = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data)).stdout.strip()
    state = {"server": running, "args": args, "mail": mail, "data": data, "token": token, "events": events}
    state |= {"last": last, "earlier": earlier}
    _wait_for_visits(state, Oracle(events, [("page", GOAL)], {SITE: ZONE}))
    yield state
    state["server"].stop()


def _api(state: dict, route: str, **params) -> dict:
    r = httpx.get(
        f"{state['server'].url}/api/v1/stats/{route}",
        params={"site_id": SITE, **params},
        headers={"Authorization": f"Bearer {state['token']}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()


def _week(monday: date) -> str:
    return f"{monday},{monday + timedelta(days=6)}"


def _query(monday: date, metrics: tuple[str, ...], prop: str | None = None) -> StatsQuery:
    start, end = local_start(monday), local_start(monday + timedelta(days=7))
    return StatsQuery(SITE, start, end, metrics, property=prop, limit=1000, timezone=ZONE)


def _wait_for_visits(state: dict, oracle: Oracle, timeout: float = 90) -> None:
    """The visits of past events are built in the background: poll until the API counts
    them all, in both weeks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        built = [
            _api(state, "aggregate", period="custom", date=_week(m), metrics="visits")["results"]["visits"]["value"]
            for m in (state["last"], state["earlier"])
        ]
        wanted = [oracle.aggregate(_query(m, ("visits",)))["visits"] for m in (state["last"], state["earlier"])]
        if built == wanted:
            return
        time.sleep(0.3)
    raise AssertionError(f"visits not built in {timeout}s: {built} != {wanted}")


# --- reading a report back ------------------------------------------------------------


def headline(text: str) -> dict[str, tuple[str, str]]:
    """Metric → (value, change) as the plain-text part shows them."""
    found = {}
    for label, metric in HEADLINE.items():
        match = re.search(rf"^{label}\s+(.+?)\s{{3}}(\S+(?: points)?)$", text, re.M)
        assert match, f"no {label} line in:\n{text}"
        found[metric] = (match[1].strip(), match[2])
    return found


def section(text: str, title: str) -> list[tuple[str, int]]:
    block = text.split(f"\n{title} (visitors)\n", 1)[1].split("\n\n", 1)[0]
    return [
        (name.strip(), int(count.replace(",", ""))) for name, count in re.findall(r"^  (.+?)\s+([\d,]+)$", block, re.M)
    ]


def shown(metric: str, value) -> str:
    if metric == "bounce_rate":
        return f"{value}%"
    if metric == "visit_duration":
        return f"{value // 60}m {value % 60:02d}s"
    return f"{value:,}"


def change(metric: str, now: int, before: int) -> str:
    """The change, worked out here: whole points for the bounce rate (none from 0),
    else whole percent, halves away from zero."""
    if metric == "bounce_rate":
        return "–" if before == 0 else f"{now - before:+} points"
    if before == 0:
        return f"{100 if now > 0 else 0:+}%"
    ratio = (now - before) * 100 / before
    rounded = int(abs(ratio) + 0.5) * (1 if ratio >= 0 else -1)
    return f"{rounded:+}%"


def assert_no_visitor_data(arrived: Arrived, events: list) -> None:
    parts = [p.get_content() for p in arrived.message.walk() if p.get_content_maintype() == "text"]
    ids = {str(e.visitor_id) for e in events}
    for text in [arrived.raw.decode("utf-8", "replace"), *parts]:
        assert DEVICE_ID not in text and IP not in text and VISITOR_EMAIL not in text
        assert not ids & set(re.findall(r"\d{12,}", text))


def label(monday: date) -> str:
    sunday = monday + timedelta(days=6)
    return f"week of {monday.day} {monday:%b} – {sunday.day} {sunday:%b %Y}"


# --- the tests --------------------------------------------------------------------------


def test_a_report_sent_now_has_the_headers_both_parts_and_the_api_s_numbers(served, inbox):
    data, last, earlier = served["data"], served["last"], served["earlier"]
    cli("reports", "send", SITE, "boss@example.com", "--period", "week", "--data-dir", str(data), *served["mail"])
    (arrived,) = inbox.wait_for("boss@example.com")
    message = arrived.message
    assert message["From"] == SENDER and message["To"] == "boss@example.com"
    assert message["Subject"] == f"{SITE}: your weekly report, {label(last)}"
    assert abs(parsedate_to_datetime(message["Date"]) - datetime.now(timezone.utc)) < timedelta(minutes=5)
    assert re.fullmatch(r"<[^<>@\s]+@beacon\.test>", message["Message-ID"])
    url = message["List-Unsubscribe"].strip("<>")
    assert url.startswith(f"{BASE}/reports/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content()
    assert url in text and url in html

    metrics = ",".join(HEADLINE.values())
    api = _api(served, "aggregate", period="custom", date=_week(last), metrics=metrics, compare="previous_period")
    oracle = Oracle(served["events"], [("page", GOAL)], {SITE: ZONE})
    now, before = (
        oracle.aggregate(_query(last, tuple(HEADLINE.values()))),
        oracle.aggregate(_query(earlier, tuple(HEADLINE.values()))),
    )
    assert now["visitors"] > 20 and before["visitors"] > 20  # enough traffic to mean something
    for metric, (value, changed) in headline(text).items():
        assert api["results"][metric]["value"] == now[metric]
        assert api["results"][metric]["comparison_value"] == before[metric]
        assert value == shown(metric, now[metric]), metric
        assert changed == change(metric, now[metric], before[metric]), metric
        assert f">{value}<" in html and f">{changed}<" in html

    for title, prop, key in (("Top sources", "visit:source", "source"), ("Top pages", "event:page", "page")):
        listed = section(text, title)
        rows = _api(served, "breakdown", period="custom", date=_week(last), property=prop, limit=5)["results"]
        assert listed == [(row[key], row["visitors"]) for row in rows]
        expected = {row[key]: row["visitors"] for row in oracle.breakdown(_query(last, ("visitors",), prop), key)}
        assert all(expected[name] == count for name, count in listed) and len(listed) == min(5, len(expected))
        assert sorted(expected.values(), reverse=True)[: len(listed)] == [count for _, count in listed]
    goal_rows = oracle.breakdown(_query(last, ("visitors",), "event:goal"), "goal")
    assert section(text, "Goals") == [(row["goal"], row["visitors"]) for row in goal_rows] != []
    assert_no_visitor_data(arrived, served["events"])


def test_the_scheduler_sends_once_across_a_restart_and_the_link_unsubscribes(served, inbox):
    data = served["data"]
    cli("reports", "add", SITE, "ceo@example.com", "--weekly", "--data-dir", str(data))
    (arrived,) = inbox.wait_for("ceo@example.com")
    assert arrived.message["Subject"] == f"{SITE}: your weekly report, {label(served['last'])}"
    assert_no_visitor_data(arrived, served["events"])

    assert served["server"].stop()
    served["server"] = restarted = BeaconServer(data, *served["args"]).start()
    _wait_for_rounds(restarted, 3)
    assert len(inbox.to("ceo@example.com")) == 1

    path = urlsplit(arrived.message["List-Unsubscribe"].strip("<>")).path
    page = httpx.get(restarted.url + path, timeout=10)
    assert page.status_code == 200 and "weekly report of report.example" in page.text
    assert "ceo@example.com" in cli("reports", "list", "--data-dir", str(data)).stdout  # a GET changes nothing
    done = httpx.post(restarted.url + path, content=b"List-Unsubscribe=One-Click", timeout=10)
    assert done.status_code == 200
    assert cli("reports", "list", "--data-dir", str(data)).stdout == "no report recipients\n"


def test_spike_thresholds_are_set_and_listed(served, inbox):
    data = str(served["data"])
    set_ = cli("spikes", "set", SITE, "--threshold", "100000", "--email", "OnCall@Example.COM", "--data-dir", data)
    assert set_.stdout == f"{SITE}\t100000\tOnCall@example.com\n"
    assert cli("spikes", "list", "--data-dir", data).stdout == set_.stdout
    cli("spikes", "remove", SITE, "--data-dir", data)
    assert cli("spikes", "list", "--data-dir", data).stdout == "no spike thresholds\n"
    assert inbox.to("OnCall@example.com") == []


def test_bad_input_to_the_commands_is_refused_plainly(served):
    data = str(served["data"])
    bad_email = cli("reports", "add", SITE, "not an address", "--weekly", "--data-dir", data, check=False)
    assert bad_email.returncode == 2 and "not an e-mail address" in bad_email.stderr
    injected = cli(
        "spikes",
        "set",
        SITE,
        "--threshold",
        "5",
        "--email",
        "a@b.example\nBcc: x@y.example",
        "--data-dir",
        data,
        check=False,
    )
    assert injected.returncode == 2 and "Traceback" not in injected.stderr
    unknown = cli("reports", "add", "nowhere.example", "a@b.example", "--monthly", "--data-dir", data, check=False)
    assert unknown.returncode == 2 and "not a registered site" in unknown.stderr
    neither = cli("reports", "add", SITE, "a@b.example", "--data-dir", data, check=False)
    assert neither.returncode == 2 and "--weekly" in neither.stderr


def _wait_for_rounds(server: BeaconServer, rounds: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scrape = httpx.get(f"{server.url}/metrics", timeout=5).text
        match = re.search(r"^beacon_mail_rounds_total (\S+)$", scrape, re.M)
        if match and float(match[1]) >= rounds:
            return
        time.sleep(0.2)
    raise AssertionError(f"the mail scheduler did not run {rounds} rounds in {timeout}s")
