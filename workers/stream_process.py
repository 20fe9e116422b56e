"""The ``rrr stream`` process: Settings -> production collaborators -> ``StreamWorker.run``.

Production wiring: batches as ``tasks.ingest.insert_batch`` tasks on the ``ingest`` queue, dead
letters and system events as ``tasks.ingest`` tasks, gap repairs as ``tasks.backfill.repair_gap``
on ``backfill``; heartbeat, stats and the ingest tasks' applied marks (``rrr.applied``) in the
broker's Redis; the journal under ``var/journal``, each item kept until the store applied it.
SIGTERM and SIGINT drain: frames already read are delivered, the open batch is closed, what is
queued is published (or stays journaled), the WebSocket close handshake is done, exit 0. A
second signal exits at once; the journal still holds every item handed on.

Every task is sent by name (``send_task``) through a Celery app configured from
``celeryconfig``, so this process never imports the task modules: they load the stores and
pandas, ~45 MB of a stream worker whose peak RSS goal is 100 MB.
"""

from __future__ import annotations

import logging
import os
import signal
import uuid
from types import FrameType
from typing import Any

import redis

from rrr.applied import AppliedMarks
from rrr.batching import Batcher, sequential_ids
from rrr.broker import resolve_redis_url
from rrr.clock import SystemClock
from rrr.config import DEFAULT_WS_URL, SIMULATOR_KEY, Secret, Settings
from rrr.errors import ConfigError
from rrr.gc_tuning import tune_gc
from rrr.metrics.http import serve_metrics
from rrr.models import SOURCE_POLYGON, SOURCE_SIMULATOR, Batch, Rejected, SystemEvent
from rrr.polygon.stream import PolygonStream
from rrr.stats import StreamStats, publish_stats, save_last_seen
from rrr.task_names import (
    QUEUE_BACKFILL,
    QUEUE_INGEST,
    TASK_INSERT_BATCH,
    TASK_INSERT_DEAD_LETTERS,
    TASK_RECORD_EVENTS,
    TASK_REPAIR_GAP,
)
from rrr.wire import (
    RepairRequest,
    encode_batch,
    encode_dead_letters,
    encode_events,
    encode_repair_request,
)
from workers.journal import Journal, adopt_spool
from workers.lease_redis import RedisLease, lease_client
from workers.leased_stream import LeasedStream
from workers.stream import StreamWorker
from workers.stream_lease import LeasePolicy

log = logging.getLogger(__name__)


def feed_credentials(settings: Settings) -> tuple[Secret, str]:
    """(API key, source) for the configured feed; simulated data is marked 'simulator'."""
    if settings.simulator:  # `rrr run` started the simulator and says so (RRR_SIMULATOR)
        return settings.polygon_api_key or Secret(SIMULATOR_KEY), SOURCE_SIMULATOR
    if settings.polygon_api_key is not None:
        return settings.polygon_api_key, SOURCE_POLYGON
    if settings.polygon_ws_url.rstrip("/") == DEFAULT_WS_URL:
        raise ConfigError(
            "POLYGON_API_KEY is not set, so there is no key for the real feed: set "
            "POLYGON_API_KEY (or MASSIVE_API_KEY), or point POLYGON_WS_URL at the local "
            "simulator (`rrr simulate`, or `rrr run` starts it for you)"
        )
    log.warning("SIMULATED DATA: no POLYGON_API_KEY; rows are stored with source='simulator'")
    return Secret(SIMULATOR_KEY), SOURCE_SIMULATOR


class CeleryOutbox:
    """The production senders: one task message per call, by task name."""

    def __init__(self) -> None:
        from celery import Celery

        self.app = Celery("rrr")
        self.app.config_from_object("celeryconfig")
        # A "task-sent" event is a second Redis round trip and JSON message per batch (measured:
        # publish cost +~40 %); Flower still sees every task from the worker's received event.
        self.app.conf.task_send_sent_event = False

    def send(self, name: str, **options: Any) -> None:
        # ignore_result: without it Celery's Redis result backend SUBSCRIBEs to a channel per
        # sent task (never read here: a leak and a round trip per batch).
        self.app.send_task(name, ignore_result=True, **options)

    # ``confirm``: the token the task marks applied once stored (rrr.applied); None for none.
    def publish_batch(self, batch: Batch, confirm: str | None = None) -> None:
        kwargs = _confirm_kwargs(confirm)
        self.send(
            TASK_INSERT_BATCH,
            args=[encode_batch(batch)],
            kwargs=kwargs,
            queue=QUEUE_INGEST,
            serializer="msgpack",  # tasks.ingest.BATCH_SERIALIZER
            # A one-line repr: Celery's default saferepr of 1000 rows cost ~40 % of a publish
            # (measured), and Flower then shows which batch it is.
            argsrepr=f"(<batch {batch.id}: {len(batch.rows)} {batch.kind}>,)",
            kwargsrepr=repr(kwargs),
        )

    def send_dead_letters(self, rejected: list[Rejected], confirm: str | None = None) -> None:
        self.send_ingest(TASK_INSERT_DEAD_LETTERS, encode_dead_letters(rejected), confirm)

    def record_events(self, events: list[SystemEvent], confirm: str | None = None) -> None:
        self.send_ingest(TASK_RECORD_EVENTS, encode_events(events), confirm)

    def send_ingest(self, name: str, plain: Any, confirm: str | None) -> None:
        """An ingest task whose one argument is ``plain`` (a version-1 wire form: no ``wire``)."""
        self.send(name, args=[plain], kwargs=_confirm_kwargs(confirm), queue=QUEUE_INGEST)

    def request_repair(self, ticker: str, start_ms: int, end_ms: int, reason: str) -> None:
        # The backfill tasks may live in another deployment (or not exist yet); the gap is
        # recorded as a system event either way.
        request = RepairRequest(ticker=ticker, start_ms=start_ms, end_ms=end_ms, reason=reason)
        self.send(TASK_REPAIR_GAP, kwargs=encode_repair_request(request), queue=QUEUE_BACKFILL)


