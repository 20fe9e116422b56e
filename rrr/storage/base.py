"""The Store protocol and its idempotency contract (``open_store``: rrr/storage/backends.py).

Contract (tests/integration/test_store_contract.py runs it against every store):
- ``apply_batch(batch)`` is exactly-once in effect: the batch id is recorded in
  ``ingest_batches`` in the same transaction as its rows; applying it again changes nothing.
- Natural keys dedupe overlapping sources: trades by (ticker, exchange_id, trade_id), quotes by
  their whole top-of-book state, bars by (ticker, timeframe, start).
- Bar versions: a stored bar is replaced only by a version of itself at least as new, so a
  retried batch, a second worker or a backfill page that lands after the vendor's correction
  never puts the older version back. The version is ``apply_batch(..., version_ms=)``: when
  the batch's bars were received from the vendor (the stream worker: when it cut the batch;
  REST: when the page came back). Why that: the vendor serves one current version of a bar at
  any moment (on the stream, possibly late; over REST, the state at the request), so the later
  observation is the later version, whichever path it came by; and unlike arrival at the
  database it travels with the batch through retries and redeliveries. A bar in one batch
  several times: the last one is the newest (the vendor's order). Equal versions: the later
  write wins. Without a version the time of the write stands in (the behaviour before versions,
  last write wins); a bar stored before versions existed stands at its ``updated_at``. Clocks
  of different machines order versions too, so they must agree to within the seconds, not the
  minutes, that separate a bar from its correction (NTP does).
- A row that cannot be stored goes to ``dead_letters`` with the reason; the rest still lands.
- ``add_dead_letters`` stores every letter: text a database cannot hold (NUL, lone surrogates)
  is escaped and marked, a letter refused anyway is kept as a marked substitute, and one letter
  refused in every form never takes its companions with it (rrr/storage/dead_letters.py).
- ``add_events`` dedupes on ``SystemEvent.dedupe_key``; ``add_sentiments`` on
  (asset, source, interval_start).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from rrr.backfill_chunks import Chunk, ChunkState, PlanProgress
from rrr.models import Batch, Rejected, Sentiment, SystemEvent
from rrr.storage.range_reads import CHUNK_ROWS, RangeQuery

TABLES = (
    "crypto_trades",
    "crypto_quotes",
    "crypto_aggregates",
    "market_sentiment",
    "system_events",
    "backfill_chunks",
    "ingest_batches",
    "dead_letters",
)
# Kind of market data -> (table, time column) for "latest event time" reads.
KIND_TABLES = {
    "trades": "crypto_trades",
    "quotes": "crypto_quotes",
    "bars": "crypto_aggregates",
}


# The dead-letter kind of a message set aside after MAX_DELIVERIES failed deliveries
# (tasks/delivery.py); rrr status counts them.
POISON_KIND = "poison"


@dataclass(frozen=True, slots=True)
class BatchResult:
    batch_id: str
    applied: bool  # False: this batch id was applied before, nothing changed
    stored: int  # rows new or replaced in the table
    rejected: int  # rows sent to dead_letters


# The store by job: each caller can name the one part it needs; ``Store`` is all of them.
class SchemaStore(Protocol):
    dialect: str

    def migrate(self) -> list[str]:
        """Apply pending schema migrations; returns the versions applied (empty: up to date)."""
        ...

    def close(self) -> None: ...


class TickWriter(Protocol):
    def apply_batch(self, batch: Batch, *, version_ms: int | None = None) -> BatchResult:
        """``version_ms``: when the batch's bars were received from the vendor (see "Bar
        versions" above); None: the time of the write. Only bars have versions."""
        ...

    def add_dead_letters(self, rejected: list[Rejected]) -> int:
        """Returns how many were new. Raises PermanentStorageError only after storing every
        letter it could, when some letter was refused in every form (see above)."""
        ...

    def prune_ingest_batches(self, older_than_ms: int) -> int | None:
        """Forget batch ids applied before ``older_than_ms`` (how many, when the store can
        tell). Only ids older than any possible redelivery may go; natural keys still dedupe
        the rows of a batch replayed after that."""
        ...


