"""Where a ``PolygonWebSocketClient`` without a broker sends what the stream worker hands on:
straight into a store, from the publisher thread (never the socket reader's).

A database that refuses writes for a while (restarting, locked: a transient ``StorageError``)
is waited out by the publisher as it waits out a broker that is down (``store_unavailable`` is
its test, workers.publisher): the items stay journaled, are written again every second, and a
stop leaves them to the next start. Any other error is retried a few times, then the item is
set aside as a dead letter with the reason."""

from __future__ import annotations

from rrr.errors import StorageError, is_transient
from rrr.models import Batch, Rejected, SystemEvent
from rrr.storage import Store


class StoreSink:
    def __init__(self, store: Store) -> None:
        self._store = store

    def apply_batch(self, batch: Batch) -> None:
        self._store.apply_batch(batch, version_ms=batch.version_ms)

    def add_dead_letters(self, rejected: list[Rejected]) -> None:
        self._store.add_dead_letters(rejected)

    def add_events(self, events: list[SystemEvent]) -> None:
        self._store.add_events(events)


def store_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, StorageError) and is_transient(exc)
