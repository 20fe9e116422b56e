"""The simulator's ``GET /v1/last/crypto/{from}/{to}`` (the ``massive`` client's
``get_last_crypto_trade``): the newest trade the market made for the pair, from the same trade
tape that serves ``/v3/trades`` and feeds the WebSocket's XT events.

The vendor's shape (spec §2.3 "last trade"; fixture
``test_rest/mocks/v1/last/crypto/BTC/USD.json``; OpenAPI ``LastTradeCrypto`` in
``.massive/rest.crypto-subset.json``): ``{"last": {conditions, exchange, price, size,
timestamp}, "request_id", "status": "success", "symbol": "BTC-USD"}``. Unlike v2/v3 answers,
``status`` is lower-case ``success`` and ``timestamp`` is in **ms**. The client reads the
``last`` object (``result_key="last"``, ``PY:massive/rest/trades.py``) into ``CryptoTrade``.

Not captured from the vendor, so assumed here: a pair the market does not stream answers 404
``Ticker not found.`` (the text of the per-ticker error in the summaries mock, spec §2.4) in
this simulator's usual ``ERROR`` body; a streamed pair before its first trade answers 200
without ``last`` (the client then returns ``[]``, as for any missing result key,
``PY:massive/rest/base.py``).

Pure over plain data: ``last_trade_body`` returns the body (without its ``request_id``) or
raises ``BadTradesRequest``; ``rrr.simulator.rest`` wraps it into a response.
"""

from __future__ import annotations

from typing import Any

from rrr.simulator.rest_trades import BadTradesRequest, TradeTapes
from rrr.symbols import SymbolError, pair_to_ticker

LAST_TRADE_PREFIX = "/v1/last/crypto"


def last_trade_pair(path: str) -> str:
    """``BTC-USD`` for ``/v1/last/crypto/BTC/USD`` (the path's symbols, upper-cased)."""
    parts = path[len(LAST_TRADE_PREFIX) :].strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        raise BadTradesRequest("Not found: /v1/last/crypto/{from}/{to}", 404)
    return f"{parts[0].upper()}-{parts[1].upper()}"


def last_trade_body(tapes: TradeTapes, path: str) -> dict[str, Any]:
    """The body of a last-trade answer (``request_id`` aside)."""
    pair = last_trade_pair(path)
    try:
        ticker = pair_to_ticker(pair)
    except SymbolError as exc:
        raise BadTradesRequest(str(exc)) from None
    tape = tapes.trade_tape(ticker)
    if tape is None:
        raise BadTradesRequest("Ticker not found.", 404)
    body: dict[str, Any] = {}
    trade = tape.last()
    if trade is not None:
        body["last"] = {
            "conditions": [trade.side],
            "exchange": trade.exchange,
            "price": trade.price,
            "size": trade.size,
            "timestamp": trade.t_ms,  # ms here, where /v3/trades says ns
        }
    return body | {"status": "success", "symbol": pair}
