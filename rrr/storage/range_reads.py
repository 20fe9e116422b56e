"""Range reads, described once for every store: which table a kind of data is read from, the
column naming its instrument, and an order that is unique, so a read streamed in chunks (a
server-side cursor, fetchmany, REST pages) returns every row exactly once, by instrument then
time. The stores turn a ``RangeQuery`` into their own SQL or REST filters
(rrr/storage/sql_reads.py, rrr/storage/supabase/reads.py); rrr.data and rrr export read
through ``StoreReader.iter_range``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rrr.storage.frames import NUMERIC_FIELDS
from rrr.storage.tables import BARS, EVENTS, QUOTES, SENTIMENTS, TRADES, Column, Table

# Rows per chunk of a streamed read: ~10-20 MB of Python tuples for the widest rows, few
# round trips (a 30-day read of 1-minute bars is one chunk).
CHUNK_ROWS = 50_000


@dataclass(frozen=True, slots=True)
class RangeSource:
    table: Table
    key: str | None  # the column naming the instrument (ticker, asset); None: not keyed
    order: tuple[str, ...]  # after the key: unique within one instrument


RANGE_SOURCES = {
    "trades": RangeSource(TRADES, "ticker", ("event_time", "exchange_id", "trade_id")),
    # The whole natural key after the time: two states in one millisecond are both rows.
    "quotes": RangeSource(
        QUOTES,
        "ticker",
        ("event_time", "exchange_id", "bid_price", "bid_size", "ask_price", "ask_size"),
    ),
    "bars": RangeSource(BARS, "ticker", ("event_time",)),  # with a timeframe filter
    "sentiment": RangeSource(SENTIMENTS, "asset", ("event_time", "source", "interval_start")),
    "events": RangeSource(EVENTS, None, ("event_time", "id")),
}


@dataclass(frozen=True, slots=True)
class RangeQuery:
    """Rows of ``kind`` whose ``event_time`` is in [start_ms, end_ms), for the instruments in
    ``keys`` (None: all), with each column in ``equal`` equal to its value (e.g. the bars'
    timeframe). ``as_float``: numeric columns come back as floats (PostgreSQL: psycopg's
    FloatLoader parses NUMERIC's text, cheaper than a Decimal per value; rrr export's Arrow
    columns need them); otherwise as the store holds them (PostgreSQL: Decimal, exact).
    ``fetch_fixed=False``: the columns whose value the query fixes (the ``equal`` ones, the
    key when there is one) are not sent back; rows then hold ``fetched`` only (a quarter less
    to fetch and build for a one-ticker read of bars)."""

    kind: str
    keys: tuple[str, ...] | None
    start_ms: int
    end_ms: int
    equal: Mapping[str, str] = field(default_factory=dict)
    as_float: bool = True
    fetch_fixed: bool = True

    def __post_init__(self) -> None:
        if self.kind not in RANGE_SOURCES:
            expected = ", ".join(RANGE_SOURCES)
            raise ValueError(f"unknown kind {self.kind!r}; expected one of {expected}")
        source = RANGE_SOURCES[self.kind]
        unknown = set(self.equal) - {c.name for c in source.table.columns}
        if unknown:  # column names are never interpolated from input: only the table's pass
            raise ValueError(f"{source.table.name} has no column {', '.join(sorted(unknown))}")
        if self.keys is not None and source.key is None:
            raise ValueError(f"{self.kind} are not read by instrument")
        if self.keys is None and source.key is not None:
            raise ValueError(f"name the {source.key}s of the {self.kind} to read")

    @property
    def source(self) -> RangeSource:
        return RANGE_SOURCES[self.kind]

    @property
    def columns(self) -> tuple[Column, ...]:
        return self.source.table.columns

    @property
    def fixed(self) -> dict[str, str]:
        """Column name -> the one value the query lets it have."""
        fixed = dict(self.equal)
        key = self.source.key
        if key is not None and self.keys is not None and len(self.keys) == 1:
            fixed[key] = self.keys[0]
        return fixed

    @property
    def fetched(self) -> tuple[Column, ...]:
        """The columns each row holds, in the table's field order."""
        if self.fetch_fixed:
            return self.columns
        fixed = self.fixed
        return tuple(c for c in self.columns if c.name not in fixed)

    @property
    def order(self) -> tuple[str, ...]:
        key = self.source.key
        return self.source.order if key is None else (key, *self.source.order)


def is_numeric(column: Column) -> bool:
    return column.field in NUMERIC_FIELDS


def is_integer(column: Column) -> bool:
    """Whole numbers that may be missing (exchange_id, trade_count): Int64, not float."""
    return column.stage_type == "int"


def is_json(column: Column) -> bool:
    """Kept as JSON text by SQLite: the JSON columns and the trades' conditions."""
    return column.json or column.field == "conditions"
