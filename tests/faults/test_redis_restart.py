"""The broker killed (SIGKILL) and restarted during a run.

- ``redis-restart-aof``: AOF on with ``appendfsync everysec``, as rrr runs its embedded broker
  and documents for production. The queues come back from the AOF; the second of writes the
  kill may take with it is published again by the stream worker, whose journal keeps every
  batch until an ingest task marked it applied.
- ``redis-restart-volatile``: no persistence. Every queued message is gone with the server.
  The stream worker's batches still come back from its journal (it keeps each until an ingest
  task marked it applied), so the loss is the tasks nobody journals: repairs, beat's runs,
  backfill chunks. The line counts them (``queued_tasks_lost``); the README says why AOF is
  required all the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.conftest import WorkerProcess, short_visibility
from tests.faults.harness import pipeline, report, scaled
from tests.integration.stream_support import RedisServer

pytestmark = [pytest.mark.worker, pytest.mark.slow]

RATE = 1_000.0
REPAIRS = 10


@pytest.mark.parametrize(
    ("fault", "appendfsync"),
    [("redis-restart-aof", "everysec"), ("redis-restart-volatile", None)],
)
def test_redis_restart(
    fault: str,
    appendfsync: str | None,
    tmp_path: Path,
    redis_url: str,
    pg_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    started = time.monotonic()
    (tmp_path / "redis").mkdir()
    broker = RedisServer(tmp_path / "redis", appendfsync=appendfsync)
    broker.start()
    down_s = scaled(3, 10)
    events = int(RATE * scaled(15, 60))
    try:
        with pipeline(
            tmp_path, redis_url, pg_url, start_worker, rate=RATE, events=events,
            REDIS_URL=broker.url, **short_visibility(10),
        ) as run:  # fmt: skip
            run.start_ingest_worker()
            run.start_stream()
            run.wait_sent_on(1, int(RATE * 4))
            # Tasks no journal keeps: repairs waiting for a backfill worker that is not there.
            queued = queue_repairs(broker.url, REPAIRS)
            time.sleep(1.5)  # everysec: the AOF has them after a second
            broker.kill()
            time.sleep(down_s)
            broker.start()
            run.wait_feed_done(events, 60)
            client = redis.Redis.from_url(broker.url)
            repairs_kept = min(queued, int(client.llen("backfill")))
            client.delete("backfill")  # asserted on below; nobody is there to take them
            run.stop_streams()
            run.drain(120)
            tally = run.tally()
    finally:
        broker.stop()
    report(
        fault, pg_url, tally, started, down_s=down_s, lost_by_kind=tally.lost_by_kind,
        queued_tasks_lost=queued - repairs_kept,
    )  # fmt: skip
    # The stream's batches survive either way: the journal keeps each until it is applied.
    assert (tally.lost, tally.duplicates) == (0, 0), run.logs()
    if appendfsync:
        assert repairs_kept == queued
    else:  # what nobody journals is gone with a volatile broker: why AOF is required
        assert repairs_kept == 0


def queue_repairs(broker_url: str, n: int) -> int:
    producer = Celery("producer", broker=broker_url)
    try:
        for i in range(n):
            producer.send_task(
                "tasks.backfill.repair_gap",
                kwargs={"ticker": "X:BTCUSD", "start_ms": 1_700_000_000_000 + i * 60_000,
                        "end_ms": 1_700_000_060_000 + i * 60_000, "reason": "fault-suite"},
                queue="backfill",
            )  # fmt: skip
    finally:
        producer.close()
    return n
