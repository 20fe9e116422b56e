"""``PolygonWebSocketClient``: the original system's streaming client, over rrr's stream worker.

    client = PolygonWebSocketClient(supabase_client=SupabaseClient(), pairs=["X:BTCUSD"])
    await client.run()          # until ``await client.stop()`` (or the task is cancelled)
    client.get_stats()["message_count"]

Where the ticks go, decided when ``run`` starts:

- **A broker is configured** (REDIS_URL, or the embedded one `rrr run`/`rrr redis` started):
  the normal batch path, exactly as ``rrr stream`` runs it (workers.stream_process): batches
  journaled under var/journal and sent as ``insert_batch`` tasks, which rrr's Celery workers
  store in *their* configured store (so ``supabase_client`` should name the same database);
  heartbeat and stats in Redis (``rrr status``), gap repairs sent to the backfill queue. The
  stream worker's own wiring is used whole (``build_worker``): all three channels, its backoff,
  and its stream lease (workers.leased_stream): the vendor serves one connection per key, so
  the client connects only while it holds the lease in that broker, like any ``rrr stream``.
  Beside a running ``rrr stream`` on the same key it is a standby: ``run()`` waits (``connected``
  stays False) and takes over when that one stops renewing the lease.
- **No broker**: straight into ``supabase_client``'s store (or, without one, the store the
  settings choose), written by the stream worker's publisher thread, each batch still applied
  exactly once by id. Batches are journaled under var/journal-direct until the store has them,
  so a killed process loses nothing (the next start writes what is left). Gaps after a
  reconnect are recorded as system events but not repaired (no backfill workers): run
  ``rrr backfill`` over them. There is no Redis, so no stream lease either: nothing keeps it
  from connecting beside an ``rrr stream`` on the same key, and the vendor would then push one
  of the two out (``max_connections``) again and again. Run it only where no ``rrr stream``
  uses that key (or give it a broker).

Either way ``stop()`` drains: frames already read are parsed, the open batch is closed and
everything is handed on (stored, or journaled) before it returns. The socket is read in a
thread of its own (``asyncio.to_thread``), so the event loop is never blocked.

Differences from the original: ``pairs`` defaults to RRR_TICKERS (the original had eight
pairs); reconnects back off from 0.5 s to 30 s with jitter (without a broker,
``reconnect_delay`` and ``max_reconnect_delay`` set the first and the longest wait);
``message_count`` counts every event in every frame (trades, quotes, bars, statuses and
rejected ones), as the original counted messages.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rrr.batching import Batcher, sequential_ids
from rrr.broker import resolve_redis_url
from rrr.clock import SystemClock
from rrr.compat.direct_sink import StoreSink, store_unavailable
from rrr.compat.supabase_client import SupabaseClient, facade_settings
from rrr.config import Secret, Settings, parse_tickers, redact_url
from rrr.errors import ConfigError
from rrr.polygon.stream import CHANNELS, PolygonStream, StreamOptions
from rrr.stats import ORIGINAL_KIND_KEYS, StreamStats
from rrr.storage import Store, open_store_from_settings
from workers.journal import Journal
from workers.stream import StreamWorker
from workers.stream_process import build_worker, feed_credentials

log = logging.getLogger(__name__)

BROKER, DIRECT = "broker", "direct"
DIRECT_JOURNAL = "journal-direct"  # under var/: not the stream worker's, which has its own lock
STOP_TIMEOUT_S = 60.0


def channels_of(trades: bool, quotes: bool, aggregates: bool) -> tuple[str, ...]:
    """The original's enable_* flags -> the WebSocket channels (XT, XQ, XA)."""
    chosen = tuple(ch for ch, on in zip(CHANNELS, (trades, quotes, aggregates), strict=True) if on)
    if not chosen:
        raise ValueError("enable at least one of trades, quotes and aggregates")
    return chosen


def broker_url(settings: Settings) -> str | None:
    """The configured broker's URL, or None when there is none (direct mode)."""
    try:
        return resolve_redis_url(settings)
    except ConfigError:
        return None


def check_same_broker(url: str) -> None:
    """The tasks are sent through Celery's configuration (celeryconfig), which reads the
    environment; settings given in code (or an env_file) naming another broker would send every
    batch where no worker of this pipeline listens."""
    import celeryconfig

    if celeryconfig.broker_url != url:
        raise ConfigError(
            f"the settings name the broker {redact_url(url)}, but Celery's configuration (from "
            f"the environment) names {redact_url(celeryconfig.broker_url)}: set REDIS_URL in "
            "the environment to the pipeline's broker"
        )


