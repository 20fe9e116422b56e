"""The market-data tables described once: for each kind, the table, its columns by the name
of the row field (rrr.models) that fills them, the natural key and what a second write of a
key does. The statements that write and read these tables in every store are made from here
(SQLite's inserts, PostgreSQL's COPY stage tables and ``INSERT ... SELECT``, the reads'
select lists, the DataFrame columns), so adding a column is one line here, the field in
rrr.models, and a migration (rrr/storage/sql/) that adds it to the stored tables.

Rows travel as the models' NamedTuples, in their field order: a table whose columns do not
name exactly its row type's fields, in order, fails at import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

from rrr.backfill_chunks import Chunk
from rrr.models import Bar, Quote, Sentiment, SystemEvent, Trade
from rrr.storage.sql_dialect import TS

# What a write of a stored natural key does: "ignore" keeps the stored row (insert-only);
# "newer_version" replaces it when the write's version is at least as new (rrr.storage.base,
# "Bar versions").
Conflict = Literal["ignore", "newer_version"]


@dataclass(frozen=True, slots=True)
class Column:
    field: str  # the row's field (rrr.models), also the column of PostgreSQL's stage table
    name: str  # the stored table's column
    stage_type: str = ""  # PostgreSQL type in a stage table: the value as its COPY text has it
    time: bool = False  # ms in the row; a time in the table (INTEGER ms in SQLite)
    json: bool = False  # a dict in the row; JSON in the table (TEXT in SQLite, JSONB)


def _col(field: str, stage_type: str = "", name: str = "") -> Column:
    return Column(field, name or field, stage_type)


def _time(field: str, name: str, stage_type: str = "bigint") -> Column:
    """A time: ms in the row. In PostgreSQL's COPY text either those ms (``bigint``: bars,
    written a column at a time) or the timestamp itself (``timestamptz``: trades and quotes,
    whose COPY text also goes straight into the table; rrr/storage/postgres/ticks.py)."""
    return Column(field, name, stage_type, time=True)


def _json(field: str) -> Column:
    return Column(field, field, json=True)


@dataclass(frozen=True, slots=True)
class Table:
    kind: str  # the Batch kind whose rows it stores
    name: str
    row: type[Trade] | type[Quote] | type[Bar] | type[SystemEvent] | type[Sentiment] | type[Chunk]
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # the natural key (table column names)
    conflict: Conflict
    # PostgreSQL: the COPY text starts with an ``id`` the writer made (rrr.storage.row_ids),
    # which the COPY straight into the table keeps; the stage way leaves ids to the table's
    # default (see postgres_insert).
    writer_ids: bool = False

    def __post_init__(self) -> None:
        named = tuple(c.field for c in self.columns)
        row_fields = getattr(self.row, "_fields", None)  # a NamedTuple travels by position
        if row_fields is None:
            ok = sorted(named) == sorted(f.name for f in fields(self.row))  # type: ignore[arg-type]
        else:
            ok = named == row_fields
        if not ok:
            raise TypeError(f"{self.name} columns {named} are not {self.row.__name__} fields")

    @property
    def fields(self) -> list[str]:
        """The row's fields: the DataFrame columns of a read."""
        return [c.field for c in self.columns]

    @property
    def names(self) -> str:
        return ", ".join(c.name for c in self.columns)

    @property
    def stage(self) -> str:
        """PostgreSQL's temp stage table, named by its shape: a pooler may hand this rrr a
        session where an older one made its stage without the id column."""
        return f"stage_{self.kind}_with_ids" if self.writer_ids else f"stage_{self.kind}"


