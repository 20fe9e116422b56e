"""Coverage of 1-minute bars per ticker and UTC day: is this range complete enough to backtest
on? Pure: plain data in (bars counted per day, system event records, the minutes that have a
bar inside the windows those events name), a table out.

Every whole minute of [start, end) that has closed by ``now`` is one of:

- a **bar**: a 1-minute bar is stored;
- **confirmed quiet**: no bar, and REST was asked about the minute after it closed and had none
  (inside the window of a ``gap_repaired`` event of ``rrr.backfill.repair``, component
  ``backfill``, whose vendor bars were all stored: ``bars_missing`` and ``bars_rejected`` 0),
  and no recorded ``gap`` says trades were stored for it (Polygon sends no bar for a minute
  without trades, so such a minute is not quiet whatever REST says);
- an **open gap**: missing, and not confirmed quiet (a gap awaiting repair, a minute not yet
  asked of REST, or one never looked at).

Of the bars, **repaired** are those in minutes once recorded missing: a quality ``gap`` window,
the runs sent to REST (``verify_requested``), or a stream outage (``stream_worker`` ``gap``:
the minutes whose bar was due, i.e. whose close fell, while the stream was down).

    completeness = (bars + confirmed quiet) / minutes measured

The same facts ``rrr quality`` classifies (rrr.quality.gaps, rrr.quality.verify), counted over
a whole range from what the events recorded, without reading trades.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from rrr.errors import RrrError
from rrr.quality.events import COMPONENT, VERIFY_REQUESTED
from rrr.quality.gaps import window_mask
from rrr.quality.issues import GAP
from rrr.quality.verify import REPAIR_ANSWERED, REPAIR_COMPONENT

MINUTE_MS = 60_000
DAY_MS = 86_400_000
STREAM_COMPONENT = "stream_worker"  # its ``gap`` events: details {ticker, start_ms, end_ms}

# Console grades (the heatmap colours the same figure continuously).
COMPLETE = 1.0
NEARLY_COMPLETE = 0.99

Window = tuple[int, int]


class CoverageError(RrrError, ValueError):
    """A coverage range that cannot be measured; the message says what to change."""


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One system_events row, as far as coverage reads it."""

    component: str
    event_type: str
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the events say about one ticker's minutes: [start_ms, end_ms) windows of whole
    minutes."""

    answered: tuple[Window, ...] = ()  # REST fetched them after they closed; all bars stored
    traded: tuple[Window, ...] = ()  # recorded gaps with trades stored: never quiet
    once_missing: tuple[Window, ...] = ()  # recorded missing: a bar there now was repaired

    def windows(self) -> list[Window]:
        """The union of every window, merged and sorted: where bar minutes must be known."""
        return merge_windows([*self.answered, *self.traded, *self.once_missing])


def merge_windows(windows: Iterable[Window]) -> list[Window]:
    merged: list[Window] = []
    for s, e in sorted(w for w in windows if w[1] > w[0]):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _inner_minutes(start: Any, end: Any) -> Window | None:
    """The whole minutes inside [start, end), or None when there are none or it is malformed."""
    s, e = _int(start), _int(end)
    if s is None or e is None:
        return None
    s, e = -(-s // MINUTE_MS) * MINUTE_MS, e // MINUTE_MS * MINUTE_MS
    return (s, e) if e > s else None


def _bars_due_during(start: Any, end: Any) -> Window | None:
    """Minutes whose close fell in (start, end]: their bars were due while the stream was down."""
    s, e = _int(start), _int(end)
    if s is None or e is None:
        return None
    s, e = s // MINUTE_MS * MINUTE_MS, e // MINUTE_MS * MINUTE_MS
    return (s, e) if e > s else None


def _repair_answered(details: Mapping[str, Any]) -> bool:
    """A repair whose every vendor bar is stored: its window's empty minutes had none there."""
    return details.get("bars_missing", 0) == 0 and details.get("bars_rejected", 0) == 0


