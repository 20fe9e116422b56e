"""Model -> database row, pure. Also the last guard before a write: a row that cannot be
stored (a NULL or non-positive price, a missing time, a time out of range, a NUL in its text)
becomes a dead letter with its reason, so the rest of its batch still lands.

Time bounds are ``rrr.bounds``'s. A caller that passes ``now_ms`` (when the rows were received)
gets the "not more than a day ahead" check; without it only what a database can hold is checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any

from rrr.bounds import (
    EARLIEST_MS,
    INT32_MAX,
    LATEST_STORABLE_MS,
    NUL,
    SMALLINT_MAX,
    latest_ms,
    nul_problem,
    time_range_problem,
)
from rrr.models import Bar, Kind, Quote, Rejected, Trade, raw_text, shown

NUMBER = (int, float)


def _price_problem(name: str, value: Any) -> str | None:
    if value is None:
        return f"{name} is null"
    if type(value) not in NUMBER or type(value) is bool:
        return f"{name} is not a number: {shown(value)}"
    if math.isnan(value) or math.isinf(value):
        return f"{name} is not finite: {shown(value)}"
    if value <= 0:
        return f"{name} must be positive: {shown(value)}"
    return None


def _size_problem(name: str, value: Any) -> str | None:
    if value is None:
        return f"{name} is null"
    if type(value) not in NUMBER or type(value) is bool:
        return f"{name} is not a number: {shown(value)}"
    if math.isnan(value) or math.isinf(value) or value < 0:
        return f"{name} must be a finite number >= 0: {shown(value)}"
    return None


def _time_problem(name: str, value: Any, now_ms: int | None) -> str | None:
    if type(value) is not int:
        return f"{name} must be integer milliseconds: {shown(value)}"
    return time_range_problem(name, value, now_ms)


def _optional_time_problem(name: str, value: Any, now_ms: int | None) -> str | None:
    if value is None:
        return None
    if type(value) is not int:
        return f"{name} must be integer milliseconds or null: {shown(value)}"
    return time_range_problem(name, value, now_ms)


def _window_end_problem(value: Any) -> str | None:
    # A bar's window end is derived, not observed: a month or year bar still open ends ahead of
    # any clock. It only has to be storable.
    if type(value) is not int:
        return f"end_ms must be integer milliseconds: {shown(value)}"
    return time_range_problem("end_ms", value, None)


def _exchange_problem(value: Any) -> str | None:
    if type(value) is not int or not 0 <= value <= INT32_MAX:
        return f"exchange_id must be a non-negative 32-bit integer: {shown(value)}"
    return None


def _conditions_problem(value: Any) -> str | None:
    if not isinstance(value, list | tuple) or not all(
        type(c) is int and 0 <= c <= SMALLINT_MAX for c in value
    ):
        return f"conditions must be a list of small non-negative integers: {shown(value)}"
    return None


def _optional_number_problem(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if type(value) not in NUMBER or math.isnan(value) or math.isinf(value) or value < 0:
        return f"{name} must be a finite number >= 0 or null: {shown(value)}"
    return None


def _optional_count_problem(name: str, value: Any) -> str | None:
    if value is not None and (type(value) is not int or not 0 <= value <= INT32_MAX):
        return f"{name} must be a non-negative integer or null: {shown(value)}"
    return None


def _text_problem(name: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"{name} is missing"
    return nul_problem(name, value)


def _trade_id_problem(value: Any) -> str | None:
    if value is None or value == "":
        return "trade_id is missing"
    return nul_problem("trade_id", value)


def trade_problem(r: Sequence[Any], now_ms: int | None = None) -> str | None:
    if len(r) != len(Trade._fields):
        return f"a trade has {len(Trade._fields)} fields, got {len(r)}"
    return (
        _text_problem("ticker", r[0])
        or _exchange_problem(r[1])
        or _trade_id_problem(r[2])
        or _price_problem("price", r[3])
        or _size_problem("size", r[4])
        or _conditions_problem(r[5])
        or _time_problem("ts_ms", r[6], now_ms)
        or _optional_time_problem("received_ms", r[7], now_ms)
        or _text_problem("source", r[8])
    )


def quote_problem(r: Sequence[Any], now_ms: int | None = None) -> str | None:
    if len(r) != len(Quote._fields):
        return f"a quote has {len(Quote._fields)} fields, got {len(r)}"
    return (
        _text_problem("ticker", r[0])
        or _exchange_problem(r[1])
        or _price_problem("bid_price", r[2])
        or _size_problem("bid_size", r[3])
        or _price_problem("ask_price", r[4])
        or _size_problem("ask_size", r[5])
        or _time_problem("ts_ms", r[6], now_ms)
        or _optional_time_problem("received_ms", r[7], now_ms)
        or _text_problem("source", r[8])
    )


def bar_problem(r: Sequence[Any], now_ms: int | None = None) -> str | None:
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
        or _time_problem("start_ms", r[9], now_ms)
        or _window_end_problem(r[10])
        or _text_problem("source", r[11])
    )


_INF = math.inf


def _trade_ok(r: Sequence[Any], latest: int) -> bool:
    """One-call fast path for the common case; `trade_problem` explains the rest.
    NaN fails every comparison, so `0 < p < inf` rejects it too. ``latest``: the latest time
    allowed (``rrr.bounds.latest_ms``)."""
    if len(r) != 9:
        return False
    p, s, ts = r[3], r[4], r[6]
    x, trade_id, conditions, received = r[1], r[2], r[5], r[7]
    return (
        type(r[0]) is str
        and r[0] != ""
        and NUL not in r[0]
        and type(x) is int
        and 0 <= x <= INT32_MAX
        and trade_id is not None
        and trade_id != ""
        and (type(trade_id) is not str or NUL not in trade_id)
        and (type(p) is float or type(p) is int)
        and 0 < p < _INF
        and (type(s) is float or type(s) is int)
        and 0 <= s < _INF
        and type(ts) is int
        and EARLIEST_MS <= ts <= latest
        and (received is None or (type(received) is int and EARLIEST_MS <= received <= latest))
        and type(r[8]) is str
        and r[8] != ""
        and NUL not in r[8]
        # The usual conditions are [], [1] or [2]; anything else takes the careful path.
        and (type(conditions) is list or type(conditions) is tuple)
        and (
            not conditions
            or (len(conditions) == 1 and type(conditions[0]) is int and conditions[0] in (1, 2))
        )
    )


ROW_OK: dict[str, Callable[[Sequence[Any], int], bool]] = {"trades": _trade_ok}

ROW_PROBLEMS: dict[str, Callable[[Sequence[Any], int | None], str | None]] = {
    "trades": trade_problem,
    "quotes": quote_problem,
    "bars": bar_problem,
}


def split_storable(
    kind: Kind, rows: Iterable[Sequence[Any]], now_ms: int | None = None
) -> tuple[list[Any], list[Rejected]]:
    """Rows that can be stored, and the rest as dead letters with the reason. ``now_ms``:
    when the rows were received (see the module's docstring)."""
    rows = rows if isinstance(rows, list) else list(rows)
    columns_ok = COLUMNS_OK.get(kind)
    if columns_ok is not None and columns_ok(rows, now_ms) is not None:  # every row storable
        return list(rows), []
    problem_of = ROW_PROBLEMS[kind]
    is_ok = ROW_OK.get(kind)
    latest = latest_ms(now_ms)
    good: list[Any] = []
    bad: list[Rejected] = []
    for r in rows:
        try:
            if is_ok is not None and is_ok(r, latest):
                good.append(r)
                continue
            reason = problem_of(r, now_ms)
        except Exception as exc:  # a row of the wrong shape entirely
            reason = f"unreadable row: {type(exc).__name__}: {shown(str(exc))}"
        if reason is None:
            good.append(r)
        else:
            bad.append(Rejected(raw=row_text(r), reason=reason, kind=kind, source=_source_of(r)))
    return good, bad


_NUMBERS = frozenset(NUMBER)
_OPTIONAL_NUMBERS = frozenset((int, float, type(None)))
_OPTIONAL_INTS = frozenset((int, type(None)))
_SEQUENCES = frozenset((Bar, tuple, list))
# Bar fields by position (rrr.models.Bar), named, grouped by the check ``bar_problem`` makes.
_BAR = Bar._fields.index
_BAR_TEXT = (_BAR("ticker"), _BAR("timeframe"), _BAR("source"))  # non-empty str
_BAR_PRICES = (_BAR("open"), _BAR("high"), _BAR("low"), _BAR("close"))  # finite, > 0
_BAR_VOLUME = _BAR("volume")  # finite, >= 0
_BAR_VWAP = _BAR("vwap")  # None, or finite and >= 0
_BAR_TRADE_COUNT = _BAR("trade_count")  # None, or int in [0, INT32_MAX]
_BAR_TIMES = (_BAR("start_ms"), _BAR("end_ms"))  # int
_BAR_START, _BAR_END = _BAR_TIMES  # start: in [EARLIEST_MS, latest]; end: storable
# Trade and Quote fields by position (rrr.models), named; the shared ones sit at the same places.
_TRADE, _QUOTE = Trade._fields.index, Quote._fields.index
TICK_TEXT = (_TRADE("ticker"), _TRADE("source"))  # non-empty str
TICK_TIMES = (_TRADE("ts_ms"), _TRADE("received_ms"))  # int; received may be None
_EXCHANGE = _TRADE("exchange_id")
_TS, _RECEIVED = TICK_TIMES
TRADE_ID, TRADE_CONDITIONS = _TRADE("trade_id"), _TRADE("conditions")
_POSITIVE = {"trades": (_TRADE("price"),), "quotes": (_QUOTE("bid_price"), _QUOTE("ask_price"))}
_NON_NEGATIVE = {"trades": (_TRADE("size"),), "quotes": (_QUOTE("bid_size"), _QUOTE("ask_size"))}
_TICK_WIDTH = len(Trade._fields)
if len(Quote._fields) != _TICK_WIDTH or any(
    Quote._fields[i] != Trade._fields[i] for i in (*TICK_TEXT, *TICK_TIMES, _EXCHANGE)
):
    raise TypeError("Trade and Quote must share the places of their common fields")
_TRADE_ID_TYPES = frozenset((str, int))
_TICK_SEQUENCES = frozenset((Trade, Quote, tuple, list))


def tick_columns(kind: str, rows: list[Any], now_ms: int | None = None) -> list[list[Any]] | None:
    """Trades or quotes column by column when ``trade_problem`` / ``quote_problem`` would find
    nothing in any of them (a stream batch nearly always), else None: then the rows are checked
    one by one. As ``bar_columns``: each check is a pass over one column that loops in C, and
    the columns are what the COPY writer takes (measured: ~0.3 us a row, where the per-row
    checks took 0.6 for trades and 1.4 for quotes)."""
    if not rows:
        return None
    try:
        if set(map(len, rows)) != {_TICK_WIDTH} or not set(map(type, rows)) <= _TICK_SEQUENCES:
            return None
        columns = columns_of(rows, _TICK_WIDTH)
        latest = latest_ms(now_ms)
        received = _present(columns[_RECEIVED])
        if not (
            all(set(map(type, columns[i])) == {str} and "" not in columns[i] for i in TICK_TEXT)
            and not any(NUL in text for i in TICK_TEXT for text in set(columns[i]))
            and set(map(type, columns[_EXCHANGE])) == {int}
            and min(columns[_EXCHANGE]) >= 0
            and max(columns[_EXCHANGE]) <= INT32_MAX
            and set(map(type, columns[_TS])) == {int}
            and min(columns[_TS]) >= EARLIEST_MS
            and max(columns[_TS]) <= latest
            and (not received or set(map(type, received)) == {int})
            and (not received or (min(received) >= EARLIEST_MS and max(received) <= latest))
            and all(_finite_numbers(columns[i]) for i in _POSITIVE[kind])
            and all(_finite_numbers(columns[i]) for i in _NON_NEGATIVE[kind])
            and min(min(columns[i]) for i in _POSITIVE[kind]) > 0
            and min(min(columns[i]) for i in _NON_NEGATIVE[kind]) >= 0
        ):
            return None
        if kind == "trades" and not _trade_columns_ok(columns):
            return None
    except (TypeError, ValueError, OverflowError):  # rows of another shape; a huge int
        return None
    return columns


def _trade_columns_ok(columns: list[list[Any]]) -> bool:
    ids, conditions = columns[TRADE_ID], columns[TRADE_CONDITIONS]
    if not set(map(type, ids)) <= _TRADE_ID_TYPES or "" in ids:
        return False
    texts = [i for i in ids if type(i) is str]
    if texts and NUL in "".join(texts):
        return False
    if not set(map(type, conditions)) <= {list, tuple}:
        return False
    # A handful of distinct condition lists in a batch: each checked once.
    return all(_conditions_problem(c) is None for c in set(map(tuple, conditions)))


BAR_KEY = (_BAR("ticker"), _BAR("timeframe"), _BAR("start_ms"))  # the natural key


def bar_columns(rows: list[Any], now_ms: int | None = None) -> list[list[Any]] | None:
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
            # Few distinct tickers, timeframes and sources: look for NUL in those only.
            and not any(NUL in text for i in _BAR_TEXT for text in set(columns[i]))
            and all(set(map(type, columns[i])) == {int} for i in _BAR_TIMES)
            and min(columns[_BAR_START]) >= EARLIEST_MS
            and max(columns[_BAR_START]) <= latest_ms(now_ms)
            and min(columns[_BAR_END]) >= EARLIEST_MS
            and max(columns[_BAR_END]) <= LATEST_STORABLE_MS
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


# A whole batch checked a column at a time first, where that is cheaper than the per-row
# checks (trades have a one-call per-row fast path, _trade_ok, that is cheaper still when the
# columns are not wanted: SQLite and Supabase take rows).
COLUMNS_OK: dict[str, Callable[[list[Any], int | None], list[list[Any]] | None]] = {
    "quotes": lambda rows, now_ms: tick_columns("quotes", rows, now_ms),
    "bars": bar_columns,
}


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
    """The row's source for its dead letter; "" when it has none a store could keep."""
    try:
        source = r[-1]
    except Exception:
        return ""
    return source if type(source) is str and NUL not in source else ""


def row_text(r: Any) -> str:
    return raw_text(list(r) if isinstance(r, tuple) else r)


def last_bar_per_key(rows: Iterable[Sequence[Any]]) -> list[Sequence[Any]]:
    """One bar per (ticker, timeframe, start): the last one in the batch wins, as a later
    correction from the vendor must (and one UPSERT statement cannot touch a row twice)."""
    latest: dict[tuple[Any, Any, Any], Sequence[Any]] = {}
    ticker, timeframe, start = BAR_KEY
    for r in rows:
        latest[(r[ticker], r[timeframe], r[start])] = r
    return list(latest.values())


def bar_key_range(columns: list[list[Any]]) -> tuple[str, str, int, int] | None:
    """(ticker, timeframe, first start_ms, last start_ms) of bars given as columns, if they
    are all of one ticker and timeframe; else None."""
    tickers, timeframes, starts = (columns[i] for i in BAR_KEY)
    if not starts or len(set(tickers)) != 1 or len(set(timeframes)) != 1:
        return None
    return tickers[0], timeframes[0], min(starts), max(starts)