TRADES = Table(
    "trades",
    "crypto_trades",
    Trade,
    (
        _col("ticker", "text"),
        _col("exchange_id", "int"),
        _col("trade_id", "text"),
        _col("price", "numeric"),
        _col("size", "numeric"),
        _col("conditions", "int[]"),
        _time("ts_ms", "event_time", "timestamptz"),
        _time("received_ms", "received_time", "timestamptz"),
        _col("source", "text"),
    ),
    key=("ticker", "exchange_id", "trade_id"),
    conflict="ignore",
    writer_ids=True,
)
QUOTES = Table(
    "quotes",
    "crypto_quotes",
    Quote,
    (
        _col("ticker", "text"),
        _col("exchange_id", "int"),
        _col("bid_price", "numeric"),
        _col("bid_size", "numeric"),
        _col("ask_price", "numeric"),
        _col("ask_size", "numeric"),
        _time("ts_ms", "event_time", "timestamptz"),
        _time("received_ms", "received_time", "timestamptz"),
        _col("source", "text"),
    ),
    # The whole top-of-book state: a quote repeated by the vendor is one row.
    key=("ticker", "exchange_id", "event_time", "bid_price", "bid_size", "ask_price", "ask_size"),
    conflict="ignore",
    writer_ids=True,
)
BARS = Table(
    "bars",
    "crypto_aggregates",
    Bar,
    (
        _col("ticker", "text"),
        _col("timeframe", "text"),
        _col("open", "numeric"),
        _col("high", "numeric"),
        _col("low", "numeric"),
        _col("close", "numeric"),
        _col("volume", "numeric"),
        _col("vwap", "numeric"),
        _col("trade_count", "int"),
        _time("start_ms", "event_time"),
        _time("end_ms", "end_time"),
        _col("source", "text"),
    ),
    key=("ticker", "timeframe", "event_time"),
    conflict="newer_version",
)
TICK_TABLES = {t.kind: t for t in (TRADES, QUOTES, BARS)}

EVENTS = Table(
    "events",
    "system_events",
    SystemEvent,
    (
        _time("ts_ms", "event_time"),
        _col("component"),
        _col("event_type"),
        _col("severity"),
        _col("message"),
        _json("details"),
        _col("dedupe_key"),
    ),
    key=("dedupe_key",),
    conflict="ignore",
)
SENTIMENTS = Table(
    "sentiments",
    "market_sentiment",
    Sentiment,
    (
        _col("asset"),
        _col("source"),
        _col("label", name="sentiment_label"),
        _col("score", name="sentiment_score"),
        _col("confidence"),
        _col("text"),
        _json("metadata"),
        _time("ts_ms", "event_time"),
        _time("interval_start_ms", "interval_start"),
    ),
    key=("asset", "source", "interval_start"),
    conflict="ignore",
)
# A planned chunk; the columns of its progress (status, attempts, ...) are the store's own.
CHUNKS = Table(
    "chunks",
    "backfill_chunks",
    Chunk,
    (
        _col("chunk_id"),
        _col("plan_id"),
        _col("ticker"),
        _col("multiplier"),
        _col("timespan"),
        _time("start_ms", "start_time"),
        _time("end_ms", "end_time"),
    ),
    key=("chunk_id",),
    conflict="ignore",
)

DESCRIBED = (TRADES, QUOTES, BARS, EVENTS, SENTIMENTS, CHUNKS)


def record_values(table: Table, record: Any, as_json: Callable[[Any], Any]) -> tuple[Any, ...]:
    """An event's, sentiment's or chunk's values in column order, its JSON ``as_json`` makes
    it (the driver's form); rare rows, so a loop over the columns is fine."""
    return tuple(
        as_json(getattr(record, c.field)) if c.json else getattr(record, c.field)
        for c in table.columns
    )


def _replace_if_newer(table: Table, now: str, coalesce: str) -> str:
    """The upsert tail of a "newer_version" table: every column but the key takes the new
    value when the write's version is at least as new as the stored one; a row written before
    versions existed stands at its updated_at, the time it was written."""
    updates = [f"{c.name} = excluded.{c.name}" for c in table.columns if c.name not in table.key]
    return (
        f" ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {', '.join(updates)},"
        f" version_time = excluded.version_time, updated_at = {now}"
        f" WHERE excluded.version_time >= {coalesce}({table.name}.version_time,"
        f" {table.name}.updated_at)"
    )


