"""The stream worker's metrics: its ``StreamStats`` counters, read when Prometheus scrapes.

One source of truth: the socket thread and the publisher already count everything in
``StreamStats`` (``rrr status`` and the Redis heartbeat read the same counters), so the
collector below turns those plain integers into metric families at scrape time and the hot
path pays nothing per message. Only the two histograms are filled as things happen, once per
published batch (its size, and the exchange-time lag of up to ``LAG_SAMPLES_PER_BATCH`` of its
rows, as ``StreamStats.sample_lag`` samples them), with their children looked up once, here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rrr.models import KINDS
from rrr.stats import StreamStats

# Exchange time -> published: tens of ms when healthy (measured p99 30 ms at 2,000 msg/s),
# seconds when the broker or the vendor lags, minutes when a journal is replayed.
LAG_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Batches close at RRR_BATCH_SIZE (1,000) rows or RRR_BATCH_MAX_AGE_MS.
BATCH_ROW_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class StreamMetrics:
    """The registry the stream worker serves (``rrr.metrics.http.serve_metrics``)."""

    def __init__(
        self,
        stats: StreamStats,
        last_event_ms: Callable[[], Mapping[str, int]],
        now_ms: Callable[[], int],
    ) -> None:
        self.registry = CollectorRegistry()
        lag = Histogram(
            "rrr_stream_lag_seconds",
            "Exchange time to publish, sampled from every published batch, by kind",
            ["kind"],
            buckets=LAG_BUCKETS_S,
            registry=self.registry,
        )
        rows = Histogram(
            "rrr_stream_batch_rows",
            "Rows per published batch, by kind",
            ["kind"],
            buckets=BATCH_ROW_BUCKETS,
            registry=self.registry,
        )
        self._lag: dict[str, Histogram] = {kind: lag.labels(kind) for kind in KINDS}
        self._rows: dict[str, Histogram] = {kind: rows.labels(kind) for kind in KINDS}
        self.registry.register(StreamStatsCollector(stats, last_event_ms, now_ms))

    def batch_published(self, kind: str, rows: int, lags_ms: Sequence[int]) -> None:
        """A batch of ``rows`` went to the broker (the publisher thread, first publish only);
        ``lags_ms``: the lags ``StreamStats.sample_lag`` sampled from it."""
        self._rows[kind].observe(rows)
        lag = self._lag[kind]
        for ms in lags_ms:
            lag.observe(ms / 1000)


class StreamStatsCollector(Collector):
    """``StreamStats`` as metric families, built anew at every scrape."""

    def __init__(
        self,
        stats: StreamStats,
        last_event_ms: Callable[[], Mapping[str, int]],
        now_ms: Callable[[], int],
    ) -> None:
        self._stats = stats
        self._last_event_ms = last_event_ms
        self._now_ms = now_ms

    def collect(self) -> Iterator[Metric]:
        s, now = self._stats, self._now_ms()
        by_kind = CounterMetricFamily(
            "rrr_stream_messages",
            "Events read from the feed, by kind (records handed to batches; status messages)",
            labels=["kind"],
        )
        for kind, count in s.by_kind.items():
            by_kind.add_metric([kind], count)
        by_kind.add_metric(["status"], s.statuses)
        yield by_kind
        yield _counter("rrr_stream_frames", "WebSocket frames read", s.frames)
        yield _counter(
            "rrr_stream_rejected", "Events the parser rejected (to dead_letters)", s.rejected
        )
        yield _counter("rrr_stream_reconnects", "Connections lost and made again", s.reconnects)
        yield _counter("rrr_stream_gaps", "Per-ticker gaps after reconnects (repaired)", s.gaps)
        yield _counter("rrr_stream_batches_published", "Batches published", s.batches_published)
        yield _counter("rrr_stream_rows_published", "Rows in those batches", s.rows_published)
        yield _counter(
            "rrr_stream_batches_spooled", "Batches that waited in the journal", s.batches_spooled
        )
        yield _counter(
            "rrr_stream_batches_replayed", "Batches published from the journal", s.batches_replayed
        )
        yield _counter(
            "rrr_stream_items_republished",
            "Items published again because the store had not applied them",
            s.items_republished,
        )
        yield _gauge("rrr_stream_connected", "1 while the feed is connected", int(s.connected))
        yield _gauge("rrr_stream_broker_up", "1 while the broker takes items", int(s.broker_up))
        yield _gauge(
            "rrr_stream_journal_bytes", "Journaled bytes not yet confirmed stored", s.spool_bytes
        )
        yield _gauge(
            "rrr_stream_journal_max_bytes", "Journal bound (RRR_SPOOL_MAX_MB)", s.spool_max_bytes
        )
        yield _gauge(
            "rrr_stream_journal_awaiting_items",
            "Published items the store has not yet marked applied",
            s.awaiting_applied,
        )
        yield _gauge(
            "rrr_stream_publish_queue_items", "Items queued for the publisher", s.publish_queue
        )
        yield _gauge(
            "rrr_stream_batch_size_limit_rows",
            "Rows a batch closes at now: the configured size, grown while the store is behind",
            s.batch_size_limit,
        )
        yield _gauge(
            "rrr_stream_batch_max_age_seconds",
            "Age a batch closes at now: the configured one, grown while the store is behind",
            s.batch_max_age_ms / 1000,
        )
        yield _gauge("rrr_stream_started_timestamp_seconds", "Start time", s.started_ms / 1000)
        if s.last_message_ms:
            yield _gauge(
                "rrr_stream_last_message_age_seconds",
                "Seconds since the last frame was read",
                max(0, now - s.last_message_ms) / 1000,
            )
        age = GaugeMetricFamily(
            "rrr_stream_last_event_age_seconds",
            "Now minus the exchange time of the ticker's last trade or quote",
            labels=["ticker"],
        )
        at = GaugeMetricFamily(
            "rrr_stream_last_event_timestamp_seconds",
            "Exchange time of the ticker's last trade or quote",
            labels=["ticker"],
        )
        for ticker, ts_ms in sorted(dict(self._last_event_ms()).items()):
            age.add_metric([ticker], max(0, now - ts_ms) / 1000)
            at.add_metric([ticker], ts_ms / 1000)
        yield age
        yield at


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
