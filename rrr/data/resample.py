"""Coarser bars from finer ones, pure: the frame in, the frame out, times in epoch ms.

A bar of ``step_ms`` starts on a multiple of ``step_ms`` since the epoch (UTC midnight for
every step that divides a day: rrr.data.arguments.timeframe_ms admits only those) and holds
the finer bars starting in it: the first open, the highest high, the lowest low, the last
close, the summed volume and trade count, and the vwap weighted by volume (over the finer
bars that have a vwap). A window without any finer bar has no bar (rrr.data.fill adds one).
Works on float64 columns and on Decimal (object) columns alike.
"""

from __future__ import annotations

import pandas as pd

# The columns the frame must have (a bars frame of rrr.data, times as ms).
BAR_INPUT = ("ticker", "event_time", "open", "high", "low", "close", "volume", "vwap")


def resample_bars(bars: pd.DataFrame, step_ms: int, timeframe: str) -> pd.DataFrame:
    """``bars`` (columns: BAR_INPUT, optional trade_count and source; ``event_time`` the
    bar's start in ms) sorted by ticker then time -> bars of ``step_ms``, labelled
    ``timeframe``, with ``end_time`` = start + step, sorted the same way."""
    out_columns = [*BAR_INPUT[:2], "timeframe", "end_time", *BAR_INPUT[2:], "trade_count"]
    if "source" in bars.columns:
        out_columns.append("source")
    if bars.empty:
        return pd.DataFrame({c: bars.get(c, pd.Series(dtype="float64")) for c in out_columns})
    start = bars["event_time"].astype("int64")
    has_vwap = bars["vwap"].notna()
    weight = bars["volume"].where(has_vwap, 0)
    work = pd.DataFrame(
        {
            "ticker": bars["ticker"],
            "event_time": (start // step_ms) * step_ms,
            "open": bars["open"],
            "high": bars["high"],
            "low": bars["low"],
            "close": bars["close"],
            "volume": bars["volume"],
            "price_volume": bars["vwap"].where(has_vwap, 0) * weight,
            "weight": weight,
            "trade_count": bars.get("trade_count", pd.Series(pd.NA, index=bars.index)),
        }
    )
    if "source" in bars.columns:
        work["source"] = bars["source"]
    groups = work.groupby(["ticker", "event_time"], sort=True)
    out = groups.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        price_volume=("price_volume", "sum"),
        weight=("weight", "sum"),
    )
    out["vwap"] = _weighted_mean(out["price_volume"], out["weight"])
    out["trade_count"] = groups["trade_count"].sum(min_count=1).astype("Int64")
    if "source" in work.columns:
        out["source"] = groups["source"].first()
    out = out.reset_index()
    out["timeframe"] = timeframe
    out["end_time"] = out["event_time"] + step_ms
    return out[out_columns]


def _weighted_mean(total: pd.Series, weight: pd.Series) -> pd.Series:
    """total / weight, missing where the weight is 0 (no volume with a vwap in the window)."""
    if total.dtype == object:  # Decimal: exact division, and no division by zero
        return pd.Series(
            [t / w if w else None for t, w in zip(total, weight, strict=True)],
            index=total.index,
            dtype=object,
        )
    return (total / weight.where(weight > 0)).astype("float64")
