"""A real SMTP server for the tests (aiosmtpd, on a free port), keeping what arrives."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.server import free_port


@dataclass(frozen=True)
class Arrived:
    recipients: tuple[str, ...]  # the envelope's
    message: EmailMessage
    raw: bytes  # every byte the server received


class Inbox:
    def __init__(self) -> None:
        self._arrived: list[Arrived] = []
        self._lock = threading.Lock()
        self.port = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd's handler hook
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self._arrived.append(Arrived(tuple(envelope.rcpt_tos), message, envelope.content))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Arrived]:
        with self._lock:
            return [a for a in self._arrived if address in a.recipients]

    def all(self) -> list[Arrived]:
        with self._lock:
            return list(self._arrived)

    def wait_for(self, address: str, count: int = 1, timeout: float = 60) -> list[Arrived]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(found := self.to(address)) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{count} mail(s) to {address} did not arrive in {timeout}s: {len(self.to(address))}")


@contextmanager
def smtp_server() -> Iterator[Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.port = controller.port
    try:
        yield inbox
    finally:
        controller.stop()