class EventWriter(Protocol):
    def add_events(self, events: list[SystemEvent]) -> int:
        """Returns how many were new (events whose dedupe_key exists are skipped)."""
        ...

    def add_sentiments(self, rows: list[Sentiment]) -> int: ...


class StoreReader(Protocol):
    def read_trades(self, ticker: str, start_ms: int, end_ms: int) -> pd.DataFrame: ...

    def read_quotes(self, ticker: str, start_ms: int, end_ms: int) -> pd.DataFrame: ...

    def read_bars(
        self, ticker: str, start_ms: int, end_ms: int, timeframe: str = "1m"
    ) -> pd.DataFrame: ...

    def read_events(self, component: str | None = None, since_ms: int = 0) -> pd.DataFrame: ...

    def iter_range(
        self, query: RangeQuery, chunk_rows: int = CHUNK_ROWS
    ) -> Generator[list[tuple[Any, ...]], None, None]:
        """The query's rows (rrr/storage/range_reads.py) in the table's field order, times in
        ms, JSON decoded, by instrument then time, at most ``chunk_rows`` at a time, never
        the table loaded to be filtered here: SQL stores send one query for all the
        instruments and stream it; Supabase REST pages each instrument by time. Close the
        iterator (or exhaust it) to free the store."""
        ...

    def read_sentiments(self, asset: str | None = None) -> pd.DataFrame: ...

    def latest_event_times(self) -> dict[tuple[str, str], int]:
        """{(ticker, kind): newest event time in ms} for kind in trades, quotes, bars."""
        ...

    def count_rows(self, table: str) -> int: ...

    def count_dead_letters(self, kind: str) -> int:
        """Dead letters of one kind (``poison``: messages set aside after every delivery failed,
        tasks/delivery.py), for ``rrr status``."""
        ...


class ChunkLedger(Protocol):
    """Resumable backfill progress, the ``backfill_chunks`` table (see rrr/backfill/chunks.py)."""

    def upsert_chunks(self, chunks: list[Chunk]) -> int:
        """Write planned chunks; an existing chunk keeps its status and progress but moves to
        the newest plan naming it. Returns how many were new."""
        ...

    def get_chunk(self, chunk_id: str) -> ChunkState | None: ...

    def claim_chunk(self, chunk_id: str, now_ms: int, lease_ms: int) -> int | None:
        """Atomically pending/failed -> running (or take over a running chunk not touched for
        ``lease_ms``), attempts + 1. Returns the attempt number, None when not claimed."""
        ...

    def touch_chunk(self, chunk_id: str, bars_stored: int, now_ms: int) -> None:
        """Renew a running chunk's lease and record the bars stored so far."""
        ...

    def finish_chunk(self, chunk_id: str, bars_stored: int, now_ms: int) -> None: ...

    def fail_chunk(self, chunk_id: str, error: str, now_ms: int, *, retry: bool = False) -> None:
        """Record ``error``; the chunk goes to failed, or back to pending when ``retry``
        (a transient error that a retry will take up). A done chunk stays done."""
        ...

    def chunk_progress(self, plan_id: str) -> PlanProgress: ...

    def chunks_not_done(self, plan_id: str) -> list[str]:
        """Ids of the plan's chunks that are not done, by ticker then time."""
        ...


@runtime_checkable
class Store(SchemaStore, TickWriter, EventWriter, StoreReader, ChunkLedger, Protocol):
    """Everything a store does; tests/integration/test_store_contract.py holds each to it."""


def migrations(dialect: str) -> list[tuple[str, str]]:
    """[(version, sql)] in order, from rrr/storage/sql/<dialect>/NNNN_name.sql."""
    folder = resources.files("rrr.storage").joinpath("sql", dialect)
    files = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), folder.joinpath(name).read_text()) for name in files]


def check_table(table: str) -> str:
    """Table names are never interpolated from input: only the known ones pass."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
    return table
