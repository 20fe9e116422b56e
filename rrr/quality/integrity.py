"""Record integrity checks: nulls in critical fields, duplicate bars, crossed or locked quotes.
Pure pandas/numpy. Row-level findings are grouped per minute so a finding's window is stable from
run to run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rrr.quality.issues import (
    CHECK_SEVERITY,
    CROSSED_QUOTE,
    DUPLICATE_BAR,
    NULL_FIELD,
    QualityIssue,
    QualityThresholds,
)

DEFAULT_THRESHOLDS = QualityThresholds()
# Critical fields per kind of data: a null here makes the row useless.
CRITICAL_FIELDS: dict[str, tuple[str, ...]] = {
    "bars": ("ticker", "start_ms", "open", "high", "low", "close", "volume"),
    "trades": ("ticker", "ts_ms", "price", "size"),
    "quotes": ("ticker", "ts_ms", "bid_price", "bid_size", "ask_price", "ask_size"),
}
TIME_COLUMN = {"bars": "start_ms", "trades": "ts_ms", "quotes": "ts_ms"}


def check_duplicate_bars(
    ticker: str, bars: pd.DataFrame, thresholds: QualityThresholds = DEFAULT_THRESHOLDS
) -> list[QualityIssue]:
    """More than one bar for the same start time (a store keyed on it never has this; a frame
    assembled from several sources may)."""
    starts, counts = np.unique(bars["start_ms"].to_numpy(), return_counts=True)
    repeated = counts > 1
    return [
        QualityIssue(
            check=DUPLICATE_BAR,
            severity=CHECK_SEVERITY[DUPLICATE_BAR],
            ticker=ticker,
            window_start_ms=int(start),
            window_end_ms=int(start) + thresholds.bar_ms,
            message=f"{count} bars for the same minute",
            details={"count": int(count)},
        )
        for start, count in zip(starts[repeated].tolist(), counts[repeated].tolist(), strict=True)
    ]


def _per_minute(times_ms: np.ndarray, bar_ms: int) -> list[tuple[int, np.ndarray]]:
    """Flagged rows' times grouped by minute: [(minute start ms, positions in times_ms)]."""
    if times_ms.size == 0:
        return []
    minutes = times_ms.astype(np.int64) // bar_ms * bar_ms
    order = np.argsort(minutes, kind="stable")  # sort once: flagged rows may be many
    starts, first = np.unique(minutes[order], return_index=True)
    return list(zip(starts.tolist(), np.split(order, first[1:]), strict=True))


def check_crossed_quotes(
    ticker: str, quotes: pd.DataFrame, thresholds: QualityThresholds = DEFAULT_THRESHOLDS
) -> list[QualityIssue]:
    """Quotes with bid >= ask, one issue per minute: crossed (bid > ask) is an error, locked
    (bid == ask) alone a warning."""
    bid, ask = quotes["bid_price"].to_numpy("float64"), quotes["ask_price"].to_numpy("float64")
    times_all = quotes["ts_ms"].to_numpy("float64")
    flagged = np.flatnonzero((bid >= ask) & ~np.isnan(times_all))  # no time: a null issue
    if flagged.size == 0:
        return []
    issues = []
    for minute, pos in _per_minute(times_all[flagged], thresholds.bar_ms):
        b, a = bid[flagged[pos]], ask[flagged[pos]]
        crossed, locked = int((b > a).sum()), int((b == a).sum())
        issues.append(
            QualityIssue(
                check=CROSSED_QUOTE,
                severity=CHECK_SEVERITY[CROSSED_QUOTE] if crossed else "warning",
                ticker=ticker,
                window_start_ms=minute,
                window_end_ms=minute + thresholds.bar_ms,
                message=f"{crossed} crossed and {locked} locked quote(s) (bid >= ask)",
                details={"crossed": crossed, "locked": locked, "worst": float((b - a).max())},
            )
        )
    return issues


def check_nulls(
    ticker: str,
    kind: str,
    rows: pd.DataFrame,
    window: tuple[int, int],
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> list[QualityIssue]:
    """Nulls in critical fields (price, size, event time, ticker) of ``kind`` rows, one issue per
    minute; rows without an event time are reported over ``window``."""
    fields = [f for f in CRITICAL_FIELDS[kind] if f in rows.columns]
    nulls = rows[fields].isna()
    flagged = np.flatnonzero(nulls.to_numpy().any(axis=1))
    if flagged.size == 0:
        return []
    times = rows[TIME_COLUMN[kind]].to_numpy("float64")[flagged]
    timed, untimed = flagged[~np.isnan(times)], flagged[np.isnan(times)]
    groups = [
        (m, m + thresholds.bar_ms, timed[pos])
        for m, pos in _per_minute(times[~np.isnan(times)], thresholds.bar_ms)
    ]
    if untimed.size:
        groups.append((window[0], window[1], untimed))
    issues = []
    for start, end, pos in groups:
        counts = {f: int(n) for f, n in nulls.iloc[pos].sum().items() if n}
        issues.append(
            QualityIssue(
                check=NULL_FIELD,
                severity=CHECK_SEVERITY[NULL_FIELD],
                ticker=ticker,
                window_start_ms=start,
                window_end_ms=end,
                message=f"{len(pos)} {kind} row(s) with null {', '.join(counts)}",
                details={"kind": kind, "rows": len(pos), "null_counts": counts},
            )
        )
    return issues
