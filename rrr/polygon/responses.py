"""Pure parsing of Polygon/Massive REST answers: an aggregates page -> ``Bar`` rows, an error
answer -> the rrr error it means. No I/O; ``now_ms`` is passed in where time matters.

Wire fields of ``/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}`` results
(spec §2.2), the only place these short names live:

- ``o``, ``h``, ``l``, ``c``: open, high, low, close of the window (quote currency)
- ``v``: volume in base units (fractional for crypto)
- ``vw``: volume-weighted average price (optional)
- ``t``: window **start**, Unix ms UTC (required); within ``rrr.bounds``: not before 2009-01-03,
  not more than a day after the ``now_ms`` the caller passes in
- ``n``: number of trades in the window (optional)

An empty range is HTTP 200 with no ``results`` key at all (polygon-io/issues#186). A 200 whose
body says ``"status":"ERROR"`` or ``"NOT_AUTHORIZED"`` is an error, not an empty page
(``body_status_error``); a result that is a per-item error (``{"error":"NOT_FOUND",
"message":...}``, spec §2.4) is rejected with the vendor's words.

Wire fields of ``/v3/trades/{cryptoTicker}`` results (spec §2.3), parsed by
``parse_trades_page``; required by the spec: ``exchange``, ``price``, ``size``, ``id``:

- ``exchange``: crypto exchange id, the stream's ``x`` (``/v3/reference/exchanges``)
- ``id``: trade id, text (the stream's ``i``, which may come as an integer there)
- ``price``: quote currency per unit, the stream's ``p``
- ``size``: base units, fractional, the stream's ``s``
- ``participant_timestamp``: when the exchange made the trade, Unix **nanoseconds** (the
  stream's ``t`` is ms). Optional in the spec, required here: a trade without a time cannot
  be stored. Same ``rrr.bounds`` as above once divided down to ms.
- ``conditions``: int[]; 1 = sell side, 2 = buy side, as the stream's ``c`` (optional)

(ticker, ``exchange``, ``id``) is the natural key the streamed trade has too, so a trade the
stream did get and a repair fetches again is stored once.
"""

from __future__ import annotations

import calendar
import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import repeat
from operator import itemgetter, methodcaller
from typing import Any, cast
from urllib.parse import urlsplit

import orjson

from rrr.bounds import (
    EARLIEST_MS,
    INT32_MAX,
    NUL,
    SMALLINT_MAX,
    latest_ms,
    time_range_problem,
)
from rrr.errors import (
    ParseError,
    RateLimited,
    VendorAuthError,
    VendorError,
    VendorUnavailable,
)
from rrr.models import Bar, Rejected, Trade, raw_text, shown
from rrr.polygon.body_status import body_status_error, item_error

SECOND_MS = 1_000
MINUTE_MS = 60_000
NS_PER_MS = 1_000_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# The API's timespans (spec §2.2) and the suffix of our ``timeframe`` label. Month is "mo" so it
# never reads as minutes.
TIMESPAN_SUFFIX: dict[str, str] = {
    "second": "s",
    "minute": "m",
    "hour": "h",
    "day": "d",
    "week": "w",
    "month": "mo",
    "quarter": "q",
    "year": "y",
}
TIMESPANS = tuple(TIMESPAN_SUFFIX)
# Timespans of fixed length; month, quarter and year follow the calendar.
FIXED_TIMESPAN_MS: dict[str, int] = {
    "second": SECOND_MS,
    "minute": MINUTE_MS,
    "hour": HOUR_MS,
    "day": DAY_MS,
    "week": 7 * DAY_MS,
}
_CALENDAR_MONTHS = {"month": 1, "quarter": 3, "year": 12}

_NUMBER = (int, float)
_INF = float("inf")
# The fast path's type sets (bool is its own type, so True is no number here either).
_NUMBERS = frozenset(_NUMBER)
_OPTIONAL_NUMBERS = frozenset((int, float, type(None)))
_OPTIONAL_INTS = frozenset((int, type(None)))
_REQUIRED = ("o", "h", "l", "c", "v", "t")
_GET_VW = methodcaller("get", "vw")
_GET_N = methodcaller("get", "n")


def timeframe(multiplier: int, timespan: str) -> str:
    """(1, "minute") -> "1m"; (5, "minute") -> "5m"; (1, "hour") -> "1h"; (1, "month") -> "1mo"."""
    suffix = TIMESPAN_SUFFIX.get(timespan)
    if suffix is None:
        raise ValueError(f"unknown timespan {timespan!r}; expected one of {', '.join(TIMESPANS)}")
    if multiplier < 1:
        raise ValueError(f"multiplier must be at least 1, got {multiplier}")
    return f"{multiplier}{suffix}"


