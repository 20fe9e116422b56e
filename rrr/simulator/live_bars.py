"""Bars built from the simulated market's live trades (pure): a window accumulates trades, and
a closed window becomes an XA (minute) or XAS (second) event, or the REST columns of a minute
bar: o = first, h = max, l = min, c = last, v = sum of sizes, vw = VWAP, z = mean size,
s = window start, e = s + the window's length."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rrr.simulator.history import MINUTE_MS
from rrr.simulator.prices import SIZE_DP

Event = dict[str, Any]


@dataclass(slots=True)
class Window:
    """A bar being accumulated from trades."""

    start_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    notional: float
    count: int

    def add(self, price: float, size: float) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += size
        self.notional += price * size
        self.count += 1


def bar_event(ev: str, pair: str, dp: int, w: Window, length_ms: int) -> Event:
    """The closed window ``w`` of ``pair`` (quoted in ``dp`` decimals) as an ``ev`` event."""
    vwap_dp = min(dp + 2, 10)
    return {
        "ev": ev,
        "pair": pair,
        "o": w.open,
        "h": w.high,
        "l": w.low,
        "c": w.close,
        "v": round(w.volume, SIZE_DP),
        "vw": round(w.notional / w.volume, vwap_dp),
        "z": round(w.volume / w.count, SIZE_DP),
        "s": w.start_ms,
        "e": w.start_ms + length_ms,
    }


def rest_bar_values(pair: str, dp: int, w: Window) -> tuple[float, ...]:
    """The live XA bar in REST column order o, h, l, c, v, vw, t, n."""
    event = bar_event("XA", pair, dp, w, MINUTE_MS)
    keys = ("o", "h", "l", "c", "v", "vw", "s")
    return (*(event[k] for k in keys), w.count)
