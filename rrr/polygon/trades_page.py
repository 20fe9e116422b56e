"""A ``/v3/trades`` answer -> ``Trade`` rows and rejected results (pure; ``now_ms`` is passed
in).

Wire fields of ``/v3/trades/{cryptoTicker}`` results (spec §2.3), parsed by
``parse_trades_page``; required by the spec: ``exchange``, ``price``, ``size``, ``id``:

- ``exchange``: crypto exchange id, the stream's ``x`` (``/v3/reference/exchanges``)
- ``id``: trade id, text (the stream's ``i``, which may come as an integer there)
- ``price``: quote currency per unit, the stream's ``p``
- ``size``: base units, fractional, the stream's ``s``
- ``participant_timestamp``: when the exchange made the trade, Unix **nanoseconds** (the
  stream's ``t`` is ms). Optional in the spec, required here: a trade without a time cannot
  be stored. Once divided down to ms, within ``rrr.bounds``: not before 2009-01-03, not
  more than a day after the ``now_ms`` the caller passes in.
- ``conditions``: int[]; 1 = sell side, 2 = buy side, as the stream's ``c`` (optional)

(ticker, ``exchange``, ``id``) is the natural key the streamed trade has too, so a trade the
stream did get and a repair fetches again is stored once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rrr.bounds import INT32_MAX, NUL, SMALLINT_MAX, time_range_problem
from rrr.errors import ParseError
from rrr.models import Rejected, Trade, raw_text, shown
from rrr.polygon.body_status import body_status_error, item_error
from rrr.polygon.paging import Paged, load_object, page_links
from rrr.polygon.timespans import NS_PER_MS

_NUMBER = (int, float)
_INF = float("inf")


@dataclass(frozen=True, slots=True)
class TradesPage(Paged):
    """One page of a ``/v3/trades`` answer, parsed."""

    trades: list[Trade]
    rejected: list[Rejected] = field(default_factory=list)
    next_url: str | None = None
    request_id: str | None = None
    results_count: int = 0  # results the vendor sent (before our checks)


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
    payload = load_object(body, "trades") if isinstance(body, bytes | bytearray) else body
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
    return TradesPage(trades, rejected, *page_links(payload, len(results)))
