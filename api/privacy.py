"""The privacy officer's data-subject requests over HTTP: the same export, erasure and
objection as ``beacon privacy``, with ``storage.privacy`` doing the work.

    POST /api/v1/privacy/export[?format=json|jsonl|csv]   the subject's rows (+ manifest)
    POST /api/v1/privacy/erase                             delete them; objection recorded
    POST /api/v1/privacy/optout                            objection recorded

Body: ``{"device_id": …}`` or ``{"mac": …}``. The raw ID is pseudonymised at once and
goes no further than this module; ``beacon.privacy_log`` records each request with
the token's id as the actor. Store calls block (chDB, or the control socket of the
process that owns the store), so they run in the default executor.
"""

from __future__ import annotations

import asyncio
import io
import logging
import zipfile
from collections.abc import Callable
from functools import partial
from urllib.parse import parse_qsl

import orjson

from api.app import Route
from schemas.validation import Rejection, parse_json_body, validate_optout
from storage import privacy
from storage.clickhouse import Store
from storage.tokens import Token
from streams.steps import subject_pseudonyms
from web.messages import Request, Response

log = logging.getLogger("beacon.api.privacy")

PREFIX = "/api/v1/privacy/"
MAX_BODY = 4096
EXPORT_TYPES = {"jsonl": b"application/x-ndjson", "csv": b"text/csv; charset=utf-8"}

# Applies an objection beyond beacon.optouts: this process's filter at once, or the
# Kafka requests topic. Called in an executor.
ObjectionHook = Callable[[list[str]], None]


class PrivacyAPI:
    def __init__(self, store: Store, id_key: bytes, on_objection: ObjectionHook | None = None):
        self.store = store
        self.id_key = id_key
        self.on_objection = on_objection

    def routes(self) -> list[Route]:
        return [
            Route("POST", PREFIX + action, f"privacy_{action}", "privacy", handler, every_site=True)
            for action, handler in (("export", self.export), ("erase", self.erase), ("optout", self.optout))
        ]

    async def export(self, request: Request, token: Token) -> Response:
        fmt = dict(parse_qsl(request.scope["query_string"].decode("latin-1"))).get("format", "json")
        if fmt not in ("json", *privacy.EXPORT_FORMATS):
            return Response.json(400, {"error": "format must be json, jsonl or csv", "field": "format"})
        subject = await self._subject(request)
        if isinstance(subject, Response):
            return subject
        formats = ("jsonl",) if fmt == "json" else (fmt,)
        done = await _blocking(privacy.export, self.store, subject, _actor(token), formats)
        _log("export", token, done.rows)
        if fmt == "json":  # built off the event loop: an export can be large
            return Response(200, await _blocking(_json_export, done), [(b"content-type", b"application/json")])
        return _export_file(done, fmt)

    async def erase(self, request: Request, token: Token) -> Response:
        subject = await self._subject(request)
        if isinstance(subject, Response):
            return subject
        # The objection first: events arriving during the erasure are dropped, not stored.
        await _blocking(self._object, subject, _actor(token))
        done = await _blocking(privacy.erase, self.store, subject, _actor(token))
        _log("erase", token, done.rows)
        return Response.json(200, {"erased_rows": done.rows, "opted_out": True})

    async def optout(self, request: Request, token: Token) -> Response:
        subject = await self._subject(request)
        if isinstance(subject, Response):
            return subject
        await _blocking(self._object, subject, _actor(token))
        _log("optout", token, 0)
        return Response.json(200, {"opted_out": True})

    def _object(self, subject: str, actor: str) -> None:
        # Recorded (and audited) before it takes effect: an objection that works is
        # always in privacy_log; if applying it fails, the 500 asks for a retry.
        privacy.record_optout(self.store, subject, actor)
        if self.on_objection:
            self.on_objection([subject])

    async def _subject(self, request: Request) -> str | Response:
        """The pseudonym of the subject the body names, or the 4xx to answer."""
        content_type = request.header(b"content-type").split(b";", 1)[0].strip().lower()
        if content_type != b"application/json":
            return Response.json(415, {"error": "Content-Type must be application/json"})
        body = await request.body(MAX_BODY)
        if body is None:
            return Response.json(413, {"error": f"body exceeds {MAX_BODY} bytes"})
        parsed = parse_json_body(body)
        ids = parsed if isinstance(parsed, Rejection) else validate_optout(parsed)
        if isinstance(ids, Rejection):
            return Response.json(400, ids.body())
        if all(ids):
            return Response.json(400, {"error": "name one subject: device_id or mac, not both", "field": "mac"})
        return subject_pseudonyms(*ids, self.id_key)[0]


async def _blocking(function, *args):
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args))


def _actor(token: Token) -> str:
    return f"api token {token.id}"


def _log(action: str, token: Token, rows: int) -> None:
    log.info("privacy request", extra={"action": action, "token": token.id, "rows": rows})


def _json_export(done: privacy.Export) -> bytes:
    rows = {
        name.removesuffix(".jsonl"): [orjson.loads(line) for line in content.splitlines()]
        for name, content in done.files.items()
    }
    return orjson.dumps({"manifest": done.manifest(), "rows": rows})


def _export_file(done: privacy.Export, fmt: str) -> Response:
    """The events file; with the subject's dead letters as well, a zip of both files
    and the manifest."""
    files = {
        name: content
        for name, content in done.files.items()
        if name.startswith("events.") or done.table_rows.get(name.split(".", 1)[0])
    }
    if len(files) == 1:
        ((name, content),) = files.items()
        content_type = EXPORT_TYPES[fmt]
    else:
        name, content_type = "export.zip", b"application/zip"
        content = _zipped(files | {"manifest.json": orjson.dumps(done.manifest(), option=orjson.OPT_INDENT_2)})
    headers = [
        (b"content-type", content_type),
        (b"content-disposition", f'attachment; filename="{name}"'.encode()),
        (b"x-beacon-rows", str(done.rows).encode()),
    ]
    return Response(200, content, headers)


def _zipped(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()
