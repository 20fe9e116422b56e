"""Unverified minutes -> REST, and what its answers prove. Pure: plain data in, plain data out.

A missing minute with no trades stored and no disconnect recorded is unverified
(``rrr.quality.gaps``). The quality task asks ``repair_gap`` about such minutes; the repair's
``gap_repaired`` system event (component ``backfill``) is REST's answer for its whole window:
each minute it covered either has a bar now (a gap, repaired) or had none at the vendor
(quiet, confirmed). Requests are few: per ticker, runs close together share one request, and a
request never spans more minutes than one aggregates page holds, so the free tier's 5 requests
a minute are not spent on a scatter of quiet minutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, astuple, dataclass
from typing import Any

import numpy as np
import pandas as pd

from rrr.quality.gaps import MissingMinutes, window_mask
from rrr.quality.issues import QualityThresholds

REPAIR_COMPONENT = "backfill"  # rrr.backfill.repair records its answer under this component
REPAIR_ANSWERED = "gap_repaired"

Window = tuple[int, int]


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    """One request to REST: the window asked for and the unverified runs inside it (the rest
    of the window had bars already; runs close together share a request)."""

    ticker: str
    window: Window
    runs: tuple[Window, ...]

    @property
    def minutes(self) -> int:
        return sum(e - s for s, e in self.runs) // 60_000


def coalesce_runs(
    ticker: str, runs: Sequence[Window], thresholds: QualityThresholds
) -> list[VerifyRequest]:
    """Runs of unverified minutes (sorted, minute-aligned) -> as few requests as pages allow.

    A run joins the previous request when it starts within ``repair_merge_ms`` of that
    request's end and the request would still fit one page (``repair_page_minutes``); a run
    longer than a page is split at page boundaries.
    """
    page_ms = thresholds.repair_page_minutes * thresholds.bar_ms
    pieces = [(s, min(s + page_ms, end)) for start, end in runs for s in range(start, end, page_ms)]
    requests: list[tuple[int, int, list[Window]]] = []
    for s, e in pieces:
        if requests:
            r_start, r_end, r_runs = requests[-1]
            if s - r_end <= thresholds.repair_merge_ms and e - r_start <= page_ms:
                requests[-1] = (r_start, e, [*r_runs, (s, e)])
                continue
        requests.append((s, e, [(s, e)]))
    return [VerifyRequest(ticker, (s, e), tuple(r)) for s, e, r in requests]


def answered_windows(repair_events: pd.DataFrame, ticker: str) -> list[Window]:
    """Windows of ``ticker`` that REST was asked about after they closed: one per
    ``gap_repaired`` event (its details' ``start_ms``/``end_ms``, the whole minutes fetched)."""
    if repair_events.empty:
        return []
    windows = []
    rows = repair_events[repair_events["event_type"] == REPAIR_ANSWERED]
    for details in rows["details"].tolist():
        if not isinstance(details, dict) or details.get("ticker") != ticker:
            continue
        start, end = details.get("start_ms"), details.get("end_ms")
        if isinstance(start, int) and isinstance(end, int) and end > start:
            windows.append((start, end))
    return windows


def answer_for(request: VerifyRequest, repair_events: pd.DataFrame) -> dict[str, Any] | None:
    """The details of a ``gap_repaired`` event whose window covers the whole request, or None
    while REST has not answered it."""
    if repair_events.empty:
        return None
    rows = repair_events[repair_events["event_type"] == REPAIR_ANSWERED]
    s, e = request.window
    for details in rows["details"].tolist():
        if not isinstance(details, dict) or details.get("ticker") != request.ticker:
            continue
        start, end = details.get("start_ms"), details.get("end_ms")
        if isinstance(start, int) and isinstance(end, int) and start <= s and e <= end:
            return details
    return None


def minutes_with_bars(bars: pd.DataFrame, runs: Iterable[Window], bar_ms: int) -> int:
    """How many minutes of ``runs`` have a bar in ``bars``."""
    starts = bars["start_ms"].to_numpy(dtype="int64")
    found = np.unique(starts[starts % bar_ms == 0])
    return sum(
        int(np.searchsorted(found, e) - np.searchsorted(found, s)) for s, e in runs
    )  # runs are few


@dataclass(frozen=True, slots=True)
class MinuteCounts:
    """One ticker's missing (and once-missing) minutes over a window, by what is known.

    ``open`` = ``unverified`` + ``awaiting_repair``; ``asked`` is the part of ``unverified``
    that REST has been asked about and not yet answered.
    """

    confirmed_quiet: int = 0
    repaired: int = 0
    unverified: int = 0
    asked: int = 0
    awaiting_repair: int = 0

    @property
    def open(self) -> int:
        return self.unverified + self.awaiting_repair

    def describe(self) -> str:
        return (
            f"{self.confirmed_quiet:,} confirmed quiet, {self.repaired:,} repaired, "
            f"{self.open:,} open ({self.unverified:,} unverified, {self.asked:,} of them asked "
            f"of REST; {self.awaiting_repair:,} gap awaiting repair)"
        )

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "open": self.open}

    def __add__(self, other: MinuteCounts) -> MinuteCounts:
        return MinuteCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def count_minutes(
    minutes: MissingMinutes,
    once_missing: Sequence[Window] = (),
    asked: Sequence[Window] = (),
) -> MinuteCounts:
    """Counts over the minutes of ``minutes``: ``once_missing`` are windows found missing
    before (recorded gaps, runs sent to REST); those that have a bar now were repaired."""
    n = minutes.present.size
    once = window_mask(once_missing, minutes.first, n, minutes.bar_ms)
    asked_mask = window_mask(asked, minutes.first, n, minutes.bar_ms)
    unverified = minutes.unverified
    return MinuteCounts(
        confirmed_quiet=int(minutes.confirmed_quiet.sum()),
        repaired=int((once & minutes.present).sum()),
        unverified=int(unverified.sum()),
        asked=int((unverified & asked_mask).sum()),
        awaiting_repair=int(minutes.gap.sum()),
    )