def add_months(ts_ms: int, months: int) -> int:
    """Calendar arithmetic in UTC; the day of month is clamped (Jan 31 + 1 month = Feb 28/29)."""
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    index = dt.year * 12 + (dt.month - 1) + months
    year, month = divmod(index, 12)
    day = min(dt.day, calendar.monthrange(year, month + 1)[1])
    return int(dt.replace(year=year, month=month + 1, day=day).timestamp() * 1000)


def bar_end_ms(start_ms: int, multiplier: int, timespan: str) -> int:
    """Exclusive end of the window that starts at ``start_ms``."""
    fixed = FIXED_TIMESPAN_MS.get(timespan)
    if fixed is not None:
        return start_ms + multiplier * fixed
    return add_months(start_ms, multiplier * _CALENDAR_MONTHS[timespan])


@dataclass(frozen=True, slots=True)
class AggsPage:
    """One page of an aggregates answer, parsed."""

    bars: list[Bar]
    rejected: list[Rejected] = field(default_factory=list)
    next_url: str | None = None
    request_id: str | None = None
    results_count: int = 0  # what the vendor says it sent (before our checks)

    @property
    def next_path(self) -> str | None:
        return next_path(self.next_url) if self.next_url else None


def next_path(next_url: str) -> str:
    """Path + query of a ``next_url``. Like the official client, we call it against our own
    configured base URL, so a vendor (or a proxy) naming another host cannot redirect us."""
    parts = urlsplit(next_url)
    if not parts.path.startswith("/"):
        raise ParseError(f"next_url has no absolute path: {next_url[:200]!r}")
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _problem(item: Mapping[str, Any], now_ms: int) -> str | None:
    vendor_error = item_error(item, "aggregate")
    if vendor_error is not None:
        return vendor_error
    for key in ("o", "h", "l", "c", "v"):
        value = item.get(key)
        if value is None:
            return f"aggregate without {key!r}"
        if type(value) not in _NUMBER:
            return f"aggregate {key!r} is not a number: {shown(value)}"
    t = item.get("t")
    if type(t) is not int:
        return f"aggregate 't' must be integer milliseconds: {shown(t)}"
    late = time_range_problem("aggregate 't'", t, now_ms)
    if late is not None:
        return late
    vw = item.get("vw")
    if vw is not None and type(vw) not in _NUMBER:
        return f"aggregate 'vw' is not a number: {shown(vw)}"
    n = item.get("n")
    if n is not None and type(n) is not int:
        return f"aggregate 'n' is not an integer: {shown(n)}"
    if n is not None and not 0 <= n <= INT32_MAX:
        return f"aggregate 'n' must be a trade count from 0 to {INT32_MAX}: {n!r}"
    return None


def parse_aggs_page(
    body: bytes | Mapping[str, Any],
    *,
    ticker: str,
    multiplier: int,
    timespan: str,
    source: str,
    now_ms: int,
) -> AggsPage:
    """A 200 aggregates body -> bars of ``timeframe(multiplier, timespan)`` for ``ticker``.

    A result that lacks a required field, carries one of the wrong type or a start time out
    of range (``now_ms``: when the page was received) becomes a ``Rejected`` with the reason;
    the rest of the page is still used. Only a body that is no aggregates object at all is a
    ``ParseError``; one whose ``status`` reports an error raises ``body_status_error``'s error.
    """
    payload = _load_object(body) if isinstance(body, bytes | bytearray) else body
    error = body_status_error(payload, "aggregates")
    if error is not None:
        raise error
    results = payload.get("results")
    if results is None:
        results = []  # empty range: no "results" key at all
    if not isinstance(results, list):
        raise ParseError(f"aggregates 'results' is not a list: {type(results).__name__}")
    label = timeframe(multiplier, timespan)
    fixed = FIXED_TIMESPAN_MS.get(timespan)
    span = multiplier * fixed if fixed is not None else None
    columns = _well_formed_columns(results, now_ms)
    if columns is not None:
        return _page(
            payload,
            _bars_from_columns(columns, ticker, label, span, multiplier, timespan, source),
            [],
            len(results),
        )
    bars: list[Bar] = []
    rejected: list[Rejected] = []
    for item in results:
        reason = _problem(item, now_ms) if isinstance(item, dict) else "aggregate is not an object"
        if reason is not None:
            rejected.append(Rejected(raw=raw_text(item), reason=reason, kind="bars", source=source))
            continue
        t = item["t"]
        bars.append(
            Bar(
                ticker,
                label,
                item["o"],
                item["h"],
                item["l"],
                item["c"],
                item["v"],
                item.get("vw"),
                item.get("n"),
                t,
                t + span if span is not None else bar_end_ms(t, multiplier, timespan),
                source,
            )
        )
    return _page(payload, bars, rejected, len(results))


