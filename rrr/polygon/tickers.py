"""WebSocket pair -> REST ticker, memoised for the stream's parsers (pure).

Pairs are few, so the parsers read ``TICKERS`` with a plain ``dict.get`` (cheaper on the hot
path than ``lru_cache``'s call) and call ``ticker_of`` only on a miss.
"""

from __future__ import annotations

from typing import Any

from rrr.symbols import SymbolError, pair_to_ticker

# pair -> REST ticker, filled by ``ticker_of``; bounded so a feed of junk pairs cannot grow it.
TICKERS: dict[str, str] = {}
_MAX_TICKERS = 10_000


def ticker_of(pair: Any) -> str | None:
    """``BTC-USD`` -> ``X:BTCUSD`` (memoised), or None for anything that is not a pair."""
    if type(pair) is not str:
        return None
    try:
        ticker = pair_to_ticker(pair)
    except SymbolError:
        return None
    if len(TICKERS) < _MAX_TICKERS:
        TICKERS[pair] = ticker
    return ticker
