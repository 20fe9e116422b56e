"""The simulator's HTTP server: one threaded server (on 127.0.0.1 unless told) that mounts route
tables from the REST (Polygon aggregates), Perplexity and control modules. Handlers are plain
functions ``Request -> Response`` so each can be tested without a socket."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import orjson

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body) if self.body else None


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: object, headers: dict[str, str] | None = None) -> Response:
        return cls(
            status, orjson.dumps(payload), {"Content-Type": "application/json", **(headers or {})}
        )


Handler = Callable[[Request], Response]
# (method, path prefix) -> handler; the longest matching prefix wins.
Routes = dict[tuple[str, str], Handler]


def match_route(routes: Routes, method: str, path: str) -> Handler | None:
    best: tuple[int, Handler] | None = None
    for (m, prefix), handler in routes.items():
        hit = m == method and (path == prefix or path.startswith(prefix.rstrip("/") + "/"))
        if hit and (best is None or len(prefix) > best[0]):
            best = (len(prefix), handler)
    return best[1] if best else None


class SimulatorHTTPServer:
    """``ThreadingHTTPServer`` on ``host`` (127.0.0.1 unless told) serving ``routes``;
    ``start()`` runs it in a thread."""

    def __init__(self, routes: Routes, port: int = 0, host: str = "127.0.0.1") -> None:
        self.routes = routes
        self.host = host
        server_routes = routes

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                handler = match_route(server_routes, self.command, parts.path)
                if handler is None:
                    response = Response.json(404, {"status": "NOT_FOUND", "error": "no route"})
                else:
                    try:
                        response = handler(request)
                    except Exception:
                        log.exception(
                            "simulator handler failed for %s %s", self.command, parts.path
                        )
                        response = Response.json(500, {"status": "ERROR", "error": "simulator bug"})
                try:
                    self.send_response(response.status)
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(response.body)))
                    self.end_headers()
                    self.wfile.write(response.body)
                except (BrokenPipeError, ConnectionResetError):
                    # A client that timed out or stopped hangs up, as at the vendor: its
                    # business, not a traceback on the console of whoever runs the simulator.
                    log.debug("client left before the answer to %s %s", self.command, parts.path)
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http %s", format % args)

        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SimulatorHTTPServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sim-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
