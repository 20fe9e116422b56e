"""What an export writes, pure: one partition per (instrument, UTC day), the ones a previous
run finished left out, and the runs of consecutive days one streamed query reads.

Layout (Hive style, read as one dataset by pandas, polars, DuckDB and Spark):

    OUT/<kind>/ticker=X%3ABTCUSD/date=2026-11-01/part-0.parquet
    OUT/<kind>/_manifest.json

The partition value is URI-encoded (``:`` -> ``%3A``) as Hive and Spark write it, since a
colon in a path is a URI scheme to Hadoop; pyarrow and DuckDB decode it back to ``X:BTCUSD``.
Sentiment is partitioned by ``asset=BTC``.

A finished day is never rewritten: a partition whose manifest entry is complete and covers
the same window is skipped. Complete means the window ended at least ``SETTLE_MS`` before the
run started: today's partial day, or a day that ended in the last hour (the vendor re-sends
corrected bars for ~15 minutes; late batches land within minutes), is written but left
incomplete, so the next run writes it again. A day later repaired by a backfill is not
rewritten: delete its manifest entry (or the export) to refresh it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

DAY_MS = 86_400_000
SETTLE_MS = 3_600_000
KINDS = ("bars", "trades", "quotes", "sentiment")
FORMATS = ("parquet", "csv")
KEY_COLUMN = {"bars": "ticker", "trades": "ticker", "quotes": "ticker", "sentiment": "asset"}


@dataclass(frozen=True, slots=True)
class DayPart:
    """One partition: ``key``'s rows in [start_ms, end_ms), one UTC day or the part of it
    inside the export's range."""

    kind: str
    key: str  # the ticker (the asset for sentiment)
    day: str  # YYYY-MM-DD
    start_ms: int
    end_ms: int
    complete: bool  # ended SETTLE_MS before the run: written once, for good

    @property
    def path(self) -> str:
        """The partition's folder under OUT/<kind>, also its manifest key."""
        return f"{KEY_COLUMN[self.kind]}={quote(self.key, safe='')}/date={self.day}"

    def is_done(self, manifest: Mapping[str, Any]) -> bool:
        entry = manifest.get(self.path)
        return (
            isinstance(entry, dict)
            and bool(entry.get("complete"))
            and entry.get("start_ms") == self.start_ms
            and entry.get("end_ms") == self.end_ms
        )


def day_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def day_parts(
    kind: str, keys: Sequence[str], start_ms: int, end_ms: int, now_ms: int
) -> list[DayPart]:
    """Every partition of the range, by key then day."""
    parts = []
    for key in keys:
        day_start = start_ms - start_ms % DAY_MS
        while day_start < end_ms:
            lo, hi = max(start_ms, day_start), min(end_ms, day_start + DAY_MS)
            parts.append(DayPart(kind, key, day_of(day_start), lo, hi, hi <= now_ms - SETTLE_MS))
            day_start += DAY_MS
    return parts


@dataclass(frozen=True, slots=True)
class Span:
    """Consecutive partitions of one key: one streamed query reads them all."""

    key: str
    parts: tuple[DayPart, ...]

    @property
    def start_ms(self) -> int:
        return self.parts[0].start_ms

    @property
    def end_ms(self) -> int:
        return self.parts[-1].end_ms


def spans_to_write(parts: Sequence[DayPart], manifest: Mapping[str, Any]) -> list[Span]:
    """The partitions not done, grouped into runs of consecutive days per key."""
    spans: list[Span] = []
    run: list[DayPart] = []
    for part in parts:
        follows = bool(run) and run[-1].key == part.key and run[-1].end_ms == part.start_ms
        if run and (part.is_done(manifest) or not follows):
            spans.append(Span(run[0].key, tuple(run)))
            run = []
        if not part.is_done(manifest):
            run.append(part)
    if run:
        spans.append(Span(run[0].key, tuple(run)))
    return spans
