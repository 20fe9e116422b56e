"""The aggregates API's timespans and window arithmetic (pure): ``(1, "minute")`` -> the
``"1m"`` timeframe label, and where a window that starts at a given time ends (fixed lengths for
second to week, the UTC calendar for month, quarter and year)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

SECOND_MS = 1_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
NS_PER_MS = 1_000_000

# The API's timespans (spec §2.2) and the suffix of our ``timeframe`` label. Month is "mo" so it
# never reads as minutes.
TIMESPAN_SUFFIX: dict[str, str] = {
    "second": "s",
    "minute": "m",
    "hour": "h",
    "day": "d",
    "week": "w",
    "month": "mo",
    "quarter": "q",
    "year": "y",
}
TIMESPANS = tuple(TIMESPAN_SUFFIX)
# Timespans of fixed length; month, quarter and year follow the calendar.
FIXED_TIMESPAN_MS: dict[str, int] = {
    "second": SECOND_MS,
    "minute": MINUTE_MS,
    "hour": HOUR_MS,
    "day": DAY_MS,
    "week": 7 * DAY_MS,
}
_CALENDAR_MONTHS = {"month": 1, "quarter": 3, "year": 12}


def timeframe(multiplier: int, timespan: str) -> str:
    """(1, "minute") -> "1m"; (5, "minute") -> "5m"; (1, "hour") -> "1h"; (1, "month") -> "1mo"."""
    suffix = TIMESPAN_SUFFIX.get(timespan)
    if suffix is None:
        raise ValueError(f"unknown timespan {timespan!r}; expected one of {', '.join(TIMESPANS)}")
    if multiplier < 1:
        raise ValueError(f"multiplier must be at least 1, got {multiplier}")
    return f"{multiplier}{suffix}"


def add_months(ts_ms: int, months: int) -> int:
    """Calendar arithmetic in UTC; the day of month is clamped (Jan 31 + 1 month = Feb 28/29)."""
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    index = dt.year * 12 + (dt.month - 1) + months
    year, month = divmod(index, 12)
    day = min(dt.day, calendar.monthrange(year, month + 1)[1])
    return int(dt.replace(year=year, month=month + 1, day=day).timestamp() * 1000)


def bar_end_ms(start_ms: int, multiplier: int, timespan: str) -> int:
    """Exclusive end of the window that starts at ``start_ms``."""
    fixed = FIXED_TIMESPAN_MS.get(timespan)
    if fixed is not None:
        return start_ms + multiplier * fixed
    return add_months(start_ms, multiplier * _CALENDAR_MONTHS[timespan])
