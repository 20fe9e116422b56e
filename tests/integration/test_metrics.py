"""Prometheus end to end: the simulator -> ``rrr stream`` (``/metrics`` on RRR_METRICS_PORT)
-> a real prefork Celery worker, two processes (``/metrics`` on RRR_WORKER_METRICS_PORT,
multiprocess mode). Both pages parse with prometheus-client's own parser, the stream worker's
messages by kind equal what the simulator sent, and the worker's rows stored equal the rows
in the store, also after one of its pool processes was SIGKILLed (a dead child's counts stay,
its live gauges go)."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rrr.broker import free_port
from tests.conftest import pipeline_env
from tests.integration.stream_support import (
    StreamProcess,
    count_rows,
    migrate,
    sent_records,
    simulator,
    wait_until,
)
from tests.support.metrics_page import scrape

pytestmark = [pytest.mark.worker, pytest.mark.redis, pytest.mark.slow]

RATE = 1500.0  # events/s
FEED_S = 4.0
KIND_OF = {"trade": "trades", "quote": "quotes", "bar": "bars"}
TABLE_OF = {"trades": "crypto_trades", "quotes": "crypto_quotes", "bars": "crypto_aggregates"}


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and wanted <= set(got))


def test_stream_and_prefork_worker_metrics_match_the_store(
    tmp_path: Path, clean_redis: str, sqlite_url: str, start_worker: Callable[..., Any]
) -> None:
    migrate(sqlite_url)
    worker_port, stream_port = free_port(), free_port()
    metrics_dir = tmp_path / "prom"
    worker = start_worker(
        sqlite_url,
        queues="ingest",
        concurrency=2,
        RRR_WORKER_METRICS_PORT=str(worker_port),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    sim = simulator(RATE, max_events=int(RATE * FEED_S))
    env = pipeline_env(
        tmp_path,
        clean_redis,
        sqlite_url,
        POLYGON_WS_URL=sim.ws_url,
        RRR_METRICS_PORT=str(stream_port),
    )
    stream = StreamProcess(env, tmp_path / "stream.log")
    try:
        wait_until(lambda: sim.stats()["authenticated"] == 1, 20, "the stream to connect")
        wait_until(lambda: sim.stats()["produced"] >= RATE * FEED_S, 15, "the feed to end")
        sent = Counter(KIND_OF[record[0]] for record in sent_records(sim).elements())
        assert sent["trades"] > 0 and sent["quotes"] > 0

        stream_pages: list[dict[Any, float]] = []

        def stream_counted() -> bool:
            """Counted when read (socket thread) and published (publisher thread): both done."""
            got = scrape(stream_port)
            stream_pages.append(got)
            return all(
                value(got, "rrr_stream_messages_total", kind=k) == n for k, n in sent.items()
            ) and total(got, "rrr_stream_batch_rows_sum") == sum(sent.values())

        wait_until(stream_counted, 30, f"the stream worker to count {dict(sent)}", poll_s=0.3)
        stream_page = stream_pages[-1]
        for kind in ("trades", "quotes", "bars"):  # messages by kind == the simulator's truth
            assert value(stream_page, "rrr_stream_messages_total", kind=kind) == sent[kind]
        # Every published row is in the batch-size histogram; the lag histogram has samples.
        assert value(stream_page, "rrr_stream_rows_published_total") == sum(sent.values())
        assert total(stream_page, "rrr_stream_lag_seconds_count") > 0
        assert value(stream_page, "rrr_stream_connected") == 1
        assert value(stream_page, "rrr_stream_reconnects_total") == 0
        for ticker in ("X:BTCUSD", "X:ETHUSD"):
            age = value(stream_page, "rrr_stream_last_event_age_seconds", ticker=ticker)
            assert 0 < age < 60

        def stored(kind: str) -> int:
            return count_rows(sqlite_url, TABLE_OF[kind])

        wait_until(
            lambda: all(stored(k) >= n for k, n in sent.items() if k != "bars"),
            30,
            "every trade and quote stored",
            poll_s=0.3,
        )

        def worker_counts_match() -> bool:
            got = scrape(worker_port)
            return all(
                total(got, "rrr_rows_stored_total", task="tasks.ingest.insert_batch", kind=k)
                == stored(k)
                for k in ("trades", "quotes")
            )

        wait_until(worker_counts_match, 30, "rows stored == rows in the store", poll_s=0.3)
        page = scrape(worker_port)
        assert stored("trades") == sent["trades"] and stored("quotes") == sent["quotes"]
        bars_counted = total(page, "rrr_rows_stored_total", kind="bars")
        assert bars_counted >= stored("bars")  # a corrected bar replaces one: stored again
        writes = value(page, "rrr_store_write_seconds_count", task="tasks.ingest.insert_batch")
        successes = value(page, "rrr_task_successes_total", task="tasks.ingest.insert_batch")
        assert writes > 0 and writes == successes
        assert value(page, "rrr_broker_up") == 1
        assert ("rrr_queue_messages", (("queue", "ingest"),)) in page  # read from the broker
        assert total(page, "rrr_dead_letters_total") == 0
        assert stream.terminate() == 0, stream.log()
    finally:
        stream.kill()
        sim.stop()

    # SIGKILL a pool process: Celery replaces it; the counts it made stay in the sum.
    before = scrape(worker_port)
    rows_before = total(before, "rrr_rows_stored_total")
    victim = worker.children()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: victim not in worker.children() and len(worker.children()) == 2,
        30,
        "the pool to replace its killed process",
    )
    after = scrape(worker_port)
    assert total(after, "rrr_rows_stored_total") == rows_before
    assert not list(metrics_dir.glob(f"gauge_live*_{victim}.db"))  # reaped at the scrape
