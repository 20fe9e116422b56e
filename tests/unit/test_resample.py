"""Resampling and filling against hand-computed bars: a quiet minute inside a window, a
minute without a vwap, and windows either side of a UTC midnight."""

from __future__ import annotations

import math
from decimal import Decimal

import pandas as pd
import pytest

from rrr.data.arguments import fill_of, tickers_of, time_range, timeframe_ms
from rrr.data.fill import fill_quiet
from rrr.data.resample import resample_bars

MIDNIGHT = 1_764_547_200_000  # 2025-12-01T00:00:00Z
M = 60_000


def at(hh_mm: str) -> int:
    """'23:55' the day before MIDNIGHT, '00:01' after it."""
    hours, minutes = (int(x) for x in hh_mm.split(":"))
    ms = (hours * 60 + minutes) * M
    return MIDNIGHT + ms - (86_400_000 if hours >= 12 else 0)


# (minute, open, high, low, close, volume, vwap, trade_count); 23:57 is quiet (no bar).
MINUTES = [
    ("23:55", 10, 11, 9, 10.5, 1, 10, 2),
    ("23:56", 10.5, 12, 10, 11, 3, 11, 4),
    ("23:58", 11, 11.5, 8, 9, 2, 9.5, 1),
    ("23:59", 9, 10, 8.5, 9.5, 4, None, 0),  # no vwap: in the volume, not in the vwap
    ("00:00", 9.5, 9.8, 9.1, 9.2, 5, 9.4, 5),
    ("00:01", 9.2, 9.3, 9.0, 9.05, 1, 9.1, 1),
]


def minute_bars(exact: bool = False, ticker: str = "X:BTCUSD") -> pd.DataFrame:
    number = (lambda v: None if v is None else Decimal(str(v))) if exact else float
    rows = [
        {
            "ticker": ticker,
            "timeframe": "1m",
            "open": number(o),
            "high": number(h),
            "low": number(lo),
            "close": number(c),
            "volume": number(v),
            "vwap": number(w) if exact else (math.nan if w is None else float(w)),
            "trade_count": n,
            "event_time": at(t),
            "end_time": at(t) + M,
            "source": "test",
        }
        for t, o, h, lo, c, v, w, n in MINUTES
    ]
    df = pd.DataFrame(rows)
    df["trade_count"] = df["trade_count"].astype("Int64")
    return df


def test_five_minutes_across_midnight_by_hand() -> None:
    out = resample_bars(minute_bars(), 5 * M, "5m")
    assert out["event_time"].tolist() == [at("23:55"), MIDNIGHT]
    assert out["end_time"].tolist() == [MIDNIGHT, MIDNIGHT + 5 * M]
    before, after = out.iloc[0], out.iloc[1]
    # 23:55-23:59, 23:57 quiet: open of 23:55, close of 23:59, extremes over four minutes.
    assert (before.open, before.high, before.low, before.close) == (10, 12, 8, 9.5)
    assert before.volume == 10  # 1 + 3 + 2 + 4
    assert before.vwap == pytest.approx((10 * 1 + 11 * 3 + 9.5 * 2) / 6)  # 23:59 has no vwap
    assert before.trade_count == 7
    assert (after.open, after.high, after.low, after.close) == (9.5, 9.8, 9.0, 9.05)
    assert after.volume == 6
    assert after.vwap == pytest.approx((9.4 * 5 + 9.1 * 1) / 6)
    assert after.trade_count == 6
    assert set(out["timeframe"]) == {"5m"} and set(out["source"]) == {"test"}


@pytest.mark.parametrize(("timeframe", "step_ms"), [("1h", 3_600_000), ("1d", 86_400_000)])
def test_windows_end_at_utc_midnight(timeframe: str, step_ms: int) -> None:
    out = resample_bars(minute_bars(), step_ms, timeframe)
    assert out["event_time"].tolist() == [MIDNIGHT - step_ms, MIDNIGHT]
    assert out["open"].tolist() == [10, 9.5]
    assert out["close"].tolist() == [9.5, 9.05]
    assert out["volume"].tolist() == [10, 6]


