"""Quiet windows (no trade, so no bar), made visible, pure; times in epoch ms.

A window with no bar is a quiet window as far as the bars tell: a minute with no trade has no
bar at the vendor. (Whether a missing minute was confirmed quiet or is an open gap is what
``rrr coverage`` reports; fill only shapes the frame.)

- ``none``: the bars as they are.
- ``mark``: one row per window of the grid, and a boolean ``quiet`` column; quiet rows have
  no prices (NaN), volume 0 and trade count 0.
- ``ffill``: as ``mark``, and a quiet row carries the previous close as its open, high, low,
  close and vwap, with volume 0. Quiet windows before a ticker's first bar in the range have
  no close to carry and are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import pandas as pd

from rrr.data.arguments import Fill

_PRICES = ("open", "high", "low", "close", "vwap")


def fill_quiet(
    bars: pd.DataFrame,
    tickers: Sequence[str],
    first_ms: int,
    end_ms: int,
    step_ms: int,
    timeframe: str,
    mode: Fill,
) -> pd.DataFrame:
    """``bars`` (ticker, event_time in ms, ..., sorted by ticker then time) on the grid
    ``first_ms``, ``first_ms + step_ms``, ... below ``end_ms``, for every ticker."""
    if mode == "none":
        return bars
    grid = np.arange(first_ms, end_ms, step_ms, dtype="int64")
    full = pd.MultiIndex.from_product([list(tickers), grid], names=["ticker", "event_time"])
    out = bars.set_index(["ticker", "event_time"]).reindex(full)
    quiet = out["open"].isna()
    out["quiet"] = quiet
    zero = Decimal(0) if out["volume"].dtype == object else 0.0
    out["volume"] = out["volume"].mask(quiet, zero)
    out["trade_count"] = out["trade_count"].mask(quiet, 0)
    out["timeframe"] = out["timeframe"].mask(quiet, timeframe)
    starts = pd.Series(out.index.get_level_values("event_time"), index=out.index)
    out["end_time"] = out["end_time"].mask(quiet, starts + step_ms)
    if mode == "ffill":
        last_close = out.groupby(level="ticker", sort=False)["close"].ffill()
        for column in _PRICES:
            out[column] = out[column].mask(quiet, last_close)
        out = out[out["close"].notna()]
    out = out.reset_index()
    if "trade_count" in out.columns:
        out["trade_count"] = out["trade_count"].astype("Int64")
    return out
