"""``measure_coverage``: a store's coverage table (rrr.quality.coverage) for tickers and a range.

Reads what the table needs and no more: bars counted per UTC day by the database
(rrr.storage.coverage_reads), the system events of the three components that record missing,
repaired and confirmed-quiet minutes, and the bars inside the windows those events name (a
repair or a gap is minutes to hours, never the whole range).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pandas as pd

from rrr.quality.coverage import (
    STREAM_COMPONENT,
    CoverageTable,
    EventRecord,
    coverage_table,
    evidence_by_ticker,
    measured_span,
)
from rrr.quality.events import COMPONENT
from rrr.quality.verify import REPAIR_COMPONENT
from rrr.storage.base import Store
from rrr.storage.coverage_reads import bar_counts_by_day


def _records(events: pd.DataFrame) -> list[EventRecord]:
    if events.empty:
        return []
    return [
        EventRecord(component, event_type, details if isinstance(details, dict) else {})
        for component, event_type, details in zip(
            events["component"].tolist(),
            events["event_type"].tolist(),
            events["details"].tolist(),
            strict=True,
        )
    ]


def measure_coverage(
    store: Store, tickers: Sequence[str], start_ms: int, end_ms: int, now_ms: int
) -> CoverageTable:
    """Coverage of ``tickers``' 1-minute bars per UTC day of [start_ms, end_ms) up to now."""
    first, stop = measured_span(start_ms, end_ms, now_ms)  # a bad range fails before any read
    # Each event is recorded after the minutes it is about have closed: since ``first`` finds
    # every one about the range.
    events = [
        record
        for component in (REPAIR_COMPONENT, COMPONENT, STREAM_COMPONENT)
        for record in _records(store.read_events(component, since_ms=first))
    ]
    evidence = evidence_by_ticker(events)
    bars_per_day: dict[tuple[str, date], int] = {}
    bar_minutes: dict[str, list[int]] = {}
    for ticker in tickers:
        for day, n in bar_counts_by_day(store, ticker, first, stop).items():
            bars_per_day[(ticker, day)] = n
        ticker_evidence = evidence.get(ticker)
        windows = ticker_evidence.windows() if ticker_evidence else []
        bar_minutes[ticker] = [
            int(ms)
            for s, e in windows
            if min(e, stop) > max(s, first)
            for ms in store.read_bars(ticker, max(s, first), min(e, stop))["start_ms"].tolist()
        ]
    return coverage_table(tickers, start_ms, end_ms, now_ms, bars_per_day, events, bar_minutes)
