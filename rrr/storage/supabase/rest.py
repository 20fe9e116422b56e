"""The Supabase REST store's client: supabase-py (PostgREST) with SUPABASE_URL and
SUPABASE_SERVICE_KEY, one request at a time, every foreign error mapped to the storage error
tree (rrr/storage/supabase_errors.py). Every part of the store (rrr/storage/supabase/) sends
its requests through ``_execute``.

Errors: 401/403 -> permanent, naming SUPABASE_SERVICE_KEY; 404 -> permanent, schema not
installed; 408/429/5xx, timeouts and connection failures -> transient; 409 -> handled (a dedupe
insert retries row by row; from a function call it is transient, the call having rolled back
whole). A function or table missing from PostgREST's schema cache (404 PGRST202/PGRST205) is
first retried for up to ``schema_wait_s``: right after a migration PostgREST answers that until
its cache reloads.

The service key lives only in the HTTP client's headers: never in repr, messages or logs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

import httpx
from postgrest import APIError, CountMethod, ReturnMethod

# supabase-py; ruff sorts it with our own modules because of the repo's supabase/ folder.
from supabase import ClientOptions, SupabaseException, create_client

from rrr.config import Secret
from rrr.errors import PermanentStorageError, TransientStorageError
from rrr.storage.supabase_errors import RestConflict, SchemaCacheMiss, rest_error

log = logging.getLogger(__name__)

# Rows per write request, chosen with bench/supabase.py. On loopback rows/s levels off from
# ~1,000 rows per call (~70-85k rows/s); over a 20 ms round trip a call costs the round trip
# plus ~13 us a row, so 1,000-row calls spend ~60 % of their time waiting and 5,000-row calls
# ~25 %, while 10,000 gained little more. A 5,000-trade body is ~0.5 MB, far below any limit.
MAX_ROWS_PER_REQUEST = 5000
PAGE_ROWS = 1000  # Supabase's default "max rows" per response
DEFAULT_TIMEOUT_S = 30.0
# How long a PGRST202/PGRST205 is taken for a schema cache still reloading. PostgREST reloads
# ~0.1 s after a migration's NOTIFY (measured: 80 ms on loopback); a few seconds cover a busy
# server. The wait only ever costs time when the schema is really missing.
SCHEMA_WAIT_S = 5.0
SCHEMA_RETRY_FIRST_S = 0.05
SCHEMA_RETRY_MAX_S = 0.5

# (postgrest-py filter method, column, value), e.g. ("gte", "event_time", "2024-...Z")
Filter = tuple[str, str, Any]


class _Executable(Protocol):
    def execute(self) -> Any: ...


class _LastStatus(threading.local):
    """The HTTP status of this thread's last response: postgrest-py's APIError drops it, and a
    gateway's 401/429/502 may carry no PostgREST code at all."""

    status: int | None = None


