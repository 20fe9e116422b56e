"""worker-kill: the ingest worker SIGKILLed several times during a run, restarted each time.

What the killed workers held unacked comes back after the visibility timeout (short here, so
the test is quick) and the batch ids make any second delivery a no-op. A message a worker was
killed with between kombu's BRPOP and its unacked record is in no queue: the stream worker
publishes it again, as nothing marked it applied (``republished`` counts those)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from rrr.stats import get_stats
from tests.conftest import WorkerProcess, short_visibility
from tests.faults.harness import pipeline, report, scaled

pytestmark = [pytest.mark.worker, pytest.mark.slow]

KILLS = 3


def stream_republished(redis_url: str) -> int:
    """Items the stream worker published again because the store had not applied them (from
    its last heartbeat): a consumer killed between kombu's BRPOP and its unacked record."""
    client = redis.Redis.from_url(redis_url)
    try:
        return int(get_stats(client)["batches"].get("items_republished", 0))
    finally:
        client.close()


def test_worker_kill(
    tmp_path: Path,
    redis_url: str,
    database_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    started = time.monotonic()
    rate = scaled(1_500, 5_000)
    feed_s = scaled(8, 60)
    events = int(rate * feed_s)
    with pipeline(
        tmp_path, redis_url, database_url, start_worker, rate=rate, events=events,
        **short_visibility(10),
    ) as run:  # fmt: skip
        run.start_ingest_worker()
        run.start_stream()
        run.wait_connected()
        for _ in range(KILLS):
            time.sleep(feed_s / (KILLS + 1))
            run.kill_ingest_worker()
            run.start_ingest_worker()
        run.wait_feed_done(events, feed_s + 30)
        run.stop_streams()
        republished = stream_republished(redis_url)
        run.drain()
        tally = run.tally()
    report(
        "worker-kill", database_url, tally, started, kills=KILLS, republished=republished,
        lost_by_kind=tally.lost_by_kind,
    )  # fmt: skip
    assert tally.sent > rate  # over a second of data went through
    assert (tally.lost, tally.duplicates) == (0, 0), run.logs()
