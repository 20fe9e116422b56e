"""What differs between the SQL the SQLite and PostgreSQL stores share (rrr/storage/sql_reads.py,
sql_chunks.py): the parameter marker, how times are kept, and how JSON comes back.

SQLite keeps times as INTEGER ms and JSON as TEXT; PostgreSQL keeps TIMESTAMPTZ and JSONB (and
trade conditions as integer[]), which psycopg already hands back as Python values.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import orjson

# PostgreSQL: ms since the epoch -> TIMESTAMPTZ, and back.
TS = "('epoch'::timestamptz + {} * interval '1 millisecond')"
MS = "(extract(epoch from {}) * 1000)::bigint"


@dataclass(frozen=True, slots=True)
class SqlDialect:
    param: str  # the driver's parameter marker
    time_of_ms: str  # format: a ms expression -> the time column's type
    ms_of_time: str  # format: a time column expression -> ms
    json_value: Callable[[Any], Any] | None  # a stored JSON column -> its value; None: as read

    @property
    def time_param(self) -> str:
        """A parameter given in ms, as a time column's value."""
        return self.time_of_ms.format(self.param)

    def ms(self, expression: str) -> str:
        """A time column (or an aggregate of one) read back as ms."""
        return self.ms_of_time.format(expression)


def json_text(value: Any) -> str:
    """A JSON column's value as text (SQLite stores it so; psycopg's Jsonb dumps with it)."""
    return orjson.dumps(value, default=str).decode()


SQLITE = SqlDialect("?", "{}", "{}", orjson.loads)
POSTGRES = SqlDialect("%s", TS, MS, None)


class SqlQueries:
    """What the shared SQL parts need from a SQL store: its dialect and two ways to run SQL."""

    sql: SqlDialect

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read, errors mapped to the rrr error tree."""
        raise NotImplementedError

    def _chunk_write(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One statement in a transaction of its own; the rows it returns (if any)."""
        raise NotImplementedError

    def _stream(
        self, sql: str, params: tuple[Any, ...], chunk_rows: int, numeric_as_float: bool
    ) -> Generator[list[tuple[Any, ...]], None, None]:
        """The rows of one read, at most ``chunk_rows`` at a time, never all in memory at
        once; errors mapped to the rrr error tree; ``numeric_as_float``: exact numeric
        columns come back as floats. The store is held until the iterator is exhausted or
        closed."""
        raise NotImplementedError
