"""The mail scheduler inside ``beacon serve``: every ``--report-interval`` it sends the
reports that are due and checks the spike thresholds.

- A report is due once its week or month has closed in the site's time zone, and an
  hour more has passed (the period's last visits have closed, after 30 minutes without
  an event, and the visit builder has rolled them up). It goes once per recipient and
  period: the sent log (``beacon.report_sends``) is read before and written after each
  mail, so a restart sends nothing twice; only a crash between the SMTP server's
  acceptance and that write could. A new subscriber gets the last closed period's
  report at the next round.
- A spike notice goes when the site's visitors of the last hour are above its
  threshold, at most once an hour per recipient.
- A mail that cannot be made or sent is logged and counted (``beacon_mail_failures``)
  and tried again at the next round.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

from common import clock, metrics
from reports.figures import SPIKE_WINDOW, spike_figures
from reports.periods import last_closed
from reports.sending import send_report, send_spike
from reports.smtp import Mailer
from storage.clickhouse import Store
from storage.reports import (
    SPIKE,
    SpikeAlert,
    Subscription,
    last_sent,
    list_spike_alerts,
    list_subscriptions,
    record_sent,
    was_sent,
)
from storage.sites import list_sites

log = logging.getLogger("beacon.reports")

SETTLE = timedelta(hours=1)


class ReportScheduler:
    def __init__(self, store: Store, mailer: Mailer, link_base: str, interval: float):
        self.store = store
        self.mailer = mailer
        self.link_base = link_base
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mail-scheduler", daemon=True)

    def start(self) -> None:
        if not self.mailer.configured:
            log.info("no --smtp-host: no reports or spike notices are sent")
            return
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)  # an SMTP exchange under way times out within 30 s

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_round()
            except Exception:  # e.g. the store is away: the next round tries again
                log.exception("mail round failed")
            self._stop.wait(self.interval)

    def run_round(self) -> None:
        now = datetime.fromtimestamp(clock.now(), timezone.utc)
        zones = {site.domain: site.timezone for site in list_sites(self.store)}
        for subscription in list_subscriptions(self.store):
            if subscription.site in zones and not self._stop.is_set():
                self._report(subscription, zones[subscription.site], now)
        for alert in list_spike_alerts(self.store):
            if alert.site in zones and not self._stop.is_set():
                self._spike(alert, now)
        metrics.mail_rounds.inc()

    def _report(self, subscription: Subscription, zone: str, now: datetime) -> None:
        site, email, kind = subscription.site, subscription.email, subscription.period
        period = last_closed(kind, now - SETTLE, zone)
        if was_sent(self.store, site, email, kind, period.start):
            return
        try:
            send_report(self.store, self.mailer, self.link_base, site, email, period, now)
        except Exception:
            _failed(kind, site, email)
            return
        record_sent(self.store, site, email, kind, period.start, now)
        metrics.mails_sent.labels(kind).inc()
        log.info("report sent", extra={"site": site, "kind": kind, "period": period.first.isoformat()})

    def _spike(self, alert: SpikeAlert, now: datetime) -> None:
        figures = spike_figures(self.store, alert.site, now)
        if figures.visitors <= alert.threshold:
            return
        for email in alert.recipients:
            last = last_sent(self.store, alert.site, email, SPIKE)
            if last is not None and now - last < SPIKE_WINDOW:
                continue
            try:
                send_spike(self.store, self.mailer, self.link_base, figures, email, alert.threshold, now)
            except Exception:
                _failed(SPIKE, alert.site, email)
                continue
            record_sent(self.store, alert.site, email, SPIKE, now.replace(minute=0, second=0, microsecond=0), now)
            metrics.mails_sent.labels(SPIKE).inc()
            log.info("spike notice sent", extra={"site": alert.site, "visitors": figures.visitors})


def _failed(kind: str, site: str, email: str) -> None:
    metrics.mail_failures.labels(kind).inc()
    # The address goes to the log, which operators read, never to a metric label.
    log.exception("mail not sent; tried again next round", extra={"site": site, "kind": kind, "recipient": email})