def _confirm_kwargs(confirm: str | None) -> dict[str, str]:
    return {} if confirm is None else {"confirm": confirm}


def build_worker(
    settings: Settings, max_messages: int | None = None, max_seconds: float | None = None
) -> StreamWorker:
    key, source = feed_credentials(settings)
    clock = SystemClock()
    redis_url = resolve_redis_url(settings)
    stream = leased_stream(settings, redis_url, key)
    # Stats, heartbeat and applied marks: short timeouts, so a hung broker never stalls the
    # publisher thread for long (it reads the marks).
    stats_client = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)

    # Only the lease holder speaks for the stream in Redis: a standby's counters and older
    # last events would overwrite the holder's. A holder that released the lease at its stop
    # still writes its final heartbeat (stopped_ms).
    def report_stats(snapshot: dict[str, Any]) -> None:
        if stream.held or stream.released:
            publish_stats(stats_client, {**snapshot, **stream.stats_fields()})

    def save_holder_last_seen(last_seen: dict[str, int]) -> None:
        if stream.held:
            save_last_seen(stats_client, last_seen)

    outbox = CeleryOutbox()
    return StreamWorker(
        stream,
        Batcher(settings.batch_size, settings.batch_max_age_ms, sequential_ids()),
        outbox.publish_batch,
        clock,
        send_dead_letters=outbox.send_dead_letters,
        record_events=outbox.record_events,
        request_repair=outbox.request_repair,
        journal=open_journal(settings),
        tickers=settings.tickers,
        source=source,
        stats=StreamStats(url=settings.polygon_ws_url, started_ms=clock.now_ms()),
        report_stats=report_stats,
        save_last_seen=save_holder_last_seen,
        # What the run before saw last is read when the lease is taken
        # (StreamWorker.on_lease_acquired), which for a standby may be long after its start.
        max_messages=max_messages,
        max_seconds=max_seconds,
        applied=AppliedMarks(stats_client, session=uuid.uuid4().hex[:16]),
        # By then kombu has restored any message a dead consumer held (workers.awaiting).
        republish_after_s=settings.visibility_timeout_s + 60,
    )


def open_journal(settings: Settings) -> Journal | None:
    """The journal under var/journal (with what an older version's var/spool still held), or
    None with RRR_JOURNAL=off: for benchmarks only, a kill then loses what was in memory."""
    if not settings.journal_enabled:
        log.warning("RRR_JOURNAL=off: nothing is journaled; a kill or a broker outage loses data")
        return None
    journal = Journal(
        settings.var_dir / "journal",
        settings.spool_max_mb * 1_000_000,
        fsync=settings.journal_fsync,
    )
    adopt_spool(settings.var_dir / "spool", journal)
    return journal


def leased_stream(settings: Settings, redis_url: str, key: Secret) -> LeasedStream:
    """The vendor stream, connected only while this process holds the stream lease."""
    policy = LeasePolicy(settings.stream_lease_s)
    return LeasedStream(
        lambda: PolygonStream(settings.polygon_ws_url, key, settings.tickers),
        RedisLease(lease_client(redis_url, policy), policy),
    )


def run_stream(
    settings: Settings, max_messages: int | None = None, max_seconds: float | None = None
) -> None:
    """Run until SIGTERM/SIGINT or a bound; raises VendorAuthError on a refused key."""
    worker = build_worker(settings, max_messages, max_seconds)
    if settings.metrics_port:
        serve_metrics(
            worker.metrics.registry, settings.metrics_port, settings.metrics_address,
            "RRR_METRICS_PORT",
        )  # fmt: skip

    signalled: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if signalled:
            # Everything handed on is in the journal already; the next start publishes it.
            log.warning("second signal (%s): exiting now, unconfirmed items stay journaled", name)
            logging.shutdown()
            os._exit(128 + signum)
        signalled.append(signum)
        log.info("%s: draining (frames read, open batch, queue), then stopping", name)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tune_gc()
    log.info(
        "stream worker: %s for %s (batches of <= %d rows or %d ms)",
        settings.polygon_ws_url,
        ", ".join(settings.tickers),
        settings.batch_size,
        settings.batch_max_age_ms,
    )
    worker.run()
    log.info(
        "stream worker stopped: %d messages, %d batches published, %d waited in the journal",
        worker.stats.messages,
        worker.stats.batches_published,
        worker.stats.batches_spooled,
    )
