"""Data-quality checks over one ticker's bars, trades and quotes: pure pandas/numpy.

Market-value checks live here (price moves, volume spikes, return z-scores, OHLC consistency),
record integrity in ``integrity``, missing data in ``gaps``; ``run_all_checks`` runs them all.

Inputs are DataFrames as the stores return them (``start_ms``/``ts_ms`` integer columns, float
prices); time comes in as arguments. Each check flags rows with vectorised arithmetic and builds a
``QualityIssue`` only for the few flagged rows. Bar checks report one issue per bar, quote and null
checks one per minute, so a finding's window is stable from run to run (the validator's dedupe
relies on it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from rrr.quality.gaps import (
    check_stale_feed,
    classify_missing,
    find_gaps,
    gap_issues,
    unverified_issues,
)
from rrr.quality.integrity import check_crossed_quotes, check_duplicate_bars, check_nulls
from rrr.quality.issues import (
    CHECK_SEVERITY,
    OHLC_INCONSISTENT,
    PRICE_MOVE,
    PRICE_RANGE,
    RETURN_ZSCORE,
    VOLUME_SPIKE,
    QualityIssue,
    QualityThresholds,
)

__all__ = [
    "QualityIssue",
    "QualityThresholds",
    "check_crossed_quotes",
    "check_duplicate_bars",
    "check_nulls",
    "check_ohlc",
    "check_price_moves",
    "check_return_zscores",
    "check_stale_feed",
    "check_volume_spikes",
    "find_gaps",
    "run_all_checks",
]

DEFAULT_THRESHOLDS = QualityThresholds()


def ordered_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """Bars by start time, one per start (the last one wins, as in the stores' upsert)."""
    if bars["start_ms"].is_monotonic_increasing and bars["start_ms"].is_unique:
        return bars
    return bars.drop_duplicates("start_ms", keep="last").sort_values("start_ms", kind="stable")


def _bar_issues(
    check: str,
    ticker: str,
    bars: pd.DataFrame,
    flagged: np.ndarray,
    since_ms: int | None,
    thresholds: QualityThresholds,
    describe: Callable[[int], tuple[str, dict[str, Any]]],
) -> list[QualityIssue]:
    """One issue per flagged bar from ``since_ms`` on; ``describe(i)`` gives text and details."""
    starts = bars["start_ms"].to_numpy()
    if since_ms is not None:
        flagged = flagged & (starts >= since_ms)
    issues = []
    for i in np.flatnonzero(flagged).tolist():
        message, details = describe(i)
        issues.append(
            QualityIssue(
                check=check,
                severity=CHECK_SEVERITY[check],
                ticker=ticker,
                window_start_ms=int(starts[i]),
                window_end_ms=int(starts[i]) + thresholds.bar_ms,
                message=message,
                details=details,
            )
        )
    return issues


def check_price_moves(
    ticker: str,
    bars: pd.DataFrame,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
    since_ms: int | None = None,
) -> list[QualityIssue]:
    """A close more than ``max_bar_move`` from the previous close (price_move), and a high or low
    more than ``max_range_from_prev_close`` from it (price_range)."""
    bars = ordered_bars(bars)
    close = bars["close"].to_numpy(dtype="float64")
    prev = np.concatenate(([np.nan], close[:-1]))
    high, low = bars["high"].to_numpy(dtype="float64"), bars["low"].to_numpy(dtype="float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        move = np.abs(close - prev) / prev
        up, down = (high - prev) / prev, (prev - low) / prev
    limit = thresholds.max_range_from_prev_close
    moved = move > thresholds.max_bar_move
    ranged = (up > limit) | (down > limit)

    def describe_move(i: int) -> tuple[str, dict[str, Any]]:
        text = f"close moved {move[i]:.1%} from the previous close {prev[i]:g} to {close[i]:g}"
        details = {"prev_close": float(prev[i]), "close": float(close[i])}
        return text, {**details, "move": float(move[i])}

    def describe_range(i: int) -> tuple[str, dict[str, Any]]:
        far = max(up[i], down[i])
        text = f"high/low {far:.1%} from the previous close {prev[i]:g}"
        details = {"prev_close": float(prev[i]), "high": float(high[i]), "low": float(low[i])}
        return text, {**details, "distance": float(far)}

    return _bar_issues(
        PRICE_MOVE, ticker, bars, moved, since_ms, thresholds, describe_move
    ) + _bar_issues(PRICE_RANGE, ticker, bars, ranged, since_ms, thresholds, describe_range)


def check_volume_spikes(
    ticker: str,
    bars: pd.DataFrame,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
    since_ms: int | None = None,
) -> list[QualityIssue]:
    """Volume above ``volume_spike_multiple`` x the mean of the previous bars. The bar itself is
    left out of its own average, or a spike would raise the bar it is judged against."""
    bars = ordered_bars(bars)
    volume = bars["volume"].astype("float64")
    mean = (
        volume.rolling(thresholds.volume_window_bars, min_periods=thresholds.volume_min_bars)
        .mean()
        .shift(1)
        .to_numpy()
    )
    v = volume.to_numpy()
    with np.errstate(invalid="ignore"):
        flagged = (mean > 0) & (v > thresholds.volume_spike_multiple * mean)

    def describe(i: int) -> tuple[str, dict[str, Any]]:
        ratio = float(v[i] / mean[i])
        text = f"volume {v[i]:g} is {ratio:.1f}x the rolling average {mean[i]:g}"
        return text, {"volume": float(v[i]), "rolling_mean": float(mean[i]), "ratio": ratio}

    return _bar_issues(VOLUME_SPIKE, ticker, bars, flagged, since_ms, thresholds, describe)


def check_return_zscores(
    ticker: str,
    bars: pd.DataFrame,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
    since_ms: int | None = None,
) -> list[QualityIssue]:
    """Close-to-close returns with |z| > ``max_return_z`` over the bars given.

    Two refinements keep the z honest: a return spanning k minutes (quiet minutes between bars)
    is scaled by 1/sqrt(k), as a random walk's spread grows; returns beyond ``max_bar_move`` are
    already price_move issues, so they neither repeat here nor inflate the spread that would
    hide smaller outliers.
    """
    bars = ordered_bars(bars)
    close = bars["close"].to_numpy(dtype="float64")
    starts = bars["start_ms"].to_numpy(dtype="float64")
    if len(close) < 2:
        return []
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = np.concatenate(([np.nan], close[1:] / close[:-1] - 1.0))
        minutes = np.concatenate(([np.nan], np.diff(starts) / thresholds.bar_ms))
        ret = raw / np.sqrt(np.maximum(minutes, 1.0))
    usable = np.isfinite(ret) & (np.abs(raw) <= thresholds.max_bar_move)
    if usable.sum() < thresholds.min_returns_for_z:
        return []
    mean, std = float(ret[usable].mean()), float(ret[usable].std(ddof=1))
    if not std > 0:
        return []
    z = np.where(usable, (ret - mean) / std, 0.0)
    flagged = np.abs(z) > thresholds.max_return_z

    def describe(i: int) -> tuple[str, dict[str, Any]]:
        text = f"return {raw[i]:.3%} has z = {z[i]:.1f} (mean {mean:.2e}, std {std:.2e})"
        return text, {"return": float(raw[i]), "z": float(z[i]), "mean": mean, "std": std}

    return _bar_issues(RETURN_ZSCORE, ticker, bars, flagged, since_ms, thresholds, describe)


def check_ohlc(
    ticker: str,
    bars: pd.DataFrame,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
    since_ms: int | None = None,
) -> list[QualityIssue]:
    """An impossible bar: low above open, close or high, or high below open or close."""
    bars = ordered_bars(bars)
    o, h, low, c = (bars[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close"))
    flagged = (low > np.fmin(o, c)) | (h < np.fmax(o, c)) | (low > h)

    def describe(i: int) -> tuple[str, dict[str, Any]]:
        prices = {"open": o[i], "high": h[i], "low": low[i], "close": c[i]}
        text = "inconsistent OHLC " + " ".join(f"{k}={v:g}" for k, v in prices.items())
        return text, {k: float(v) for k, v in prices.items()}

    return _bar_issues(OHLC_INCONSISTENT, ticker, bars, flagged, since_ms, thresholds, describe)


def run_all_checks(
    ticker: str,
    *,
    bars: pd.DataFrame,
    trades: pd.DataFrame,
    quotes: pd.DataFrame,
    start_ms: int,
    now_ms: int,
    last_data_ms: int | None = None,
    stream_connected: bool | None = None,
    disconnects: Sequence[tuple[int, int]] = (),
    rest_answered: Sequence[tuple[int, int]] = (),
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> list[QualityIssue]:
    """Every check over one ticker's window [start_ms, now_ms).

    ``bars`` may start up to ``thresholds.warmup_ms`` earlier (history for the first bars'
    previous close and volume average); only bars from ``start_ms`` are reported.
    ``rest_answered``: windows a REST repair covered after they closed (their missing minutes
    are confirmed quiet; any other missing minute without evidence is unverified).
    """
    window = (start_ms, now_ms)
    in_window = bars[bars["start_ms"] >= start_ms]
    unique = ordered_bars(bars)
    missing = classify_missing(
        bars, trades, start_ms, now_ms - thresholds.settle_ms, disconnects, rest_answered,
        thresholds,
    )  # fmt: skip
    issues = [
        *check_nulls(ticker, "bars", in_window, window, thresholds),
        *check_nulls(ticker, "trades", trades, window, thresholds),
        *check_nulls(ticker, "quotes", quotes, window, thresholds),
        *check_duplicate_bars(ticker, in_window, thresholds),
        *check_ohlc(ticker, unique, thresholds, since_ms=start_ms),
        *check_price_moves(ticker, unique, thresholds, since_ms=start_ms),
        *check_volume_spikes(ticker, unique, thresholds, since_ms=start_ms),
        *check_return_zscores(ticker, unique, thresholds, since_ms=start_ms),
        *check_crossed_quotes(ticker, quotes, thresholds),
        *gap_issues(ticker, missing),
        *unverified_issues(ticker, missing),
        *check_stale_feed(ticker, last_data_ms, now_ms, stream_connected, thresholds),
    ]
    return issues
