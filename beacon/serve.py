"""``beacon serve``: the embedded default, in one process.

    HTTP collector ──▶ bounded queue ──▶ privacy filter ──▶ batched inserts ──▶ chDB
         (collector/)          (streams/embedded.py)        (storage/row_buffer.py)

This process owns the chDB data directory; other commands reach it through the
control socket. SIGTERM/SIGINT is a graceful shutdown (``web.server``):
it stops accepting connections, finishes in-flight requests, then the shutdown
hooks drain the queue into storage before the process exits.

With ``--workers N`` (N > 1) the HTTP side runs in N processes that filter and
ship clean rows to one that owns the store (``beacon.serve_workers``). With
``--kafka`` the collectors and workers run elsewhere and the process only stores
what they publish (``beacon.distributed.run_store``). ``beacon.cli`` picks which.
"""

from __future__ import annotations

from beacon import http, wiring
from common.settings import Settings


def run(settings: Settings) -> None:
    http.serve(wiring.embedded_app(settings), settings)
