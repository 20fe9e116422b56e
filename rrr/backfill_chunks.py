"""Backfill chunk vocabulary, shared by the planner (rrr/backfill/plan.py), the chunk runner
(rrr/backfill/chunks.py) and every store's ``backfill_chunks`` table (rrr/storage/). It lives
beside neither so that backfill/ may import storage/ without storage/ importing backfill/.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

STATUSES = ("pending", "running", "done", "failed")


@dataclass(frozen=True, slots=True)
class Chunk:
    chunk_id: str
    plan_id: str
    ticker: str
    multiplier: int
    timespan: str
    start_ms: int
    end_ms: int

    def row(self) -> tuple[str, str, str, int, str, int, int]:
        """Values in ``backfill_chunks`` column order (chunk_id ... end_time)."""
        return (
            self.chunk_id,
            self.plan_id,
            self.ticker,
            self.multiplier,
            self.timespan,
            self.start_ms,
            self.end_ms,
        )


@dataclass(frozen=True, slots=True)
class ChunkState:
    """A ``backfill_chunks`` row as the store reads it back."""

    chunk: Chunk
    status: str
    bars_stored: int
    attempts: int
    last_error: str | None
    updated_ms: int
    started_ms: int | None
    finished_ms: int | None


@dataclass(frozen=True, slots=True)
class PlanProgress:
    plan_id: str
    counts: dict[str, int]  # status -> chunks
    bars_stored: int
    first_started_ms: int | None
    last_error: str | None  # newest error of a chunk not yet done

    @classmethod
    def from_status_rows(
        cls, plan_id: str, rows: Sequence[Sequence[Any]], last_error: str | None
    ) -> PlanProgress:
        """From the SQL stores' ``GROUP BY status`` rows: (status, chunks, bars, first start)."""
        started = [int(r[3]) for r in rows if r[3] is not None]
        return cls(
            plan_id,
            {r[0]: int(r[1]) for r in rows},
            sum(int(r[2]) for r in rows),
            min(started, default=None),
            last_error,
        )

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return self.counts.get("done", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def finished(self) -> bool:
        """Nothing pending or running: every chunk is done or has failed for good."""
        return self.total > 0 and self.done + self.failed == self.total
