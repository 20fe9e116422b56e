"""The stream worker's publisher thread: the only place that waits on the broker.

The socket reader puts outgoing items on a bounded queue and goes back to reading. This thread
sends each one (an ``insert_batch`` task, dead letters, system events, a gap repair request).
When a send fails (broker unreachable), the item and everything after it go to the disk spool,
in order; every ``probe_s`` the oldest spooled item is tried again and, once the broker
answers, the spool is replayed in order before anything new is sent directly. Nothing is
dropped: when the spool is full this thread stops taking from the queue, the queue fills, and
the reader blocks, i.e. stops reading the socket (the vendor then buffers, and may drop us as a
slow consumer; the reconnect's gap repair covers that).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack

from rrr.models import Batch, Rejected, SystemEvent
from rrr.stats import StreamStats
from workers.spool import Spool, SpoolFull

log = logging.getLogger(__name__)

# Outgoing item kinds and how each travels through the spool as plain data.
BATCH, DEAD_LETTERS, EVENTS, REPAIR = "batch", "dead_letters", "events", "repair"
Item = tuple[str, Any]
Sender = Callable[[Any], None]


def encode_item(kind: str, payload: Any) -> bytes:
    if kind == BATCH:
        plain: Any = payload.to_message()
    elif kind == DEAD_LETTERS:
        plain = [[r.raw, r.reason, r.kind, r.source] for r in payload]
    elif kind == EVENTS:
        plain = [
            [e.component, e.event_type, e.severity, e.message, e.ts_ms, e.details, e.dedupe_key]
            for e in payload
        ]
    else:
        plain = payload
    return msgpack.packb([kind, plain], use_bin_type=True)


def decode_item(record: bytes) -> Item:
    kind, plain = msgpack.unpackb(record, raw=False)
    if kind == BATCH:
        return kind, Batch.from_message(plain)
    if kind == DEAD_LETTERS:
        return kind, [Rejected(*r) for r in plain]
    if kind == EVENTS:
        return kind, [SystemEvent(*e) for e in plain]
    return kind, plain


class Publisher:
    def __init__(
        self,
        senders: dict[str, Sender],
        spool: Spool,
        stats: StreamStats,
        now_ms: Callable[[], int],
        queue_size: int = 64,
        probe_s: float = 1.0,
        replay_burst: int = 64,
    ) -> None:
        self._senders = senders
        self._spool = spool
        self._stats = stats
        self._now_ms = now_ms
        self._queue: queue.Queue[Item | None] = queue.Queue(maxsize=queue_size)
        self._probe_s = probe_s
        self._replay_burst = replay_burst
        self._spooling = len(spool) > 0  # an earlier run left records: replay them first
        self._next_probe = 0.0
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        stats.spool_bytes, stats.spool_max_bytes = spool.size_bytes, spool.max_bytes

    def start(self) -> None:
        self._thread.start()

    def put(self, kind: str, payload: Any, abandon: Callable[[], bool] = lambda: False) -> bool:
        """Queue an item; blocks while the queue is full (backpressure on the reader).

        Returns False only if ``abandon()`` turned true while waiting (shutdown with a dead
        publisher); the caller then keeps the item."""
        item = (kind, payload)
        while True:
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                if abandon() or not self._thread.is_alive():
                    return False

    def close(self, timeout_s: float = 30.0) -> bool:
        """Send or spool everything queued, then stop; True if it finished in time."""
        self._queue.put(None)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def spooling(self) -> bool:
        return self._spooling

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while True:
            item: Item | None
            try:
                item = self._queue.get(timeout=self._probe_s / 4 if self._spooling else 0.5)
            except queue.Empty:
                item = None
            else:
                if item is None:
                    stopping = True
            self._stats.publish_queue = self._queue.qsize()
            if item is not None:
                self._handle(item)
            if self._spooling and time.monotonic() >= self._next_probe:
                self._replay()
            if stopping and self._queue.empty():
                # Final attempt at the spool; whatever the broker does not take stays on disk.
                if self._spooling:
                    self._replay(final=True)
                self._spool.close()
                return

    def _handle(self, item: Item) -> None:
        if not self._spooling:
            error = self._send(item)
            if error is None:
                return
            self._spooling = True
            self._stats.broker_up = False
            self._next_probe = time.monotonic() + self._probe_s
            log.warning(
                "could not publish (%s: %s): spooling to %s until the broker takes it again",
                type(error).__name__,
                error,
                self._spool.directory,
            )
        self._to_spool(item)

    def _to_spool(self, item: Item) -> None:
        record = encode_item(*item)
        while True:
            try:
                self._spool.append(record)
                break
            except SpoolFull as exc:
                # Stop taking from the queue (the reader then blocks) rather than drop.
                log.error("%s; the stream worker stops reading the feed until it drains", exc)
                time.sleep(self._probe_s)
                self._replay()
        if item[0] == BATCH:
            self._stats.batches_spooled += 1
        self._stats.spool_bytes = self._spool.size_bytes

    def _replay(self, final: bool = False) -> None:
        """Hand spooled items on, oldest first; stop at the first failure."""
        sent = 0
        while final or sent < self._replay_burst:
            record = self._spool.peek()
            if record is None:
                self._spooling = False
                self._stats.broker_up = True
                self._stats.spool_bytes = self._spool.size_bytes
                log.warning("broker back: spool replayed, publishing directly again")
                return
            try:
                item = decode_item(record)
            except Exception as exc:  # a record this version cannot read: keep it aside
                self._set_aside(record, exc)
                self._spool.advance()
                continue
            if self._send(item) is not None:
                self._next_probe = time.monotonic() + self._probe_s
                return
            self._spool.advance()
            self._stats.spool_bytes = self._spool.size_bytes
            if item[0] == BATCH:
                self._stats.batches_replayed += 1
            sent += 1

    def _send(self, item: Item) -> Exception | None:
        """None when sent; else why not. Any failure keeps the item (spooled), since the usual
        one is the broker (kombu/redis OperationalError, ConnectionError, timeouts); anything
        else is a bug that must not lose data either, and its replay keeps failing loudly."""
        kind, payload = item
        try:
            self._senders[kind](payload)
        except Exception as exc:
            log.debug("send of %s failed: %r", kind, exc)
            return exc
        if kind == BATCH:
            self._stats.batches_published += 1
            self._stats.rows_published += len(payload.rows)
            self._stats.sample_lag(payload.kind, payload.rows, self._now_ms())
        return None

    def _set_aside(self, record: bytes, exc: Exception) -> None:
        path = self._spool.directory / f"unreadable-{time.time_ns()}.bin"
        path.write_bytes(record)
        log.error("spool record unreadable (%s); kept in %s", exc, path)
