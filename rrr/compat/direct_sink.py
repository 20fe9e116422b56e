"""Where a ``PolygonWebSocketClient`` without a broker sends what the stream worker hands on:
straight into a store, from the publisher thread (never the socket reader's).

A transient storage error (the database restarting, a lock timeout) is retried with a capped
backoff while the client runs: the publisher waits, its queue fills and the reader stops
reading, as with a broker that is down; the journal holds every item meanwhile. A permanent
error goes back to the publisher, which retries a few times and then sets the item aside as a
dead letter with the reason."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from rrr.errors import StorageError, is_transient
from rrr.models import Batch, Rejected, SystemEvent
from rrr.storage import Store

log = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
# Once the client is stopping, a database still failing after this long is left to the
# journal: the next start writes what it holds.
STOPPING_PATIENCE_S = 20.0


class StoreSink:
    def __init__(self, store: Store, stopping: threading.Event) -> None:
        self._store = store
        self._stopping = stopping

    def apply_batch(self, batch: Batch) -> None:
        self._retrying(lambda: self._store.apply_batch(batch, version_ms=batch.version_ms))

    def add_dead_letters(self, rejected: list[Rejected]) -> None:
        self._retrying(lambda: self._store.add_dead_letters(rejected))

    def add_events(self, events: list[SystemEvent]) -> None:
        self._retrying(lambda: self._store.add_events(events))

    def _retrying(self, write: Callable[[], T]) -> T:
        delay_s, waited_stopping_s = FIRST_BACKOFF_S, 0.0
        while True:
            try:
                return write()
            except StorageError as exc:
                if not is_transient(exc) or waited_stopping_s >= STOPPING_PATIENCE_S:
                    raise
                log.warning("store write failed (%s); retrying in %.1f s", exc, delay_s)
                if self._stopping.is_set():
                    waited_stopping_s += delay_s
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, MAX_BACKOFF_S)
