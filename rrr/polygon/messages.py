"""Polygon/Massive crypto WebSocket frames -> Trade, Quote, Bar, Status or Rejected (pure).

A frame is a JSON array of events, several kinds mixed (spec 1.2). Each event is routed by its
``ev`` through ``EVENT_PARSERS``; a bad event becomes ``Rejected(raw, reason)`` and the rest of
the frame still parses, whatever is wrong with it (a field of the wrong type, a time out of
range, a NUL in its text, nesting too deep to re-encode). Only a frame that is not JSON at all is
rejected whole. The vendor's short field names live in this module and its slow path,
``rrr.polygon.rejections``, which says why an event was refused.

Times must fall within ``rrr.bounds``: not before 2009-01-03, not more than a day after
``now_ms``, the receiving clock the caller passes in.

This is the stream worker's hot path (one call per frame, >= 200,000 events/s), so the parsers
read fields with plain subscripts inside one ``try``, check types with ``type(x) is ...`` and
build the NamedTuples with ``tuple.__new__``; the precise reason for a rejection is worked out
only on the slow path, once something is known to be wrong.

Numbers stay the floats orjson decoded: ``repr(float)`` gives back the vendor's decimal text, and
the stores write that text (see ``rrr.models``). orjson never yields NaN or infinity (it refuses
``NaN`` and ``1e400``, so such a frame is rejected whole), but the checks below still reject them
for events handed in as dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from rrr.bounds import EARLIEST_MS, INT32_MAX, MAX_AHEAD_MS, NUL, SMALLINT_MAX
from rrr.models import Bar, Quote, Rejected, Trade, shown
from rrr.polygon.rejections import frame_text, invalid, missing_field, reject, unroutable
from rrr.polygon.tickers import TICKERS, ticker_of

_INF = float("inf")
_new = tuple.__new__
_loads = orjson.loads


class Status(NamedTuple):
    """A control message: ``connected``, ``auth_success``, ``auth_failed``, ``success`` (a
    subscription acknowledged), ``max_connections``, ``slow_consumer``, ... (spec 1.4)."""

    status: str
    message: str


Event = Trade | Quote | Bar | Status | Rejected


def is_auth_success(status: Status) -> bool:
    """The feed accepted the key: ``auth_success``, or the legacy ``success`` with message
    ``authenticated`` that old docs (polygon.io/sockets) show and the spec says to accept
    (spec §1.1 step 4). A plain ``success`` is a subscription's acknowledgement, not this."""
    return status.status == "auth_success" or (
        status.status == "success" and status.message == "authenticated"
    )


# (event, source, now_ms) -> a record, a status or a rejection.
EventParser = Callable[[dict[str, Any], str, int], Event]

# -- one parser per event type ----------------------------------------------------------------


def parse_trade(e: dict[str, Any], source: str, now_ms: int) -> Trade | Rejected:
    """XT: one trade."""
    try:
        pair = e["pair"]  # WebSocket pair, BTC-USD
        p = e["p"]  # price, quote currency per unit
        s = e["s"]  # size, units of the base asset (fractional; may be 4.522e-05)
        t = e["t"]  # exchange timestamp, Unix ms
        x = e["x"]  # crypto exchange id (/v3/reference/exchanges)
        i = e["i"]  # trade id: an integer in the spec, a UUID string in captures
    except KeyError as missing:
        return missing_field(e, missing, "trades", source)
    latest = now_ms + MAX_AHEAD_MS
    c = e.get("c")  # conditions: 1 = sell side, 2 = buy side; absent or [] = none
    r = e.get("r")  # when the vendor received it, Unix ms (optional)
    ticker = TICKERS.get(pair) if type(pair) is str else None
    if ticker is None:
        ticker = ticker_of(pair)
    tp, ts, ti = type(p), type(s), type(i)
    if (
        ticker is None
        or not ((tp is float or tp is int) and 0 < p < _INF)
        or not ((ts is float or ts is int) and 0 <= s < _INF)
        or type(t) is not int
        or not EARLIEST_MS <= t <= latest
        or type(x) is not int
        or not 0 <= x <= INT32_MAX
        or not ((ti is str and i and NUL not in i) or ti is int)
        or not (r is None or (type(r) is int and EARLIEST_MS <= r <= latest))
        or not (c is None or type(c) is list)
    ):
        return invalid(e, "trades", source, now_ms)
    if c:
        for v in c:
            if type(v) is not int or not 0 <= v <= SMALLINT_MAX:
                return invalid(e, "trades", source, now_ms)
        c = tuple(c)
    else:
        c = ()
    return _new(
        Trade,
        (
            ticker,
            x,
            i if ti is str else str(i),
            p if tp is float else float(p),
            s if ts is float else float(s),
            c,
            t,
            r,
            source,
        ),
    )


