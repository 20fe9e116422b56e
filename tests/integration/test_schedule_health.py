"""Beat's schedule health in Prometheus: a real ``celery beat`` (QUALITY_INTERVAL=2) notes each
send, the real worker that runs the quality task notes each success, and the worker's
``/metrics`` shows both per schedule entry beside the entry's interval, with the queue depths
read from the same broker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis

from rrr.broker import free_port
from rrr.metrics.broker import LAST_SENT_KEY, LAST_SUCCESS_KEY
from rrr.storage import open_store
from rrr.task_names import TASK_RUN_QUALITY_CHECKS
from rrr_cli.supervisor import stop_process
from tests.conftest import pipeline_env
from tests.integration.test_quality_beat import start_beat
from tests.support.metrics_page import scrape
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.slow]


def test_beat_sends_and_worker_successes_are_served_per_entry(
    tmp_path: Path, clean_redis: str, sqlite_url: str, start_worker: Any
) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    store.close()
    port = free_port()
    extra = {"QUALITY_INTERVAL": "2", "RRR_SENTIMENT_ENABLED": "false"}
    start_worker(
        sqlite_url,
        queues="default",
        RRR_WORKER_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"),
        **extra,
    )
    client = redis.Redis.from_url(clean_redis)
    started_ms = int(time.time() * 1000)
    beat = start_beat(pipeline_env(tmp_path, clean_redis, sqlite_url, **extra), tmp_path)
    try:
        wait_for(
            lambda: client.hexists(LAST_SUCCESS_KEY, TASK_RUN_QUALITY_CHECKS),
            40,
            "a quality run to succeed",
        )
    finally:
        stop_process(beat)
    sent_ms = int(client.hget(LAST_SENT_KEY, TASK_RUN_QUALITY_CHECKS) or 0)
    success_ms = int(client.hget(LAST_SUCCESS_KEY, TASK_RUN_QUALITY_CHECKS) or 0)
    assert started_ms <= sent_ms <= success_ms  # sent by beat, then run by the worker

    got = scrape(port)
    entry = (("entry", "quality"), ("task", TASK_RUN_QUALITY_CHECKS))
    assert got[("rrr_schedule_interval_seconds", entry)] == 2.0
    assert got[("rrr_schedule_last_sent_timestamp_seconds", entry)] >= sent_ms / 1000
    assert got[("rrr_schedule_last_success_timestamp_seconds", entry)] >= success_ms / 1000
    assert got[("rrr_broker_up", ())] == 1
    assert ("rrr_queue_messages", (("queue", "default"),)) in got
    runs = got[("rrr_task_successes_total", (("task", TASK_RUN_QUALITY_CHECKS),))]
    assert runs >= 1
    # The housekeeping entry has an interval but has not run: no timestamp is made up for it.
    housekeeping = (
        ("entry", "prune-ingest-batches"),
        ("task", "tasks.ingest.prune_ingest_batches"),
    )
    assert got[("rrr_schedule_interval_seconds", housekeeping)] == 86_400.0
    assert ("rrr_schedule_last_success_timestamp_seconds", housekeeping) not in got
    # The quality runs over an empty store asked for repairs; no backfill worker is here.
    client.delete("backfill")