def test_exact_decimals_stay_exact() -> None:
    out = resample_bars(minute_bars(exact=True), 5 * M, "5m")
    assert out["volume"].tolist() == [Decimal(10), Decimal(6)]
    assert out["vwap"].iloc[1] == Decimal("9.35")  # (47 + 9.1) / 6, no float rounding
    assert out["high"].iloc[0] == Decimal(12) and isinstance(out["high"].iloc[0], Decimal)


def test_tickers_are_resampled_apart() -> None:
    both = pd.concat([minute_bars(), minute_bars(ticker="X:ETHUSD")], ignore_index=True)
    out = resample_bars(both.sort_values(["ticker", "event_time"]), 5 * M, "5m")
    assert out["ticker"].tolist() == ["X:BTCUSD", "X:BTCUSD", "X:ETHUSD", "X:ETHUSD"]
    assert out["volume"].tolist() == [10, 6, 10, 6]


def test_a_window_without_bars_has_none() -> None:
    bars = minute_bars()
    out = resample_bars(bars[bars["event_time"] != at("23:58")], 60 * M, "1h")
    assert len(out) == 2  # a quiet minute is not a quiet hour
    empty = resample_bars(bars.iloc[0:0], 5 * M, "5m")
    assert empty.empty and "vwap" in empty.columns


def test_mark_adds_quiet_minutes() -> None:
    out = fill_quiet(minute_bars(), ["X:BTCUSD"], at("23:54"), at("00:02"), M, "1m", "mark")
    assert out["event_time"].tolist() == list(range(at("23:54"), at("00:02"), M))
    quiet = out.set_index("event_time")["quiet"]
    assert quiet[at("23:57")] and quiet[at("23:54")] and not quiet[at("23:58")]
    row = out.set_index("event_time").loc[at("23:57")]
    assert math.isnan(row.open) and row.volume == 0 and row.trade_count == 0
    assert row.end_time == at("23:58") and row.timeframe == "1m"


def test_ffill_carries_the_last_close_with_no_volume() -> None:
    out = fill_quiet(minute_bars(), ["X:BTCUSD"], at("23:54"), at("00:02"), M, "1m", "ffill")
    # 23:54 comes before the first bar: no close to carry, left out.
    assert out["event_time"].tolist() == list(range(at("23:55"), at("00:02"), M))
    row = out.set_index("event_time").loc[at("23:57")]
    assert (row.open, row.high, row.low, row.close, row.vwap) == (11, 11, 11, 11, 11)
    assert row.volume == 0 and row.quiet
    assert out["quiet"].sum() == 1


def test_fill_none_is_the_bars_as_they_are() -> None:
    bars = minute_bars()
    assert fill_quiet(bars, ["X:BTCUSD"], at("23:54"), at("00:02"), M, "1m", "none") is bars


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda: timeframe_ms("7m"), "does not divide a day"),
        (lambda: timeframe_ms("1w"), "unknown timeframe"),
        (lambda: timeframe_ms("m5"), "unknown timeframe"),
        (lambda: fill_of("zero"), "unknown fill"),
        (lambda: time_range("2026-01-02", "2026-01-01"), "must be after start"),
        (lambda: time_range("2026-01-01", "2026-01-01"), "must be after start"),
        (lambda: time_range("yesterday", "2026-01-01"), "is not a time"),
        (lambda: time_range(5, "2026-01-01"), "must be a datetime"),
        (lambda: tickers_of("BTCUSD"), "bad ticker"),
        (lambda: tickers_of([]), "no tickers"),
    ],
)
def test_bad_arguments_say_what_to_pass(call: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        call()  # type: ignore[operator]


def test_times_and_tickers_normalised() -> None:
    naive = time_range("2026-01-01", pd.Timestamp("2026-01-01T01:00"))
    aware = time_range(pd.Timestamp("2026-01-01T01:00+01:00"), "2026-01-01T01:00:00Z")
    assert naive == (1_767_225_600_000, 1_767_229_200_000) == aware
    assert tickers_of(["BTC-USD", "X:BTCUSD", "X:ETH-USD"]) == (("X:BTCUSD", "X:ETHUSD"), True)
    assert tickers_of("X:BTCUSD") == (("X:BTCUSD",), False)
    assert timeframe_ms("15m") == 900_000 and timeframe_ms("1d") == 86_400_000
