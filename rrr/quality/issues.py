"""The vocabulary of data quality: what a finding is, what each check is called, how bad it is,
and the thresholds (the original system's defaults, all configurable)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rrr.models import Severity

# Check names: also the ``event_type`` of the system_events row each finding becomes.
GAP = "gap"
PRICE_MOVE = "price_move"
PRICE_RANGE = "price_range"
VOLUME_SPIKE = "volume_spike"
RETURN_ZSCORE = "return_zscore"
OHLC_INCONSISTENT = "ohlc_inconsistent"
CROSSED_QUOTE = "crossed_quote"
STALE_FEED = "stale_feed"
DUPLICATE_BAR = "duplicate_bar"
NULL_FIELD = "null_field"
# Missing minutes with no evidence either way (see rrr.quality.gaps): reported, and checked
# against REST, never recorded as a finding of their own.
UNVERIFIED = "unverified_minutes"

# Critical: data an algorithm would trade on and lose money (a fake 40% move, an impossible bar),
# or a live feed silently dead. Error: wrong or missing data that is not obviously tradeable
# poison. Warning: statistically unusual, possibly real market behaviour.
CHECK_SEVERITY: dict[str, Severity] = {
    GAP: "error",
    PRICE_MOVE: "critical",
    PRICE_RANGE: "error",
    VOLUME_SPIKE: "warning",
    RETURN_ZSCORE: "warning",
    OHLC_INCONSISTENT: "critical",
    CROSSED_QUOTE: "error",  # a locked (bid == ask) but not crossed minute is a warning
    STALE_FEED: "critical",
    DUPLICATE_BAR: "error",
    NULL_FIELD: "error",
    UNVERIFIED: "warning",  # maybe a gap, maybe a quiet spell: REST will tell
}
CHECKS: tuple[str, ...] = tuple(CHECK_SEVERITY)
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "error": 1, "warning": 2, "info": 3}


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """Every limit is exclusive: a value exactly at the threshold passes."""

    bar_ms: int = 60_000  # the bars checked are 1-minute bars
    max_bar_move: float = 0.20  # |close / previous close - 1|
    max_range_from_prev_close: float = 0.20  # high or low versus the previous close
    volume_spike_multiple: float = 5.0  # volume versus the mean of the previous bars
    volume_window_bars: int = 20
    volume_min_bars: int = 5  # fewer previous bars than this: no average yet, no verdict
    max_return_z: float = 4.0
    min_returns_for_z: int = 30  # a z-score over fewer returns means little
    stale_after_ms: int = 5 * 60_000  # no data this long while the stream says "connected"
    # A minute's bar arrives a few seconds after the minute closes; minutes newer than this are
    # not judged missing yet.
    settle_ms: int = 2 * 60_000
    # Unverified minutes go to REST in as few requests as a page allows: one aggregates page
    # holds 50,000 minute bars. Runs closer than ``repair_merge_ms`` share a request; farther
    # apart, the bars (and, since repairs fetch them too, trades) between them would cost more
    # pages than a second request.
    repair_page_minutes: int = 50_000
    repair_merge_ms: int = 60 * 60_000

    @property
    def warmup_ms(self) -> int:
        """History read before a window so its first bars have a previous close and volume mean."""
        return (self.volume_window_bars + 1) * self.bar_ms


@dataclass(frozen=True, slots=True)
class QualityIssue:
    """One finding over one ticker and one time window [window_start_ms, window_end_ms)."""

    check: str
    severity: Severity
    ticker: str
    window_start_ms: int
    window_end_ms: int
    message: str
    details: dict[str, Any] = field(default_factory=dict)