def _page(
    payload: Mapping[str, Any], bars: list[Bar], rejected: list[Rejected], sent: int
) -> AggsPage:
    next_url = payload.get("next_url")
    request_id = payload.get("request_id")
    count = payload.get("resultsCount")
    return AggsPage(
        bars=bars,
        rejected=rejected,
        next_url=next_url if isinstance(next_url, str) and next_url else None,
        request_id=request_id if isinstance(request_id, str) else None,
        results_count=count if isinstance(count, int) else sent,
    )


def _well_formed_columns(results: list[Any], now_ms: int) -> tuple[list[Any], ...] | None:
    """The fields o, h, l, c, v, vw, n, t column by column when every result passes
    ``_problem`` (a vendor page nearly always does), else None and the caller checks result by
    result. Each pass (``map``, ``set``) loops in C: with the bars built, ~25 ms for a
    48,960-bar page where the loop over the results takes ~36 ms."""
    if set(map(type, results)) != {dict}:
        return None  # also an empty page: nothing to gain
    try:
        o, h, l, c, v, t = (list(map(itemgetter(key), results)) for key in _REQUIRED)  # noqa: E741
    except KeyError:
        return None
    try:
        vw, n = (list(map(itemgetter(key), results)) for key in ("vw", "n"))
    except KeyError:  # both optional; the vendor usually sends them
        vw, n = list(map(_GET_VW, results)), list(map(_GET_N, results))
    if (
        all(set(map(type, column)) <= _NUMBERS for column in (o, h, l, c, v))
        and set(map(type, t)) == {int}
        and min(t) >= EARLIEST_MS
        and max(t) <= latest_ms(now_ms)
        and set(map(type, vw)) <= _OPTIONAL_NUMBERS
        and set(map(type, n)) <= _OPTIONAL_INTS
        and _counts_fit(n)
    ):
        return o, h, l, c, v, vw, n, t
    return None


def _counts_fit(n: list[int | None]) -> bool:
    """Every trade count fits PostgreSQL's INTEGER (checked only after the types are)."""
    counts = [x for x in n if x is not None] if None in n else cast("list[int]", n)
    return not counts or (min(counts) >= 0 and max(counts) <= INT32_MAX)


def _bars_from_columns(
    columns: tuple[list[Any], ...],
    ticker: str,
    label: str,
    span: int | None,
    multiplier: int,
    timespan: str,
    source: str,
) -> list[Bar]:
    o, h, l, c, v, vw, n, t = columns  # noqa: E741
    if span is not None:
        ends = list(map(span.__add__, t))
    else:
        ends = [bar_end_ms(start, multiplier, timespan) for start in t]
    fields = zip(repeat(ticker), repeat(label), o, h, l, c, v, vw, n, t, ends, repeat(source))
    return list(map(_new_bar, fields))


# Bar(*fields) without the Python-level __new__ of a NamedTuple: half the time per bar.
_new_bar = partial(tuple.__new__, Bar)


def _load_object(body: bytes | bytearray, what: str = "aggregates") -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"{what} answer is not JSON: {error_text(bytes(body))!r}") from exc
    if not isinstance(payload, dict):
        raise ParseError(f"{what} answer is not a JSON object: {type(payload).__name__}")
    return payload


@dataclass(frozen=True, slots=True)
class TradesPage:
    """One page of a ``/v3/trades`` answer, parsed."""

    trades: list[Trade]
    rejected: list[Rejected] = field(default_factory=list)
    next_url: str | None = None
    request_id: str | None = None
    results_count: int = 0  # results the vendor sent (before our checks)

    @property
    def next_path(self) -> str | None:
        return next_path(self.next_url) if self.next_url else None


def _number_problem(item: Mapping[str, Any], key: str, positive: bool) -> str | None:
    value = item.get(key)
    if value is None:
        return f"trade without {key!r}"
    if type(value) not in _NUMBER or value != value or value in (_INF, -_INF):
        return f"trade {key!r} is not a finite number: {shown(value)}"
    if positive and value <= 0:
        return f"trade {key!r} must be positive: {value!r}"
    if value < 0:
        return f"trade {key!r} must not be negative: {value!r}"
    return None


