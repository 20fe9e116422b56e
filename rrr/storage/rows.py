"""Model -> database row, pure. Also the last guard before a write: a row that cannot be
stored (a NULL or non-positive price, a missing time) becomes a dead letter with its reason,
so the rest of its batch still lands.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any

import orjson

from rrr.models import Bar, Kind, Quote, Rejected, Trade

NUMBER = (int, float)


def _price_problem(name: str, value: Any) -> str | None:
    if value is None:
        return f"{name} is null"
    if type(value) not in NUMBER or type(value) is bool:
        return f"{name} is not a number: {value!r}"
    if math.isnan(value) or math.isinf(value):
        return f"{name} is not finite: {value!r}"
    if value <= 0:
        return f"{name} must be positive: {value!r}"
    return None


def _size_problem(name: str, value: Any) -> str | None:
    if value is None:
        return f"{name} is null"
    if type(value) not in NUMBER or type(value) is bool:
        return f"{name} is not a number: {value!r}"
    if math.isnan(value) or math.isinf(value) or value < 0:
        return f"{name} must be a finite number >= 0: {value!r}"
    return None


def _time_problem(name: str, value: Any) -> str | None:
    if type(value) is not int:
        return f"{name} must be integer milliseconds: {value!r}"
    return None


INT32_MAX = 2**31 - 1
SMALLINT_MAX = 2**15 - 1


def _optional_time_problem(name: str, value: Any) -> str | None:
    if value is not None and type(value) is not int:
        return f"{name} must be integer milliseconds or null: {value!r}"
    return None


def _exchange_problem(value: Any) -> str | None:
    if type(value) is not int or not 0 <= value <= INT32_MAX:
        return f"exchange_id must be a non-negative 32-bit integer: {value!r}"
    return None


def _conditions_problem(value: Any) -> str | None:
    if not isinstance(value, list | tuple) or not all(
        type(c) is int and 0 <= c <= SMALLINT_MAX for c in value
    ):
        return f"conditions must be a list of small non-negative integers: {value!r}"
    return None


def _optional_number_problem(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if type(value) not in NUMBER or math.isnan(value) or math.isinf(value) or value < 0:
        return f"{name} must be a finite number >= 0 or null: {value!r}"
    return None


def _optional_count_problem(name: str, value: Any) -> str | None:
    if value is not None and (type(value) is not int or not 0 <= value <= INT32_MAX):
        return f"{name} must be a non-negative integer or null: {value!r}"
    return None


def _text_problem(name: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"{name} is missing"
    return None


def trade_problem(r: Sequence[Any]) -> str | None:
    if len(r) != len(Trade._fields):
        return f"a trade has {len(Trade._fields)} fields, got {len(r)}"
    return (
        _text_problem("ticker", r[0])
        or _exchange_problem(r[1])
        or (None if r[2] not in (None, "") else "trade_id is missing")
        or _price_problem("price", r[3])
        or _size_problem("size", r[4])
        or _conditions_problem(r[5])
        or _time_problem("ts_ms", r[6])
        or _optional_time_problem("received_ms", r[7])
        or _text_problem("source", r[8])
    )


def quote_problem(r: Sequence[Any]) -> str | None:
    if len(r) != len(Quote._fields):
        return f"a quote has {len(Quote._fields)} fields, got {len(r)}"
    return (
        _text_problem("ticker", r[0])
        or _exchange_problem(r[1])
        or _price_problem("bid_price", r[2])
        or _size_problem("bid_size", r[3])
        or _price_problem("ask_price", r[4])
        or _size_problem("ask_size", r[5])
        or _time_problem("ts_ms", r[6])
        or _optional_time_problem("received_ms", r[7])
        or _text_problem("source", r[8])
    )


def bar_problem(r: Sequence[Any]) -> str | None:
    if len(r) != len(Bar._fields):
        return f"a bar has {len(Bar._fields)} fields, got {len(r)}"
    return (
        _text_problem("ticker", r[0])
        or _text_problem("timeframe", r[1])
        or _price_problem("open", r[2])
        or _price_problem("high", r[3])
        or _price_problem("low", r[4])
        or _price_problem("close", r[5])
        or _size_problem("volume", r[6])
        or _optional_number_problem("vwap", r[7])
        or _optional_count_problem("trade_count", r[8])
        or _time_problem("start_ms", r[9])
        or _time_problem("end_ms", r[10])
        or _text_problem("source", r[11])
    )


_INF = math.inf


def _trade_ok(r: Sequence[Any]) -> bool:
    """One-call fast path for the common case; `trade_problem` explains the rest.
    NaN fails every comparison, so `0 < p < inf` rejects it too."""
    if len(r) != 9:
        return False
    p, s = r[3], r[4]
    x, conditions, received = r[1], r[5], r[7]
    return (
        type(r[0]) is str
        and r[0] != ""
        and type(x) is int
        and 0 <= x <= INT32_MAX
        and r[2] is not None
        and r[2] != ""
        and (type(p) is float or type(p) is int)
        and 0 < p < _INF
        and (type(s) is float or type(s) is int)
        and 0 <= s < _INF
        and type(r[6]) is int
        and (received is None or type(received) is int)
        and type(r[8]) is str
        and r[8] != ""
        # The usual conditions are [], [1] or [2]; anything else takes the careful path.
        and (type(conditions) is list or type(conditions) is tuple)
        and (
            not conditions
            or (len(conditions) == 1 and type(conditions[0]) is int and conditions[0] in (1, 2))
        )
    )


ROW_OK: dict[str, Callable[[Sequence[Any]], bool]] = {"trades": _trade_ok}

ROW_PROBLEMS: dict[str, Callable[[Sequence[Any]], str | None]] = {
    "trades": trade_problem,
    "quotes": quote_problem,
    "bars": bar_problem,
}


def split_storable(kind: Kind, rows: Iterable[Sequence[Any]]) -> tuple[list[Any], list[Rejected]]:
    """Rows that can be stored, and the rest as dead letters with the reason."""
    if kind == "bars":
        rows = rows if isinstance(rows, list) else list(rows)
        if bar_columns(rows) is not None:
            return list(rows), []
    problem_of = ROW_PROBLEMS[kind]
    is_ok = ROW_OK.get(kind)
    good: list[Any] = []
    bad: list[Rejected] = []
    for r in rows:
        if is_ok is not None and is_ok(r):
            good.append(r)
            continue
        try:
            reason = problem_of(r)
        except Exception as exc:  # a row of the wrong shape entirely
            reason = f"unreadable row: {exc}"
        if reason is None:
            good.append(r)
        else:
            bad.append(Rejected(raw=row_text(r), reason=reason, kind=kind, source=_source_of(r)))
    return good, bad


_NUMBERS = frozenset(NUMBER)
_OPTIONAL_NUMBERS = frozenset((int, float, type(None)))
_OPTIONAL_INTS = frozenset((int, type(None)))
_SEQUENCES = frozenset((Bar, tuple, list))
# Bar fields by position (rrr.models.Bar), grouped by the check ``bar_problem`` makes.
_BAR_TEXT = (0, 1, 11)  # ticker, timeframe, source: non-empty str
_BAR_PRICES = (2, 3, 4, 5)  # open, high, low, close: finite, > 0
_BAR_VOLUME = 6  # finite, >= 0
_BAR_VWAP = 7  # None, or finite and >= 0
_BAR_TRADE_COUNT = 8  # None, or int in [0, INT32_MAX]
_BAR_TIMES = (9, 10)  # start_ms, end_ms: int


def bar_columns(rows: list[Any]) -> list[list[Any]] | None:
    """The bars column by column when ``bar_problem`` finds nothing in any of them (a page
    the REST parser accepted nearly always), else None: then the rows are checked one by one.

    The same checks as ``bar_problem``, each a pass over one column that loops in C (``map``,
    ``set``, ``sum``, ``min``): ~23 ms for a 48,960-bar page, transposing included, where the
    per-row checks take ~38 ms; and the columns are what the COPY writer needs anyway."""
    if not rows:
        return None
    try:
        if set(map(len, rows)) != {len(Bar._fields)} or not set(map(type, rows)) <= _SEQUENCES:
            return None
        columns = columns_of(rows, len(Bar._fields))
        if not (
            all(set(map(type, columns[i])) == {str} and "" not in columns[i] for i in _BAR_TEXT)
            and all(set(map(type, columns[i])) == {int} for i in _BAR_TIMES)
            and all(_finite_numbers(columns[i]) for i in (*_BAR_PRICES, _BAR_VOLUME))
            and min(min(columns[i]) for i in _BAR_PRICES) > 0
            and min(columns[_BAR_VOLUME]) >= 0
            and set(map(type, columns[_BAR_VWAP])) <= _OPTIONAL_NUMBERS
            and set(map(type, columns[_BAR_TRADE_COUNT])) <= _OPTIONAL_INTS
        ):
            return None
        vwap = _present(columns[_BAR_VWAP])
        if vwap and not (_finite_numbers(vwap) and min(vwap) >= 0):
            return None
        counts = _present(columns[_BAR_TRADE_COUNT])
        if counts and (min(counts) < 0 or max(counts) > INT32_MAX):
            return None
    except (TypeError, ValueError, OverflowError):  # rows of another shape; a huge int
        return None
    return columns


def columns_of(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows -> columns. ``itemgetter`` rather than ``zip(*rows)``, which makes an iterator per
    row: 50,000 allocations that wake the garbage collector."""
    return [list(map(itemgetter(i), rows)) for i in range(width)]


