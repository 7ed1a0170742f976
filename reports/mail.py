"""The mails: a report or a spike notice as ``multipart/alternative`` (plain text, then
HTML), with the headers mail clients need to unsubscribe in one click (RFC 8058:
``List-Unsubscribe`` and ``List-Unsubscribe-Post``). Every value from the store is
escaped in the HTML: page paths and source names come from the web."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, make_msgid, parseaddr
from html import escape

from reports.figures import Figures, Headline, Ranked, SpikeFigures

NO_CHANGE = "–"
# Headers are folded at RFC 5322's limit, not at 78 columns: at 78 the long unsubscribe
# URL would be written as RFC 2047 encoded words, which mail clients do not decode there.
POLICY = default.clone(max_line_length=998)


def report_message(figures: Figures, sender: str, recipient: str, unsubscribe_url: str, now: datetime) -> EmailMessage:
    period = figures.period
    noun = period.kind  # "week" | "month"
    subject = f"{figures.site}: your {_adjective(noun)} report, {period.label}"
    intro = f"{figures.site}, {period.label} (days in {period.zone}), against the {noun} before."
    sections = [
        ("Top sources", figures.sources),
        ("Top pages", figures.pages),
        *([("Goals", figures.goals)] if figures.goals else []),
    ]
    text = "\n".join(
        [intro, "", *(_headline_line(h) for h in figures.headline), *(_text_section(t, r) for t, r in sections)]
    )
    html = (
        f"<p>{escape(intro)}</p>"
        + _html_headline(figures.headline)
        + "".join(_html_section(title, rows) for title, rows in sections)
    )
    return _message(subject, text, html, sender, recipient, unsubscribe_url, now, f"the {_adjective(noun)} report")


def spike_message(
    figures: SpikeFigures, threshold: int, sender: str, recipient: str, unsubscribe_url: str, now: datetime
) -> EmailMessage:
    subject = f"{figures.site}: traffic spike, {figures.visitors} visitors in the last hour"
    intro = (
        f"{figures.site} had {figures.visitors} visitors between {figures.since:%H:%M} and {figures.until:%H:%M} UTC, "
        f"above your threshold of {threshold}."
    )
    sections = [("Top sources", figures.sources), ("Top pages", figures.pages)]
    text = "\n".join([intro, *(_text_section(t, r) for t, r in sections)])
    html = f"<p>{escape(intro)}</p>" + "".join(_html_section(title, rows) for title, rows in sections)
    return _message(subject, text, html, sender, recipient, unsubscribe_url, now, "spike notices")


def _message(
    subject: str, text: str, html: str, sender: str, recipient: str, unsubscribe_url: str, now: datetime, what: str
) -> EmailMessage:
    message = EmailMessage(policy=POLICY)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2])  # "Name <a@b>" too
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"  # no out-of-office replies (RFC 3834)
    footer = f"Aggregates only: these figures name no visitor. To stop {what}: {unsubscribe_url}"
    message.set_content(f"{text}\n\n{footer}\n")
    message.add_alternative(
        '<!doctype html><html><body style="font-family:sans-serif">'
        f'{html}<p style="color:#666;font-size:small">Aggregates only: these figures name no visitor. '
        f'<a href="{escape(unsubscribe_url)}">Unsubscribe from {escape(what)}</a>.</p></body></html>',
        subtype="html",
    )
    return message


def _adjective(kind: str) -> str:
    return {"week": "weekly", "month": "monthly"}[kind]


# --- values as shown -------------------------------------------------------------------


def shown_value(h: Headline) -> str:
    if h.value is None:
        return NO_CHANGE
    if h.metric == "bounce_rate":
        return f"{h.value}%"
    if h.metric == "visit_duration":
        minutes, seconds = divmod(int(h.value), 60)
        return f"{minutes}m {seconds:02d}s"
    return f"{h.value:,}"


def shown_change(h: Headline) -> str:
    if h.change is None:
        return NO_CHANGE
    unit = " points" if h.in_points else "%"
    return f"{h.change:+}{unit}"


def _headline_line(h: Headline) -> str:
    return f"{h.label:<16}{shown_value(h):>12}   {shown_change(h)}"


def _text_section(title: str, rows: Iterable[Ranked]) -> str:
    listed = [f"  {r.name:<40} {r.visitors:>8,}" for r in rows] or ["  (none)"]
    return "\n".join(["", f"{title} (visitors)", *listed])


def _html_headline(headline: Iterable[Headline]) -> str:
    cells = "".join(
        f'<tr><th align="left">{escape(h.label)}</th><td align="right">{escape(shown_value(h))}</td>'
        f'<td align="right">{escape(shown_change(h))}</td></tr>'
        for h in headline
    )
    return f'<table cellpadding="4">{cells}</table>'


def _html_section(title: str, rows: Iterable[Ranked]) -> str:
    listed = (
        "".join(f'<tr><td>{escape(r.name)}</td><td align="right">{r.visitors:,}</td></tr>' for r in rows)
        or "<tr><td>(none)</td><td></td></tr>"
    )
    return (
        f'<table cellpadding="4"><tr><th align="left">{escape(title)}</th><th align="right">Visitors</th></tr>'
        f"{listed}</table>"
    )
