"""Supabase REST store: supabase-py (PostgREST) with SUPABASE_URL and SUPABASE_SERVICE_KEY, for
projects reached over HTTPS only. With the project's Postgres URL in DATABASE_URL, the
PostgreSQL store is faster (COPY, no JSON, no HTTP); see README "Using Supabase".

Writes
- A batch of trades, quotes or bars is ONE call of ``rrr_apply_batch(batch jsonb)``
  (rrr/storage/sql/postgres/0002_supabase.sql): the function records the batch id in
  ``ingest_batches`` and upserts the rows and dead letters in one transaction, so a batch is
  never half-applied and a redelivered batch is a no-op. Separate REST upserts could not give
  that: PostgREST runs each request in a transaction of its own. A batch of more than
  ``max_rows_per_request`` rows goes as parts ``<id>#<k>/<n>``, each exactly-once by its id.
- Events and sentiments are bulk upserts with ``on_conflict`` on the natural key and
  ``Prefer: resolution=ignore-duplicates, return=minimal, count=exact`` (the count is how many
  rows were new); dead letters plain inserts with ``return=minimal``.
- Backfill chunk writes are functions too: a claim is one atomic UPDATE ... attempts + 1.
Prices stay exact end to end: see rrr/storage/supabase_wire.py.

Errors map to the storage tree here (rrr/storage/supabase_errors.py): 401/403 -> permanent,
naming SUPABASE_SERVICE_KEY; 404 -> permanent, schema not installed; 408/429/5xx, timeouts and
connection failures -> transient; 409 -> handled (a dedupe insert retries row by row; from a
function call it is transient, the call having rolled back whole). A function or table missing
from PostgREST's schema cache (404 PGRST202/PGRST205) is first retried for up to
``schema_wait_s``: right after a migration PostgREST answers that until its cache reloads.

The service key lives only in the HTTP client's headers: never in repr, messages or logs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

import httpx
import pandas as pd
from postgrest import APIError, CountMethod, ReturnMethod

# supabase-py; ruff sorts it with our own modules because of the repo's supabase/ folder.
from supabase import ClientOptions, SupabaseException, create_client

from rrr.backfill_chunks import Chunk, ChunkState, PlanProgress
from rrr.clock import now_ms  # the receiving clock of the row checks
from rrr.config import Secret
from rrr.errors import PermanentStorageError, TransientStorageError
from rrr.models import Batch, Rejected, Sentiment, SystemEvent
from rrr.storage.base import (
    BAR_COLUMNS,
    QUOTE_COLUMNS,
    TRADE_COLUMNS,
    BatchResult,
    check_table,
    frame,
    migrations,
)
from rrr.storage.dead_letters import LetterRow, Outcome, letter_row, store_each
from rrr.storage.rows import split_storable
from rrr.storage.supabase_errors import SCHEMA_HELP, RestConflict, SchemaCacheMiss, rest_error
from rrr.storage.supabase_wire import (
    BAR_SELECT,
    CHUNK_SELECT,
    EVENT_SELECT,
    QUOTE_SELECT,
    SENTIMENT_SELECT,
    TRADE_SELECT,
    batch_payloads,
    chunk_state,
    dead_letter_row,
    event_row,
    iso_from_ms,
    plan_progress,
    records,
    sentiment_row,
)

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


def _window(ticker: str, start_ms: int, end_ms: int) -> list[Filter]:
    return [
        ("eq", "ticker", ticker),
        ("gte", "event_time", iso_from_ms(start_ms)),
        ("lt", "event_time", iso_from_ms(end_ms)),
    ]


class _Executable(Protocol):
    def execute(self) -> Any: ...


class _LastStatus(threading.local):
    """The HTTP status of this thread's last response: postgrest-py's APIError drops it, and a
    gateway's 401/429/502 may carry no PostgREST code at all."""

    status: int | None = None


