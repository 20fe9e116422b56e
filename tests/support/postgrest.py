"""A small PostgREST-compatible server on 127.0.0.1 for the Supabase REST store's tests.

It serves only what supabase-py (postgrest-py) sends for ``SupabaseStore``'s calls, under
Supabase's ``/rest/v1`` prefix, against a real PostgreSQL (one schema, from the URL's
search_path), building its SQL the way PostgREST does so rows really land and constraint
violations come back as PostgREST reports them:

- ``POST /rest/v1/<table>?columns=..&on_conflict=..`` with ``Prefer: return=minimal|
  representation, resolution=ignore-duplicates|merge-duplicates, count=exact``: one INSERT ...
  SELECT FROM json_populate_recordset(<body>) ... ON CONFLICT; 201, ``Content-Range: */<n>``.
- ``GET|HEAD /rest/v1/<table>?select=..&<col>=<op>.<value>&order=..&limit=..&offset=..``
  (ops eq, neq, gt, gte, lt, lte, is; ``not.`` prefix), ``Prefer: count=exact``; at most
  ``max_rows`` rows per response, like Supabase's default of 1000.
- ``POST /rest/v1/rpc/<function>`` with a JSON object of named arguments.
- ``DELETE /rest/v1/<table>?<filters>``: not a store call; the sandbox suite's cleanup, so that
  suite can be rehearsed against this server.
- Errors as PostgREST's documented JSON ``{code, details, hint, message}`` with its SQLSTATE ->
  HTTP status table (23505 -> 409, 23502/23514 -> 400, 42501 -> 401/403, 08* -> 503 ...); JWT
  problems as PGRST301 (401); a missing or unknown ``apikey`` as Supabase's gateway does (401).

Keys are HS256 JWTs signed with the server's secret; their ``role`` claim is the database role.
Roles are emulated (creating real roles would change the whole shared cluster): only
``allowed_roles`` may touch tables and functions, others get 42501 as PostgREST would.

``inject(status, ...)`` makes the next requests fail (or stall) for error-mapping tests.
Keys and errors: tests/support/postgrest_errors.py; the SQL: tests/support/postgrest_sql.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import psycopg

from tests.support.postgrest_errors import (
    PgrstError,
    make_jwt,
    permission_denied,
    pg_error,
    verify_jwt,
)
from tests.support.postgrest_sql import Planner, SchemaCache, Statement

__all__ = ["PostgrestServer", "make_jwt"]

log = logging.getLogger(__name__)

REST_PREFIX = "/rest/v1/"


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def prefer(self) -> dict[str, str]:
        items = (p.strip() for p in self.headers.get("prefer", "").split(","))
        return dict(p.split("=", 1) for p in items if "=" in p)


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, body: bytes | object, **headers: str) -> Response:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return cls(status, raw, {"Content-Type": "application/json; charset=utf-8", **headers})


@dataclass(frozen=True, slots=True)
class Fault:
    status: int
    body: object
    delay_s: float


class PostgrestServer:
    """PostgREST + Supabase gateway stand-in; ``url`` is what SUPABASE_URL would be."""

    def __init__(
        self,
        database_url: str,
        *,
        jwt_secret: str = "rrr-test-jwt-secret-at-least-32-characters",
        exposed_schema: str = "public",
        max_rows: int = 1000,
        allowed_roles: tuple[str, ...] = ("service_role",),
    ) -> None:
        self.database_url = database_url
        self.jwt_secret = jwt_secret
        self.exposed_schema = exposed_schema
        self.max_rows = max_rows
        self.allowed_roles = allowed_roles
        self.service_key = make_jwt(jwt_secret, "service_role")
        self.anon_key = make_jwt(jwt_secret, "anon")
        self.requests: list[tuple[str, str, str]] = []  # (method, path?query, Prefer)
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._idle: list[psycopg.Connection[Any]] = []
        self._all: list[psycopg.Connection[Any]] = []
        self._cache = SchemaCache()
        self._cache_loaded = False
        self._planner = Planner(self._cache, self.reload_schema, exposed_schema)
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._http.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def start(self) -> PostgrestServer:
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits for one poll
            name="postgrest",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
            self._idle.clear()

    def inject(
        self, status: int, body: object = None, *, times: int = 1, delay_s: float = 0.0
    ) -> None:
        """The next ``times`` requests answer ``status`` with ``body`` after ``delay_s``."""
        default = {"code": None, "details": None, "hint": None, "message": f"injected {status}"}
        for _ in range(times):
            self._faults.append(Fault(status, default if body is None else body, delay_s))

    def reload_schema(self) -> None:
        with self._connection() as conn:
            self._cache.load(conn)
        self._cache_loaded = True

    # -- connections ----------------------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
            conn.execute("SET TimeZone = 'UTC'")  # Supabase's default; timestamps as +00:00
            with self._lock:
                self._all.append(conn)
        try:
            yield conn
        finally:
            with self._lock:
                if not conn.closed and not conn.broken:
                    self._idle.append(conn)

    # -- dispatch -------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        prefer = request.headers.get("prefer", "")
        self.requests.append((request.method, self._path_with_query(request), prefer))
        try:
            fault = self._faults.popleft()
        except IndexError:
            pass
        else:
            time.sleep(min(fault.delay_s, 10.0))
            return Response.json(fault.status, fault.body)
        try:
            role = self._authenticate(request)
            return self._route(request, role)
        except PgrstError as exc:
            return Response.json(exc.status, exc.body)

    @staticmethod
    def _path_with_query(request: Request) -> str:
        query = "&".join(f"{k}={v}" for k, vs in request.query.items() for v in vs)
        return f"{request.path}?{query}" if query else request.path

    def _authenticate(self, request: Request) -> str:
        # Supabase's gateway checks the apikey header first, then PostgREST the bearer JWT.
        apikey = request.headers.get("apikey")
        if not apikey:
            raise PgrstError(
                401,
                None,
                "No API key found in request",
                hint="No `apikey` request header or url param was found.",
            )
        if verify_jwt(self.jwt_secret, apikey) is None:
            raise PgrstError(
                401,
                None,
                "Invalid API key",
                hint="Double check your Supabase `anon` or `service_role` API key.",
            )
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else apikey
        claims = verify_jwt(self.jwt_secret, token)
        if claims is None:
            raise PgrstError(401, "PGRST301", "JWSError JWSInvalidSignature")
        return str(claims.get("role", "anon"))

    def _route(self, request: Request, role: str) -> Response:
        if not request.path.startswith(REST_PREFIX):
            raise PgrstError(404, None, "no Route matched with those values")
        header = "content-profile" if request.method == "POST" else "accept-profile"
        profile = request.headers.get(header, self.exposed_schema)
        if profile != self.exposed_schema:
            raise PgrstError(
                406,
                "PGRST106",
                "Invalid schema: " + profile,
                hint=f"Only the following schemas are exposed: {self.exposed_schema}",
            )
        if not self._cache_loaded:
            self.reload_schema()
        target = request.path[len(REST_PREFIX) :]
        if target.startswith("rpc/") and request.method == "POST":
            return self._call(request, role, target[len("rpc/") :])
        self._planner.columns_of(target)  # an unknown table is 404 whoever asks
        if role not in self.allowed_roles:
            raise permission_denied(role, f"table {target}")
        if request.method in ("GET", "HEAD"):
            return self._read(request, role, target)
        if request.method == "POST":
            return self._insert(request, role, target)
        if request.method == "DELETE":  # pruning ingest_batches, and the sandbox cleanup
            return self._delete(request, role, target)
        raise PgrstError(405, "PGRST117", f"Unsupported HTTP method: {request.method}")

    def _run(self, role: str, statement: Statement) -> tuple[Any, str]:
        """Run one statement in a transaction of its own, as PostgREST does per request."""
        query, params = statement
        with self._connection() as conn:
            try:
                with conn.transaction():
                    row = conn.execute(query, params).fetchone()
            except psycopg.Error as exc:
                raise pg_error(exc, role) from exc
        assert row is not None
        return row[0], row[1]

    # -- POST /table ------------------------------------------------------------------------
    def _insert(self, request: Request, role: str, table: str) -> Response:
        try:
            payload = orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise PgrstError(400, "PGRST102", "Empty or invalid json", details=str(exc)) from exc
        rows = payload if isinstance(payload, list) else [payload]
        if "columns" in request.query:
            names = [c.strip().strip('"') for c in request.query["columns"][0].split(",")]
        else:
            names = list(rows[0]) if rows and isinstance(rows[0], dict) else []
        prefer = request.prefer()
        statement = self._planner.insert(
            table, names, request.query, prefer.get("resolution"), request.body.decode()
        )
        count, body = self._run(role, statement)
        headers = {"Content-Range": f"*/{count}" if prefer.get("count") == "exact" else "*/*"}
        if prefer.get("return") == "representation":
            return Response.json(201, body.encode(), **headers)
        return Response(201, b"", headers)

    # -- GET|HEAD /table, DELETE /table -----------------------------------------------------
    def _read(self, request: Request, role: str, table: str) -> Response:
        limit = min(int(request.query.get("limit", [self.max_rows])[0]), self.max_rows)
        offset = int(request.query.get("offset", ["0"])[0])
        returned, body = self._run(role, self._planner.read(table, request.query, limit, offset))
        total = "*"
        if request.prefer().get("count") == "exact":
            total = str(self._run(role, self._planner.count(table, request.query))[0])
        span = f"{offset}-{offset + returned - 1}" if returned else "*"
        headers = {"Content-Range": f"{span}/{total}"}
        if request.method == "HEAD":
            return Response(200, b"", headers)
        return Response.json(200, body.encode(), **headers)

    def _delete(self, request: Request, role: str, table: str) -> Response:
        self._run(role, self._planner.delete(table, request.query))
        return Response(204)

    # -- POST /rpc/function -----------------------------------------------------------------
    def _call(self, request: Request, role: str, name: str) -> Response:
        try:
            args = orjson.loads(request.body) if request.body else {}
        except orjson.JSONDecodeError as exc:
            raise PgrstError(400, "PGRST102", "Empty or invalid json", details=str(exc)) from exc
        if not isinstance(args, dict):
            raise PgrstError(400, "PGRST102", "Empty or invalid json")
        function = self._planner.function(name, set(args))
        if role not in self.allowed_roles:
            raise permission_denied(role, f"function {name}")
        _, body = self._run(role, self._planner.call(function, request.body.decode() or "{}"))
        if function.returns_void:
            return Response(204)
        return Response.json(200, body.encode())


def _handler_class(server: PostgrestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes: without this, Nagle + delayed ACK add ~40 ms
        # to every keep-alive response (the real PostgREST does not have that problem).
        disable_nagle_algorithm = True

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
            try:
                response = server.handle(request)
            except Exception:
                log.exception("postgrest stand-in failed on %s %s", self.command, parts.path)
                response = Response.json(500, {"code": "PGRSTX00", "message": "server bug"})
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_HEAD = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        def log_message(self, format: str, *args: object) -> None:
            log.debug("postgrest %s", format % args)

    return Handler