def _trade_problem(item: Mapping[str, Any], now_ms: int) -> str | None:
    """Why one ``/v3/trades`` result cannot be a ``Trade``, or None."""
    vendor_error = item_error(item, "trade")
    if vendor_error is not None:
        return vendor_error
    exchange = item.get("exchange")
    if type(exchange) is not int or not 0 <= exchange <= INT32_MAX:
        return f"trade 'exchange' must be an exchange id from 0 to {INT32_MAX}: {shown(exchange)}"
    trade_id = item.get("id")
    if not ((type(trade_id) is str and trade_id) or type(trade_id) is int):
        return f"trade 'id' must be a trade id (non-empty text): {shown(trade_id)}"
    if type(trade_id) is str and NUL in trade_id:
        return "trade 'id' contains a NUL character"
    problem = _number_problem(item, "price", True) or _number_problem(item, "size", False)
    if problem is not None:
        return problem
    ts_ns = item.get("participant_timestamp")
    if type(ts_ns) is not int:
        return f"trade 'participant_timestamp' must be integer nanoseconds: {shown(ts_ns)}"
    late = time_range_problem("trade 'participant_timestamp' (as ms)", ts_ns // NS_PER_MS, now_ms)
    if late is not None:
        return late.replace("(Unix ms expected)", "(Unix ns expected)")
    conditions = item.get("conditions")
    if conditions is not None and (
        type(conditions) is not list
        or any(type(c) is not int or not 0 <= c <= SMALLINT_MAX for c in conditions)
    ):
        return f"trade 'conditions' must be a list of integer codes: {shown(conditions)}"
    return None


def parse_trades_page(
    body: bytes | Mapping[str, Any], *, ticker: str, source: str, now_ms: int
) -> TradesPage:
    """A 200 ``/v3/trades`` body -> trades of ``ticker`` (the ``X:BTCUSD`` form: results do
    not name their ticker). A result with a field missing, of the wrong type or out of range
    (``now_ms``: when the page was received) becomes a ``Rejected`` with the reason; the rest
    of the page is still used. Only a body that is no JSON object, or whose ``results`` is no
    list, is a ``ParseError``; one whose ``status`` reports an error raises
    ``body_status_error``'s error."""
    payload = _load_object(body, "trades") if isinstance(body, bytes | bytearray) else body
    error = body_status_error(payload, "trades")
    if error is not None:
        raise error
    results = payload.get("results")
    if results is None:
        results = []  # an empty window, as aggregates answer it (no "results" at all)
    if not isinstance(results, list):
        raise ParseError(f"trades 'results' is not a list: {type(results).__name__}")
    trades: list[Trade] = []
    rejected: list[Rejected] = []
    for item in results:
        reason = (
            _trade_problem(item, now_ms) if isinstance(item, dict) else "trade is not an object"
        )
        if reason is not None:
            rejected.append(Rejected(raw_text(item), reason, kind="trades", source=source))
            continue
        price, size = item["price"], item["size"]
        trades.append(
            Trade(
                ticker,
                item["exchange"],
                str(item["id"]),
                float(price),
                float(size),
                tuple(item.get("conditions") or ()),
                item["participant_timestamp"] // NS_PER_MS,
                None,  # the vendor's receive time: the stream has it (r), REST does not
                source,
            )
        )
    page = _page(payload, [], [], len(results))
    return TradesPage(trades, rejected, page.next_url, page.request_id, page.results_count)


_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


def error_text(body: bytes, limit: int = 200) -> str:
    """The human part of an error body: ``error`` (ERROR bodies) or ``message``
    (NOT_AUTHORIZED bodies, spec §2.4), else the text itself (an nginx HTML page), shortened."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict):
        for key in ("error", "message", "status"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value[:limit]
    text = _SPACES.sub(" ", _TAGS.sub(" ", body.decode("utf-8", errors="replace"))).strip()
    return (text or "empty body")[:limit]


def retry_after_s(value: str | None, now_ms: int) -> float | None:
    """``Retry-After`` as seconds (it may be a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_ms / 1000)


def error_for_status(
    status: int, body: bytes, retry_after: str | None, now_ms: int
) -> VendorError | None:
    """The rrr error an HTTP answer means, or None for a 2xx. Messages never carry the key."""
    if 200 <= status < 300:
        return None
    text = error_text(body)
    if status == 401:
        return VendorAuthError(
            f"Polygon/Massive refused the API key (HTTP 401: {text}). Set POLYGON_API_KEY "
            "(or MASSIVE_API_KEY) to a valid key; without one, point POLYGON_REST_URL at the "
            "simulator",
            status=status,
        )
    if status == 403:
        return VendorAuthError(
            f"Polygon/Massive: the plan of POLYGON_API_KEY does not cover this request "
            f"(HTTP 403: {text}). Backfill a shorter or older range, or upgrade the plan",
            status=status,
        )
    if status == 429:
        wait = retry_after_s(retry_after, now_ms)
        return RateLimited(
            f"Polygon/Massive rate limit (HTTP 429: {text}); lower POLYGON_RATE_LIMIT to stay "
            "under the plan's budget",
            retry_after_s=wait,
        )
    if status >= 500 or status in (408, 499):
        return VendorUnavailable(
            f"Polygon/Massive unavailable (HTTP {status}: {text})", status=status
        )
    return VendorError(
        f"Polygon/Massive rejected the request (HTTP {status}: {text})", status=status
    )
