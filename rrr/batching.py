"""Batcher: market records in, ``Batch(id, kind, rows)`` out when a kind's buffer is full or old.

Pure: the caller passes ``now_ms`` and the id factory, so a test drives time by hand. One buffer
per kind (trades, quotes, bars), since a batch is applied to one table in one transaction.

Defaults (Settings ``batch_size`` 1000, ``batch_max_age_ms``) come from ``bench.stream``: the
publish cost per row falls steeply up to ~1000 rows and little after, and the age bounds the
latency a quiet market adds, which the exchange-time -> committed-row p99 goal has to absorb.

**Batches grow with the backlog** (``grown_limits``). Every batch costs the pipeline a fixed
share besides its rows (a task message, its ack, a transaction, a commit): with a fixed 20 ms
age a batch holds 20 ms of one kind's events, ~300 rows at 30,000 events/s, and that share
becomes a third of the CPU per tick (bench.stream: 64 us a tick paced at 28,000/s, 53 in a burst
of 1,000-row batches). So while the store is behind, measured by what the stream worker holds
unconfirmed in its journal, both limits grow together, up to ``MAX_GROWTH`` times: fewer,
larger batches let the pipeline catch up; once it has, they shrink back. A market at the
latency goal's 2,000 events/s leaves a few kB unconfirmed: its batches stay as they were.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from rrr.models import Bar, Batch, Kind, Quote, Trade

_NEVER = float("inf")
# Unconfirmed journal bytes per step of growth: ~13,000 rows (~75 bytes each), about what a
# healthy pipeline holds at 13,000 events/s, confirmations coming once a second.
BACKLOG_STEP_BYTES = 1_000_000
# 1,000-row batches up to 5,000, a 20 ms age up to 100 ms. Measured (bench.stream, bursts and
# 60 s at 95,000 events/s): the same rate as up to 10,000 rows, and a stream worker peak RSS
# of 69-78 MB rather than 78-100 MB (each batch is held, encoded and replayed whole).
MAX_GROWTH = 5


def grown_limits(size: int, max_age_ms: int, backlog_bytes: int) -> tuple[int, int]:
    """(size, max age) for the next batches: the configured ones times one more for each
    ``BACKLOG_STEP_BYTES`` the store is behind, at most ``MAX_GROWTH`` times."""
    growth = min(MAX_GROWTH, 1 + max(0, backlog_bytes) // BACKLOG_STEP_BYTES)
    return size * growth, max_age_ms * growth


def sequential_ids(session: str | None = None) -> Callable[[], str]:
    """Batch ids ``{session}-{n}``: unique across restarts (a fresh random session each run),
    cheap to make, and they sort in publish order within a session."""
    prefix = session or uuid.uuid4().hex[:16]
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter)}"


class _Buffer:
    __slots__ = ("kind", "last_ms", "opened_ms", "rows")

    def __init__(self, kind: Kind) -> None:
        self.kind: Kind = kind
        self.rows: list[Any] = []
        self.opened_ms = 0  # now_ms when the first row of the open batch arrived
        self.last_ms = 0  # now_ms when the latest row arrived: a bars batch's version


class Batcher:
    def __init__(
        self,
        size: int = 1000,
        max_age_ms: int = 50,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        if size < 1 or max_age_ms < 0:
            raise ValueError("batch size must be >= 1 and max age >= 0 ms")
        self.size = self.base_size = size
        self.max_age_ms = self.base_max_age_ms = max_age_ms
        self.new_id = new_id or sequential_ids()
        self._buffers = {Trade: _Buffer("trades"), Quote: _Buffer("quotes"), Bar: _Buffer("bars")}
        # The earliest time an open buffer comes of age; inf when every buffer is empty. The
        # caller may compare against it before calling `due` (one float compare per frame).
        self.next_due_ms: float = _NEVER

    def add(
        self, events: Iterable[Any], now_ms: int, others: list[Any] | None = None
    ) -> list[Batch]:
        """Buffer the Trade/Quote/Bar records of ``events``; return the batches now ready.

        Anything else (statuses, rejected events) goes to ``others`` in order, so the caller
        walks a parsed frame once. Without ``others`` a non-record is a TypeError.
        """
        ready: list[Batch] = []
        buffers = self._buffers
        size = self.size
        for e in events:
            buffer = buffers.get(type(e))
            if buffer is None:
                if others is None:
                    raise TypeError(f"not a market record: {type(e).__name__}")
                others.append(e)
                continue
            rows = buffer.rows
            if not rows:
                buffer.opened_ms = now_ms
                if now_ms + self.max_age_ms < self.next_due_ms:
                    self.next_due_ms = now_ms + self.max_age_ms
            rows.append(e)
            buffer.last_ms = now_ms
            if len(rows) >= size:
                ready.append(self._cut(buffer))
        if now_ms >= self.next_due_ms:
            ready.extend(self.due(now_ms))
        return ready

    def grow(self, backlog_bytes: int) -> None:
        """Set the limits for what the store is behind (``grown_limits``). Open buffers keep
        their rows; each closes by the new limits."""
        size, age = grown_limits(self.base_size, self.base_max_age_ms, backlog_bytes)
        if age != self.max_age_ms:
            opened = [b.opened_ms for b in self._buffers.values() if b.rows]
            self.next_due_ms = min(opened) + age if opened else _NEVER
        self.size, self.max_age_ms = size, age

    def due(self, now_ms: int) -> list[Batch]:
        """Batches whose first row has waited ``max_age_ms`` or more."""
        if now_ms < self.next_due_ms:
            return []
        limit = now_ms - self.max_age_ms
        return [self._cut(b) for b in self._buffers.values() if b.rows and b.opened_ms <= limit]

    def flush(self) -> list[Batch]:
        """Every open buffer as a batch, whatever its age (shutdown, disconnect)."""
        return [self._cut(b) for b in self._buffers.values() if b.rows]

    @property
    def pending(self) -> int:
        """Rows buffered and not yet in a batch."""
        return sum(len(b.rows) for b in self._buffers.values())

    def _cut(self, buffer: _Buffer) -> Batch:
        # A bars batch is versioned by when its newest bar arrived: later than every bar in it,
        # earlier than any bar of the next batch, so a correction outranks what it corrects.
        version = buffer.last_ms if buffer.kind == "bars" else None
        batch = Batch(id=self.new_id(), kind=buffer.kind, rows=buffer.rows, version_ms=version)
        buffer.rows = []
        opened = [b.opened_ms for b in self._buffers.values() if b.rows]
        self.next_due_ms = min(opened) + self.max_age_ms if opened else _NEVER
        return batch
