"""PostgreSQL store (psycopg 3), also for Supabase's own Postgres URL.

A batch is one transaction: record its id in ``ingest_batches`` (a replay stops there), COPY
its rows as text into a temp stage table, then ``INSERT ... SELECT ... ON CONFLICT`` into the
real table. Text COPY carries each price as the shortest decimal that round-trips (the digits
of ``repr(float)``), the vendor's exact decimal; a binary float8 would be rounded to 15 digits
on its way into NUMERIC. Bars are written a column at a time (``copy_text``).

Pooler-safe (Supabase's transaction pooler): no prepared statements, and every transaction
declares the temp table it needs (``CREATE TEMP TABLE IF NOT EXISTS ... ON COMMIT DELETE
ROWS``), so nothing depends on which server connection the previous transaction used.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import orjson
import pandas as pd
import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from rrr.backfill_chunks import Chunk, ChunkState, PlanProgress
from rrr.clock import now_ms  # the receiving clock of the row checks
from rrr.config import redact_url
from rrr.errors import PermanentStorageError, StorageError, TransientStorageError
from rrr.models import Bar, Batch, Rejected, Sentiment, SystemEvent
from rrr.storage.base import (
    BAR_COLUMNS,
    KIND_TABLES,
    QUOTE_COLUMNS,
    TRADE_COLUMNS,
    BatchResult,
    check_table,
    frame,
    migrations,
)
from rrr.storage.copy_text import bar_copy_text
from rrr.storage.copy_text import escape as _text
from rrr.storage.dead_letters import LetterRow, Outcome, letter_row, store_each
from rrr.storage.postgres_connect import DEFAULT_STATEMENT_TIMEOUT_MS, connect_options
from rrr.storage.rows import bar_columns, bar_key_range, columns_of, split_storable

log = logging.getLogger(__name__)

TS = "('epoch'::timestamptz + {} * interval '1 millisecond')"
MS = "(extract(epoch from {}) * 1000)::bigint"

# The batch's version of its bars (see rrr.storage.base, "Bar versions"): the caller's
# version_ms, else the time of this write.
BAR_VERSION = f"coalesce({TS.format('%s::bigint')}, now())"
INSERT_BARS = (
    "INSERT INTO crypto_aggregates (ticker, timeframe, open, high, low, close, volume, vwap,"
    " trade_count, event_time, end_time, source, version_time) SELECT ticker, timeframe, open,"
    f" high, low, close, volume, vwap, trade_count, {TS.format('start_ms')},"
    f" {TS.format('end_ms')}, source, {BAR_VERSION} FROM stage_bars"
    " WHERE EXISTS (SELECT 1 FROM new_batch)"
)

STAGES = {
    "trades": (
        "CREATE TEMP TABLE IF NOT EXISTS stage_trades (ticker text, exchange_id int,"
        " trade_id text, price numeric, size numeric, conditions smallint[], ts_ms bigint,"
        " received_ms bigint, source text) ON COMMIT DELETE ROWS",
        "COPY stage_trades FROM STDIN",
        "INSERT INTO crypto_trades (ticker, exchange_id, trade_id, price, size, conditions,"
        f" event_time, received_time, source) SELECT ticker, exchange_id, trade_id, price, size,"
        f" conditions, {TS.format('ts_ms')}, {TS.format('received_ms')}, source"
        " FROM stage_trades WHERE EXISTS (SELECT 1 FROM new_batch) ON CONFLICT DO NOTHING",
    ),
    "quotes": (
        "CREATE TEMP TABLE IF NOT EXISTS stage_quotes (ticker text, exchange_id int,"
        " bid_price numeric, bid_size numeric, ask_price numeric, ask_size numeric,"
        " ts_ms bigint, received_ms bigint, source text) ON COMMIT DELETE ROWS",
        "COPY stage_quotes FROM STDIN",
        "INSERT INTO crypto_quotes (ticker, exchange_id, bid_price, bid_size, ask_price,"
        " ask_size, event_time, received_time, source) SELECT ticker, exchange_id, bid_price,"
        f" bid_size, ask_price, ask_size, {TS.format('ts_ms')}, {TS.format('received_ms')},"
        " source FROM stage_quotes WHERE EXISTS (SELECT 1 FROM new_batch) ON CONFLICT DO NOTHING",
    ),
    "bars": (
        "CREATE TEMP TABLE IF NOT EXISTS stage_bars (ticker text, timeframe text,"
        " open numeric, high numeric, low numeric, close numeric, volume numeric,"
        " vwap numeric, trade_count int, start_ms bigint, end_ms bigint, source text)"
        " ON COMMIT DELETE ROWS",
        "COPY stage_bars FROM STDIN",
        # A stored bar is replaced only by a version at least as new; a row written before
        # versions existed stands at its updated_at, the time it was written.
        INSERT_BARS + " ON CONFLICT (ticker, timeframe, event_time) DO UPDATE SET"
        " open = excluded.open, high = excluded.high, low = excluded.low,"
        " close = excluded.close, volume = excluded.volume, vwap = excluded.vwap,"
        " trade_count = excluded.trade_count, end_time = excluded.end_time,"
        " source = excluded.source, version_time = excluded.version_time, updated_at = now()"
        " WHERE excluded.version_time"
        " >= coalesce(crypto_aggregates.version_time, crypto_aggregates.updated_at)",
    ),
}

# One statement records the batch id and inserts its rows only if the id was new: a replay (or
# a concurrent duplicate, which waits on the id's unique index) inserts nothing.
APPLY_BATCH = (
    "WITH new_batch AS (INSERT INTO ingest_batches (batch_id, kind, row_count)"
    " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1),"
    " inserted AS ({insert} RETURNING 1)"
    " SELECT (SELECT count(*) FROM new_batch), (SELECT count(*) FROM inserted)"
)

# Bars none of whose keys is stored yet (a backfill page, the usual case) go in with a plain
# INSERT: ON CONFLICT's speculative insertion costs PostgreSQL ~40% more per row (measured:
# 160 vs 95 ms for 48,960 bars). "None stored" is one index probe over the batch's time range;
# a writer that stores one of the keys after that probe makes the INSERT fail with a unique
# violation, and the batch is then applied again the usual way (see apply_batch).
APPLY_NEW_BARS = APPLY_BATCH.format(insert=INSERT_BARS)
ANY_BAR_IN_RANGE = (
    "SELECT EXISTS (SELECT 1 FROM crypto_aggregates WHERE ticker = %s AND timeframe = %s"
    f" AND event_time >= {TS.format('%s')} AND event_time <= {TS.format('%s')})"
)

PRUNE_INGEST_BATCHES = f"DELETE FROM ingest_batches WHERE applied_at < {TS.format('%s')}"

_TRANSIENT_PG = (
    psycopg.OperationalError,
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.LockNotAvailable,
    pg_errors.QueryCanceled,
    pg_errors.AdminShutdown,
    pg_errors.CannotConnectNow,
    pg_errors.TooManyConnections,
)


# Limits the data can never fit (class 54: a value or statement too large, too many columns or
# arguments). psycopg files them under OperationalError, which is otherwise transient.
_PERMANENT_PG = (
    psycopg.IntegrityError,
    psycopg.DataError,
    psycopg.ProgrammingError,
    pg_errors.ProgramLimitExceeded,
    pg_errors.StatementTooComplex,
    pg_errors.TooManyColumns,
    pg_errors.TooManyArguments,
)
# What PostgreSQL refuses for good in a dead letter (text it cannot hold, too big, a
# constraint); rrr.storage.dead_letters then tries the letter's other forms. UnicodeError:
# psycopg cannot even encode a lone surrogate.
_LETTER_REFUSALS = (
    psycopg.IntegrityError,
    psycopg.DataError,
    pg_errors.ProgramLimitExceeded,
    UnicodeError,
)


def map_pg_error(exc: psycopg.Error) -> StorageError:
    # Refusals of the data are permanent; check them first because some are OperationalError
    # subclasses. The rest of OperationalError is transient: a lost connection, a statement
    # timeout (QueryCanceled), and class 53 (a full disk, out of memory, too many connections:
    # retried with backoff until the server has room again, never dead-lettered).
    if isinstance(exc, _PERMANENT_PG):
        return PermanentStorageError(f"PostgreSQL refused the write: {exc}")
    if isinstance(exc, (*_TRANSIENT_PG, psycopg.InterfaceError)):
        return TransientStorageError(f"PostgreSQL unavailable or busy: {exc}")
    return PermanentStorageError(f"PostgreSQL error: {exc}")


# Refusals that retrying cannot fix: a wrong password, user or database name.
_REFUSED_AT_CONNECT = (
    "password authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "authentication failed",
)


def connect_error(url: str, exc: psycopg.Error) -> StorageError:
    """A failed connect: permanent when the server refused who we are, else transient (the
    server is down, restarting or unreachable, and may come back)."""
    text = str(exc)
    where = redact_url(url)
    if any(refusal in text for refusal in _REFUSED_AT_CONNECT):
        return PermanentStorageError(
            f"PostgreSQL refused the connection to {where}: {text.strip()}. Check DATABASE_URL."
        )
    return TransientStorageError(f"cannot connect to PostgreSQL at {where}: {text.strip()}")


def _opt(value: Any) -> str:
    return "\\N" if value is None else repr(value)


def _trade_id(value: Any) -> str:
    s = str(value)
    if "\\" in s or "\t" in s or "\n" in s or "\r" in s:
        return _text(s)
    return s


_ARRAY_LITERALS: dict[tuple[int, ...], str] = {}


def _int_array(values: Any) -> str:
    """COPY text for smallint[]; trade conditions take a handful of values, so cache them."""
    key = tuple(values) if values else ()
    literal = _ARRAY_LITERALS.get(key)
    if literal is None:
        literal = "{" + ",".join(str(int(v)) for v in key) + "}"
        if len(_ARRAY_LITERALS) < 1024:
            _ARRAY_LITERALS[key] = literal
    return literal


def _trade_lines(rows: list[Any]) -> str:
    return "".join(
        [
            f"{_text(r[0])}\t{r[1]}\t{_trade_id(r[2])}\t{r[3]!r}\t{r[4]!r}\t{_int_array(r[5])}\t"
            f"{r[6]}\t{_opt(r[7])}\t{_text(r[8])}\n"
            for r in rows
        ]
    )


def _quote_lines(rows: list[Any]) -> str:
    return "".join(
        [
            f"{_text(r[0])}\t{r[1]}\t{r[2]!r}\t{r[3]!r}\t{r[4]!r}\t{r[5]!r}\t{r[6]}\t"
            f"{_opt(r[7])}\t{_text(r[8])}\n"
            for r in rows
        ]
    )


COPY_LINES: dict[str, Callable[[list[Any]], str]] = {
    "trades": _trade_lines,
    "quotes": _quote_lines,
}


class PostgresStore:
    dialect = "postgres"

    def __init__(
        self, url: str, *, statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS
    ) -> None:
        """``statement_timeout_ms``: a little under the task soft time limit (the default
        is for the default limit); see rrr/storage/postgres_connect.py for every timeout."""
        self.url = url
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        try:
            self._conninfo = make_conninfo(url, **connect_options(url, statement_timeout_ms))
        except psycopg.Error:  # its text may quote the URL, password included: not shown
            raise PermanentStorageError(
                f"DATABASE_URL {redact_url(url)} is not a PostgreSQL URL libpq can read; see"
                " https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING"
            ) from None
        self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        left = self._conn
        if (
            left is not None
            and not left.closed
            and not left.broken
            and left.info.transaction_status != TransactionStatus.IDLE
        ):
            # Between our transactions a healthy connection is idle. Anything else was left
            # mid-statement by an interruption (Celery's soft time limit raised inside a
            # wait): its answer is still due, and every later statement on it would fail with
            # "another command is already in progress", for good. A fresh one replaces it.
            log.warning("PostgreSQL connection left mid-statement; opening a fresh one")
            left.close()
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(self._conninfo, prepare_threshold=None)
            except psycopg.Error as exc:
                raise connect_error(self.url, exc) from exc
        return self._conn

    def _run(self, work: Callable[[psycopg.Cursor[Any]], Any]) -> Any:
        """Run ``work`` in one transaction, mapping psycopg errors to the rrr error tree."""
        with self._lock:
            try:
                conn = self._connect()
                with conn.transaction(), conn.cursor() as cur:
                    return work(cur)
            except psycopg.Error as exc:
                raise map_pg_error(exc) from exc
            except UnicodeError as exc:  # a lone surrogate: no database text can hold it
                raise PermanentStorageError(f"PostgreSQL cannot hold this text: {exc}") from exc

    # -- schema ---------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        def work(cur: psycopg.Cursor[Any]) -> list[str]:
            # Transaction-scoped lock: safe behind a transaction pooler, released at commit.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('rrr.migrate'))")
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT version FROM schema_migrations")
            done = {r[0] for r in cur.fetchall()}
            applied = []
            for version, sql in migrations("postgres"):
                if version not in done:
                    cur.execute(sql.encode())
                    cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                    applied.append(version)
            return applied

        return list(self._run(work))

    # -- writes ---------------------------------------------------------------------------
    def apply_batch(self, batch: Batch, *, version_ms: int | None = None) -> BatchResult:
        payload, bad, key_range = _copy_payload(batch)
        create_stage, copy_sql, insert_sql = STAGES[batch.kind]
        apply_sql = APPLY_BATCH.format(insert=insert_sql)
        params: tuple[Any, ...] = (batch.id, batch.kind, len(batch.rows))
        if batch.kind == "bars":
            params += (version_ms,)

        def work(cur: psycopg.Cursor[Any], probe: tuple[str, str, int, int] | None) -> BatchResult:
            # Four round trips: stage table, COPY, the CTE above, COMMIT (in _run); five for
            # bars of one ticker (the probe for stored keys).
            cur.execute(create_stage)
            if payload:
                with cur.copy(copy_sql) as copy:
                    copy.write(payload)
            new_keys = False
            if probe is not None:
                cur.execute(ANY_BAR_IN_RANGE, probe)
                found = cur.fetchone()
                new_keys = found is not None and not found[0]
            cur.execute(APPLY_NEW_BARS if new_keys else apply_sql, params)
            row = cur.fetchone()
            applied, stored = (bool(row[0]), int(row[1])) if row else (False, 0)
            if applied and bad:
                # A letter refused in every form: the batch would drop it, so the caller sets
                # the batch aside whole.
                _insert_dead_letters(cur, bad).checked("PostgreSQL", len(bad))
            return BatchResult(batch.id, applied, stored, len(bad) if applied else 0)

        try:
            result: BatchResult = self._run(lambda cur: work(cur, key_range))
        except PermanentStorageError as exc:
            if key_range is None or not isinstance(exc.__cause__, pg_errors.UniqueViolation):
                raise
            # A bar stored by another writer between the probe and the INSERT: nothing of this
            # transaction stayed, so apply the batch again, upserting.
            log.info("batch %s: a key was stored meanwhile; applying it again", batch.id)
            result = self._run(lambda cur: work(cur, None))
        return result

    def add_dead_letters(self, rejected: list[Rejected]) -> int:
        if not rejected:
            return 0
        outcome: Outcome = self._run(lambda cur: _insert_dead_letters(cur, rejected))
        return outcome.checked("PostgreSQL", len(rejected))

    def add_events(self, events: list[SystemEvent]) -> int:
        if not events:
            return 0

        def work(cur: psycopg.Cursor[Any]) -> int:
            new = 0
            for e in events:
                cur.execute(
                    "INSERT INTO system_events (event_time, component, event_type, severity,"
                    f" message, details, dedupe_key) VALUES ({TS.format('%s')}, %s, %s, %s, %s,"
                    " %s, %s) ON CONFLICT (dedupe_key) DO NOTHING",
                    (
                        e.ts_ms,
                        e.component,
                        e.event_type,
                        e.severity,
                        e.message,
                        Jsonb(e.details, dumps=_json),
                        e.dedupe_key,
                    ),
                )
                new += cur.rowcount
            return new

        return int(self._run(work))

    def add_sentiments(self, rows: list[Sentiment]) -> int:
        if not rows:
            return 0

        def work(cur: psycopg.Cursor[Any]) -> int:
            new = 0
            for s in rows:
                cur.execute(
                    "INSERT INTO market_sentiment (asset, source, sentiment_label,"
                    " sentiment_score, confidence, text, metadata, event_time, interval_start)"
                    f" VALUES (%s, %s, %s, %s, %s, %s, %s, {TS.format('%s')},"
                    f" {TS.format('%s')}) ON CONFLICT (asset, source, interval_start) DO NOTHING",
                    (
                        s.asset,
                        s.source,
                        s.label,
                        s.score,
                        s.confidence,
                        s.text,
                        Jsonb(s.metadata, dumps=_json),
                        s.ts_ms,
                        s.interval_start_ms,
                    ),
                )
                new += cur.rowcount
            return new

        return int(self._run(work))

    # -- reads ----------------------------------------------------------------------------
    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        def work(cur: psycopg.Cursor[Any]) -> list[tuple[Any, ...]]:
            cur.execute(sql.encode() if not params else sql, params or None)
            return cur.fetchall()

        rows: list[tuple[Any, ...]] = self._run(work)
        return rows

    def read_trades(self, ticker: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        rows = self._query(
            "SELECT ticker, exchange_id, trade_id, price, size, conditions,"
            f" {MS.format('event_time')}, {MS.format('received_time')}, source"
            f" FROM crypto_trades WHERE ticker = %s AND event_time >= {TS.format('%s')}"
            f" AND event_time < {TS.format('%s')} ORDER BY event_time, exchange_id, trade_id",
            (ticker, start_ms, end_ms),
        )
        return frame(rows, TRADE_COLUMNS, "ts_ms")

    def read_quotes(self, ticker: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        rows = self._query(
            "SELECT ticker, exchange_id, bid_price, bid_size, ask_price, ask_size,"
            f" {MS.format('event_time')}, {MS.format('received_time')}, source"
            f" FROM crypto_quotes WHERE ticker = %s AND event_time >= {TS.format('%s')}"
            f" AND event_time < {TS.format('%s')} ORDER BY event_time, exchange_id",
            (ticker, start_ms, end_ms),
        )
        return frame(rows, QUOTE_COLUMNS, "ts_ms")

    def read_bars(
        self, ticker: str, start_ms: int, end_ms: int, timeframe: str = "1m"
    ) -> pd.DataFrame:
        rows = self._query(
            "SELECT ticker, timeframe, open, high, low, close, volume, vwap, trade_count,"
            f" {MS.format('event_time')}, {MS.format('end_time')}, source FROM crypto_aggregates"
            " WHERE ticker = %s AND timeframe = %s"
            f" AND event_time >= {TS.format('%s')} AND event_time < {TS.format('%s')}"
            " ORDER BY event_time",
            (ticker, timeframe, start_ms, end_ms),
        )
        return frame(rows, BAR_COLUMNS, "start_ms")

    def read_events(self, component: str | None = None, since_ms: int = 0) -> pd.DataFrame:
        sql = (
            f"SELECT {MS.format('event_time')}, component, event_type, severity, message,"
            f" details, dedupe_key FROM system_events WHERE event_time >= {TS.format('%s')}"
        )
        params: tuple[Any, ...] = (since_ms,)
        if component is not None:
            sql += " AND component = %s"
            params += (component,)
        rows = self._query(sql + " ORDER BY id", params)
        columns = ["ts_ms", "component", "event_type", "severity", "message", "details"]
        return frame(rows, [*columns, "dedupe_key"], "ts_ms")

    def read_sentiments(self, asset: str | None = None) -> pd.DataFrame:
        sql = (
            "SELECT asset, source, sentiment_label, sentiment_score, confidence, text, metadata,"
            f" {MS.format('event_time')}, {MS.format('interval_start')} FROM market_sentiment"
        )
        params: tuple[Any, ...] = ()
        if asset is not None:
            sql += " WHERE asset = %s"
            params = (asset,)
        rows = self._query(sql + " ORDER BY interval_start", params)
        columns = ["asset", "source", "label", "score", "confidence", "text", "metadata", "ts_ms"]
        return frame(rows, [*columns, "interval_start_ms"], "ts_ms")

    def latest_event_times(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for kind, table in KIND_TABLES.items():
            for ticker, newest in self._query(
                f"SELECT ticker, {MS.format('MAX(event_time)')} FROM {table} GROUP BY ticker"
            ):
                out[(ticker, kind)] = int(newest)
        return out

    def prune_ingest_batches(self, older_than_ms: int) -> int | None:
        def work(cur: psycopg.Cursor[Any]) -> int:
            cur.execute(PRUNE_INGEST_BATCHES, (older_than_ms,))
            return int(cur.rowcount)

        return int(self._run(work))

    def count_rows(self, table: str) -> int:
        return int(self._query(f"SELECT COUNT(*) FROM {check_table(table)}")[0][0])

    def count_dead_letters(self, kind: str) -> int:
        return int(self._query("SELECT COUNT(*) FROM dead_letters WHERE kind = %s", (kind,))[0][0])

    # -- backfill chunks (rrr/backfill/chunks.py) ------------------------------------------
    # One statement per change: a claim is a single UPDATE, so under READ COMMITTED the
    # second of two concurrent claims re-checks the row after the first commits and loses.
    def _chunk_write(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        def work(cur: psycopg.Cursor[Any]) -> list[tuple[Any, ...]]:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

        rows: list[tuple[Any, ...]] = self._run(work)
        return rows

    def upsert_chunks(self, chunks: list[Chunk]) -> int:
        if not chunks:
            return 0

        def work(cur: psycopg.Cursor[Any]) -> int:
            new = 0
            for c in chunks:
                cur.execute(
                    "INSERT INTO backfill_chunks (chunk_id, plan_id, ticker, multiplier, timespan,"
                    f" start_time, end_time) VALUES (%s, %s, %s, %s, %s, {TS.format('%s')},"
                    f" {TS.format('%s')}) ON CONFLICT (chunk_id) DO NOTHING",
                    c.row(),
                )
                new += cur.rowcount
            cur.executemany(
                "UPDATE backfill_chunks SET plan_id = %s WHERE chunk_id = %s AND plan_id <> %s",
                [(c.plan_id, c.chunk_id, c.plan_id) for c in chunks],
            )
            return new

        return int(self._run(work))

    def get_chunk(self, chunk_id: str) -> ChunkState | None:
        rows = self._query(
            "SELECT chunk_id, plan_id, ticker, multiplier, timespan,"
            f" {MS.format('start_time')}, {MS.format('end_time')}, status, bars_stored,"
            f" attempts, last_error, {MS.format('updated_at')}, {MS.format('started_at')},"
            f" {MS.format('finished_at')} FROM backfill_chunks WHERE chunk_id = %s",
            (chunk_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return ChunkState(Chunk(*r[:7]), r[7], r[8], r[9], r[10], r[11], r[12], r[13])

    def claim_chunk(self, chunk_id: str, now_ms: int, lease_ms: int) -> int | None:
        rows = self._chunk_write(
            f"UPDATE backfill_chunks SET status = 'running', attempts = attempts + 1,"
            f" started_at = {TS.format('%s')}, updated_at = {TS.format('%s')},"
            " finished_at = NULL WHERE chunk_id = %s AND (status IN ('pending', 'failed') OR"
            f" (status = 'running' AND updated_at < {TS.format('%s')})) RETURNING attempts",
            (now_ms, now_ms, chunk_id, now_ms - lease_ms),
        )
        return int(rows[0][0]) if rows else None

    def touch_chunk(self, chunk_id: str, bars_stored: int, now_ms: int) -> None:
        self._chunk_write(
            f"UPDATE backfill_chunks SET bars_stored = %s, updated_at = {TS.format('%s')}"
            " WHERE chunk_id = %s AND status = 'running'",
            (bars_stored, now_ms, chunk_id),
        )

    def finish_chunk(self, chunk_id: str, bars_stored: int, now_ms: int) -> None:
        self._chunk_write(
            "UPDATE backfill_chunks SET status = 'done', bars_stored = %s, last_error = NULL,"
            f" updated_at = {TS.format('%s')}, finished_at = {TS.format('%s')}"
            " WHERE chunk_id = %s",
            (bars_stored, now_ms, now_ms, chunk_id),
        )

    def fail_chunk(self, chunk_id: str, error: str, now_ms: int, *, retry: bool = False) -> None:
        self._chunk_write(
            "UPDATE backfill_chunks SET status = %s, last_error = %s,"
            f" updated_at = {TS.format('%s')} WHERE chunk_id = %s AND status <> 'done'",
            ("pending" if retry else "failed", error[:2000], now_ms, chunk_id),
        )

    def chunk_progress(self, plan_id: str) -> PlanProgress:
        rows = self._query(
            "SELECT status, COUNT(*), COALESCE(SUM(bars_stored), 0),"
            f" {MS.format('MIN(started_at)')} FROM backfill_chunks WHERE plan_id = %s"
            " GROUP BY status",
            (plan_id,),
        )
        errors = self._query(
            "SELECT last_error FROM backfill_chunks WHERE plan_id = %s AND status <> 'done'"
            " AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1",
            (plan_id,),
        )
        return PlanProgress.from_status_rows(plan_id, rows, errors[0][0] if errors else None)

    def chunks_not_done(self, plan_id: str) -> list[str]:
        rows = self._query(
            "SELECT chunk_id FROM backfill_chunks WHERE plan_id = %s AND status <> 'done'"
            " ORDER BY ticker, start_time",
            (plan_id,),
        )
        return [r[0] for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


def _copy_payload(
    batch: Batch,
) -> tuple[str | bytes, list[Rejected], tuple[str, str, int, int] | None]:
    """The COPY text of the batch's storable rows ("" if none), the rest as dead letters, and
    for bars of one ticker and timeframe the range of their keys (see APPLY_NEW_BARS)."""
    now = now_ms()
    if batch.kind != "bars":
        good, bad = split_storable(batch.kind, batch.rows, now)
        return (COPY_LINES[batch.kind](good) if good else ""), bad, None
    bad = []
    columns = bar_columns(batch.rows, now)  # every bar storable, as a REST page nearly always is
    if columns is None:
        good, bad = split_storable(batch.kind, batch.rows, now)
        if not good:
            return "", bad, None
        columns = columns_of(good, len(Bar._fields))
    return bar_copy_text(columns), bad, bar_key_range(columns)


INSERT_DEAD_LETTER = (
    "INSERT INTO dead_letters (kind, source, reason, raw, text_encoding, dedupe_key)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (dedupe_key) DO NOTHING"
)


def _insert_dead_letters(cur: psycopg.Cursor[Any], rejected: list[Rejected]) -> Outcome:
    """Inside an open transaction: every letter in a savepoint, or, when PostgreSQL refuses
    one of them, each alone in a savepoint of its own (rrr.storage.dead_letters)."""
    try:
        with cur.connection.transaction():
            new = 0
            for r in rejected:  # dead letters are rare: one statement each keeps the count exact
                cur.execute(INSERT_DEAD_LETTER, letter_row(r).params())
                new += cur.rowcount
            return Outcome(new, [])
    except _LETTER_REFUSALS:
        pass

    def insert_one(row: LetterRow) -> int:
        with cur.connection.transaction():
            cur.execute(INSERT_DEAD_LETTER, row.params())
            return int(cur.rowcount)

    return store_each(rejected, insert_one, lambda exc: isinstance(exc, _LETTER_REFUSALS))


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()
