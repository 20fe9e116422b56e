"""The simulator's ``GET /v3/trades/{cryptoTicker}`` (spec §2.3), served from the market's trade
tapes: the very trades its WebSocket sent, or would have sent to a client that was away.

As the vendor documents it: the ticker dashed (``X:BTC-USD``; ``X:BTCUSD`` is accepted too, the
spec leaves it open); ``timestamp`` (a nanosecond time or a ``YYYY-MM-DD`` day) and the range
forms ``timestamp.gte``/``.gt``/``.lte``/``.lt``; ``order`` ``asc``/``desc`` (default desc);
``limit`` 1..50000 (default 1000); ``sort`` = ``timestamp``. Results carry ``conditions``,
``exchange``, ``id`` (text), ``participant_timestamp`` (ns), ``price``, ``size``; more pages
are announced by ``next_url`` = this server's base + ``?cursor=`` (unpadded base64url of the
original query plus a ``page_marker``, never the key). A window with no trades has no
``results`` key, as the aggregates endpoint answers an empty range. Minutes before the market
went live, and tickers it does not stream, have no trades.

Pure over plain data: ``trades_body`` returns the body (without its ``request_id``) or raises
``BadTradesRequest``; ``rrr.simulator.rest`` wraps it into a response.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode

from rrr.simulator.tape import TapeTrade, TradeTape
from rrr.symbols import SymbolError, pair_to_ticker, validate_ticker

TRADES_PREFIX = "/v3/trades"
DEFAULT_TRADES_LIMIT, MAX_TRADES_LIMIT = 1_000, 50_000
NS_PER_MS = 1_000_000
DAY_NS = 86_400 * 10**9
_FOREVER_MS = 2**62 // NS_PER_MS
NOT_ENTITLED_TEXT = (
    "You are not entitled to this data. Please upgrade your plan at https://polygon.io/pricing"
)


class TradeTapes(Protocol):
    """What the endpoint needs of ``rrr.simulator.market.Market``."""

    def trade_tape(self, ticker: str) -> TradeTape | None: ...


class BadTradesRequest(ValueError):
    """A request the vendor would answer 400 (or 404): the message says what is wrong."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def trades_ticker(path: str) -> tuple[str, str]:
    """(ticker as in the path, its ``X:BTCUSD`` form) for ``/v3/trades/{cryptoTicker}``."""
    text = path[len(TRADES_PREFIX) :].strip("/")
    if not text or "/" in text:
        raise BadTradesRequest("Not found: /v3/trades/{cryptoTicker}", 404)
    try:
        ticker = pair_to_ticker(text) if "-" in text else validate_ticker(text)
    except SymbolError as exc:
        raise BadTradesRequest(str(exc)) from None
    return text, ticker


def _ns(name: str, text: str, day_end: bool) -> int:
    """A time parameter in ns: integer ns, or a ``YYYY-MM-DD`` day (its start, or with
    ``day_end`` its last ns)."""
    if text.isdigit():
        return int(text)
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise BadTradesRequest(f"{name} must be a nanosecond timestamp or YYYY-MM-DD") from None
    start = int(day.timestamp()) * 10**9
    return start + DAY_NS - 1 if day_end else start


def _ceil_ms(ns: int) -> int:
    return -(-ns // NS_PER_MS)


def window_ms(query: dict[str, str]) -> tuple[int, int]:
    """[start, end) in ms of the trades the ``timestamp`` filters select. Trades are made on
    whole ms, so a bound in ns selects exactly the ms it covers."""
    start, end = 0, _FOREVER_MS
    if "timestamp" in query:
        text = query["timestamp"]
        if text.isdigit():  # one exact ns: only a whole ms can hold a trade
            ns = int(text)
            at = ns // NS_PER_MS
            start, end = (at, at + 1) if ns % NS_PER_MS == 0 else (at + 1, at + 1)
        else:
            start = _ceil_ms(_ns("timestamp", text, False))
            end = _ceil_ms(_ns("timestamp", text, True) + 1)
    if "timestamp.gte" in query:
        start = max(start, _ceil_ms(_ns("timestamp.gte", query["timestamp.gte"], False)))
    if "timestamp.gt" in query:
        start = max(start, _ns("timestamp.gt", query["timestamp.gt"], True) // NS_PER_MS + 1)
    if "timestamp.lt" in query:
        end = min(end, _ceil_ms(_ns("timestamp.lt", query["timestamp.lt"], False)))
    if "timestamp.lte" in query:
        end = min(end, _ns("timestamp.lte", query["timestamp.lte"], True) // NS_PER_MS + 1)
    return start, max(start, end)


def encode_cursor(params: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(urlencode(params).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except ValueError:
        raise BadTradesRequest("bad cursor") from None
    return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def result(trade: TapeTrade) -> dict[str, Any]:
    """One trade as the vendor's ``results[]`` item (crypto fields only)."""
    return {
        "conditions": [trade.side],
        "exchange": trade.exchange,
        "id": str(trade.trade_id),
        "participant_timestamp": trade.t_ms * NS_PER_MS,
        "price": trade.price,
        "size": trade.size,
    }


def trades_body(
    tapes: TradeTapes, path: str, query: dict[str, str], *, page_size: int, host: str
) -> dict[str, Any]:
    """The body of one trades page (``request_id`` aside). ``query``: the request's
    parameters, one value each, the key left out; ``page_size``: the most results a page
    holds whatever ``limit`` says (a test hook); ``host``: for ``next_url``."""
    as_sent, ticker = trades_ticker(path)
    if "cursor" in query:
        query = decode_cursor(query["cursor"])
    try:
        limit = int(query.get("limit", DEFAULT_TRADES_LIMIT))
        marker = int(query["page_marker"]) if "page_marker" in query else None
    except ValueError:
        raise BadTradesRequest("limit must be an integer") from None
    order, sort = query.get("order", "desc"), query.get("sort", "timestamp")
    if not 1 <= limit <= MAX_TRADES_LIMIT:
        raise BadTradesRequest(f"limit must be 1..{MAX_TRADES_LIMIT}")
    if order not in ("asc", "desc") or sort != "timestamp":
        raise BadTradesRequest("order must be asc or desc, and sort timestamp")
    start_ms, end_ms = window_ms(query)
    tape = tapes.trade_tape(ticker)
    first, end = tape.seq_range(start_ms, end_ms) if tape is not None else (0, 0)
    size = min(limit, max(1, page_size))
    if order == "asc":
        lo = first if marker is None else max(first, marker)
        hi = min(end, lo + size)
        more, next_marker = hi < end, hi
    else:
        hi = end if marker is None else min(end, marker)
        lo = max(first, hi - size)
        more, next_marker = lo > first, lo
    trades = tape.read(lo, hi) if tape is not None and lo < hi else []
    if order == "desc":
        trades.reverse()
    body: dict[str, Any] = {}
    if trades:
        body["results"] = [result(t) for t in trades]
    body["status"] = "OK"
    if more:
        params = {k: v for k, v in query.items() if k not in ("cursor", "page_marker")}
        cursor = encode_cursor({**params, "page_marker": str(next_marker)})
        body["next_url"] = f"http://{host}{TRADES_PREFIX}/{as_sent}?cursor={cursor}"
    return body
