"""Who gets which e-mail, and what was sent (``beacon reports``, ``beacon spikes``;
the mail itself is made and sent by ``reports/``).

- A subscription: a recipient of a site's weekly or monthly report.
- A spike alert: a site's threshold of visitors in the last hour, and its recipients.
- The sent log: a report goes once per recipient and period, a spike notice at most
  once an hour, whatever restarts happen in between.
- Unsubscribe links: every mail carries its own random token; only its SHA-256 is
  stored, with what it unsubscribes from.

Recipients are plain e-mail addresses of the site's staff, never visitors'.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from storage.clickhouse import DATABASE, Store

PERIODS = ("week", "month")
SPIKE = "spike"
MAX_EMAIL = 254
# One address, as an operator types it: local@domain, no spaces, no display name.
_EMAIL = re.compile(r"[^@\s<>,;\"()\[\]\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}\.?)*[A-Za-z0-9]")
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{43}")


@dataclass(frozen=True)
class Subscription:
    site: str
    email: str
    period: str  # week | month


@dataclass(frozen=True)
class SpikeAlert:
    site: str
    threshold: int
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class UnsubscribeLink:
    site: str
    email: str
    kind: str  # week | month | spike


def normalise_email(text: str) -> str:
    """An address as stored: trimmed, its domain in lower case; ValueError for anything
    that is not one plain address (a header injection, a list, a display name)."""
    value = text.strip()
    if len(value) > MAX_EMAIL or not _EMAIL.fullmatch(value):
        raise ValueError(f"not an e-mail address: {value[:80]!r}")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


# --- subscriptions ---------------------------------------------------------------------


def add_subscription(store: Store, site: str, email: str, period: str) -> Subscription:
    if period not in PERIODS:
        raise ValueError(f"a report is weekly or monthly, got {period!r}")
    subscription = Subscription(site, normalise_email(email), period)
    _write_subscription(store, subscription, removed=0)
    return subscription


def remove_subscription(store: Store, site: str, email: str, period: str) -> bool:
    """False when there was no such subscription."""
    wanted = Subscription(site, normalise_email(email), period)
    if wanted not in list_subscriptions(store, site):
        return False
    _write_subscription(store, wanted, removed=1)
    return True


def list_subscriptions(store: Store, site: str | None = None) -> list[Subscription]:
    rows = store.rows(
        f"SELECT site, email, period FROM {DATABASE}.report_subscriptions FINAL "
        "WHERE removed = 0 AND ({s:String} = '' OR site = {s:String}) ORDER BY site, email, period",
        {"s": site or ""},
    )
    return [Subscription(*row) for row in rows]


def _write_subscription(store: Store, subscription: Subscription, removed: int) -> None:
    store.command(
        f"INSERT INTO {DATABASE}.report_subscriptions (site, email, period, removed) "
        "VALUES ({s:String}, {e:String}, {p:String}, {r:UInt8})",
        {"s": subscription.site, "e": subscription.email, "p": subscription.period, "r": removed},
    )


# --- spike alerts ----------------------------------------------------------------------


def set_spike_alert(store: Store, site: str, threshold: int, recipients: list[str]) -> SpikeAlert:
    if threshold < 1:
        raise ValueError("the threshold is a number of visitors, 1 or more")
    emails = tuple(dict.fromkeys(normalise_email(e) for e in recipients))
    if not emails:
        raise ValueError("name at least one recipient (--email)")
    alert = SpikeAlert(site, threshold, emails)
    _write_alert(store, alert, removed=0)
    return alert


def remove_spike_alert(store: Store, site: str) -> bool:
    known = find_spike_alert(store, site)
    if known is None:
        return False
    _write_alert(store, known, removed=1)
    return True


def list_spike_alerts(store: Store) -> list[SpikeAlert]:
    rows = store.rows(
        f"SELECT site, threshold, recipients FROM {DATABASE}.spike_alerts FINAL WHERE removed = 0 ORDER BY site"
    )
    return [SpikeAlert(site, int(threshold), tuple(recipients)) for site, threshold, recipients in rows]


def find_spike_alert(store: Store, site: str) -> SpikeAlert | None:
    return next((a for a in list_spike_alerts(store) if a.site == site), None)


def _write_alert(store: Store, alert: SpikeAlert, removed: int) -> None:
    store.command(
        f"INSERT INTO {DATABASE}.spike_alerts (site, threshold, recipients, removed) "
        "VALUES ({s:String}, {t:UInt32}, {e:Array(String)}, {r:UInt8})",
        {"s": alert.site, "t": alert.threshold, "e": list(alert.recipients), "r": removed},
    )


# --- the sent log ----------------------------------------------------------------------


def was_sent(store: Store, site: str, email: str, kind: str, period_start: datetime) -> bool:
    rows = store.rows(
        f"SELECT count() FROM {DATABASE}.report_sends WHERE site = {{s:String}} AND email = {{e:String}} "
        "AND kind = {k:String} AND period_start = toDateTime({p:UInt32}, 'UTC')",
        {"s": site, "e": email, "k": kind, "p": int(period_start.timestamp())},
    )
    return bool(rows[0][0])


def last_sent(store: Store, site: str, email: str, kind: str) -> datetime | None:
    """When the last mail of ``kind`` went to ``email`` for ``site``; None if never."""
    rows = store.rows(
        f"SELECT count(), toUnixTimestamp64Milli(max(sent_at)) FROM {DATABASE}.report_sends "
        "WHERE site = {s:String} AND email = {e:String} AND kind = {k:String}",
        {"s": site, "e": email, "k": kind},
    )
    count, millis = rows[0]
    return datetime.fromtimestamp(int(millis) / 1000, timezone.utc) if count else None


def record_sent(store: Store, site: str, email: str, kind: str, period_start: datetime, sent_at: datetime) -> None:
    store.command(
        f"INSERT INTO {DATABASE}.report_sends (site, email, kind, period_start, sent_at) VALUES "
        "({s:String}, {e:String}, {k:String}, toDateTime({p:UInt32}, 'UTC'), "
        "fromUnixTimestamp64Milli({t:Int64}, 'UTC'))",
        {"s": site, "e": email, "k": kind, "p": int(period_start.timestamp()), "t": int(sent_at.timestamp() * 1000)},
    )


# --- unsubscribe links -----------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_unsubscribe_link(store: Store, site: str, email: str, kind: str) -> str:
    """A fresh token for one mail; the store keeps its hash only."""
    token = secrets.token_urlsafe(32)
    store.command(
        f"INSERT INTO {DATABASE}.unsubscribe_links (token_hash, site, email, kind) "
        "VALUES ({h:String}, {s:String}, {e:String}, {k:String})",
        {"h": hash_token(token), "s": site, "e": email, "k": kind},
    )
    return token


def find_unsubscribe_link(store: Store, token: str) -> UnsubscribeLink | None:
    if not _TOKEN.fullmatch(token):
        return None
    rows = store.rows(
        f"SELECT site, email, kind FROM {DATABASE}.unsubscribe_links FINAL WHERE token_hash = {{h:String}}",
        {"h": hash_token(token)},
    )
    return UnsubscribeLink(*rows[0]) if rows else None


def unsubscribe(store: Store, token: str) -> UnsubscribeLink | None:
    """Stop what the link's mail came from (that report, or the site's spike notices to
    that address); None for an unknown or expired token. Doing it twice is harmless."""
    link = find_unsubscribe_link(store, token)
    if link is None:
        return None
    if link.kind == SPIKE:
        alert = find_spike_alert(store, link.site)
        if alert is not None and link.email in alert.recipients:
            kept = tuple(e for e in alert.recipients if e != link.email)
            _write_alert(store, SpikeAlert(alert.site, alert.threshold, kept), removed=0 if kept else 1)
    else:
        remove_subscription(store, link.site, link.email, link.kind)
    return link
