"""The stream worker's publisher: every outgoing item journaled on disk, then sent by one thread.

``put`` runs in the socket-reading thread: it appends the item to the journal
(``workers.journal``) and queues it, so nothing the reader handed on lives only in memory. This
thread sends each item (an ``insert_batch`` task, dead letters, system events, a gap repair
request), in journal order. With a ``Confirmer`` (production) an item is confirmed in the journal
once the ingest task that stores it marked it applied, and published again if that mark does not
come (``workers.confirmer``); a repair request, and every item without one, once the broker has
accepted it.

One mechanism for every reason an item is not confirmed: when a send fails (the broker is down
or slow) or an earlier item is on disk only (left by the previous run, or dropped from the queue
meanwhile), this thread stops sending from the queue and publishes from the journal, oldest
first, retrying every ``probe_s``, until it has caught up with the last append. Nothing is
dropped: when the journal is full ``put`` waits, i.e. the reader stops reading the socket (the
vendor then buffers, and may drop us as a slow consumer; the reconnect's gap repair covers it).

A send that fails for any other reason than an unreachable broker (a message the broker or its
serializer refuses) is retried ``max_attempts`` times with a warning each time, then set aside
as a dead letter (or, failing that, a file beside the journal), never dropped in silence.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import redis.exceptions
from kombu.exceptions import OperationalError

from rrr.metrics.stream import StreamMetrics
from rrr.models import Rejected
from rrr.stats import StreamStats
from rrr.wire import BATCH, DEAD_LETTERS, decode_item, encode_item, encode_plain
from workers.confirmer import Confirmer
from workers.items import cap_raw, describe
from workers.journal import Journal, JournalFull

log = logging.getLogger(__name__)

Sender = Callable[..., None]  # (payload) or, with a confirm token, (payload, confirm=token)
Queued = tuple[int | None, str, Any]  # journal sequence number (None: no journal), kind, payload
REMIND_EVERY_S = 30.0  # while the broker stays down, a warning this often
# The queue to the publishing thread is bounded in rows, not items: batches grow while the
# store is behind (rrr.batching.grown_limits), and 64 batches of 5,000 rows would be ~100 MB
# (~320 bytes a parsed row) of a stream worker whose peak RSS goal is 100 MB. With a journal,
# an item the queue has no room for is published from disk instead; the publisher is behind
# then anyway, so a few batches' worth is enough (measured: 64,000 rows gave no more rate).
QUEUED_ROWS = 16_000


def is_broker_unreachable(exc: BaseException) -> bool:
    """Errors that mean "try again later", never "this message is bad": kombu wraps the Redis
    client's connection errors in OperationalError; a raw socket error or timeout is the same."""
    unreachable = (
        OperationalError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
    )
    return isinstance(exc, (*unreachable, OSError, EOFError))


