"""The operations routes every process serves: liveness, readiness, metrics.

GET /healthz   200 while the process runs
GET /readyz    200 when every named check passes, else 503; the body names each,
               and says why a failing one fails when its check can tell ("causes")
GET /metrics   Prometheus text format
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST

from common import metrics
from web.messages import Request, Response
from web.routing import Routes

ReadyCheck = Callable[[], bool]


def cause_of(check: ReadyCheck) -> str:
    """Why a check fails, when it is the method of an object that can say so with a
    ``cause()`` method (``storage.health.StoreWritable``: "disk full: …"); else "".
    Read from the method's object, so the wiring passes checks as it always did."""
    explain = getattr(getattr(check, "__self__", None), "cause", None)
    return str(explain()) if callable(explain) else ""


class Operations:
    def __init__(self, ready_checks: dict[str, ReadyCheck] | None = None):
        # Filled by the wiring: each part of the process adds what it depends on.
        self.ready_checks: dict[str, ReadyCheck] = dict(ready_checks or {})

    def routes(self) -> Routes:
        return {
            ("GET", "/healthz"): self.healthz,
            ("GET", "/readyz"): self.readyz,
            ("GET", "/metrics"): self.metrics,
        }

    async def healthz(self, request: Request) -> Response:
        return Response.json(200, {"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        checks = {name: check() for name, check in self.ready_checks.items()}
        ready = all(checks.values())
        body: dict = {"ready": ready, "checks": checks}
        causes = {name: cause for name, ok in checks.items() if not ok and (cause := cause_of(self.ready_checks[name]))}
        if causes:
            body["causes"] = causes
        return Response.json(200 if ready else 503, body)

    async def metrics(self, request: Request) -> Response:
        return Response(200, metrics.exposition(), [(b"content-type", CONTENT_TYPE_LATEST.encode())])
