"""Where the simulated market's prices and sizes start, and how they are rounded (pure): a
plausible USD price per asset (other assets get a name-derived one), a pair's price decimals, and
a fast half-up rounding that prints as a clean decimal."""

from __future__ import annotations

import math

from rrr.symbols import split_ticker

SIZE_DP = 8
SIZE_SCALE = 10.0**SIZE_DP
MIN_SIZE = 1 / SIZE_SCALE

# Plausible USD prices; other assets get a name-derived price in 1..100.
USD_PRICES = {"BTC": 90_000.0, "ETH": 3_000.0, "SOL": 150.0, "LTC": 80.0, "AVAX": 30.0}
USD_PRICES |= {"LINK": 15.0, "DOT": 5.0, "XRP": 2.2, "ADA": 0.6, "DOGE": 0.2}
USD_PER_UNIT = {"USD": 1.0, "USDT": 1.0, "USDC": 1.0, "EUR": 1.08, "GBP": 1.26, "JPY": 0.0067}
USD_PER_UNIT |= {"AUD": 0.66, "CAD": 0.73}
MINUTE_NOTIONAL_USD = 200_000.0  # traded per pair per minute, on average


def usd_price(asset: str) -> float:
    """What one unit of ``asset`` is worth in USD, roughly."""
    if asset in USD_PRICES:
        return USD_PRICES[asset]
    if asset in USD_PER_UNIT:
        return USD_PER_UNIT[asset]
    return 1.0 + 99.0 * (sum(map(ord, asset)) * 7919 % 1000) / 1000


def start_price(ticker: str) -> float:
    """The price of ``ticker`` (``X:BTCUSD``) in its quote currency."""
    base, quote = split_ticker(ticker)
    return usd_price(base) / usd_price(quote)


def price_decimals(price: float) -> int:
    """The decimals a pair at ``price`` is quoted in (2 for BTC-USD)."""
    return 2 if price >= 100 else 4 if price >= 1 else 6 if price >= 0.01 else 8


def round_to(x: float, scale: float) -> float:
    """``x`` rounded half-up to ``1 / scale`` (``scale = 10.0**dp``), 3x faster than ``round``.

    An exact integer divided by a power of ten is the double nearest that decimal, so ``repr``
    (and orjson) print the clean decimal. Needs ``x * scale < 2**53``, true for ticks.
    """
    return math.floor(x * scale + 0.5) / scale
