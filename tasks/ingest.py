"""insert_batch: decode, ``store.apply_batch``, retry transient storage errors with backoff
(never drop them), dead-letter permanent ones."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from rrr.errors import StorageError, is_transient
from rrr.models import Batch, Rejected
from tasks import app
from tasks.resources import retry_countdown_s, store

log = logging.getLogger(__name__)

BATCH_SERIALIZER = "msgpack"


@app.task(
    name="tasks.ingest.insert_batch",
    bind=True,
    max_retries=None,  # transient storage errors are retried until the database is back
    ignore_result=True,
    serializer=BATCH_SERIALIZER,
)
def insert_batch(self: Any, message: dict[str, Any]) -> dict[str, Any]:
    try:
        batch = Batch.from_message(message)
    except (KeyError, TypeError, ValueError) as exc:
        raw = orjson.dumps(message, default=repr).decode()
        store().add_dead_letters([Rejected(raw=raw, reason=f"undecodable batch: {exc}")])
        log.error("dead-lettered an undecodable batch: %s", exc)
        return {"batch_id": None, "dead_lettered": True}
    try:
        result = store().apply_batch(batch)
    except StorageError as exc:
        if is_transient(exc):
            countdown = retry_countdown_s(self.request.retries)
            log.warning(
                "batch %s: %s; retry %d in %.1f s",
                batch.id,
                exc,
                self.request.retries + 1,
                countdown,
            )
            raise self.retry(exc=exc, countdown=countdown) from exc
        log.error("batch %s dead-lettered: %s", batch.id, exc)
        store().add_dead_letters(
            [
                Rejected(
                    raw=orjson.dumps(message, default=repr).decode(),
                    reason=f"batch {batch.id} could not be stored: {exc}",
                    kind=batch.kind,
                )
            ]
        )
        return {"batch_id": batch.id, "dead_lettered": True}
    return {
        "batch_id": result.batch_id,
        "applied": result.applied,
        "stored": result.stored,
        "rejected": result.rejected,
    }


def enqueue_batch(batch: Batch) -> None:
    """The production ``enqueue`` for the stream worker: one task per batch on ``ingest``."""
    insert_batch.apply_async(args=[batch.to_message()], queue="ingest", serializer=BATCH_SERIALIZER)