def _finite_numbers(column: list[Any]) -> bool:
    # Types first: a bool is no number here. The sum is finite only if every value is (a NaN
    # or an infinity makes it NaN or infinite); a sum that overflows sends the rows the slow
    # way, which is still right.
    return set(map(type, column)) <= _NUMBERS and math.isfinite(sum(column))


def _present(column: list[Any]) -> list[Any]:
    return [v for v in column if v is not None] if None in column else column


def _source_of(r: Sequence[Any]) -> str:
    try:
        return str(r[-1]) if isinstance(r[-1], str) else ""
    except Exception:
        return ""


def dead_letter_key(r: Rejected) -> str:
    """The same input set aside for the same reason is one dead letter, however often a
    redelivered task writes it."""
    text = "\x1f".join((r.kind, r.source, r.reason, r.raw))
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def row_text(r: Any) -> str:
    return orjson.dumps(list(r) if isinstance(r, tuple) else r, default=repr).decode()


def last_bar_per_key(rows: Iterable[Sequence[Any]]) -> list[Sequence[Any]]:
    """One bar per (ticker, timeframe, start): the last one in the batch wins, as a later
    correction from the vendor must (and one UPSERT statement cannot touch a row twice)."""
    latest: dict[tuple[Any, Any, Any], Sequence[Any]] = {}
    for r in rows:
        latest[(r[0], r[1], r[9])] = r
    return list(latest.values())


def bar_key_range(columns: list[list[Any]]) -> tuple[str, str, int, int] | None:
    """(ticker, timeframe, first start_ms, last start_ms) of bars given as columns, if they
    are all of one ticker and timeframe; else None."""
    tickers, timeframes, starts = columns[0], columns[1], columns[9]
    if not starts or len(set(tickers)) != 1 or len(set(timeframes)) != 1:
        return None
    return tickers[0], timeframes[0], min(starts), max(starts)


def conditions_text(conditions: Sequence[int] | None) -> str:
    """JSON array text, for SQLite which has no array type."""
    if not conditions:
        return "[]"
    return "[" + ",".join(str(int(c)) for c in conditions) + "]"
