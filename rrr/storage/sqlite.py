"""SQLite store: the embedded default. WAL so readers never block the writer; one
``BEGIN IMMEDIATE`` transaction per batch so concurrent writers queue instead of deadlocking.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from rrr.backfill_chunks import Chunk, ChunkState, PlanProgress
from rrr.clock import now_ms  # the receiving clock of the row checks
from rrr.errors import PermanentStorageError, StorageError, TransientStorageError
from rrr.models import Batch, Rejected, Sentiment, SystemEvent
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
from rrr.storage.dead_letters import LetterRow, Outcome, letter_row, store_each
from rrr.storage.rows import conditions_text, last_bar_per_key, row_text, split_storable

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000

INSERT_TRADES = (
    "INSERT OR IGNORE INTO crypto_trades (ticker, exchange_id, trade_id, price, size, conditions,"
    " event_time, received_time, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_QUOTES = (
    "INSERT OR IGNORE INTO crypto_quotes (ticker, exchange_id, bid_price, bid_size, ask_price,"
    " ask_size, event_time, received_time, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
NOW_MS = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
# A bar is replaced only by a version of itself at least as new (rrr.storage.base, "Bar
# versions"): the version is the caller's version_ms, else the time of this write; a row written
# before versions existed stands at its updated_at, the time it was written.
UPSERT_BARS = (
    "INSERT INTO crypto_aggregates (ticker, timeframe, open, high, low, close, volume, vwap,"
    " trade_count, event_time, end_time, source, version_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
    f" ?, ?, ?, ?, COALESCE(?, {NOW_MS})) ON CONFLICT (ticker, timeframe, event_time) DO UPDATE"
    " SET open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,"
    " volume = excluded.volume, vwap = excluded.vwap, trade_count = excluded.trade_count,"
    " end_time = excluded.end_time, source = excluded.source,"
    f" version_time = excluded.version_time, updated_at = {NOW_MS}"
    " WHERE excluded.version_time"
    " >= COALESCE(crypto_aggregates.version_time, crypto_aggregates.updated_at)"
)

INSERT_DEAD_LETTER = (
    "INSERT OR IGNORE INTO dead_letters (kind, source, reason, raw, text_encoding, dedupe_key)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
# What SQLite refuses for good in a dead letter (too big for SQLITE_LIMIT_LENGTH, a constraint,
# text it cannot encode); rrr.storage.dead_letters tries the letter's other forms.
_LETTER_REFUSALS = (sqlite3.IntegrityError, sqlite3.DataError, UnicodeError)


def sqlite_path(url: str) -> Path:
    """``sqlite:///var/rrr.db`` (relative) or ``sqlite:////abs/rrr.db``."""
    if not url.startswith("sqlite:///"):
        raise PermanentStorageError(f"not a SQLite URL: {url!r} (expected sqlite:///path)")
    return Path(url[len("sqlite:///") :])


# SQLite result codes a retry can outlive (the primary code, the low byte of an extended one):
# another writer holds the lock (BUSY, LOCKED), memory or the disk is full for now (NOMEM,
# FULL: "database or disk is full"; space comes back when logs rotate or someone frees it),
# an I/O error (IOERR), a WAL race (PROTOCOL). A full disk must be retried with backoff, never
# dead-lettered: the dead letter would not fit either, and the rows are fine.
_TRANSIENT_CODES = {
    5: "busy",
    6: "locked",
    7: "out of memory",
    10: "I/O error",
    13: "disk or database full",
    15: "locking protocol race",
}
# The same by message, for an error raised without a code.
_TRANSIENT_TEXT = ("locked", "busy", "disk I/O", "database or disk is full", "out of memory")


def map_sqlite_error(exc: sqlite3.Error | UnicodeError) -> StorageError:
    text = str(exc)
    if isinstance(exc, UnicodeError):  # a lone surrogate: no database text can hold it
        return PermanentStorageError(f"SQLite cannot hold this text: {text}")
    code = getattr(exc, "sqlite_errorcode", None)
    what = _TRANSIENT_CODES.get(code & 0xFF) if isinstance(code, int) else None
    if what is None and any(t in text for t in _TRANSIENT_TEXT):
        what = "busy"
    if what is not None:
        return TransientStorageError(f"SQLite {what}, retry later: {text}")
    return PermanentStorageError(f"SQLite refused the write: {text}")