def evidence_by_ticker(events: Iterable[EventRecord]) -> dict[str, Evidence]:
    """{ticker: Evidence} from system events; events of other shapes say nothing."""
    answered: dict[str, list[Window]] = {}
    traded: dict[str, list[Window]] = {}
    once: dict[str, list[Window]] = {}
    for event in events:
        d, kind = event.details, (event.component, event.event_type)
        ticker = d.get("ticker")
        if not isinstance(ticker, str):
            continue
        if kind == (REPAIR_COMPONENT, REPAIR_ANSWERED):
            w = _inner_minutes(d.get("start_ms"), d.get("end_ms"))
            if w and _repair_answered(d):
                answered.setdefault(ticker, []).append(w)
        elif kind == (COMPONENT, GAP):
            w = _inner_minutes(d.get("window_start_ms"), d.get("window_end_ms"))
            if w:
                once.setdefault(ticker, []).append(w)
                if "trades" in (d.get("evidence") or ()):
                    traded.setdefault(ticker, []).append(w)
        elif kind == (COMPONENT, VERIFY_REQUESTED):
            runs = d.get("runs") or ()
            for run in runs if isinstance(runs, list) else ():
                w = _inner_minutes(*run) if isinstance(run, list) and len(run) == 2 else None
                if w:
                    once.setdefault(ticker, []).append(w)
        elif kind == (STREAM_COMPONENT, GAP):
            w = _bars_due_during(d.get("start_ms"), d.get("end_ms"))
            if w:
                once.setdefault(ticker, []).append(w)
    tickers = answered.keys() | traded.keys() | once.keys()
    return {
        t: Evidence(
            tuple(merge_windows(answered.get(t, []))),
            tuple(merge_windows(traded.get(t, []))),
            tuple(merge_windows(once.get(t, []))),
        )
        for t in tickers
    }


