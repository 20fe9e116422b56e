"""PostgreSQL COPY text format, pure: escaping, and checked bars, trades and quotes written a
column at a time.

Bars come by the 50,000 from a REST page, so how their COPY text is built matters: an f-string
with seven ``repr(float)`` per bar costs ~90 ms a 48,960-bar page. Here each column of numbers
is one ``orjson.dumps`` (C; the same shortest round-trip digits as ``repr``, so NUMERIC gets
the vendor's exact decimal; only an exponent is spelled differently, ``1e-05`` as
``0.00001``), and ``map`` with ``bytes.join`` glues the fields into lines: no Python code runs
per bar, ~30 ms a page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from rrr.models import Bar
from rrr.storage.rows import (
    BAR_KEY,
    TICK_TEXT,
    TICK_TIMES,
    TRADE_CONDITIONS,
    TRADE_ID,
    columns_of,
    last_bar_per_key,
)

NULL = b"\\N"
_BAR_TEXT_FIELDS = frozenset(Bar._fields.index(f) for f in ("ticker", "timeframe", "source"))
_TICKER, _TIMEFRAME, _START = BAR_KEY


@lru_cache(maxsize=1024)
def escape(value: str) -> str:
    """Escape for COPY text format; tickers and sources repeat, so this is cached."""
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def bar_copy_text(columns: list[list[Any]]) -> bytes:
    """COPY text (rrr.models.Bar field order, ``stage_bars``) of bars that passed
    ``rows.bar_problem``, given as columns; one line per natural key, the last bar winning."""
    if _keys_repeat(columns):
        columns = columns_of(last_bar_per_key(list(zip(*columns, strict=True))), len(columns))
    fields = [
        _text_fields(column) if i in _BAR_TEXT_FIELDS else _number_fields(column)
        for i, column in enumerate(columns)
    ]
    return b"\n".join(map(b"\t".join, zip(*fields, strict=True))) + b"\n"


def _keys_repeat(columns: list[list[Any]]) -> bool:
    starts = columns[_START]
    if len(set(starts)) == len(starts):  # the usual case, and no key tuples to build
        return False
    keys = zip(columns[_TICKER], columns[_TIMEFRAME], starts, strict=True)
    return len(set(keys)) != len(starts)


def _text_fields(column: list[Any]) -> list[bytes]:
    encoded = {value: escape(value).encode() for value in set(column)}
    return list(map(encoded.__getitem__, column))


def _number_fields(column: list[Any]) -> list[bytes]:
    """Checked numbers (int, float, None; finite) -> COPY fields, ``None`` as ``\\N``."""
    if not column:
        return []
    try:
        text: bytes | None = orjson.dumps(column)
    except orjson.JSONEncodeError:  # an int past 64 bits: let PostgreSQL refuse it by name
        text = None
    if text is not None and b"null" not in text:
        return text[1:-1].split(b",")
    # orjson writes None as null, but also NaN and infinities (which the row checks keep out
    # of a bar; if one slips through, repr keeps it what it was).
    if text is None or text.count(b"null") != column.count(None):
        return [NULL if v is None else repr(v).encode() for v in column]
    return [NULL if f == b"null" else f for f in text[1:-1].split(b",")]


# Trades and quotes: written a column at a time like bars, with the same field writers. Their
# times are timestamps, so that the same text goes into the stage table or, for a batch of new
# keys, straight into the stored table (rrr/storage/postgres/ticks.py).
_SECONDS: dict[int, bytes] = {}  # Unix second -> b"YYYY-MM-DD HH:MM:SS": ticks share seconds
_SECONDS_KEPT = 100_000
_MILLIS = [f".{m:03d}+00".encode() for m in range(1000)]
_NEEDS_ESCAPE = ("\\", "\t", "\n", "\r")


def _second_text(second: int) -> bytes:
    if len(_SECONDS) >= _SECONDS_KEPT:
        _SECONDS.clear()
    text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S").encode()
    _SECONDS[second] = text
    return text


def timestamp_fields(column: list[Any]) -> list[bytes]:
    """Unix ms -> timestamptz COPY fields exact to the ms (b"2026-12-01 00:00:00.123+00"),
    ``\\N`` for None: one loop over a cache of seconds (~0.15 us a value)."""
    seconds, millis, out = _SECONDS, _MILLIS, []
    for ms in column:
        if ms is None:
            out.append(NULL)
            continue
        second, milli = divmod(ms, 1000)
        out.append((seconds.get(second) or _second_text(second)) + millis[milli])
    return out


_ARRAY_LITERALS: dict[tuple[int, ...], bytes] = {}


def _int_array(values: Any) -> bytes:
    """COPY text for integer[]; trade conditions take a handful of values, so cache them."""
    key = tuple(values) if values else ()
    literal = _ARRAY_LITERALS.get(key)
    if literal is None:
        literal = ("{" + ",".join(str(int(v)) for v in key) + "}").encode()
        if len(_ARRAY_LITERALS) < 1024:
            _ARRAY_LITERALS[key] = literal
    return literal


def tick_copy_text(kind: str, columns: list[list[Any]], ids: list[bytes]) -> bytes:
    """COPY text (each row's id, then its fields in rrr.models order: the stage tables, and the
    stored tables' columns, rrr.storage.tables) of checked trades or quotes given as columns
    (``rows.tick_columns``), with the bars' field writers: numbers one ``orjson.dumps`` a
    column, text escaped once per distinct value; times from a cache of seconds. ``ids`` are
    COPY text already (rrr.storage.row_ids)."""
    fields: list[list[bytes]] = [ids]
    for i, column in enumerate(columns):
        if i in TICK_TEXT:
            fields.append(_text_fields(column))
        elif i in TICK_TIMES:
            fields.append(timestamp_fields(column))
        elif kind == "trades" and i == TRADE_ID:
            fields.append(_trade_id_fields(column))
        elif kind == "trades" and i == TRADE_CONDITIONS:
            fields.append(list(map(_int_array, column)))
        else:
            fields.append(_number_fields(column))
    return b"\n".join(map(b"\t".join, zip(*fields, strict=True))) + b"\n"


def _trade_id_fields(column: list[Any]) -> list[bytes]:
    """Trade ids are text or integers, every one distinct: escaped only if one needs it, else
    encoded all at once (joined, encoded, split: no call per id)."""
    ids = column if set(map(type, column)) == {str} else list(map(str, column))
    if any(c in "".join(ids) for c in _NEEDS_ESCAPE):
        return [escape(i).encode() for i in ids]
    return "\n".join(ids).encode().split(b"\n")
