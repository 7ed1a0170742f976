"""A small web site on loopback for the browser tests: the pages a site owner would
write, embedding the tracker from a collector on another origin.

It also serves Plausible's npm tracker from node_modules (as a site would bundle it)
and ``/flaky``, a beacon endpoint that refuses page views with 503 + Retry-After, to
watch the tracker's retry.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

from tests.server import free_port

# A page of the site calls the tracker before it has loaded, through the queue stub
# the README gives (in a file of its own, so that strict-CSP pages can use it too).
QUEUE_STUB = """window.beacon = window.beacon || function () { (beacon.q = beacon.q || []).push(arguments) };
beacon('event', 'Queued', {props: {early: true}});
"""


@dataclass
class Posted:
    at: float  # time.monotonic() of arrival
    body: dict


@dataclass
class DemoSite:
    collector: str  # the collector's URL, e.g. http://127.0.0.1:8123
    plausible_tracker: Path  # plausible.js of @plausible-analytics/tracker, as npm installed it
    port: int = field(default_factory=free_port)
    flaky_posts: list[Posted] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def snippet(self, site: str, *attributes: str) -> str:
        extra = "".join(f" {a}" for a in attributes)
        return f'<script defer data-site="{site}" data-allow-local{extra} src="{self.collector}/beacon.js"></script>'

    def page(self, title: str, head: str, body: str = "") -> bytes:
        return (
            f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title>{head}</head>"
            f"<body><h1>{title}</h1>{body}</body></html>"
        ).encode()

    def routes(self) -> dict[str, tuple[bytes, bytes, dict[str, str]]]:
        """path → (content type, body, extra headers)."""
        html, js = b"text/html; charset=utf-8", b"text/javascript"
        shop = self.snippet("shop.test", "data-outbound", "data-downloads", 'data-exclude="/app/admin/*"')
        csp = (
            f"default-src 'self'; script-src 'self' {self.collector}; connect-src 'self' {self.collector}; "
            "style-src 'self'; img-src 'self'"
        )
        plausible_init = f"""import {{init, track}} from '/vendor/plausible.js';
init({{domain: 'plausible.test', endpoint: '{self.collector}/api/event', captureOnLocalhost: true, logging: false}});
window.trackSignup = () => track('Signup', {{props: {{plan: 'pro', seats: 3}}}});
"""
        return {
            "/": (
                html,
                self.page("Home", '<script src="/queue.js"></script>' + shop, '<a id="to-app" href="/app">the app</a>'),
                {},
            ),
            "/app": (
                html,
                self.page(
                    "App",
                    shop,
                    (
                        '<a id="outbound" href="https://www.wikipedia.org/wiki/Privacy?session=s3cr3t#top">outbound</a> '
                        '<a id="download" href="https://cdn.example.org/files/report.pdf?token=s3cr3t">report</a>'
                    ),
                ),
                {},
            ),
            "/welcome": (html, self.page("Welcome", shop), {}),
            # Without data-allow-local: on 127.0.0.1, in an automated browser, nothing is sent.
            "/local": (
                html,
                self.page("Local", f'<script defer data-site="shop.test" src="{self.collector}/beacon.js"></script>'),
                {},
            ),
            "/queue.js": (js, QUEUE_STUB.encode(), {}),
            "/csp": (
                html,
                self.page("Strict CSP", '<script src="/queue.js"></script>' + self.snippet("csp.test")),
                {"Content-Security-Policy": csp},
            ),
            # The control: the same policy and an inline script, which it must block and report.
            "/csp-control": (
                html,
                self.page("CSP control", "<script>window.inline = 1</script>"),
                {"Content-Security-Policy": csp},
            ),
            "/retry": (
                html,
                self.page(
                    "Retry",
                    f'<script defer data-site="retry.test" data-allow-local '
                    f'data-api="{self.origin}/flaky" src="{self.collector}/beacon.js"></script>',
                ),
                {},
            ),
            "/plausible/": (
                html,
                self.page("Plausible", '<script type="module" src="/plausible-init.js"></script>'),
                {},
            ),
            "/plausible-init.js": (js, plausible_init.encode(), {}),
            "/vendor/plausible.js": (js, self.plausible_tracker.read_bytes(), {}),
        }

    def start(self) -> DemoSite:
        routes = self.routes()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.startswith("/app/"):  # the SPA's routes, when loaded directly
                    path = "/app"
                if path not in routes:
                    self._answer(404, b"", b"text/plain", {})
                    return
                content_type, body, headers = routes[path]
                self._answer(200, body, content_type, headers)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/flaky":
                    self._answer(404, b"", b"text/plain", {})
                    return
                beacon = orjson.loads(body)
                site.flaky_posts.append(Posted(time.monotonic(), beacon))
                if beacon.get("type", "pageview") == "pageview":
                    self._answer(503, b'{"error": "overloaded"}', b"application/json", {"Retry-After": "1"})
                else:
                    self._answer(202, b'{"accepted": 1}', b"application/json", {})

            def _answer(self, status: int, body: bytes, content_type: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                if status != 204:
                    self.send_header("Content-Type", content_type.decode())
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if status != 204:
                    self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, name="test-site", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