class SupabaseStore:
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

    # -- schema ---------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """REST cannot run DDL: check that the schema is installed and current, and say how to
        install it when not. Returns [] (nothing applied) when it is up to date."""
        query = self._rest.from_("schema_migrations").select("version")
        have = {row["version"] for row in self._execute("schema check", query).data}
        missing = [version for version, _ in migrations("postgres") if version not in have]
        if missing:
            raise PermanentStorageError(f"migrations {', '.join(missing)} missing. {SCHEMA_HELP}")
        return []

    # -- writes ---------------------------------------------------------------------------
    def apply_batch(self, batch: Batch, *, version_ms: int | None = None) -> BatchResult:
        good, bad = split_storable(batch.kind, batch.rows, now_ms())
        applied, stored, rejected = False, 0, 0
        parts = batch_payloads(batch, good, bad, self.max_rows_per_request, version_ms)
        for payload in parts:
            result = self._rpc(
                f"apply batch {payload['id']}", "rrr_apply_batch", {"batch": payload}
            )
            applied |= bool(result["applied"])
            stored += int(result["stored"])
            rejected += int(result["rejected"])
        return BatchResult(batch.id, applied=applied, stored=stored, rejected=rejected)

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

    def add_dead_letters(self, rejected: list[Rejected]) -> int:
        step = self.max_rows_per_request
        new, refused = 0, []
        for part in (rejected[i : i + step] for i in range(0, len(rejected), step)):
            rows = [dead_letter_row(letter_row(r)) for r in part]
            try:
                new += self._insert_chunk("dead_letters", rows, "dedupe_key")
                continue
            except PermanentStorageError as exc:
                if not self._is_letter_refusal(exc):
                    raise
            # PostgreSQL refused one of them (the request was one transaction, so none is
            # stored): each alone, in its other forms if need be (rrr.storage.dead_letters).
            outcome = store_each(part, self._insert_letter, self._is_letter_refusal)
            new += outcome.new
            refused += outcome.refused
        return Outcome(new, refused).checked("Supabase", len(rejected))

    def _insert_letter(self, row: LetterRow) -> int:
        return self._insert_chunk("dead_letters", [dead_letter_row(row)], "dedupe_key")

    def _is_letter_refusal(self, exc: BaseException) -> bool:
        """The last request was refused for its data: PostgREST answers 400 with the SQLSTATE
        of a data or constraint error, a gateway 413 for a body too large. Not for the key
        (401/403), nor the request or the schema (PostgREST's own PGRSTxxx codes), which no
        other form of the letter can fix."""
        return (
            isinstance(exc, PermanentStorageError)
            and self._last.status in (400, 413)
            and "PGRST" not in str(exc)
        )

    def add_events(self, events: list[SystemEvent]) -> int:
        rows = [event_row(e) for e in events]
        return self._insert_new("system_events", rows, on_conflict="dedupe_key")

    def add_sentiments(self, rows: list[Sentiment]) -> int:
        payload = [sentiment_row(s) for s in rows]
        return self._insert_new("market_sentiment", payload, "asset,source,interval_start")

    # -- reads ----------------------------------------------------------------------------
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

    def read_trades(self, ticker: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        rows = self._select_all(
            "crypto_trades",
            TRADE_SELECT,
            ("event_time", "exchange_id", "trade_id"),
            _window(ticker, start_ms, end_ms),
        )
        return frame(records(rows, TRADE_SELECT), TRADE_COLUMNS, "ts_ms")

    def read_quotes(self, ticker: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        # The whole primary key after the time, so pages cannot shift between requests.
        order = ("event_time", "exchange_id", "bid_price", "bid_size", "ask_price", "ask_size")
        rows = self._select_all(
            "crypto_quotes", QUOTE_SELECT, order, _window(ticker, start_ms, end_ms)
        )
        return frame(records(rows, QUOTE_SELECT), QUOTE_COLUMNS, "ts_ms")

    def read_bars(
        self, ticker: str, start_ms: int, end_ms: int, timeframe: str = "1m"
    ) -> pd.DataFrame:
        filters = [("eq", "timeframe", timeframe), *_window(ticker, start_ms, end_ms)]
        rows = self._select_all("crypto_aggregates", BAR_SELECT, ("event_time",), filters)
        return frame(records(rows, BAR_SELECT), BAR_COLUMNS, "start_ms")

    def read_events(self, component: str | None = None, since_ms: int = 0) -> pd.DataFrame:
        filters: list[Filter] = [("gte", "event_time", iso_from_ms(since_ms))]
        if component is not None:
            filters.append(("eq", "component", component))
        rows = self._select_all("system_events", EVENT_SELECT, ("id",), filters)
        columns = ["ts_ms", "component", "event_type", "severity", "message", "details"]
        return frame(records(rows, EVENT_SELECT), [*columns, "dedupe_key"], "ts_ms")

    def read_sentiments(self, asset: str | None = None) -> pd.DataFrame:
        filters: list[Filter] = [] if asset is None else [("eq", "asset", asset)]
        order = ("interval_start", "id")
        rows = self._select_all("market_sentiment", SENTIMENT_SELECT, order, filters)
        columns = ["asset", "source", "label", "score", "confidence", "text", "metadata", "ts_ms"]
        return frame(records(rows, SENTIMENT_SELECT), [*columns, "interval_start_ms"], "ts_ms")

    def latest_event_times(self) -> dict[tuple[str, str], int]:
        rows = self._rpc("latest event times", "rrr_latest_event_times", {})
        return {(r["ticker"], r["kind"]): int(r["newest_ms"]) for r in rows}

    def prune_ingest_batches(self, older_than_ms: int) -> int | None:
        cutoff = iso_from_ms(older_than_ms)
        # return=minimal: postgrest-py's default (representation) would send every deleted
        # row back (~100 bytes each); count=exact has PostgREST say how many in Content-Range.
        query = (
            self._rest.from_("ingest_batches")
            .delete(count=CountMethod.exact, returning=ReturnMethod.minimal)
            .lt("applied_at", cutoff)
        )
        return int(self._execute("prune ingest_batches", query).count or 0)

    def count_rows(self, table: str) -> int:
        query = self._rest.from_(check_table(table)).select("*", count=CountMethod.exact, head=True)
        return int(self._execute(f"count {table}", query).count or 0)

    def count_dead_letters(self, kind: str) -> int:
        query = self._rest.from_("dead_letters").select("*", count=CountMethod.exact, head=True)
        return int(self._execute("count dead letters", query.eq("kind", kind)).count or 0)

    # -- backfill chunks (rrr/backfill/chunks.py) ------------------------------------------
    def upsert_chunks(self, chunks: list[Chunk]) -> int:
        step = self.max_rows_per_request
        return sum(
            int(
                self._rpc("upsert chunks", "rrr_upsert_chunks", {"chunks": [c.row() for c in part]})
            )
            for part in (chunks[i : i + step] for i in range(0, len(chunks), step))
        )

    def get_chunk(self, chunk_id: str) -> ChunkState | None:
        query = self._query("backfill_chunks", CHUNK_SELECT, [("eq", "chunk_id", chunk_id)])
        rows = self._execute("read backfill_chunks", query.limit(1)).data
        return chunk_state(rows[0]) if rows else None

    def claim_chunk(self, chunk_id: str, now_ms: int, lease_ms: int) -> int | None:
        args = {"target_chunk": chunk_id, "now_ms": now_ms, "lease_ms": lease_ms}
        attempt = self._rpc(f"claim chunk {chunk_id}", "rrr_claim_chunk", args)
        return None if attempt is None else int(attempt)

    def touch_chunk(self, chunk_id: str, bars_stored: int, now_ms: int) -> None:
        args = {"target_chunk": chunk_id, "bars": bars_stored, "now_ms": now_ms}
        self._rpc(f"touch chunk {chunk_id}", "rrr_touch_chunk", args)

    def finish_chunk(self, chunk_id: str, bars_stored: int, now_ms: int) -> None:
        args = {"target_chunk": chunk_id, "bars": bars_stored, "now_ms": now_ms}
        self._rpc(f"finish chunk {chunk_id}", "rrr_finish_chunk", args)

    def fail_chunk(self, chunk_id: str, error: str, now_ms: int, *, retry: bool = False) -> None:
        args = {"target_chunk": chunk_id, "error_text": error, "now_ms": now_ms, "retry": retry}
        self._rpc(f"fail chunk {chunk_id}", "rrr_fail_chunk", args)

    def chunk_progress(self, plan_id: str) -> PlanProgress:
        select = "status,bars_stored,started_at,last_error,updated_at"
        filters = [("eq", "plan_id", plan_id)]
        return plan_progress(
            plan_id, self._select_all("backfill_chunks", select, ("chunk_id",), filters)
        )

    def chunks_not_done(self, plan_id: str) -> list[str]:
        filters = [("eq", "plan_id", plan_id), ("neq", "status", "done")]
        order = ("ticker", "start_time", "chunk_id")
        return [
            r["chunk_id"] for r in self._select_all("backfill_chunks", "chunk_id", order, filters)
        ]

    def close(self) -> None:
        if self._owns_http:
            self._http.close()
