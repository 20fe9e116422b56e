"""Ingest tasks, all thin: decode, one store call, and ``is_transient`` decides.

Transient storage errors (an outage, a full disk) are retried with backoff until the database
is back, never dropped. Input that cannot be stored is set aside in ``dead_letters`` with the
reason, one item at a time (rrr.wire decodes each argument, by its ``wire`` version): an
undecodable batch or an unknown version whole, a refused row alone
(rrr.storage.isolate), a malformed event or letter alone (rrr.wire). What escapes all of that
is the base class's affair (tasks.delivery): retried, and set aside as poison after
``MAX_DELIVERIES``. The stream worker sends these by name, each with a ``confirm`` token; a
task that returns has committed its write or set its input aside, and the base class then marks
the token applied (rrr.applied), in the round trip that forgets the delivery count: only then
does the stream worker drop the item from its journal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from rrr.clock import now_ms
from rrr.errors import StorageError, is_transient
from rrr.metrics.tasks import record_dead_letters, record_write
from rrr.models import Rejected
from rrr.storage.isolate import apply_isolating
from rrr.task_names import (
    TASK_INSERT_BATCH,
    TASK_INSERT_DEAD_LETTERS,
    TASK_PRUNE_INGEST_BATCHES,
    TASK_RECORD_EVENTS,
)
from rrr.wire import decode_batch, decode_dead_letters, decode_events
from tasks import app
from tasks.resources import retry_countdown_s, store

log = logging.getLogger(__name__)

T = TypeVar("T")
# After this many retries in a row a transient error is logged as an error, not a warning: a
# database that has been down or full for minutes needs a person (the retries go on).
ALERT_AFTER_RETRIES = 5


def _retrying(task: Any, what: str, write: Callable[[], T]) -> T:
    """Run a store write; a transient error becomes a Celery retry with capped backoff."""
    try:
        return write()
    except StorageError as exc:
        if not is_transient(exc):
            raise
        retries = task.request.retries
        countdown = retry_countdown_s(retries)
        level = logging.ERROR if retries >= ALERT_AFTER_RETRIES else logging.WARNING
        log.log(level, "%s: %s; retry %d in %.1f s", what, exc, retries + 1, countdown)
        raise task.retry(exc=exc, countdown=countdown) from exc


def _set_aside(task: Any, rejected: list[Rejected]) -> None:
    if rejected:
        new = _retrying(task, "dead letters", lambda: store().add_dead_letters(rejected))
        record_dead_letters(task.name, [r.kind for r in rejected], new)
        for r in rejected:
            log.error("dead-lettered: %s", r.reason)


@app.task(
    name=TASK_INSERT_BATCH,
    bind=True,
    max_retries=None,  # transient storage errors are retried until the database is back
    ignore_result=True,
    serializer="msgpack",
)
def insert_batch(
    self: Any, message: dict[str, Any], confirm: str | None = None, wire: int = 1
) -> dict[str, Any]:
    batch = decode_batch(message, wire)
    if isinstance(batch, Rejected):
        _set_aside(self, [batch])
        return {"batch_id": None, "dead_lettered": True}
    # A batch id already stored is a no-op that reports applied=False: marked all the same.
    started = time.perf_counter()
    result = _retrying(self, f"batch {batch.id}", lambda: apply_isolating(store(), batch))
    record_write(TASK_INSERT_BATCH, batch.kind, result.stored, time.perf_counter() - started)
    if result.rejected:
        record_dead_letters(TASK_INSERT_BATCH, [batch.kind] * result.rejected, result.rejected)
    return {
        "batch_id": result.batch_id,
        "applied": result.applied,
        "stored": result.stored,
        "rejected": result.rejected,
    }


@app.task(name=TASK_INSERT_DEAD_LETTERS, bind=True, max_retries=None, ignore_result=True)
def insert_dead_letters(self: Any, rows: Any, confirm: str | None = None, wire: int = 1) -> int:
    """Rejected input (``[raw, reason, kind, source]`` each) -> ``dead_letters``; an item of
    another shape is stored too, as itself, marked malformed."""
    letters = decode_dead_letters(rows, wire)
    new = _retrying(self, "dead letters", lambda: store().add_dead_letters(letters))
    record_dead_letters(TASK_INSERT_DEAD_LETTERS, [letter.kind for letter in letters], new)
    return new


@app.task(name=TASK_RECORD_EVENTS, bind=True, max_retries=None, ignore_result=True)
def record_events(self: Any, events: Any, confirm: str | None = None, wire: int = 1) -> int:
    """System events (``SystemEvent`` fields as a dict) -> ``system_events``, deduped by key;
    an item that is no valid event goes to ``dead_letters`` with the reason."""
    decoded, malformed = decode_events(events, now_ms(), wire)
    _set_aside(self, malformed)
    return _retrying(self, "system events", lambda: store().add_events(decoded))


# Batch ids are the first guard against a redelivered batch; none can come back after the
# visibility timeout plus its retries, so a week is generous. Natural keys stay the second guard.
KEEP_BATCH_IDS_DAYS = 7.0


@app.task(name=TASK_PRUNE_INGEST_BATCHES, bind=True, max_retries=3, ignore_result=True)
def prune_ingest_batches(self: Any, keep_days: float = KEEP_BATCH_IDS_DAYS) -> int | None:
    """Keep ``ingest_batches`` from growing without end (~1.7M ids a day at 50 ms batches)."""
    cutoff_ms = now_ms() - int(keep_days * 86_400_000)
    pruned = _retrying(self, "prune", lambda: store().prune_ingest_batches(cutoff_ms))
    log.info("pruned %s batch id(s) older than %g days", pruned, keep_days)
    return pruned
