"""Fetch one backfill chunk into a store, idempotently.

``fetch_chunk`` claims the chunk (an atomic UPDATE: pending/failed -> running, or a running
chunk whose lease ran out), walks the aggregates pages, upserts each page as one batch and
marks the chunk done. Running it twice, or on two workers at once, stores nothing twice:
only one claim wins, and bars are keyed by (ticker, timeframe, start) anyway.

The lease: a claim is renewed ("touched") after every page. A claim not renewed for
``lease_ms`` belongs to a dead worker (SIGKILL, lost machine) and may be taken over. Lease
expiry compares times written by workers, so it assumes clocks within a few seconds (NTP).

Errors: a transient one (429, 5xx, timeout, a busy database) puts the chunk back to pending
and raises ``ChunkInterrupted`` carrying where to resume (the page that failed), so a retry
does not fetch the earlier pages again. A permanent one (bad key, plan not entitled) marks the
chunk failed with a message that says what to fix.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from rrr.backfill_chunks import ChunkState
from rrr.clock import Clock
from rrr.errors import RateLimited, RrrError, StorageError, is_transient
from rrr.models import Batch
from rrr.polygon.rest import PolygonRest
from rrr.retry_policy import is_limiter_wait
from rrr.storage.base import Store

log = logging.getLogger(__name__)

DEFAULT_LEASE_MS = 120_000  # > the longest page: ~1 s limiter wait + 30 s read + the write


@dataclass(frozen=True, slots=True)
class Resume:
    """Where an interrupted chunk continues; plain data, so it travels as a task argument."""

    path: str | None = None  # the page that failed (None: from the first page)
    page: int = 0
    bars_stored: int = 0
    errors: int = 0  # transient vendor/database errors so far (rate-limit waits not counted)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Resume:
        return cls(**data) if data else cls()


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    chunk_id: str
    status: str  # done | already_done | held | missing | failed
    bars_stored: int = 0
    pages: int = 0
    retry_in_s: float | None = None  # held: when the other claim's lease runs out
    fetch_s: float = 0.0
    store_s: float = 0.0
    error: str | None = None
    attempt: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChunkInterrupted(RrrError):
    """A transient error (or an ``interrupted_by`` exception: the task's time limit) stopped
    the chunk; it is pending again and ``resume`` says where to carry on."""

    def __init__(self, chunk_id: str, cause: BaseException, resume: Resume) -> None:
        super().__init__(f"chunk {chunk_id} interrupted: {cause}")
        self.chunk_id = chunk_id
        self.cause = cause
        self.resume = resume

    @property
    def retry_after_s(self) -> float | None:
        return self.cause.retry_after_s if isinstance(self.cause, RateLimited) else None


@dataclass(slots=True)
class _Timer:
    fetch_s: float = 0.0  # waiting for the rate limit, the vendor and parsing
    store_s: float = 0.0  # apply_batch and the chunk's bookkeeping


def fetch_chunk(
    store: Store,
    rest: PolygonRest,
    chunk_id: str,
    *,
    clock: Clock,
    lease_ms: int = DEFAULT_LEASE_MS,
    resume: Resume | None = None,
    interrupted_by: tuple[type[BaseException], ...] = (),
) -> ChunkOutcome:
    """Fetch and store the chunk's pages from ``resume`` on. ``interrupted_by``: exceptions
    that stop it where it is, like a transient error but not counted as one (the Celery task's
    soft time limit), so the retry goes on from that page instead of the first."""
    state = store.get_chunk(chunk_id)
    if state is None:
        return ChunkOutcome(chunk_id, "missing", error="no such chunk (was the plan written?)")
    if state.status == "done":
        return ChunkOutcome(chunk_id, "already_done", bars_stored=state.bars_stored)
    attempt = store.claim_chunk(chunk_id, clock.now_ms(), lease_ms)
    if attempt is None:
        return _not_claimed(store, chunk_id, clock.now_ms(), lease_ms)
    resume = resume or Resume()
    chunk = state.chunk
    path, page, stored = resume.path, resume.page, resume.bars_stored
    timer = _Timer()
    try:
        mark = time.monotonic()
        for requested, data in rest.aggs_pages(
            chunk.ticker,
            chunk.multiplier,
            chunk.timespan,
            chunk.start_ms,
            chunk.end_ms,
            resume_path=path,
        ):
            timer.fetch_s += time.monotonic() - mark
            path = requested
            mark = time.monotonic()
            # Versioned by when the page came back: a stream bar received later is newer.
            result = store.apply_batch(
                Batch(f"backfill:{chunk_id}:{attempt}:{page}", "bars", data.bars),
                version_ms=clock.now_ms(),
            )
            if data.rejected:
                store.add_dead_letters(data.rejected)
            # A replayed batch id changed nothing because its bars are already there.
            stored += len(data.bars) - result.rejected
            page += 1
            path = data.next_path
            store.touch_chunk(chunk_id, stored, clock.now_ms())
            timer.store_s += time.monotonic() - mark
            mark = time.monotonic()
    except interrupted_by as exc:
        _release(store, chunk_id, f"interrupted: {type(exc).__name__}", clock.now_ms())
        raise ChunkInterrupted(chunk_id, exc, Resume(path, page, stored, resume.errors)) from exc
    except RrrError as exc:
        message = str(exc)
        if is_transient(exc):
            errors = resume.errors + (0 if is_limiter_wait(exc) else 1)
            _release(store, chunk_id, message, clock.now_ms())
            raise ChunkInterrupted(chunk_id, exc, Resume(path, page, stored, errors)) from exc
        store.fail_chunk(chunk_id, message, clock.now_ms())
        log.error("chunk %s (%s) failed: %s", chunk_id, chunk.ticker, message)
        return ChunkOutcome(chunk_id, "failed", stored, page, error=message, attempt=attempt)
    except Exception as exc:  # a bug: record it on the chunk, then let it surface
        store.fail_chunk(chunk_id, f"internal error: {type(exc).__name__}: {exc}", clock.now_ms())
        raise
    store.finish_chunk(chunk_id, stored, clock.now_ms())
    return ChunkOutcome(
        chunk_id,
        "done",
        bars_stored=stored,
        pages=page - resume.page,
        fetch_s=timer.fetch_s,
        store_s=timer.store_s,
        attempt=attempt,
    )


def _release(store: Store, chunk_id: str, message: str, now_ms: int) -> None:
    """Back to pending for a retry. If the database is what failed, this may fail too: then
    the claim stays until its lease runs out, and the retry takes it over."""
    try:
        store.fail_chunk(chunk_id, message, now_ms, retry=True)
    except StorageError as exc:
        log.warning("chunk %s: could not release it (%s); its lease will", chunk_id, exc)


def _not_claimed(store: Store, chunk_id: str, now_ms: int, lease_ms: int) -> ChunkOutcome:
    state: ChunkState | None = store.get_chunk(chunk_id)
    if state is None:
        return ChunkOutcome(chunk_id, "missing", error="chunk vanished while claiming")
    if state.status == "done":
        return ChunkOutcome(chunk_id, "already_done", bars_stored=state.bars_stored)
    retry_in_s = max(0.0, (state.updated_ms + lease_ms - now_ms) / 1000)
    return ChunkOutcome(chunk_id, "held", bars_stored=state.bars_stored, retry_in_s=retry_in_s)


def give_up(store: Store, chunk_id: str, error: str, now_ms: int) -> None:
    """Retries are spent: the chunk is failed until the next run of the plan picks it up."""
    store.fail_chunk(chunk_id, f"gave up after retries: {error}", now_ms)