class SqliteStore:
    dialect = "sqlite"

    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread off with a
        # lock so a store can be shared by the threads of one process.
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        self._lock = threading.RLock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoint
        self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    # -- schema ---------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        applied: list[str] = []
        with self._lock:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY,"
                " applied_at INTEGER NOT NULL)"
            )
            done = {r[0] for r in self._conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in migrations("sqlite"):
                if version in done:
                    continue
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    if self._conn.execute(
                        "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
                    ).fetchone():
                        self._conn.execute("ROLLBACK")
                        continue
                    for statement in split_statements(sql):
                        self._conn.execute(statement)
                    self._conn.execute(
                        "INSERT INTO schema_migrations VALUES (?, CAST((julianday('now')"
                        " - 2440587.5) * 86400000 AS INTEGER))",
                        (version,),
                    )
                    self._conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._conn.execute("ROLLBACK")
                    raise map_sqlite_error(exc) from exc
                applied.append(version)
        return applied

    # -- writes ---------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction under the lock, committed when the block ends.
        Whatever the block raises rolls it back (never leave the write lock held: the next
        write would find a transaction open); SQLite's errors leave as the rrr error tree."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                yield
                self._conn.execute("COMMIT")
            except (sqlite3.Error, UnicodeError) as exc:
                self._rollback_quietly()
                raise map_sqlite_error(exc) from exc
            except BaseException:
                self._rollback_quietly()
                raise

    @contextmanager
    def _savepoint(self, name: str) -> Iterator[None]:
        """Inside the open transaction: the block's writes, undone alone when it raises."""
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            # SQLite may have rolled the whole transaction back (a full disk): the error that
            # says so is the one to raise, not "no such savepoint"; the caller rolls back.
            with suppress(sqlite3.Error):
                self._conn.execute(f"ROLLBACK TO {name}")
                self._conn.execute(f"RELEASE {name}")
            raise
        self._conn.execute(f"RELEASE {name}")

    def apply_batch(self, batch: Batch, *, version_ms: int | None = None) -> BatchResult:
        good, bad = split_storable(batch.kind, batch.rows, now_ms())
        with self._transaction():
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO ingest_batches (batch_id, kind, row_count) VALUES (?, ?, ?)",
                (batch.id, batch.kind, len(batch.rows)),
            )
            if cur.rowcount == 0:  # applied before: nothing was written, the commit is a no-op
                return BatchResult(batch.id, applied=False, stored=0, rejected=0)
            stored = self._write_rows(batch.kind, good, version_ms)
            # A letter refused in every form: the batch would drop it, so the caller sets the
            # batch aside whole.
            self._insert_dead_letters(bad).checked("SQLite", len(bad))
        return BatchResult(batch.id, applied=True, stored=stored, rejected=len(bad))

    def _write_rows(self, kind: str, rows: list[Any], version_ms: int | None = None) -> int:
        if not rows:
            return 0
        before = self._conn.total_changes
        if kind == "trades":
            self._conn.executemany(
                INSERT_TRADES,
                [
                    (r[0], r[1], str(r[2]), r[3], r[4], conditions_text(r[5]), r[6], r[7], r[8])
                    for r in rows
                ],
            )
        elif kind == "quotes":
            self._conn.executemany(INSERT_QUOTES, rows)
        else:
            self._conn.executemany(UPSERT_BARS, [(*r, version_ms) for r in last_bar_per_key(rows)])
        return self._conn.total_changes - before

    def _insert_dead_letters(self, rejected: list[Rejected]) -> Outcome:
        """Inside an open transaction: every letter, or each alone in a savepoint of its own
        when the store refuses one of them (rrr.storage.dead_letters)."""
        if not rejected:
            return Outcome(0, [])
        rows = [letter_row(r).params() for r in rejected]
        before = self._conn.total_changes
        try:
            with self._savepoint("letters"):
                self._conn.executemany(INSERT_DEAD_LETTER, rows)
        except _LETTER_REFUSALS:
            return store_each(rejected, self._insert_letter, _is_letter_refusal)
        return Outcome(self._conn.total_changes - before, [])

    def _insert_letter(self, row: LetterRow) -> int:
        with self._savepoint("letter"):
            return int(self._conn.execute(INSERT_DEAD_LETTER, row.params()).rowcount)

    def _rollback_quietly(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _write(self, sql: str, params: list[tuple[Any, ...]]) -> int:
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(sql, params)
            return self._conn.total_changes - before

    def add_dead_letters(self, rejected: list[Rejected]) -> int:
        if not rejected:
            return 0
        with self._transaction():
            outcome = self._insert_dead_letters(rejected)
        return outcome.checked("SQLite", len(rejected))

    def add_events(self, events: list[SystemEvent]) -> int:
        return self._write(
            "INSERT OR IGNORE INTO system_events (event_time, component, event_type, severity,"
            " message, details, dedupe_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.ts_ms,
                    e.component,
                    e.event_type,
                    e.severity,
                    e.message,
                    orjson.dumps(e.details, default=str).decode(),
                    e.dedupe_key,
                )
                for e in events
            ],
        )

    def add_sentiments(self, rows: list[Sentiment]) -> int:
        return self._write(
            "INSERT OR IGNORE INTO market_sentiment (asset, source, sentiment_label,"
            " sentiment_score, confidence, text, metadata, event_time, interval_start)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    s.asset,
                    s.source,
                    s.label,
                    s.score,
                    s.confidence,
                    s.text,
                    orjson.dumps(s.metadata, default=str).decode(),
                    s.ts_ms,
                    s.interval_start_ms,
                )
                for s in rows
            ],
        )

    # -- reads ----------------------------------------------------------------------------
    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise map_sqlite_error(exc) from exc

    def read_trades(self, ticker: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        rows = self._query(
            "SELECT ticker, exchange_id, trade_id, price, size, conditions, event_time,"
            " received_time, source FROM crypto_trades WHERE ticker = ? AND event_time >= ?"
            " AND event_time < ? ORDER BY event_time, exchange_id, trade_id",
            (ticker, start_ms, end_ms),
        )
        rows = [(*r[:5], orjson.loads(r[5]), *r[6:]) for r in rows]
        return frame(rows, TRADE_COLUMNS, "ts_ms")

    def read_quotes(self, ticker: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        rows = self._query(
            "SELECT ticker, exchange_id, bid_price, bid_size, ask_price, ask_size, event_time,"
            " received_time, source FROM crypto_quotes WHERE ticker = ? AND event_time >= ?"
            " AND event_time < ? ORDER BY event_time, exchange_id",
            (ticker, start_ms, end_ms),
        )
        return frame(rows, QUOTE_COLUMNS, "ts_ms")

    def read_bars(
        self, ticker: str, start_ms: int, end_ms: int, timeframe: str = "1m"
    ) -> pd.DataFrame:
        rows = self._query(
            "SELECT ticker, timeframe, open, high, low, close, volume, vwap, trade_count,"
            " event_time, end_time, source FROM crypto_aggregates WHERE ticker = ? AND"
            " timeframe = ? AND event_time >= ? AND event_time < ? ORDER BY event_time",
            (ticker, timeframe, start_ms, end_ms),
        )
        return frame(rows, BAR_COLUMNS, "start_ms")

    def read_events(self, component: str | None = None, since_ms: int = 0) -> pd.DataFrame:
        sql = (
            "SELECT event_time, component, event_type, severity, message, details, dedupe_key"
            " FROM system_events WHERE event_time >= ?"
        )
        params: tuple[Any, ...] = (since_ms,)
        if component is not None:
            sql += " AND component = ?"
            params += (component,)
        rows = [
            (*r[:5], orjson.loads(r[5]), r[6]) for r in self._query(sql + " ORDER BY id", params)
        ]
        columns = ["ts_ms", "component", "event_type", "severity", "message", "details"]
        return frame(rows, [*columns, "dedupe_key"], "ts_ms")

    def read_sentiments(self, asset: str | None = None) -> pd.DataFrame:
        sql = (
            "SELECT asset, source, sentiment_label, sentiment_score, confidence, text, metadata,"
            " event_time, interval_start FROM market_sentiment"
        )
        params: tuple[Any, ...] = ()
        if asset is not None:
            sql += " WHERE asset = ?"
            params = (asset,)
        rows = [
            (*r[:6], orjson.loads(r[6]), r[7], r[8])
            for r in self._query(sql + " ORDER BY interval_start", params)
        ]
        columns = ["asset", "source", "label", "score", "confidence", "text", "metadata", "ts_ms"]
        return frame(rows, [*columns, "interval_start_ms"], "ts_ms")

    def latest_event_times(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for kind, table in KIND_TABLES.items():
            for ticker, newest in self._query(
                f"SELECT ticker, MAX(event_time) FROM {table} GROUP BY ticker"
            ):
                out[(ticker, kind)] = int(newest)
        return out

    def prune_ingest_batches(self, older_than_ms: int) -> int | None:
        return self._write("DELETE FROM ingest_batches WHERE applied_at < ?", [(older_than_ms,)])

    def count_rows(self, table: str) -> int:
        return int(self._query(f"SELECT COUNT(*) FROM {check_table(table)}")[0][0])

    def count_dead_letters(self, kind: str) -> int:
        return int(self._query("SELECT COUNT(*) FROM dead_letters WHERE kind = ?", (kind,))[0][0])

    # -- backfill chunks (rrr/backfill/chunks.py) ------------------------------------------
    # Times are INTEGER ms here. Each change is one statement in its own IMMEDIATE
    # transaction, so a claim is atomic across processes: one UPDATE decides the winner.
    def _chunk_write(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._transaction():
            return self._conn.execute(sql, params).fetchall()

    def upsert_chunks(self, chunks: list[Chunk]) -> int:
        if not chunks:
            return 0
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                "INSERT OR IGNORE INTO backfill_chunks (chunk_id, plan_id, ticker, multiplier,"
                " timespan, start_time, end_time) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [c.row() for c in chunks],
            )
            new = self._conn.total_changes - before
            self._conn.executemany(
                "UPDATE backfill_chunks SET plan_id = ? WHERE chunk_id = ? AND plan_id <> ?",
                [(c.plan_id, c.chunk_id, c.plan_id) for c in chunks],
            )
            return new

    def get_chunk(self, chunk_id: str) -> ChunkState | None:
        rows = self._query(
            "SELECT chunk_id, plan_id, ticker, multiplier, timespan, start_time, end_time,"
            " status, bars_stored, attempts, last_error, updated_at, started_at, finished_at"
            " FROM backfill_chunks WHERE chunk_id = ?",
            (chunk_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return ChunkState(Chunk(*r[:7]), r[7], r[8], r[9], r[10], r[11], r[12], r[13])

    def claim_chunk(self, chunk_id: str, now_ms: int, lease_ms: int) -> int | None:
        rows = self._chunk_write(
            "UPDATE backfill_chunks SET status = 'running', attempts = attempts + 1,"
            " started_at = ?, updated_at = ?, finished_at = NULL WHERE chunk_id = ? AND"
            " (status IN ('pending', 'failed') OR (status = 'running' AND updated_at < ?))"
            " RETURNING attempts",
            (now_ms, now_ms, chunk_id, now_ms - lease_ms),
        )
        return int(rows[0][0]) if rows else None

    def touch_chunk(self, chunk_id: str, bars_stored: int, now_ms: int) -> None:
        self._chunk_write(
            "UPDATE backfill_chunks SET bars_stored = ?, updated_at = ?"
            " WHERE chunk_id = ? AND status = 'running'",
            (bars_stored, now_ms, chunk_id),
        )

    def finish_chunk(self, chunk_id: str, bars_stored: int, now_ms: int) -> None:
        self._chunk_write(
            "UPDATE backfill_chunks SET status = 'done', bars_stored = ?, last_error = NULL,"
            " updated_at = ?, finished_at = ? WHERE chunk_id = ?",
            (bars_stored, now_ms, now_ms, chunk_id),
        )

    def fail_chunk(self, chunk_id: str, error: str, now_ms: int, *, retry: bool = False) -> None:
        self._chunk_write(
            "UPDATE backfill_chunks SET status = ?, last_error = ?, updated_at = ?"
            " WHERE chunk_id = ? AND status <> 'done'",
            ("pending" if retry else "failed", error[:2000], now_ms, chunk_id),
        )

    def chunk_progress(self, plan_id: str) -> PlanProgress:
        rows = self._query(
            "SELECT status, COUNT(*), COALESCE(SUM(bars_stored), 0), MIN(started_at)"
            " FROM backfill_chunks WHERE plan_id = ? GROUP BY status",
            (plan_id,),
        )
        errors = self._query(
            "SELECT last_error FROM backfill_chunks WHERE plan_id = ? AND status <> 'done'"
            " AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1",
            (plan_id,),
        )
        return PlanProgress.from_status_rows(plan_id, rows, errors[0][0] if errors else None)

    def chunks_not_done(self, plan_id: str) -> list[str]:
        rows = self._query(
            "SELECT chunk_id FROM backfill_chunks WHERE plan_id = ? AND status <> 'done'"
            " ORDER BY ticker, start_time",
            (plan_id,),
        )
        return [r[0] for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _is_letter_refusal(exc: BaseException) -> bool:
    return isinstance(exc, _LETTER_REFUSALS)


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements (our files keep ';' only at statement ends)."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


__all__ = ["SqliteStore", "row_text"]
