"""One mail, made and sent: a fresh unsubscribe link stored, the message handed to the
SMTP server. Used by the scheduler and by ``beacon reports send``."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from reports.figures import SpikeFigures, report_figures
from reports.mail import report_message, spike_message
from reports.periods import ReportPeriod
from reports.smtp import Mailer
from storage.clickhouse import Store
from storage.reports import SPIKE, new_unsubscribe_link

UNSUBSCRIBE_PATH = "/reports/unsubscribe/"


def send_report(
    store: Store, mailer: Mailer, link_base: str, site: str, email: str, period: ReportPeriod, now: datetime
) -> EmailMessage:
    figures = report_figures(store, site, period)
    url = _unsubscribe_url(store, link_base, site, email, period.kind)
    message = report_message(figures, mailer.sender, email, url, now)
    mailer.send(message)
    return message


def send_spike(
    store: Store, mailer: Mailer, link_base: str, figures: SpikeFigures, email: str, threshold: int, now: datetime
) -> EmailMessage:
    url = _unsubscribe_url(store, link_base, figures.site, email, SPIKE)
    message = spike_message(figures, threshold, mailer.sender, email, url, now)
    mailer.send(message)
    return message


def _unsubscribe_url(store: Store, link_base: str, site: str, email: str, kind: str) -> str:
    return link_base + UNSUBSCRIBE_PATH + new_unsubscribe_link(store, site, email, kind)
