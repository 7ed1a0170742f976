"""E-mailed reports and spike notices in one process: the scheduler (``reports.scheduler``)
on the test's store, its clock moved by the test, sending through a real SMTP server
(aiosmtpd) that keeps what arrives; the unsubscribe route called as the HTTP server
calls it (ASGI)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest

from common import clock, metrics
from common.settings import Settings
from reports.periods import containing, last_closed
from reports.scheduler import ReportScheduler
from reports.smtp import Mailer
from reports.unsubscribe import UnsubscribeApp
from storage.audit import audit
from storage.reports import add_subscription, list_subscriptions, new_unsubscribe_link, set_spike_alert
from storage.sites import add_site, remove_site
from tests.server import free_port
from tests.smtp_inbox import Arrived, Inbox, smtp_server

SENDER = "reports@beacon.test"
BASE = "https://stats.beacon.test"
UTC = timezone.utc
# What generated events carry that no mail may: a consented device id, a (truncated)
# IP, a visitor's e-mail in props, and the visitor hash.
DEVICE_ID = "device-7f3c9a2e5b1d"
IP = "198.51.100.0"
VISITOR_EMAIL = "jane.visitor@example.org"
VISITOR_ID_BASE = 7_314_159_265_358_979


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def moment() -> Iterator[list[datetime]]:
    """The wall clock the scheduler reads: ``moment[0]``, moved by the test."""
    now = [datetime(2026, 11, 18, 12, 0, tzinfo=UTC)]
    previous = clock.use(lambda: now[0].timestamp())
    yield now
    clock.use(previous)


def scheduler(store, inbox: Inbox) -> ReportScheduler:
    settings = Settings(
        smtp_host="127.0.0.1", smtp_port=inbox.port, smtp_security="none", mail_from=SENDER, public_url=BASE
    )
    return ReportScheduler(store, Mailer(settings), settings.link_base, settings.report_interval)


def pageview(site: str, visitor: int, at: datetime, path: str = "/", source: str = "") -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "site": site,
        "type": "pageview",
        "ts": at.strftime("%Y-%m-%d %H:%M:%S.000"),
        "hostname": site,
        "path": path,
        "url": f"https://{site}{path}",
        "referrer_source": source,
        "ip_truncated": IP,
        "device_id": DEVICE_ID,
        "props": {"email": VISITOR_EMAIL},
        "visitor_id": VISITOR_ID_BASE + visitor,
    }


def insert(store, rows: list[dict]) -> None:
    store.insert_json_rows("beacon.events", "\n".join(json.dumps(r) for r in rows).encode())


def asgi(app, method: str, path: str, body: bytes = b"", content_type: bytes = b"") -> tuple[int, bytes]:
    """One request through the app, as the HTTP server hands it over."""
    sent: list[dict] = []
    headers = [(b"content-type", content_type)] if content_type else []
    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "headers": headers}

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def unsubscribe_path(arrived: Arrived) -> str:
    url = arrived.message["List-Unsubscribe"].strip("<>")
    assert url.startswith(BASE + "/reports/unsubscribe/")
    assert f"\nList-Unsubscribe: <{url}>\r\n".encode() in arrived.raw  # as sent: no encoded words
    return urlsplit(url).path


def assert_no_visitor_data(arrived: Arrived) -> None:
    parts = [p.get_content() for p in arrived.message.walk() if p.get_content_maintype() == "text"]
    for text in [arrived.raw.decode("utf-8", "replace"), *parts]:
        for secret in (DEVICE_ID, IP, VISITOR_EMAIL, str(VISITOR_ID_BASE)[:10]):
            assert secret not in text


@contextmanager
def fresh_site(store, site: str, zone: str = "UTC") -> Iterator[str]:
    add_site(store, site, timezone_name=zone)
    try:
        yield site
    finally:  # the store is the session's: later modules (test_dashboard_app) count its sites
        store.command("ALTER TABLE beacon.events DELETE WHERE site = {s:String}", {"s": site})
        remove_site(store, site)


def test_a_report_goes_once_per_period_across_restarts_and_stops_once_unsubscribed(store, inbox, moment):
    with fresh_site(store, "weekly.example") as site:
        add_subscription(store, site, "ceo@example.com", "week")
        week = datetime(2026, 11, 9, 10, tzinfo=UTC)
        insert(
            store,
            [pageview(site, 1, week, "/<script>alert(1)</script>", "news.example"), pageview(site, 2, week, "/")],
        )
        scheduler(store, inbox).run_round()
        (first,) = inbox.to("ceo@example.com")
        assert first.message["Subject"] == "weekly.example: your weekly report, week of 9 Nov – 15 Nov 2026"
        html = first.message.get_body(("html",)).get_content()
        assert "/&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
        assert_no_visitor_data(first)

        scheduler(store, inbox).run_round()  # the same round again, then a new scheduler: a restart
        restarted = scheduler(store, inbox)
        restarted.run_round()
        assert len(inbox.to("ceo@example.com")) == 1

        moment[0] = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)  # the week closed 30 minutes ago: visits still open
        restarted.run_round()
        assert len(inbox.to("ceo@example.com")) == 1
        moment[0] = datetime(2026, 11, 23, 1, 30, tzinfo=UTC)
        restarted.run_round()
        second = inbox.to("ceo@example.com")[1]
        assert "week of 16 Nov – 22 Nov 2026" in second.message["Subject"]

        status, _ = asgi(UnsubscribeApp(store), "POST", unsubscribe_path(second), b"List-Unsubscribe=One-Click")
        assert status == 200
        assert list_subscriptions(store, site) == []
        moment[0] = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
        restarted.run_round()
        assert len(inbox.to("ceo@example.com")) == 2


def test_a_monthly_report_covers_the_last_local_month(store, inbox, moment):
    with fresh_site(store, "monthly.example", "Pacific/Auckland") as site:
        add_subscription(store, site, "cfo@example.com", "month")
        moment[0] = datetime(2026, 10, 31, 12, 30, tzinfo=UTC)  # 1 November, 01:30 in Auckland
        scheduler(store, inbox).run_round()
        (arrived,) = inbox.to("cfo@example.com")
        assert arrived.message["Subject"] == "monthly.example: your monthly report, October 2026"


def test_a_spike_notice_goes_once_an_hour_to_each_recipient_still_subscribed(store, inbox, moment):
    with fresh_site(store, "spike.example") as site, fresh_site(store, "calm.example") as calm:
        set_spike_alert(store, site, 3, ["ops@example.com", "cto@example.com"])
        set_spike_alert(store, calm, 4, ["ops@example.com"])
        now = moment[0] = datetime(2026, 11, 18, 12, 30, tzinfo=UTC)
        insert(store, [pageview(site, 9, now - timedelta(minutes=75))])  # before the hour: not counted
        insert(store, [pageview(site, v, now - timedelta(minutes=5 * v)) for v in range(1, 5)])
        insert(store, [pageview(calm, v, now - timedelta(minutes=5 * v)) for v in range(1, 5)])  # 4: not above 4
        run = scheduler(store, inbox)
        run.run_round()
        (ops,), (cto,) = inbox.to("ops@example.com"), inbox.to("cto@example.com")
        assert ops.message["Subject"] == "spike.example: traffic spike, 4 visitors in the last hour"
        assert "above your threshold of 3" in ops.message.get_body(("plain",)).get_content()
        assert_no_visitor_data(ops)

        moment[0] = now + timedelta(minutes=20)
        run.run_round()
        assert len(inbox.all()) == 2

        app = UnsubscribeApp(store)
        status, page = asgi(app, "GET", unsubscribe_path(cto))  # a link preview: asks, changes nothing
        assert status == 200 and b'<form method="post">' in page
        assert asgi(app, "POST", unsubscribe_path(cto))[0] == 200

        later = moment[0] = now + timedelta(minutes=70)
        insert(store, [pageview(site, v, later - timedelta(minutes=v)) for v in range(10, 15)])
        run.run_round()
        assert len(inbox.to("ops@example.com")) == 2
        assert "5 visitors" in inbox.to("ops@example.com")[1].message["Subject"]
        assert len(inbox.to("cto@example.com")) == 1


def test_the_unsubscribe_route_refuses_what_is_not_a_link(store):
    app = UnsubscribeApp(store)
    assert asgi(app, "GET", "/reports/unsubscribe/not-a-token")[0] == 404
    assert asgi(app, "POST", "/reports/unsubscribe/" + "A" * 43)[0] == 404  # well formed, never issued
    assert asgi(app, "GET", "/reports/elsewhere")[0] == 404
    assert asgi(app, "PUT", "/reports/unsubscribe/" + "A" * 43)[0] == 405
    assert asgi(app, "POST", "/reports/unsubscribe/x", b"x" * 5000)[0] == 413


def test_the_privacy_audit_counts_recipients_apart_from_visitors(store):
    """Staff addresses chosen by the operator are no finding; a visitor's in props still is."""
    with fresh_site(store, "audit.example") as site:
        add_subscription(store, site, "staff@example.com", "month")
        set_spike_alert(store, site, 10, ["oncall@example.com"])
        new_unsubscribe_link(store, site, "staff@example.com", "month")
        insert(store, [pageview(site, 1, datetime(2026, 11, 2, tzinfo=UTC))])
        found = {(f.table, f.column, f.kind) for f in audit(store) if not f.consented}
        assert ("events", "props", "email") in found
        assert not {t for t, _, _ in found} & {"report_subscriptions", "spike_alerts", "unsubscribe_links"}