def measured_span(start_ms: int, end_ms: int, now_ms: int) -> Window:
    """The whole minutes of [start_ms, end_ms) that have closed by ``now_ms``, as ms."""
    if end_ms <= start_ms:
        raise CoverageError(
            f"the end ({iso_minute(end_ms)}) is not after the start ({iso_minute(start_ms)}): "
            "give --end later than --start"
        )
    first = -(-start_ms // MINUTE_MS) * MINUTE_MS
    stop = min(end_ms, now_ms) // MINUTE_MS * MINUTE_MS
    if stop <= first:
        raise CoverageError(
            f"no whole minute of {iso_minute(start_ms)} to {iso_minute(end_ms)} has closed yet "
            f"(now {iso_minute(now_ms)} UTC): give a range that starts in the past"
        )
    return first, stop


def iso_minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def day_of(ms: int) -> date:
    return datetime.fromtimestamp(ms // DAY_MS * DAY_MS / 1000, UTC).date()


@dataclass(frozen=True, slots=True)
class DayCoverage:
    """One ticker's minutes over one UTC day (or, as a total, over the whole range)."""

    ticker: str
    day: date | None  # None: the whole range
    minutes: int  # whole minutes measured: inside [start, end), closed by now
    bars: int
    quiet: int  # confirmed quiet
    repaired: int  # of the bars, those in minutes once recorded missing

    @property
    def open_gaps(self) -> int:
        return self.minutes - self.bars - self.quiet

    @property
    def completeness(self) -> float:
        return (self.bars + self.quiet) / self.minutes if self.minutes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ticker": self.ticker,
            **({"day": self.day.isoformat()} if self.day else {}),
            "minutes": self.minutes,
            "bars": self.bars,
            "quiet": self.quiet,
            "open_gaps": self.open_gaps,
            "repaired": self.repaired,
            "completeness": round(self.completeness, 6),
        }


@dataclass(frozen=True)
class CoverageTable:
    start_ms: int  # the first minute measured
    end_ms: int  # the end of the last minute measured
    tickers: tuple[str, ...]
    rows: list[DayCoverage] = field(default_factory=list)  # by ticker as given, then by day

    @property
    def days(self) -> list[date]:
        return sorted({r.day for r in self.rows if r.day is not None})

    def total(self, ticker: str) -> DayCoverage:
        mine = [r for r in self.rows if r.ticker == ticker]
        return DayCoverage(
            ticker,
            None,
            minutes=sum(r.minutes for r in mine),
            bars=sum(r.bars for r in mine),
            quiet=sum(r.quiet for r in mine),
            repaired=sum(r.repaired for r in mine),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": iso_minute(self.start_ms),
            "end": iso_minute(self.end_ms),
            "tickers": list(self.tickers),
            "days": [r.to_dict() for r in self.rows],
            "totals": [self.total(t).to_dict() for t in self.tickers],
        }


def _mask(windows: Sequence[Window], first_ms: int, n: int) -> np.ndarray:
    """True for each of the n minutes from ``first_ms`` inside one of ``windows``: the
    evidence's windows are whole minutes, so the minutes they touch are those inside."""
    return window_mask(windows, first_ms // MINUTE_MS, n, MINUTE_MS)


def _per_day(mask: np.ndarray, day_starts: np.ndarray) -> list[int]:
    return [int(x) for x in np.add.reduceat(mask.astype(np.int64), day_starts)]


def coverage_table(
    tickers: Sequence[str],
    start_ms: int,
    end_ms: int,
    now_ms: int,
    bars_per_day: Mapping[tuple[str, date], int],
    events: Iterable[EventRecord],
    bar_minutes: Mapping[str, Iterable[int]],
) -> CoverageTable:
    """The coverage of each ticker on each UTC day of [start_ms, end_ms) up to ``now_ms``.

    ``bars_per_day``: 1-minute bars counted per (ticker, UTC day) over ``measured_span``'s
    minutes only. ``bar_minutes``: per ticker, the start (ms) of every 1-minute bar inside
    ``evidence_by_ticker(events)[ticker].windows()`` (others are ignored); a minute there
    without one has no bar.
    """
    first, stop = measured_span(start_ms, end_ms, now_ms)
    n = (stop - first) // MINUTE_MS
    # Index of each UTC day's first minute within the span.
    day_edges = list(range((first // DAY_MS + 1) * DAY_MS, stop, DAY_MS))
    starts_ms = [first, *day_edges]
    day_starts = np.array([(s - first) // MINUTE_MS for s in starts_ms], dtype=np.int64)
    day_minutes = np.diff(np.append(day_starts, n)).tolist()
    evidence = evidence_by_ticker(events)
    rows = []
    for ticker in tickers:
        ev = evidence.get(ticker, Evidence())
        present = np.zeros(n, dtype=bool)
        idx = (np.fromiter(bar_minutes.get(ticker, ()), dtype=np.int64) - first) // MINUTE_MS
        present[idx[(idx >= 0) & (idx < n)]] = True
        answered = _mask(ev.answered, first, n)
        quiet = answered & ~present & ~_mask(ev.traded, first, n)
        repaired = _mask(ev.once_missing, first, n) & present
        quiet_days, repaired_days = _per_day(quiet, day_starts), _per_day(repaired, day_starts)
        for i, day_ms in enumerate(starts_ms):
            day = day_of(day_ms)
            rows.append(
                DayCoverage(
                    ticker,
                    day,
                    minutes=int(day_minutes[i]),
                    bars=int(bars_per_day.get((ticker, day), 0)),
                    quiet=quiet_days[i],
                    repaired=repaired_days[i],
                )
            )
    return CoverageTable(first, stop, tuple(tickers), rows)


def percent_text(completeness: float, decimals: int = 2) -> str:
    """The share as a percentage rounded down, so a day with one open gap in 10,000 minutes
    never reads 100 %."""
    if completeness >= 1:
        return "100%"
    scale = 10**decimals
    return f"{math.floor(completeness * 100 * scale) / scale:.{decimals}f}%"


def grade(completeness: float) -> str:
    """'complete', 'nearly' (>= 99 %) or 'incomplete': the console's colour."""
    if completeness >= COMPLETE:
        return "complete"
    return "nearly" if completeness >= NEARLY_COMPLETE else "incomplete"