class SupabaseRest:
    dialect = "supabase"

    def __init__(
        self,
        url: str,
        service_key: Secret | str,
        *,
        schema: str = "public",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_rows_per_request: int = MAX_ROWS_PER_REQUEST,
        schema_wait_s: float = SCHEMA_WAIT_S,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.max_rows_per_request = max_rows_per_request
        self.schema_wait_s = schema_wait_s
        self._timeout_s = timeout_s
        self._last = _LastStatus()
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)), follow_redirects=True
        )
        self._http.event_hooks["response"].append(self._remember_status)
        options = ClientOptions(
            schema=schema,
            httpx_client=self._http,
            # Retries belong to the caller (Celery, by is_transient), not to sleeps in here.
            postgrest_client_retry=False,
            auto_refresh_token=False,
            persist_session=False,
        )
        key = service_key.reveal() if isinstance(service_key, Secret) else service_key
        try:
            self._rest = create_client(self.url, key, options).postgrest
        except SupabaseException as exc:
            raise PermanentStorageError(
                f"SUPABASE_URL={self.url!r} is not usable: {exc.message}"
            ) from None

    def __repr__(self) -> str:
        return f"SupabaseStore(url={self.url!r})"

    def _remember_status(self, response: httpx.Response) -> None:
        self._last.status = response.status_code

    def _execute(self, what: str, builder: _Executable) -> Any:
        """Send one request, mapping every foreign error to the storage error tree; a schema
        cache miss is sent again until ``schema_wait_s`` has passed (PostgREST answered it
        without running anything, so sending again is safe)."""
        deadline = time.monotonic() + self.schema_wait_s
        pause = SCHEMA_RETRY_FIRST_S
        while True:
            try:
                return self._send(what, builder)
            except SchemaCacheMiss as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SchemaCacheMiss(
                        f"{exc} (still missing after {self.schema_wait_s:g} s, longer than"
                        " PostgREST takes to reload its schema cache after a migration)"
                    ) from exc.__cause__
                log.info("Supabase REST %s: not in PostgREST's schema cache yet; retrying", what)
                time.sleep(min(pause, left))  # the last try at the deadline
                pause = min(pause * 2, SCHEMA_RETRY_MAX_S)

    def _send(self, what: str, builder: _Executable) -> Any:
        self._last.status = None
        try:
            return builder.execute()
        except APIError as exc:
            raise rest_error(self._last.status, exc.code, exc.message or "", what) from exc
        except httpx.TimeoutException as exc:
            raise TransientStorageError(
                f"Supabase REST {what}: no answer within {self._timeout_s:g} s"
                f" ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientStorageError(
                f"Supabase REST {what}: cannot reach {self.url}: {type(exc).__name__}: {exc}"
            ) from exc
        except (TypeError, ValueError) as exc:  # a value with no JSON form
            raise PermanentStorageError(f"Supabase REST {what}: cannot encode: {exc}") from exc

    def _rpc(self, what: str, function: str, args: dict[str, Any]) -> Any:
        return self._execute(what, self._rest.rpc(function, args)).data

    def _insert_new(self, table: str, rows: list[dict[str, Any]], on_conflict: str) -> int:
        """Insert in chunks, skipping rows whose ``on_conflict`` key exists; how many were new."""
        step = self.max_rows_per_request
        return sum(
            self._insert_chunk(table, rows[i : i + step], on_conflict)
            for i in range(0, len(rows), step)
        )

    def _insert_chunk(self, table: str, rows: list[dict[str, Any]], on_conflict: str) -> int:
        builder = self._rest.from_(table).upsert(
            rows,
            on_conflict=on_conflict,
            ignore_duplicates=True,
            returning=ReturnMethod.minimal,
            count=CountMethod.exact,
        )
        try:
            return int(self._execute(f"insert into {table}", builder).count or 0)
        except RestConflict:
            # 409: a unique key other than on_conflict holds one of these rows, and PostgREST
            # refuses the whole request. Row by row the others still land; held ones are dupes.
            if len(rows) == 1:
                return 0
            return sum(self._insert_chunk(table, [row], on_conflict) for row in rows)

    def _query(self, table: str, select: str, filters: Sequence[Filter]) -> Any:
        query = self._rest.from_(table).select(select)
        for method, column, value in filters:
            query = getattr(query, method)(column, value)
        return query

    def _select_all(
        self, table: str, select: str, order: Sequence[str], filters: Sequence[Filter] = ()
    ) -> list[dict[str, Any]]:
        """Every matching row, a page at a time (Supabase caps a response at its max rows).
        Pages by offset over an order that is unique, and stops at the first empty page, so a
        server cap below PAGE_ROWS cannot cut the result short."""
        rows: list[dict[str, Any]] = []
        while True:
            query = self._query(table, select, filters)
            for column in order:
                query = query.order(column)
            page = self._execute(
                f"read {table}", query.range(len(rows), len(rows) + PAGE_ROWS - 1)
            ).data
            if not page:
                return rows
            rows += page

    def close(self) -> None:
        if self._owns_http:
            self._http.close()