class Publisher:
    def __init__(
        self,
        senders: Mapping[str, Sender],
        journal: Journal | None,
        stats: StreamStats,
        now_ms: Callable[[], int],
        *,
        queue_size: int = 64,
        probe_s: float = 1.0,
        replay_burst: int = 64,
        max_attempts: int = 5,
        is_unreachable: Callable[[BaseException], bool] = is_broker_unreachable,
        confirmer: Confirmer | None = None,
        stop_wait_applied_s: float = 15.0,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self._senders = senders
        self._metrics = metrics
        self._journal = journal
        self._confirmer = confirmer if journal is not None else None
        # At a stop, how long to wait for the store to apply what was published. What it has
        # not applied by then is published once more (so the broker holds everything even if
        # this journal is never read again: an ephemeral disk) and stays journaled for the
        # next start; either repeat is a no-op in the store.
        self._stop_wait_applied_s = stop_wait_applied_s
        self._stop_deadline: float | None = None
        # Every journal record up to this sequence number was published (or set aside); the
        # next one to send is the one after it.
        self._published_upto = 0
        self._stats = stats
        self._now_ms = now_ms
        self._queue: queue.Queue[Queued] = queue.Queue(maxsize=queue_size)
        self._probe_s = probe_s
        self._replay_burst = replay_burst
        self._max_attempts = max_attempts
        self._is_unreachable = is_unreachable
        # An earlier run left unconfirmed items: publish them first.
        self._behind = journal is not None and len(journal) > 0
        self._next_probe = 0.0
        self._head_failures = 0  # failed sends of the oldest item, the broker being up
        self._down_since: float | None = None  # when the broker stopped taking items
        self._next_reminder = 0.0
        self._gave_up = False  # stopping, and the broker did not take what was left
        self._journal_full = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        stats.spool_max_bytes = journal.max_bytes if journal is not None else 0
        stats.spool_bytes = journal.pending_bytes if journal is not None else 0

    def start(self) -> None:
        self._thread.start()

    def put(self, kind: str, payload: Any, abandon: Callable[[], bool] = lambda: False) -> bool:
        """Journal an item, then queue it for this thread. Blocks while the journal is full
        (backpressure on the reader); without a journal (benchmarks), while the queue is.

        Returns False only if ``abandon()`` turned true before the item reached the journal
        (without one: the queue) during a shutdown with a stuck publisher; the caller then
        keeps the item."""
        if self._journal is not None:
            seq = self._append(encode_item(kind, payload), abandon)
            if seq is None:
                return False
            # Journaled: with the queue full this thread finds it on disk (a gap in the
            # sequence) and publishes it from there. The reader must not wait for a send: one
            # to a broker that does not answer (a network partition, not a refusal) holds this
            # thread for tens of seconds, and a reader stopped that long is dropped by the
            # vendor as a slow consumer (tests/hosts: a 30 s cut from the broker did).
            if self._room_for(payload):
                with contextlib.suppress(queue.Full):
                    self._queue.put_nowait((seq, kind, payload))
            return True
        while True:
            try:
                if self._room_for(payload):
                    self._queue.put((None, kind, payload), timeout=0.2)
                    return True
                time.sleep(0.01)
            except queue.Full:
                pass
            if abandon() or not self._thread.is_alive():
                return False

    def _room_for(self, payload: Any) -> bool:
        """Whether the queue holds fewer than QUEUED_ROWS rows with this item, counting each
        queued item as this one's size (the batches of a moment are alike)."""
        rows = len(getattr(payload, "rows", ())) or 1
        waiting = self._queue.qsize()
        return waiting == 0 or (waiting + 1) * rows <= QUEUED_ROWS

    def _append(self, record: bytes, abandon: Callable[[], bool]) -> int | None:
        assert self._journal is not None
        while True:
            try:
                seq = self._journal.append(record)
            except JournalFull as exc:
                if not self._journal_full:
                    self._journal_full = True
                    log.error("%s; the stream worker stops reading the feed until it drains", exc)
                if abandon() or not self._thread.is_alive():
                    return None
                time.sleep(0.05)
                continue
            if self._journal_full:
                self._journal_full = False
                log.warning("journal has room again: reading the feed")
            return seq

    def close(self, timeout_s: float = 30.0) -> bool:
        """Publish what is queued or journaled while the broker takes it, then stop; what it
        does not take stays in the journal for the next start. True if done in time."""
        self._stop.set()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def spooling(self) -> bool:
        """Publishing from the journal on disk (broker down, or catching up)."""
        return self._behind

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._may_stop():
                if self._confirmer is not None:
                    self._confirmer.tick(
                        time.monotonic(), self._republish, 0.2 if self._stop.is_set() else None
                    )
                if self._behind:
                    self._discard_queued()
                    if time.monotonic() >= self._next_probe:
                        self._replay()
                    else:
                        self._stop.wait(min(0.05, self._probe_s))
                else:
                    self._take_one()
                self._note_sizes()
        finally:
            self._finish()

    def _may_stop(self) -> bool:
        if not self._stop.is_set():
            return False
        if self._gave_up:
            return True
        if not self._queue.empty() or self._unpublished():
            return False
        if not self._confirmer:  # None, or nothing waits to be applied
            return True
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self._stop_wait_applied_s
        if time.monotonic() < self._stop_deadline:
            return False
        self._confirmer.republish_all(self._republish)
        return True

    def _unpublished(self) -> int:
        return self._journal.last_seq - self._published_upto if self._journal is not None else 0

    def _take_one(self) -> None:
        try:
            item = self._queue.get(timeout=0.05 if self._stop.is_set() else 0.5)
        except queue.Empty:
            if self._unpublished():
                self._behind = True  # items on disk that the queue will not bring
            return
        self._stats.publish_queue = self._queue.qsize()
        seq, kind, payload = item
        if seq is not None:
            if seq <= self._published_upto:
                return  # published from the journal already
            if seq > self._published_upto + 1:  # an older item is on disk only: publish
                self._behind = True  # from there, in order
                self._count_spooled(kind)
                return
        while True:
            error = self._send(kind, payload, seq)
            if error is None:
                if seq is not None:
                    self._published(kind, seq)
                self._broker_back()
                return
            if not self._failed(kind, payload, error, seq):
                return  # set aside
            if seq is not None:
                self._behind = True  # it waits in the journal
                self._count_spooled(kind)
                return
            if self._gave_up:
                log.error("LOST: %s (no journal, and the broker is down)", describe(kind, payload))
                return
            self._stop.wait(self._probe_s)  # no journal (benchmarks only): hold it and retry

    def _discard_queued(self) -> None:
        """While publishing from disk, queued copies only take memory: drop them."""
        assert self._journal is not None
        while True:
            try:
                seq, kind, _ = self._queue.get_nowait()
            except queue.Empty:
                return
            if seq is not None and seq > self._published_upto:
                self._count_spooled(kind)

    def _replay(self) -> None:
        """Publish journaled items, oldest first, until caught up or a send fails."""
        assert self._journal is not None
        for _ in range(self._replay_burst):
            seq = self._published_upto + 1
            if seq > self._journal.last_seq:
                self._behind = False
                self._broker_back()
                return
            record = self._journal.record(seq)
            try:
                kind, payload = decode_item(record)
            except Exception as exc:  # a record this version cannot read
                self._set_aside("record", record, f"unreadable journal record: {exc!r}")
                self._confirm(seq)
                continue
            error = self._send(kind, payload, seq)
            if error is not None:
                if self._failed(kind, payload, error, seq):
                    return  # try again after probe_s
                continue  # set aside and confirmed
            self._published(kind, seq)
            if kind == BATCH:
                self._stats.batches_replayed += 1
            if self._down_since is not None:
                self._broker_back()

    def _republish(self, seq: int) -> bool:
        """Publish an item again that the store has not applied; False if the broker did not
        take it (the confirmer tries again later)."""
        assert self._journal is not None
        kind, payload = decode_item(self._journal.record(seq))  # it decoded the first time
        error = self._send(kind, payload, seq, again=True)
        if error is not None:
            log.warning("could not publish %s again: %r", describe(kind, payload), error)
            return False
        if kind == BATCH:
            self._stats.batches_republished += 1
        return True

    def _send(
        self, kind: str, payload: Any, seq: int | None = None, *, again: bool = False
    ) -> BaseException | None:
        """None when the broker accepted it; else why not. ``again``: a republish, not counted
        as published (nor its lag sampled) a second time."""
        token = None
        if self._confirmer is not None and seq is not None:
            token = self._confirmer.token(kind, seq)
        try:
            if token is None:
                self._senders[kind](payload)
            else:
                self._senders[kind](payload, confirm=token)
        except Exception as exc:
            return exc
        if kind == BATCH and not again:
            self._stats.batches_published += 1
            self._stats.rows_published += len(payload.rows)
            now = self._now_ms()
            lags_ms = self._stats.sample_lag(payload.kind, payload.rows, now)
            if self._metrics is not None:
                self._metrics.batch_published(payload.kind, len(payload.rows), lags_ms)
        return None

    def _failed(self, kind: str, payload: Any, error: BaseException, seq: int | None) -> bool:
        """Note a failed send; True to try again later, False once the item was set aside."""
        now = time.monotonic()
        self._next_probe = now + self._probe_s
        if self._is_unreachable(error):
            if self._stop.is_set():
                self._gave_up = True
            if self._down_since is None:
                self._down_since, self._next_reminder = now, now + REMIND_EVERY_S
                self._stats.broker_up = False
                log.warning(
                    "could not publish (%s: %s): items wait in the journal%s until the broker "
                    "takes them again",
                    type(error).__name__,
                    error,
                    f" ({self._journal.directory})" if self._journal is not None else "",
                )
            elif now >= self._next_reminder:
                self._next_reminder = now + REMIND_EVERY_S
                log.warning(
                    "broker still unreachable after %.0f s (%s): %d item(s), %.1f MB wait in "
                    "the journal",
                    now - self._down_since,
                    error,
                    len(self._journal) if self._journal is not None else 0,
                    self._journal.pending_bytes / 1e6 if self._journal is not None else 0.0,
                )
            return True
        self._head_failures += 1
        log.warning(
            "could not publish %s (attempt %d of %d): %r",
            describe(kind, payload),
            self._head_failures,
            self._max_attempts,
            error,
        )
        if self._head_failures < self._max_attempts:
            return True
        reason = f"could not be published after {self._head_failures} attempts: {error!r}"
        self._set_aside(kind, payload, reason)
        if seq is not None:
            self._confirm(seq)
        return False

    def _set_aside(self, kind: str, payload: Any, reason: str) -> None:
        """An item that can never be sent: a dead letter, or a file if even that fails."""
        self._head_failures = 0
        text = orjson.dumps([kind, _plain(kind, payload)], default=repr).decode()
        letter = Rejected(raw=cap_raw(text), reason=reason, kind=kind, source="stream_worker")
        if kind != DEAD_LETTERS and self._send(DEAD_LETTERS, [letter]) is None:
            log.error("set aside as a dead letter: %s; %s", describe_any(kind, payload), reason)
            return
        where = "no journal directory to keep it in"
        if self._journal is not None:
            path = self._journal.directory / f"unsendable-{time.time_ns()}.json"
            path.write_text(text)
            where = f"kept in {path}"
        log.error("could not set aside %s as a dead letter; %s (%s)", kind, where, reason)

    def _published(self, kind: str, seq: int) -> None:
        """The broker took item ``seq``: confirmed now, or once the store applied it."""
        assert self._journal is not None
        self._published_upto = seq
        self._head_failures = 0
        if self._confirmer is not None:
            self._confirmer.published(kind, seq, time.monotonic())
        else:
            self._journal.confirm(seq)

    def _confirm(self, seq: int) -> None:
        """Item ``seq`` is done without a publish (set aside)."""
        assert self._journal is not None
        self._published_upto = seq
        self._journal.confirm(seq)
        self._head_failures = 0

    def _broker_back(self) -> None:
        if self._down_since is None:
            return
        log.warning(
            "broker back after %.0f s: journaled items published in order, publishing directly "
            "again",
            time.monotonic() - self._down_since,
        )
        self._down_since = None
        self._stats.broker_up = True

    def _count_spooled(self, kind: str) -> None:
        if kind == BATCH:
            self._stats.batches_spooled += 1

    def _note_sizes(self) -> None:
        if self._journal is not None:
            self._stats.spool_bytes = self._journal.pending_bytes

    def _finish(self) -> None:
        if self._journal is None:
            return
        unpublished = self._unpublished()
        if unpublished:
            log.warning(
                "%d item(s) not taken by the broker stay in the journal %s; the next start "
                "publishes them first",
                unpublished,
                self._journal.directory,
            )
        unapplied = len(self._confirmer) if self._confirmer is not None else 0
        if unapplied:
            log.warning(
                "%d published item(s) the store has not confirmed yet stay in the journal %s; "
                "the next start publishes them again (a no-op for any it has)",
                unapplied,
                self._journal.directory,
            )
        self._note_sizes()
        self._journal.close()


def _plain(kind: str, payload: Any) -> Any:
    """What to keep of an item that is set aside: its wire form, or as much as can be said."""
    if isinstance(payload, bytes):  # a journal record that did not decode
        return payload.hex()
    try:
        return encode_plain(kind, payload)
    except Exception:
        return payload  # orjson's default=repr keeps whatever this is


def describe_any(kind: str, payload: Any) -> str:
    try:
        return describe(kind, payload)
    except Exception:
        return kind