def parse_quote(e: dict[str, Any], source: str, now_ms: int) -> Quote | Rejected:
    """XQ: top of book on one exchange."""
    try:
        pair = e["pair"]  # WebSocket pair, BTC-USD
        bp = e["bp"]  # bid price
        bs = e["bs"]  # bid size, base units
        ap = e["ap"]  # ask price
        az = e["as"]  # ask size, base units
        t = e["t"]  # exchange timestamp, Unix ms
        x = e["x"]  # crypto exchange id
    except KeyError as missing:
        return missing_field(e, missing, "quotes", source)
    latest = now_ms + MAX_AHEAD_MS
    r = e.get("r")  # when the vendor received it, Unix ms (optional); lp/ls are ignored
    ticker = TICKERS.get(pair) if type(pair) is str else None
    if ticker is None:
        ticker = ticker_of(pair)
    tbp, tbs, tap, tas = type(bp), type(bs), type(ap), type(az)
    if (
        ticker is None
        or not ((tbp is float or tbp is int) and 0 < bp < _INF)
        or not ((tbs is float or tbs is int) and 0 <= bs < _INF)
        or not ((tap is float or tap is int) and 0 < ap < _INF)
        or not ((tas is float or tas is int) and 0 <= az < _INF)
        or type(t) is not int
        or not EARLIEST_MS <= t <= latest
        or type(x) is not int
        or not 0 <= x <= INT32_MAX
        or not (r is None or (type(r) is int and EARLIEST_MS <= r <= latest))
    ):
        return invalid(e, "quotes", source, now_ms)
    return _new(
        Quote,
        (
            ticker,
            x,
            bp if tbp is float else float(bp),
            bs if tbs is float else float(bs),
            ap if tap is float else float(ap),
            az if tas is float else float(az),
            t,
            r,
            source,
        ),
    )


def _bar_parser(timeframe: str, window_ms: int) -> EventParser:
    def parse_bar(e: dict[str, Any], source: str, now_ms: int) -> Bar | Rejected:
        """XA (minute) / XAS (second) aggregate over a closed window."""
        try:
            pair = e["pair"]  # WebSocket pair, BTC-USD
            o = e["o"]  # open: first trade price in the window
            h = e["h"]  # high
            lo = e["l"]  # low
            c = e["c"]  # close: last trade price in the window
            v = e["v"]  # volume, base units (fractional although the spec says integer)
            s = e["s"]  # window start, Unix ms (the bar's key)
        except KeyError as missing:
            return missing_field(e, missing, "bars", source)
        # Window end, Unix ms, exclusive; every example carries it, but the window length is
        # fixed by the event type, so a missing one is derived rather than the bar lost.
        end = e.get("e", s + window_ms if type(s) is int else None)
        vw = e.get("vw")  # VWAP of the window (optional). `z` is the average trade SIZE, not
        # a trade count, so Bar.trade_count stays None: the feed has no count.
        ticker = TICKERS.get(pair) if type(pair) is str else None
        if ticker is None:
            ticker = ticker_of(pair)
        if (
            ticker is None
            or not all((type(n) is float or type(n) is int) and 0 < n < _INF for n in (o, h, lo, c))
            or not ((type(v) is float or type(v) is int) and 0 <= v < _INF)
            or not (vw is None or ((type(vw) is float or type(vw) is int) and 0 <= vw < _INF))
            or type(s) is not int
            or type(end) is not int
            or not EARLIEST_MS <= s < end <= now_ms + MAX_AHEAD_MS
        ):
            return invalid(e, "bars", source, now_ms)
        return _new(
            Bar,
            (
                ticker,
                timeframe,
                float(o),
                float(h),
                float(lo),
                float(c),
                float(v),
                None if vw is None else float(vw),
                None,
                s,
                end,
                source,
            ),
        )

    return parse_bar


def parse_status(e: dict[str, Any], source: str, now_ms: int) -> Status | Rejected:
    """status: connection, auth and subscription state (spec 1.4)."""
    status = e.get("status")  # connected, auth_success, auth_failed, success, ...
    message = e.get("message", "")  # free text, e.g. "subscribed to: XT.BTC-USD"
    if type(status) is not str or not status:
        return reject(e, "status event without a 'status' text", "", source)
    if NUL in status:
        return reject(e, "field 'status' contains a NUL character", "", source)
    if type(message) is not str:
        message = shown(message, 500)
    # The message is free text, logged and stored as a system event: a NUL is escaped rather
    # than the status lost (an auth_success must still end the handshake).
    return _new(Status, (status, message.replace(NUL, "\\u0000")))


parse_minute_bar = _bar_parser("1m", 60_000)
parse_second_bar = _bar_parser("1s", 1_000)

# ev -> parser. XL2 (deprecated since 2024-07), FMV and the launchpad channels are not
# subscribed to; if one arrives anyway it is set aside as an unknown event, not dropped silently.
EVENT_PARSERS: dict[str, EventParser] = {
    "XT": parse_trade,
    "XQ": parse_quote,
    "XA": parse_minute_bar,
    "XAS": parse_second_bar,
    "status": parse_status,
}


# -- frames -----------------------------------------------------------------------------------


def parse_frame(
    frame: bytes | bytearray | memoryview | str, source: str, now_ms: int
) -> list[Event]:
    """Every event of one frame, in order: records, statuses and rejected events.

    ``source`` is stored on every record: ``"polygon"``, or ``"simulator"`` for simulated data.
    ``now_ms`` is when the frame was received: no time in it may be more than a day later.
    """
    try:
        items = _loads(frame)
    except orjson.JSONDecodeError as exc:
        return [Rejected(raw=frame_text(frame), reason=f"frame is not JSON: {exc}", source=source)]
    if type(items) is not list:
        return [Rejected(raw=frame_text(frame), reason="frame is not a JSON array", source=source)]
    out: list[Event] = []
    for e in items:
        try:
            out.append(EVENT_PARSERS[e["ev"]](e, source, now_ms))
        except Exception as exc:  # no ev, an unknown ev, not an object, or a parser tripped
            out.append(unroutable(e, source, now_ms, exc, EVENT_PARSERS))
    return out


def parse_statuses(frame: bytes | bytearray | memoryview | str) -> list[Status]:
    """Only the status messages of a frame (the transport's view during the handshake)."""
    return [e for e in parse_frame(frame, "", 0) if type(e) is Status]  # statuses hold no time