def test_periods_are_local_weeks_and_calendar_months():
    toronto = "America/Toronto"
    march = containing("month", date(2026, 3, 15), toronto)
    assert (march.first, march.last) == (date(2026, 3, 1), date(2026, 3, 31))
    assert (march.previous().first, march.previous().last) == (date(2026, 2, 1), date(2026, 2, 28))
    assert march.start == datetime(2026, 3, 1, 5, tzinfo=UTC) and march.end == datetime(2026, 4, 1, 4, tzinfo=UTC)
    # Sunday 8 March 2026, 23:30 in Toronto (the clocks went forward that morning): that week is not over.
    week = last_closed("week", datetime(2026, 3, 9, 3, 30, tzinfo=UTC), toronto)
    assert (week.first, week.last) == (date(2026, 2, 23), date(2026, 3, 1))
    assert last_closed("week", datetime(2026, 3, 9, 4, 30, tzinfo=UTC), toronto).first == date(2026, 3, 2)
    assert last_closed("month", datetime(2027, 1, 1, 4, tzinfo=UTC), toronto).label == "November 2026"
    assert last_closed("month", datetime(2027, 1, 1, 5, tzinfo=UTC), toronto).label == "December 2026"


def test_a_mail_the_server_does_not_take_is_counted_and_sent_at_the_next_round(store, inbox, moment, caplog):
    with fresh_site(store, "retry.example") as site:
        add_subscription(store, site, "cmo@example.com", "week")
        down = Settings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_security="none", mail_from=SENDER)
        run = scheduler(store, inbox)
        run.mailer = Mailer(down)  # nothing listens there
        failed_before = metrics.mail_failures.labels("week")._value.get()
        run.run_round()
        assert metrics.mail_failures.labels("week")._value.get() == failed_before + 1
        assert any(r.getMessage() == "mail not sent; tried again next round" for r in caplog.records)
        assert inbox.to("cmo@example.com") == []
        run.mailer = scheduler(store, inbox).mailer  # the server is back
        run.run_round()
        assert len(inbox.to("cmo@example.com")) == 1


def test_mail_settings_are_checked_and_the_password_is_not_shown():
    assert "hunter2" not in repr(Settings(smtp_password="hunter2"))
    for wrong in (
        {"smtp_host": "smtp.example.com"},  # no From address
        {"smtp_security": "ssl"},
        {"public_url": "stats.example.com"},
        {"report_interval": 0},
    ):
        with pytest.raises(ValueError):
            Settings(**wrong)
    assert Settings(port=9000).link_base == "http://127.0.0.1:9000"
    assert Settings(public_url="https://stats.example.com/").link_base == "https://stats.example.com"
