"""The mail that carries an account's one-time link (``beacon users invite`` and
``users reset``), sent when an SMTP server is configured. It names the role and the
sites the account is for, never a figure."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from html import escape

from reports.mail import POLICY


def invitation_message(sender: str, recipient: str, link: str, intro: str, now: datetime) -> EmailMessage:
    """``intro``: why the mail comes, in a sentence (the role and sites of a new account, or a reset)."""
    message = EmailMessage(policy=POLICY)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = "Your beacon analytics account"
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"
    text = (
        f"{intro}\n\n"
        f"Set your password here (the link works once, for 7 days):\n{link}\n\n"
        "If you did not expect this mail, ignore it: without the link nobody can use the account.\n"
    )
    message.set_content(text)
    message.add_alternative(
        '<!doctype html><html><body style="font-family:sans-serif">'
        f"<p>{escape(intro)}</p>"
        f'<p><a href="{escape(link)}">Set your password</a> (the link works once, for 7 days).</p>'
        '<p style="color:#666;font-size:small">If you did not expect this mail, ignore it: '
        "without the link nobody can use the account.</p></body></html>",
        subtype="html",
    )
    return message
