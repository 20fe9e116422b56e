"""The part of Supabase's API gateway (Kong) that supabase-py goes through, in front of a real
PostgREST: ``/rest/v1/<path>`` -> ``<postgrest>/<path>``, refused with Kong's 401 unless the
``apikey`` header holds one of the project's keys.

Why it exists: supabase-py always talks to ``{SUPABASE_URL}/rest/v1``, PostgREST serves at
``/``. And it is where a test puts what only the network in front of the server shows on
demand (``inject``): a gateway's 429 or 502, a stall, or an error body of PostgREST's own that
the real server cannot be made to answer at will (a deadlock, a statement timeout, a pool
outage). Every other answer is the real server's.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import orjson

log = logging.getLogger(__name__)

PREFIX = "/rest/v1"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
HOP_BY_HOP |= {"proxy-connection", "te", "trailer", "upgrade"}


@dataclass(frozen=True)
class Exchange:
    """One request as PostgREST saw it (path without the prefix) and the answer's size."""

    method: str
    path: str
    prefer: str
    status: int
    response_bytes: int


@dataclass(frozen=True)
class Fault:
    status: int
    body: bytes
    delay_s: float


class SupabaseGateway:
    def __init__(self, upstream_url: str, keys: Iterable[str]) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._keys = frozenset(keys)
        self.exchanges: list[Exchange] = []
        self._faults: deque[Fault] = deque()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._http.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def start(self) -> SupabaseGateway:
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="supabase-gateway",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def inject(
        self, status: int, body: object = None, *, times: int = 1, delay_s: float = 0.0
    ) -> None:
        """The next ``times`` requests answer ``status`` with ``body`` (JSON unless bytes)
        after ``delay_s``, without reaching PostgREST."""
        if body is None:
            body = {"code": None, "details": None, "hint": None, "message": f"injected {status}"}
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        for _ in range(times):
            self._faults.append(Fault(status, raw, delay_s))

    def clear_faults(self) -> None:
        self._faults.clear()

    def next_fault(self) -> Fault | None:
        try:
            return self._faults.popleft()
        except IndexError:
            return None

    def refusal(self, headers: Any) -> bytes | None:
        """Kong's key-auth: the body of its 401, or None when the apikey is the project's."""
        apikey = headers.get("apikey")
        if not apikey:
            return b'{"message":"No API key found in request"}'
        return None if apikey in self._keys else b'{"message":"Invalid API key"}'


def _handler_class(gateway: SupabaseGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as two writes
        upstream: http.client.HTTPConnection | None = None  # one per client connection

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, answer = self._answer(body)
            gateway.exchanges.append(
                Exchange(
                    self.command,
                    self.path.removeprefix(PREFIX),
                    self.headers.get("Prefer", ""),
                    status,
                    len(answer),
                )
            )
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer)

        def _answer(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            json = [("Content-Type", "application/json")]
            fault = gateway.next_fault()
            if fault is not None:
                time.sleep(min(fault.delay_s, 10.0))
                return fault.status, json, fault.body
            if not self.path.startswith(PREFIX + "/"):
                return 404, json, b'{"message":"no Route matched with those values"}'
            refused = gateway.refusal(self.headers)
            if refused is not None:
                return 401, json, refused
            try:
                return self._forward(body)
            except (OSError, http.client.HTTPException) as exc:
                log.debug("gateway: PostgREST did not answer: %r", exc)
                self._close_upstream()
                return 502, json, b'{"message":"An invalid response was received from upstream"}'

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            reused = self.upstream is not None
            try:
                response = self._send(body, headers)
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                if not reused:
                    raise
                # PostgREST closed the idle keep-alive connection (it does after a HEAD)
                # before this request reached it: once more on a new one, as Kong would.
                self._close_upstream()
                response = self._send(body, headers)
            answer = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            return response.status, kept, answer

        def _send(self, body: bytes, headers: dict[str, str]) -> http.client.HTTPResponse:
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection(*gateway.upstream, timeout=60)
            self.upstream.request(
                self.command, self.path.removeprefix(PREFIX), body=body, headers=headers
            )
            return self.upstream.getresponse()

        def _close_upstream(self) -> None:
            if self.upstream is not None:
                self.upstream.close()
                self.upstream = None

        def finish(self) -> None:
            super().finish()
            self._close_upstream()

        do_GET = do_HEAD = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        def log_message(self, format: str, *args: object) -> None:
            log.debug("gateway %s", format % args)

    return Handler
