"""The broker killed (SIGKILL) and restarted during a run.

- ``redis-restart-aof``: AOF on with ``appendfsync everysec``, as rrr runs its embedded broker
  and documents for production. The queues come back from the AOF; the second of writes the
  kill may take with it is published again by the stream worker, whose journal keeps every
  batch until an ingest task marked it applied.
- ``redis-restart-volatile``: no persistence. Every queued message is gone with the server;
  the line shows what that cost. The stream worker's batches still come back from its journal,
  so what a volatile broker loses are the tasks nobody journals (repairs, beat's runs, backfill
  chunks): the README says why AOF is required all the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import WorkerProcess
from tests.faults.harness import pipeline, report, scaled
from tests.integration.stream_support import RedisServer

pytestmark = [pytest.mark.worker, pytest.mark.slow]

RATE = 1_000.0


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
            REDIS_URL=broker.url, RRR_VISIBILITY_TIMEOUT="10",
        ) as run:  # fmt: skip
            run.start_ingest_worker()
            run.start_stream()
            run.wait_sent_on(1, int(RATE * 4))
            broker.kill()
            time.sleep(down_s)
            broker.start()
            run.wait_feed_done(events, 60)
            run.stop_streams()
            run.drain(120)
            tally = run.tally()
    finally:
        broker.stop()
    report(fault, pg_url, tally, started, down_s=down_s, lost_by_kind=tally.lost_by_kind)
    assert tally.duplicates == 0
    if appendfsync:
        assert tally.lost == 0, run.logs()