# SQLite's clock in ms, for a version or an updated_at written now.
SQLITE_NOW_MS = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"


def sqlite_insert(table: Table) -> str:
    """Rows in field order (bars: then the batch's version_ms, None: now)."""
    marks = ", ".join("?" for _ in table.columns)
    if table.conflict == "ignore":
        return f"INSERT OR IGNORE INTO {table.name} ({table.names}) VALUES ({marks})"
    return (
        f"INSERT INTO {table.name} ({table.names}, version_time) VALUES ({marks},"
        f" COALESCE(?, {SQLITE_NOW_MS}))" + _replace_if_newer(table, SQLITE_NOW_MS, "COALESCE")
    )


def postgres_stage(table: Table) -> str:
    """The temp table a batch is COPied into (see rrr/storage/postgres/ticks.py)."""
    ids = ["id uuid"] if table.writer_ids else []
    columns = ", ".join(ids + [f"{c.field} {c.stage_type}" for c in table.columns])
    return f"CREATE TEMP TABLE IF NOT EXISTS {table.stage} ({columns}) ON COMMIT DELETE ROWS"


def postgres_copy(table: Table) -> str:
    return f"COPY {table.stage} FROM STDIN"


def postgres_copy_into_table(table: Table) -> str:
    """COPY straight into the stored table: for a batch none of whose keys is stored yet (the
    stage's COPY text, so its times must be timestamps; see postgres_stage)."""
    if any(c.time and c.stage_type != "timestamptz" for c in table.columns):
        raise ValueError(f"{table.name}: its COPY text carries times as ms, not timestamps")
    if not table.writer_ids:
        raise ValueError(f"{table.name}: its COPY text carries no ids")
    return f"COPY {table.name} (id, {table.names}) FROM STDIN"


def postgres_insert(table: Table, *, upsert: bool = True) -> str:
    """The stage's rows into the table, if the batch id was new (``new_batch``); bars carry the
    batch's version (a parameter; None: now). ``upsert=False``: a plain INSERT, for keys known
    not to be stored (ON CONFLICT's speculative insertion costs more per row). A stage's
    ``id`` (``writer_ids``) is not selected: the table's default makes the ids here, so that
    ``ON CONFLICT DO NOTHING``, which skips a row on any unique key, can never skip one for
    its id alone."""
    values = [TS.format(c.field) if c.stage_type == "bigint" and c.time else c.field
              for c in table.columns]  # fmt: skip
    names = table.names
    if table.conflict == "newer_version":
        names += ", version_time"
        values.append(f"coalesce({TS.format('%s::bigint')}, now())")
    sql = (
        f"INSERT INTO {table.name} ({names}) SELECT {', '.join(values)}"
        f" FROM {table.stage} WHERE EXISTS (SELECT 1 FROM new_batch)"
    )
    if not upsert:
        return sql
    if table.conflict == "ignore":
        return sql + " ON CONFLICT DO NOTHING"
    return sql + _replace_if_newer(table, "now()", "coalesce")


def postgres_insert_values(table: Table) -> str:
    """An insert-only table's rows as parameters (times in ms), a stored key skipped."""
    marks = ", ".join(TS.format("%s") if c.time else "%s" for c in table.columns)
    return (
        f"INSERT INTO {table.name} ({table.names}) VALUES ({marks})"
        f" ON CONFLICT ({', '.join(table.key)}) DO NOTHING"
    )


def select_list(table: Table, ms: str = "{}", separator: str = ", ") -> str:
    """The table's columns read back in field order; ``ms`` formats a time column as ms."""
    return separator.join(ms.format(c.name) if c.time else c.name for c in table.columns)
