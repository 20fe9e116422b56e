"""``rrr export``'s work: plan the partitions (rrr/export/plan.py), stream each run of days
from the store in chunks (``StoreReader.iter_range``), cut the rows at UTC midnights into
partitions (rrr/export/files.py), record each finished partition in the manifest.

Memory is one chunk of rows (rrr.storage.range_reads.CHUNK_ROWS) plus the Arrow writer's
row group, whatever the range: a year of trades is read and written a chunk at a time.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rrr.data.reads import check_known
from rrr.export.files import PART_ROWS, PartitionWriter, RowsToArrow, load_manifest, save_manifest
from rrr.export.plan import FORMATS, KINDS, DayPart, day_parts, spans_to_write
from rrr.storage.range_reads import CHUNK_ROWS, RangeQuery

if TYPE_CHECKING:
    from rrr.storage.base import StoreReader


@dataclass(frozen=True, slots=True)
class ExportPlan:
    kind: str
    keys: tuple[str, ...]  # tickers (assets for sentiment)
    start_ms: int
    end_ms: int
    fmt: str
    out: Path
    timeframe: str = "1m"  # bars: the stored timeframe exported

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown format {self.fmt!r}; use one of {', '.join(FORMATS)}")

    @property
    def folder(self) -> Path:
        return self.out / self.kind

    def query(self, key: str, start_ms: int, end_ms: int) -> RangeQuery:
        equal = {"timeframe": self.timeframe} if self.kind == "bars" else {}
        return RangeQuery(self.kind, (key,), start_ms, end_ms, equal)


@dataclass
class ExportProgress:
    days_total: int  # partitions this run writes
    days_done: int = 0
    days_skipped: int = 0  # finished by an earlier run
    rows: int = 0
    files: int = 0


def export(
    store: StoreReader,
    plan: ExportPlan,
    now_ms: int,
    on_progress: Callable[[ExportProgress], None] = lambda _: None,
    chunk_rows: int = CHUNK_ROWS,
    part_rows: int = PART_ROWS,
) -> ExportProgress:
    """Write the plan's partitions not finished before; returns what was done. A ticker never
    stored is a ValueError, as in ``rrr.data``, not an empty export."""
    if plan.kind != "sentiment":
        check_known(store, plan.kind, plan.keys)
    plan.folder.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(plan.folder, plan.fmt)
    parts = day_parts(plan.kind, plan.keys, plan.start_ms, plan.end_ms, now_ms)
    spans = spans_to_write(parts, manifest)
    progress = ExportProgress(sum(len(s.parts) for s in spans))
    progress.days_skipped = len(parts) - progress.days_total
    on_progress(progress)
    sample = plan.query(plan.keys[0], 0, 1)
    to_arrow = RowsToArrow(sample, plan.fmt)
    time_index = [c.name for c in sample.columns].index("event_time")

    def finish(part: DayPart, current: PartitionWriter | None) -> None:
        """The partition in place, then its manifest entry: a run killed in between writes
        the day again."""
        files = current.commit() if current is not None else {}
        manifest[part.path] = {
            "start_ms": part.start_ms,
            "end_ms": part.end_ms,
            "complete": part.complete,
            "rows": sum(files.values()),
            "files": files,
        }
        save_manifest(plan.folder, plan.kind, plan.fmt, manifest)
        progress.days_done += 1
        progress.files += len(files)
        on_progress(progress)

    for span in spans:
        day_ends = [p.end_ms for p in span.parts]
        writer: PartitionWriter | None = None
        at = 0  # index of the partition being written in span.parts
        query = plan.query(span.key, span.start_ms, span.end_ms)
        try:
            with closing(store.iter_range(query, chunk_rows)) as chunks:
                for rows in chunks:
                    times = [r[time_index] for r in rows]
                    lo = 0
                    while lo < len(rows):
                        # Rows are in time order: this partition's run ends at its day's end.
                        hi = bisect.bisect_left(times, day_ends[at], lo)
                        if hi > lo:
                            if writer is None:
                                part = span.parts[at]
                                writer = PartitionWriter(
                                    plan.folder / part.path, to_arrow.schema, plan.fmt, part_rows
                                )
                            writer.write(to_arrow.table(rows[lo:hi]))
                            progress.rows += hi - lo
                        if hi < len(rows):  # the day is over: the next rows are the next day's
                            finish(span.parts[at], writer)
                            writer, at = None, at + 1
                        lo = hi
                    on_progress(progress)
            while at < len(span.parts):
                finish(span.parts[at], writer)
                writer, at = None, at + 1
        except BaseException:
            if writer is not None:
                writer.abandon()
            raise
    return progress
