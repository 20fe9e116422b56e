"""The stream worker: socket -> parse -> batch -> publisher thread -> ``insert_batch`` tasks.

``StreamWorker`` is the transport's listener. Its callbacks run in the socket-reading thread
and never wait on the broker: batches, dead letters, system events and repair requests go to
the ``Publisher`` (``workers.publisher``), which journals each on disk before it is queued and
confirms it once the store has it (given ``applied`` marks to read: ``workers.confirmer``) or
else once the broker has it. Collaborators are injected; ``workers.stream_process`` wires the
production ones.

Gap tracking: when a connection drops, every open buffer is flushed and each ticker's last
event time noted; the first event per ticker after the reconnect closes its gap, which is
recorded as a ``system_events`` row (component ``stream_worker``, type ``gap``) and sent as a
``tasks.backfill.repair_gap`` request for [last seen, first after].
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from rrr.applied import AppliedMarks
from rrr.batching import Batcher
from rrr.clock import Clock
from rrr.errors import VendorAuthError
from rrr.metrics.stream import StreamMetrics
from rrr.models import Batch, Rejected, Severity, SystemEvent
from rrr.polygon.gaps import Gap, GapTracker
from rrr.polygon.messages import Status, parse_frame
from rrr.polygon.stream import FrameData
from rrr.stats import HEARTBEAT_INTERVAL_S, StreamStats
from rrr.task_names import TASK_REPAIR_GAP
from rrr.wire import BATCH, DEAD_LETTERS, EVENTS, REPAIR, RepairRequest
from workers.confirmer import Confirmer
from workers.items import capped
from workers.journal import Journal
from workers.publisher import Publisher, is_broker_unreachable

log = logging.getLogger(__name__)

COMPONENT = "stream_worker"
# After a restart the repair window starts this long before the last event the previous run
# reported: its heartbeat lags by seconds and its publish queue may have held a few seconds more.
RESTART_MARGIN_MS = 60_000
DEAD_LETTER_BATCH = 500  # rejected events are sent in groups of up to this many ...
DEAD_LETTER_MAX_AGE_MS = 1000  # ... or once the oldest has waited this long
DEAD_LETTER_MAX_CHARS = 1 << 20  # ... or once their raw text adds up to this much
# Published items the store has not applied after this long go again: Settings' visibility
# timeout (600 s) + 60 s, by when kombu has restored whatever a dead consumer held.
DEFAULT_REPUBLISH_AFTER_S = 660.0
SHUTDOWN_PUT_WAIT_S = 10.0  # at shutdown, how long to wait for room in the publisher queue
_ACK = "success"  # status of a subscription acknowledgement


class Stream(Protocol):
    # The worker itself: a PolygonStream needs a StreamListener, a LeasedStream its lease hooks.
    def run(self, listener: StreamWorker) -> None: ...

    def stop(self) -> None: ...


class StreamWorker:
    def __init__(
        self,
        stream: Stream,
        batcher: Batcher,
        enqueue: Callable[[Batch], None],
        clock: Clock,
        *,
        send_dead_letters: Callable[[list[Rejected]], None],
        record_events: Callable[[list[SystemEvent]], None],
        request_repair: Callable[..., None],
        journal: Journal | None,
        tickers: Sequence[str],
        source: str = "polygon",
        stats: StreamStats | None = None,
        report_stats: Callable[[dict[str, Any]], None] | None = None,
        save_last_seen: Callable[[dict[str, int]], None] | None = None,
        max_messages: int | None = None,
        max_seconds: float | None = None,
        applied: AppliedMarks | None = None,
        republish_after_s: float = DEFAULT_REPUBLISH_AFTER_S,
        is_unreachable: Callable[[BaseException], bool] = is_broker_unreachable,
    ) -> None:
        self._stream = stream
        self._batcher = batcher
        self._journal = journal
        self._clock = clock
        self._source = source
        self._tickers = tuple(tickers)
        self.stats = stats or StreamStats(started_ms=clock.now_ms())
        self._note_batch_limits()
        self._gaps = GapTracker()
        # Prometheus reads self.stats when scraped (rrr.metrics.stream); served by
        # workers.stream_process when RRR_METRICS_PORT is set.
        self.metrics = StreamMetrics(self.stats, lambda: self._gaps.last_ms, clock.now_ms)
        self._report_stats = report_stats
        self._max_messages = max_messages
        self._max_seconds = max_seconds
        confirmer = None
        if journal is not None and applied is not None:
            confirmer = Confirmer(journal, applied, self.stats, republish_after_s=republish_after_s)
        self._publisher = Publisher(
            {
                BATCH: enqueue,
                DEAD_LETTERS: send_dead_letters,
                EVENTS: record_events,
                REPAIR: lambda request: request_repair(**request),
            },
            journal,
            self.stats,
            clock.now_ms,
            confirmer=confirmer,
            metrics=self.metrics,
            is_unreachable=is_unreachable,
        )
        self._save_last_seen = save_last_seen
        self._watching_since_ms = 0
        self._others: list[Any] = []  # statuses and rejected events of the current frame
        self._rejected: list[Rejected] = []
        self._rejected_chars = 0
        self._rejected_since_ms = 0
        self._stopping = False
        self._stopping_since = 0.0
        self._done = threading.Event()
        self.unsent: list[tuple[str, Any]] = []  # only if shutdown outran a stuck publisher

    # -- lifecycle -----------------------------------------------------------------------------

    def run(self) -> None:
        """Stream until ``stop()`` or a bound is reached; raises VendorAuthError on a bad key."""
        self._publisher.start()
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        if self._max_seconds is not None:
            timer = threading.Timer(self._max_seconds, self.stop)
            timer.daemon = True
            timer.start()
        try:
            self._stream.run(self)
        except VendorAuthError as exc:
            self._event("auth_failed", "critical", str(exc), {})
            raise
        finally:
            self._finish()

    def stop(self) -> None:
        """Flush and exit soon; safe from a signal handler."""
        self._stopping = True
        self._stream.stop()

    def _finish(self) -> None:
        self._emit(self._batcher.flush())
        self._send_dead_letters()
        if not self._publisher.close():
            log.error("publisher did not finish in time; what it did not send is in the journal")
        self.stats.connected = False
        self.stats.stopped_ms = self._clock.now_ms()
        self._done.set()
        self._beat()

    # -- StreamListener: these run in the socket thread and must not block ---------------------

    def on_connected(self) -> None:
        now = self._clock.now_ms()
        self.stats.connected, self.stats.connected_since_ms = True, now
        self._watching_since_ms = self._watching_since_ms or now

    def on_frame(self, frame: FrameData) -> None:
        now = self._clock.now_ms()  # the receiving clock: no time may be a day past it
        try:
            events = parse_frame(frame, self._source, now)
        except Exception as exc:  # a parser bug must cost one frame, not the stream
            log.exception("frame set aside: the parser failed on it")
            raw = bytes(frame).decode("utf-8", "replace")
            events = [Rejected(raw=raw, reason=f"parser error: {exc!r}", source=self._source)]
        stats = self.stats
        stats.frames += 1
        stats.messages += len(events)
        stats.last_message_ms = now
        others = self._others
        ready = self._batcher.add(events, now, others)
        if ready:
            self._emit(ready)
        if others:
            stats.records += len(events) - len(others)
            self._handle_others(others, now)
        else:
            stats.records += len(events)
        if self._max_messages is not None and stats.records >= self._max_messages:
            self.stop()

    def on_idle(self) -> None:
        now = self._clock.now_ms()
        if now >= self._batcher.next_due_ms:
            self._emit(self._batcher.due(now))
        if self._rejected and now - self._rejected_since_ms >= DEAD_LETTER_MAX_AGE_MS:
            self._send_dead_letters()

    def on_disconnected(self, reason: str) -> None:
        self.stats.connected = False
        self._emit(self._batcher.flush())
        if self._stopping:
            return
        self.stats.reconnects += 1
        self.stats.last_disconnect_reason = reason
        self._gaps.disconnected(self._tickers, self._watching_since_ms)
        self._event("disconnected", "warning", f"stream lost: {reason}", {"reason": reason})

    # -- the stream lease (workers.leased_stream): these run in the socket thread too ----------

    def on_lease_acquired(
        self, last_seen: Mapping[str, int] | None, events: list[SystemEvent]
    ) -> None:
        """This process now holds the stream lease. The time nobody streamed is repaired from
        where the holders before stopped (their last events, kept in Redis), as after a restart.
        What this process saw before it lost the lease is older and was repaired by the holder
        that took over, so its own open gaps are dropped, unless Redis could not say."""
        mine = {t: ms for t, ms in (last_seen or {}).items() if t in self._tickers}
        if mine.keys() >= self._gaps.open_gaps.keys():
            self._gaps = GapTracker()
        self._gaps.resume(mine, RESTART_MARGIN_MS)
        if events:
            self._publish(EVENTS, events)

    def on_lease_lost(self, events: list[SystemEvent]) -> None:
        self._publish(EVENTS, events)

    # -- internals -----------------------------------------------------------------------------

    def _note_batch_limits(self) -> None:
        self.stats.batch_size_limit = self._batcher.size
        self.stats.batch_max_age_ms = self._batcher.max_age_ms
        self.stats.batch_growth = self._batcher.size // self._batcher.base_size

    def _emit(self, batches: list[Batch]) -> None:
        for batch in batches:
            gaps = self._gaps.observe(batch.kind, batch.rows)
            if gaps:
                self._repair(gaps)
            self.stats.by_kind[batch.kind] += len(batch.rows)
            self._publish(BATCH, batch)
        if batches and self._journal is not None:
            # Larger batches while the store is behind (rrr.batching.grown_limits).
            self._batcher.grow(self._journal.pending_bytes)
            self._note_batch_limits()
        # A full group went from _handle_others, the only place the group grows; an old one
        # goes here.
        if (
            self._rejected
            and self._clock.now_ms() - self._rejected_since_ms >= DEAD_LETTER_MAX_AGE_MS
        ):
            self._send_dead_letters()

    def _handle_others(self, others: list[Any], now_ms: int) -> None:
        for e in others:
            if type(e) is Rejected:
                if not self._rejected:
                    self._rejected_since_ms = now_ms
                e = capped(e)
                self._rejected.append(e)
                self._rejected_chars += len(e.raw)
                self.stats.rejected += 1
            elif type(e) is Status:
                self.stats.statuses += 1
                if e.status == _ACK:
                    log.info("feed: %s", e.message)
                else:  # max_connections, force_disconnect, slow_consumer, error ...
                    log.warning("feed status %s: %s", e.status, e.message)
                    details = {"status": e.status, "message": e.message}
                    self._event("vendor_status", "warning", f"{e.status}: {e.message}", details)
        others.clear()
        if (
            len(self._rejected) >= DEAD_LETTER_BATCH
            or self._rejected_chars >= DEAD_LETTER_MAX_CHARS
        ):
            self._send_dead_letters()

    def _repair(self, gaps: list[Gap]) -> None:
        now = self._clock.now_ms()
        events = []
        for gap in gaps:
            request = RepairRequest(
                ticker=gap.ticker, start_ms=gap.start_ms, end_ms=gap.end_ms, reason="stream_gap"
            )
            self._publish(REPAIR, request)
            events.append(
                SystemEvent(
                    component=COMPONENT,
                    event_type="gap",
                    severity="warning",
                    message=(
                        f"stream gap on {gap.ticker}: {gap.end_ms - gap.start_ms} ms missed "
                        f"while reconnecting; repair requested ({TASK_REPAIR_GAP})"
                    ),
                    ts_ms=now,
                    details={**request, "repair_task": TASK_REPAIR_GAP, "repair_requested": True},
                    dedupe_key=f"stream_gap:{gap.ticker}:{gap.start_ms}:{gap.end_ms}",
                )
            )
            log.warning("%s", events[-1].message)
        self.stats.gaps += len(gaps)
        self._publish(EVENTS, events)

    def _event(self, kind: str, severity: Severity, message: str, details: dict[str, Any]) -> None:
        event = SystemEvent(COMPONENT, kind, severity, message, self._clock.now_ms(), details)
        self._publish(EVENTS, [event])

    def _send_dead_letters(self) -> None:
        if self._rejected:
            rejected, self._rejected, self._rejected_chars = self._rejected, [], 0
            log.warning("%d event(s) rejected, e.g. %s", len(rejected), rejected[0].reason)
            self._publish(DEAD_LETTERS, rejected)

    def _publish(self, kind: str, payload: Any) -> None:
        """Blocks while the publisher's queue is full: the socket is not read meanwhile."""
        if not self._publisher.put(kind, payload, abandon=self._give_up):
            self.unsent.append((kind, payload))
            log.error("LOST: a %s could not be handed to the publisher at shutdown", kind)

    def _give_up(self) -> bool:
        """Only while stopping, and only after the publisher had a fair while to take it."""
        if not self._stopping:
            return False
        if not self._stopping_since:
            self._stopping_since = time.monotonic()
        return time.monotonic() - self._stopping_since > SHUTDOWN_PUT_WAIT_S

    def _heartbeat(self) -> None:
        while not self._done.wait(HEARTBEAT_INTERVAL_S):
            self._beat()

    def _beat(self) -> None:
        if self._report_stats is None:
            return
        try:
            self._report_stats(self.stats.snapshot(self._clock.now_ms()))
            if self._save_last_seen is not None:
                self._save_last_seen(dict(self._gaps.last_ms))
        except Exception as exc:  # Redis down: stats wait, the data path does not
            log.debug("heartbeat not written: %r", exc)
