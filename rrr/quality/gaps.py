"""Missing data: gaps in 1-minute bars, told apart from quiet minutes, and a stale feed. Pure.

Venue fact: Polygon/Massive sends no minute aggregate for a minute without trades, so a missing
bar alone proves nothing either way. Each missing minute is one of:

- a *gap*: evidence that data existed (trades stored for that minute, or the stream was
  disconnected then, from the stream worker's system_events);
- *confirmed quiet*: REST was asked about the minute after it closed and had no bar for it
  (a ``gap_repaired`` answer covering it);
- *unverified*: neither. A missing minute is never called quiet without that REST answer: a
  2-hour hole while the stream said "connected" and no trades were stored looks exactly like
  two quiet hours until the vendor is asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rrr.quality.issues import (
    CHECK_SEVERITY,
    GAP,
    STALE_FEED,
    UNVERIFIED,
    QualityIssue,
    QualityThresholds,
)
from rrr.symbols import SymbolError, pair_to_ticker

DEFAULT_THRESHOLDS = QualityThresholds()
STREAM_UP_EVENTS = frozenset({"connected", "reconnected"})
STREAM_DOWN_EVENTS = frozenset({"disconnected"})
EVIDENCE_TEXT = {"trades": "trades exist for them", "disconnected": "the stream was disconnected"}


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(first, last + 1)] index ranges of each run of consecutive True values."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


def _minute_span(start_ms: int, end_ms: int, bar_ms: int) -> tuple[int, int]:
    """Whole minutes inside [start_ms, end_ms), as minute numbers [first, stop)."""
    return -(-start_ms // bar_ms), end_ms // bar_ms


def _minute_mask(times_ms: pd.Series | np.ndarray, first: int, n: int, bar_ms: int) -> np.ndarray:
    """True for each of the n minutes from minute ``first`` that holds one of ``times_ms``."""
    mask = np.zeros(n, dtype=bool)
    times = np.asarray(times_ms, dtype="float64")
    times = times[~np.isnan(times)].astype(np.int64)
    idx = times // bar_ms - first
    mask[idx[(idx >= 0) & (idx < n)]] = True
    return mask


def missing_minute_runs(
    bars: pd.DataFrame,
    start_ms: int,
    end_ms: int,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> list[tuple[int, int]]:
    """[(start_ms, end_ms)] runs of minutes in the window with no bar (gap or quiet alike)."""
    first, stop = _minute_span(start_ms, end_ms, thresholds.bar_ms)
    if stop <= first:
        return []
    present = _minute_mask(bars["start_ms"], first, stop - first, thresholds.bar_ms)
    bar_ms = thresholds.bar_ms
    return [((first + a) * bar_ms, (first + b) * bar_ms) for a, b in true_runs(~present)]


def window_mask(windows: Sequence[tuple[int, int]], first: int, n: int, bar_ms: int) -> np.ndarray:
    """True for each of the n minutes from minute ``first`` that a [start_ms, end_ms) window
    touches (a handful of windows, not rows)."""
    mask = np.zeros(n, dtype=bool)
    for start_ms, end_ms in windows:
        lo = max(start_ms // bar_ms - first, 0)
        hi = min(-(-end_ms // bar_ms) - first, n)  # every minute the window touches
        if hi > lo:
            mask[lo:hi] = True
    return mask


@dataclass(frozen=True, slots=True)
class MissingMinutes:
    """Per-minute facts over minutes [first, first + n) (minute numbers: epoch ms // bar_ms)."""

    first: int
    bar_ms: int
    present: np.ndarray  # a bar is stored
    traded: np.ndarray  # trades are stored
    disconnected: np.ndarray  # the stream was down during (part of) the minute
    rest_answered: np.ndarray  # a REST repair covered the minute after it closed

    @property
    def gap(self) -> np.ndarray:
        return ~self.present & (self.traded | self.disconnected)

    @property
    def confirmed_quiet(self) -> np.ndarray:
        return ~self.present & ~(self.traded | self.disconnected) & self.rest_answered

    @property
    def unverified(self) -> np.ndarray:
        return ~self.present & ~(self.traded | self.disconnected) & ~self.rest_answered

    def window(self, a: int, b: int) -> tuple[int, int]:
        """Index range [a, b) as [start_ms, end_ms)."""
        return (self.first + a) * self.bar_ms, (self.first + b) * self.bar_ms


def classify_missing(
    bars: pd.DataFrame,
    trades: pd.DataFrame,
    start_ms: int,
    end_ms: int,
    disconnects: Sequence[tuple[int, int]] = (),
    rest_answered: Sequence[tuple[int, int]] = (),
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> MissingMinutes:
    """The whole minutes of [start_ms, end_ms), each with what is known about it.

    ``disconnects`` are [(start_ms, end_ms)] windows when the stream was down; ``rest_answered``
    the windows a REST repair fetched after they had closed (minutes it left without a bar had
    none at the vendor).
    """
    bar_ms = thresholds.bar_ms
    first, stop = _minute_span(start_ms, end_ms, bar_ms)
    n = max(stop - first, 0)
    return MissingMinutes(
        first=first,
        bar_ms=bar_ms,
        present=_minute_mask(bars["start_ms"], first, n, bar_ms),
        traded=_minute_mask(trades["ts_ms"], first, n, bar_ms),
        disconnected=window_mask(disconnects, first, n, bar_ms),
        rest_answered=window_mask(rest_answered, first, n, bar_ms),
    )


def gap_issues(ticker: str, minutes: MissingMinutes) -> list[QualityIssue]:
    """One ``gap`` issue per run of consecutive missing minutes with evidence of data."""
    issues = []
    for a, b in true_runs(minutes.gap):
        evidence = [
            name
            for name, mask in (("trades", minutes.traded), ("disconnected", minutes.disconnected))
            if mask[a:b].any()
        ]
        start, end = minutes.window(a, b)
        issues.append(
            QualityIssue(
                check=GAP,
                severity=CHECK_SEVERITY[GAP],
                ticker=ticker,
                window_start_ms=start,
                window_end_ms=end,
                message=f"{b - a} minute bar(s) missing; "
                + " and ".join(EVIDENCE_TEXT[e] for e in evidence),
                details={
                    "missing_minutes": b - a,
                    "minutes_with_trades": int(minutes.traded[a:b].sum()),
                    "evidence": evidence,
                },
            )
        )
    return issues


def unverified_issues(ticker: str, minutes: MissingMinutes) -> list[QualityIssue]:
    """One ``unverified_minutes`` issue per run of missing minutes with no evidence either way:
    not a proven gap, not yet confirmed quiet by REST."""
    issues = []
    for a, b in true_runs(minutes.unverified):
        start, end = minutes.window(a, b)
        issues.append(
            QualityIssue(
                check=UNVERIFIED,
                severity=CHECK_SEVERITY[UNVERIFIED],
                ticker=ticker,
                window_start_ms=start,
                window_end_ms=end,
                message=f"{b - a} minute bar(s) missing, no trades stored and no disconnect "
                "recorded: gap or quiet is unverified until REST answers",
                details={"missing_minutes": b - a},
            )
        )
    return issues


def find_gaps(
    ticker: str,
    bars: pd.DataFrame,
    trades: pd.DataFrame,
    start_ms: int,
    end_ms: int,
    disconnects: Sequence[tuple[int, int]] = (),
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> list[QualityIssue]:
    """One issue per run of consecutive gap minutes in [start_ms, end_ms).

    ``end_ms`` should be ``now_ms - thresholds.settle_ms``: the newest minutes may still be on
    their way. ``disconnects`` are [(start_ms, end_ms)] windows when the stream was down.
    """
    minutes = classify_missing(bars, trades, start_ms, end_ms, disconnects, (), thresholds)
    return gap_issues(ticker, minutes)


def check_stale_feed(
    ticker: str,
    last_data_ms: int | None,
    now_ms: int,
    stream_connected: bool | None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> list[QualityIssue]:
    """No data for longer than ``stale_after_ms`` while the stream worker reports connected.

    A disconnected stream is not stale (the disconnect is its own event, and its minutes are
    gaps); an unknown status or a ticker that never had data gives no verdict. The window is
    [last data, last data + stale_after_ms], fixed for one silent spell, so re-runs during the
    same spell store it once.
    """
    if not stream_connected or last_data_ms is None:
        return []
    silent_ms = now_ms - last_data_ms
    if silent_ms <= thresholds.stale_after_ms:
        return []
    return [
        QualityIssue(
            check=STALE_FEED,
            severity=CHECK_SEVERITY[STALE_FEED],
            ticker=ticker,
            window_start_ms=last_data_ms,
            window_end_ms=last_data_ms + thresholds.stale_after_ms,
            message=f"no data for {silent_ms / 60_000:.1f} min while the stream is connected",
            details={"last_data_ms": last_data_ms, "checked_ms": now_ms, "silent_ms": silent_ms},
        )
    ]


def _event_ticker(details: dict[str, Any]) -> str | None:
    """The ticker a stream event is about (REST form), or None for all tickers."""
    raw = details.get("ticker") or details.get("pair")
    if not isinstance(raw, str) or not raw:
        return None
    if raw.startswith("X:"):
        return raw
    try:
        return pair_to_ticker(raw)
    except SymbolError:
        return raw


def disconnect_windows(
    stream_events: pd.DataFrame, ticker: str, now_ms: int
) -> list[tuple[int, int]]:
    """[(start_ms, end_ms)] when the stream was down for ``ticker``, from stream_worker events.

    'gap' events carry details {ticker, start_ms, end_ms}; a 'disconnected' event with such
    details is read the same way, and one without lasts until the next 'connected' or
    'reconnected' event (or now). An event without a ticker applies to every ticker.
    """
    if stream_events.empty:
        return []
    events = stream_events.sort_values("ts_ms", kind="stable")
    windows: list[tuple[int, int]] = []
    down_since: int | None = None
    for ts_ms, event_type, details in zip(  # stream events are few: one per (dis)connection
        events["ts_ms"].tolist(),
        events["event_type"].tolist(),
        events["details"].tolist(),
        strict=True,
    ):
        details = details if isinstance(details, dict) else {}
        if event_type in STREAM_UP_EVENTS:
            if down_since is not None:
                windows.append((down_since, int(ts_ms)))
                down_since = None
            continue
        if event_type not in STREAM_DOWN_EVENTS and event_type != "gap":
            continue
        if _event_ticker(details) not in (None, ticker):
            continue
        start, end = details.get("start_ms"), details.get("end_ms")
        if isinstance(start, int) and isinstance(end, int):
            windows.append((start, end))
        elif event_type in STREAM_DOWN_EVENTS and down_since is None:
            down_since = int(ts_ms)
    if down_since is not None:
        windows.append((down_since, now_ms))
    return windows


def stream_connected_from_events(stream_events: pd.DataFrame) -> bool | None:
    """The stream's state by its latest 'connected'/'reconnected'/'disconnected' event; None
    when it has reported none."""
    if stream_events.empty:
        return None
    status = stream_events[
        stream_events["event_type"].isin(STREAM_UP_EVENTS | STREAM_DOWN_EVENTS)
    ].sort_values("ts_ms", kind="stable")
    if status.empty:
        return None
    return bool(status["event_type"].iloc[-1] in STREAM_UP_EVENTS)
