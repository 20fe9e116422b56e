"""Ingest tasks, all thin: decode, one store call, and ``is_transient`` decides.

Transient storage errors are retried with backoff until the database is back (never dropped);
anything else sets the input aside in ``dead_letters`` with the reason, so no task ends with
its data neither stored nor dead-lettered. The stream worker sends these by name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from celery.exceptions import Retry

from rrr.clock import now_ms
from rrr.errors import StorageError, is_transient
from rrr.models import Batch, Rejected, SystemEvent
from tasks import app
from tasks.resources import retry_countdown_s, store

log = logging.getLogger(__name__)

T = TypeVar("T")


def _retrying(task: Any, what: str, write: Callable[[], T]) -> T:
    """Run a store write; a transient error becomes a Celery retry with capped backoff."""
    try:
        return write()
    except StorageError as exc:
        if not is_transient(exc):
            raise
        countdown = retry_countdown_s(task.request.retries)
        log.warning("%s: %s; retry %d in %.1f s", what, exc, task.request.retries + 1, countdown)
        raise task.retry(exc=exc, countdown=countdown) from exc


def _dead_letter(task: Any, message: Any, reason: str, kind: str = "") -> None:
    raw = orjson.dumps(message, default=repr).decode()
    rejected = [Rejected(raw=raw, reason=reason, kind=kind)]
    _retrying(task, "dead letter", lambda: store().add_dead_letters(rejected))
    log.error("dead-lettered: %s", reason)


@app.task(
    name="tasks.ingest.insert_batch",
    bind=True,
    max_retries=None,  # transient storage errors are retried until the database is back
    ignore_result=True,
    serializer="msgpack",
)
def insert_batch(self: Any, message: dict[str, Any]) -> dict[str, Any]:
    try:
        batch = Batch.from_message(message)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        _dead_letter(self, message, f"undecodable batch: {exc}")
        return {"batch_id": None, "dead_lettered": True}
    try:
        result = _retrying(self, f"batch {batch.id}", lambda: store().apply_batch(batch))
    except Retry:
        raise
    except Exception as exc:
        # Permanent: the database refuses these rows for good, or a bug. Either way the batch
        # is set aside with the reason; a failed task would be acked and its rows lost.
        reason = f"batch {batch.id} could not be stored: {type(exc).__name__}: {exc}"
        _dead_letter(self, message, reason, batch.kind)
        return {"batch_id": batch.id, "dead_lettered": True}
    return {
        "batch_id": result.batch_id,
        "applied": result.applied,
        "stored": result.stored,
        "rejected": result.rejected,
    }


@app.task(name="tasks.ingest.insert_dead_letters", bind=True, max_retries=None, ignore_result=True)
def insert_dead_letters(self: Any, rows: list[list[str]]) -> int:
    """Rejected input (``[raw, reason, kind, source]`` each) -> ``dead_letters``."""
    rejected = [Rejected(*row) for row in rows]
    return _retrying(self, "dead letters", lambda: store().add_dead_letters(rejected))


@app.task(name="tasks.ingest.record_events", bind=True, max_retries=None, ignore_result=True)
def record_events(self: Any, events: list[dict[str, Any]]) -> int:
    """System events (``SystemEvent`` fields as a dict) -> ``system_events``, deduped by key."""
    decoded = [SystemEvent(**e) for e in events]
    return _retrying(self, "system events", lambda: store().add_events(decoded))


# Batch ids are the first guard against a redelivered batch; none can come back after the
# visibility timeout plus its retries, so a week is generous. Natural keys stay the second guard.
KEEP_BATCH_IDS_DAYS = 7.0


@app.task(name="tasks.ingest.prune_ingest_batches", bind=True, max_retries=3, ignore_result=True)
def prune_ingest_batches(self: Any, keep_days: float = KEEP_BATCH_IDS_DAYS) -> int | None:
    """Keep ``ingest_batches`` from growing without end (~1.7M ids a day at 50 ms batches)."""
    cutoff_ms = now_ms() - int(keep_days * 86_400_000)
    pruned = _retrying(self, "prune", lambda: store().prune_ingest_batches(cutoff_ms))
    log.info("pruned %s batch id(s) older than %g days", pruned, keep_days)
    return pruned