class PolygonWebSocketClient:
    def __init__(
        self,
        api_key: str | None = None,
        supabase_client: SupabaseClient | None = None,
        pairs: Sequence[str] | None = None,
        enable_trades: bool = True,
        enable_quotes: bool = True,
        enable_aggregates: bool = True,
        reconnect_delay: float | None = None,
        max_reconnect_delay: float | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        changes: dict[str, Any] = {}
        if pairs:
            changes["tickers"] = parse_tickers(list(pairs), name="pairs")
        if api_key:
            changes["polygon_api_key"] = Secret(api_key)
        self.settings = facade_settings(settings, supabase_client).with_overrides(**changes)
        self.supabase_client = supabase_client
        self.pairs = list(self.settings.tickers)
        self.channels = channels_of(enable_trades, enable_quotes, enable_aggregates)
        defaults = StreamOptions()
        self.options = StreamOptions(
            backoff_base_s=reconnect_delay or defaults.backoff_base_s,
            backoff_cap_s=max_reconnect_delay or defaults.backoff_cap_s,
        )
        self.mode: str | None = None  # BROKER or DIRECT once run() starts
        self.running = False
        self.stats = StreamStats(url=self.settings.polygon_ws_url)
        self._worker: StreamWorker | None = None
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._opened: list[Any] = []  # what run() opened and closes (store, journal, Redis)

    # -- the original's calls ------------------------------------------------------------------

    async def run(self) -> None:
        """Stream until ``stop()``; raises VendorAuthError on a refused key (no retry storm)."""
        if self.running:
            raise RuntimeError("this client is running already")
        self._stopping.clear()
        self._finished.clear()
        self._worker = await asyncio.to_thread(self._build_worker)
        self.stats = self._worker.stats
        self.running = True
        if self._stopping.is_set():  # stop() came while it was being built
            self._worker.stop()
        try:
            await asyncio.shield(asyncio.to_thread(self._run_worker, self._worker))
        except asyncio.CancelledError:
            await self.stop()  # cancelled: drain as a stop would, then let it propagate
            raise

    async def stop(self) -> None:
        """Stop and drain: every tick read is stored (or journaled) when this returns."""
        self._stopping.set()
        worker = self._worker
        if worker is None:
            return  # not started, or still being built: run() sees _stopping
        worker.stop()
        if not await asyncio.to_thread(self._finished.wait, STOP_TIMEOUT_S):
            log.error("the stream did not stop within %.0f s", STOP_TIMEOUT_S)

    async def close(self) -> None:
        await self.stop()

    def get_stats(self) -> dict[str, Any]:
        """The original's keys, from this client's own counters."""
        s = self.stats
        last = s.last_message_ms
        return {
            "running": self.running,
            "connected": s.connected,
            "message_count": s.messages,
            **{original: s.by_kind[kind] for original, kind in ORIGINAL_KIND_KEYS.items()},
            "error_count": s.rejected,
            "last_message_time": datetime.fromtimestamp(last / 1000, UTC).isoformat()
            if last
            else None,
            "subscribed_pairs": self.pairs,
            "mode": self.mode,
            "reconnects": s.reconnects,
        }

    @property
    def message_count(self) -> int:
        return self.stats.messages

    @property
    def connected(self) -> bool:
        return self.stats.connected

    # -- wiring --------------------------------------------------------------------------------

    def _run_worker(self, worker: StreamWorker) -> None:
        try:
            worker.run()
        finally:
            self.running = False
            try:
                for resource in reversed(self._opened):
                    resource.close()
                self._opened.clear()
            finally:
                self._finished.set()  # stop() waits on this, whatever happened

    def _build_worker(self) -> StreamWorker:
        settings = self.settings
        key, source = feed_credentials(settings)
        clock = SystemClock()
        batcher = Batcher(settings.batch_size, settings.batch_max_age_ms, sequential_ids())
        url = broker_url(settings)
        self.mode = BROKER if url is not None else DIRECT
        log.info("PolygonWebSocketClient: %s mode for %s", self.mode, ", ".join(self.pairs))
        common: dict[str, Any] = {"tickers": settings.tickers, "source": source}
        if url is None:
            # No broker, no lease (module docstring): a plain vendor stream.
            stream = PolygonStream(
                settings.polygon_ws_url, key, settings.tickers, self.options,
                channels=self.channels,
            )  # fmt: skip
            sink = StoreSink(self._direct_store())
            journal = Journal(
                settings.var_dir / DIRECT_JOURNAL,
                settings.spool_max_mb * 1_000_000,
                fsync=settings.journal_fsync,
            )
            return StreamWorker(  # its publisher closes the journal when it is done
                stream,
                batcher,
                sink.apply_batch,
                clock,
                send_dead_letters=sink.add_dead_letters,
                record_events=sink.add_events,
                request_repair=_repair_not_available,
                journal=journal,
                stats=StreamStats(url=settings.polygon_ws_url, started_ms=clock.now_ms()),
                is_unreachable=store_unavailable,  # a database down: waited out, journaled
                **common,
            )
        # The broker path is the stream worker's own wiring, taken whole (journal, applied
        # marks, heartbeat, gap repairs, and whatever else `rrr stream` does), so it cannot
        # drift from it; the pairs are this client's, the channels and backoff rrr's.
        if self.channels != CHANNELS:
            log.warning(
                "with a broker the stream worker takes trades, quotes and bars, as `rrr stream`"
                " does; enable_trades/quotes/aggregates=False apply only without a broker"
            )
        check_same_broker(url)
        return build_worker(settings)  # its stream is leased (stream_process.leased_stream)

    def _direct_store(self) -> Store:
        if self.supabase_client is not None:
            return self.supabase_client.store
        store = open_store_from_settings(self.settings)
        store.migrate()
        self._opened.append(store)
        return store


def _repair_not_available(ticker: str, start_ms: int, end_ms: int, reason: str) -> None:
    log.warning(
        "gap on %s from %d to %d ms (%s) not repaired: no broker, so no backfill workers; "
        "`rrr backfill --tickers %s` over that window fills it",
        ticker,
        start_ms,
        end_ms,
        reason,
        ticker,
    )
