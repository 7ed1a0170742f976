"""Sending a mail through the configured SMTP server (``--smtp-*``): one connection
per mail, as mails are few (a report per recipient and period, a notice an hour)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from common.settings import Settings

TIMEOUT_SECONDS = 30.0


class Mailer:
    def __init__(self, settings: Settings):
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.security = settings.smtp_security
        self.user = settings.smtp_user
        self._password = settings.smtp_password
        self.sender = settings.mail_from

    @property
    def configured(self) -> bool:
        return bool(self.host)

    def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the server; raises OSError / smtplib.SMTPException when
        it is not taken (the caller retries at its next round)."""
        with self._connect() as client:
            if self.security == "starttls":
                client.starttls(context=ssl.create_default_context())  # refused by the server: no mail in clear
            if self.user:
                client.login(self.user, self._password)
            client.send_message(message)

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=TIMEOUT_SECONDS, context=ssl.create_default_context())
        return smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_SECONDS)
