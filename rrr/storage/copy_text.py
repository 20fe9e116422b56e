"""PostgreSQL COPY text format, pure: escaping, and checked bars written a column at a time.

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
from rrr.storage.rows import BAR_KEY, columns_of, last_bar_per_key

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


# Trades and quotes come by the thousand from the stream: one f-string a row. Their times are
# written as timestamps, so that the same text goes into the stage table or, for a batch of new
# keys, straight into the stored table (rrr/storage/postgres/ticks.py).
_SECONDS: dict[int, str] = {}  # Unix second -> "YYYY-MM-DD HH:MM:SS": ticks share seconds
_SECONDS_KEPT = 100_000


def timestamp_text(ms: int) -> str:
    """Unix ms -> timestamptz COPY text, exact to the ms ("2026-12-01 00:00:00.123+00")."""
    second, milli = divmod(ms, 1000)
    text = _SECONDS.get(second)
    if text is None:
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        text = _SECONDS[second] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{milli:03d}+00"


def _optional_time(value: Any) -> str:
    return "\\N" if value is None else timestamp_text(value)


def _trade_id(value: Any) -> str:
    s = str(value)
    if "\\" in s or "\t" in s or "\n" in s or "\r" in s:
        return escape(s)
    return s


_ARRAY_LITERALS: dict[tuple[int, ...], str] = {}


def _int_array(values: Any) -> str:
    """COPY text for integer[]; trade conditions take a handful of values, so cache them."""
    key = tuple(values) if values else ()
    literal = _ARRAY_LITERALS.get(key)
    if literal is None:
        literal = "{" + ",".join(str(int(v)) for v in key) + "}"
        if len(_ARRAY_LITERALS) < 1024:
            _ARRAY_LITERALS[key] = literal
    return literal


def trade_copy_text(rows: list[Any]) -> str:
    """COPY text (rrr.models.Trade field order, ``stage_trades``) of checked trades."""
    return "".join(
        [
            f"{escape(ticker)}\t{exchange}\t{_trade_id(trade_id)}\t{price!r}\t{size!r}\t"
            f"{_int_array(conditions)}\t{timestamp_text(ts_ms)}\t{_optional_time(received_ms)}\t"
            f"{escape(source)}\n"
            for (
                ticker,
                exchange,
                trade_id,
                price,
                size,
                conditions,
                ts_ms,
                received_ms,
                source,
            ) in rows
        ]
    )


def quote_copy_text(rows: list[Any]) -> str:
    """COPY text (rrr.models.Quote field order, ``stage_quotes``) of checked quotes."""
    return "".join(
        [
            f"{escape(ticker)}\t{exchange}\t{bid_price!r}\t{bid_size!r}\t{ask_price!r}\t"
            f"{ask_size!r}\t{timestamp_text(ts_ms)}\t{_optional_time(received_ms)}\t"
            f"{escape(source)}\n"
            for (
                ticker,
                exchange,
                bid_price,
                bid_size,
                ask_price,
                ask_size,
                ts_ms,
                received_ms,
                source,
            ) in rows
        ]
    )
