"""Ticker forms. REST and the database use ``X:BTCUSD``; the WebSocket pair is ``BTC-USD``; the
asset is ``BTC``. Subscribing with ``XT.X:BTCUSD`` is acknowledged by the vendor but never
delivers (massive-com/client-python#87), so conversions are strict and errors say which form
was expected.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Quote currencies the vendor lists for crypto pairs, longest first so USDT wins over USD.
QUOTE_CURRENCIES = ("USDT", "USDC", "USD", "EUR", "GBP", "JPY", "BTC", "ETH", "AUD", "CAD")

_TICKER_RE = re.compile(r"^X:([A-Z0-9]{2,12})$")
_PAIR_RE = re.compile(r"^([A-Z0-9]{1,10})-([A-Z]{3,4})$")


class SymbolError(ValueError):
    """A ticker, pair or asset not in the expected form."""


@lru_cache(maxsize=4096)
def split_ticker(ticker: str) -> tuple[str, str]:
    """``X:BTCUSD`` -> ``("BTC", "USD")``."""
    m = _TICKER_RE.match(ticker)
    if m is None:
        raise SymbolError(
            f"bad ticker {ticker!r}: expected the REST crypto form like 'X:BTCUSD' "
            "(prefix X:, upper case, no dash)"
        )
    body = m.group(1)
    for quote in QUOTE_CURRENCIES:
        if body.endswith(quote) and len(body) > len(quote):
            return body[: -len(quote)], quote
    raise SymbolError(
        f"bad ticker {ticker!r}: cannot tell the quote currency; it must end in one of "
        f"{', '.join(QUOTE_CURRENCIES)}"
    )


def ticker_to_pair(ticker: str) -> str:
    """``X:BTCUSD`` -> ``BTC-USD`` (the WebSocket subscription form)."""
    base, quote = split_ticker(ticker)
    return f"{base}-{quote}"


@lru_cache(maxsize=4096)
def pair_to_ticker(pair: str) -> str:
    """``BTC-USD`` -> ``X:BTCUSD``. Also accepts the prefixed ``X:BTC-USD`` some feeds use."""
    body = pair[2:] if pair.startswith("X:") else pair
    m = _PAIR_RE.match(body)
    if m is None:
        raise SymbolError(f"bad pair {pair!r}: expected the WebSocket form like 'BTC-USD'")
    return f"X:{m.group(1)}{m.group(2)}"


def ticker_to_asset(ticker: str) -> str:
    """``X:BTCUSD`` -> ``BTC``."""
    return split_ticker(ticker)[0]


def validate_ticker(ticker: str) -> str:
    split_ticker(ticker)
    return ticker
