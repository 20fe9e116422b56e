"""End to end: simulator -> ``rrr stream`` -> Redis -> a real Celery worker -> SQLite and
PostgreSQL. Stored rows equal the simulator's ground truth exactly: none lost, none twice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import pipeline_env
from tests.integration.stream_support import (
    StreamProcess,
    count_rows,
    migrate,
    sent_records,
    simulator,
    stored_records,
    wait_until,
)

pytestmark = [pytest.mark.worker, pytest.mark.redis, pytest.mark.slow]

RATE = 2000.0  # events/s
FEED_S = 5.0  # the simulator stops producing after this long, so every sent frame is read


def test_stored_rows_equal_what_the_simulator_sent(
    tmp_path: Path, clean_redis: str, database_url: str, start_worker: Callable[..., Any]
) -> None:
    migrate(database_url)
    start_worker(database_url)
    sim = simulator(RATE, max_events=int(RATE * FEED_S))
    try:
        env = pipeline_env(tmp_path, clean_redis, database_url, POLYGON_WS_URL=sim.ws_url)
        stream = StreamProcess(env, tmp_path / "stream.log")
        try:
            wait_until(lambda: sim.stats()["authenticated"] == 1, 20, "the stream to connect")
            wait_until(lambda: sim.stats()["produced"] >= RATE * FEED_S, 15, "the feed to end")
            expected = sent_records(sim)
            total = sum(expected.values())
            assert total > RATE  # at least a second of data went to the worker

            def all_stored() -> bool:
                tables = ("crypto_trades", "crypto_quotes", "crypto_aggregates")
                return sum(count_rows(database_url, t) for t in tables) >= total

            wait_until(all_stored, 30, f"{total} rows in the store", poll_s=0.3)
            assert stream.terminate() == 0, stream.log()
        finally:
            stream.kill()
    finally:
        sim.stop()
    stored = stored_records(database_url)
    assert stored == expected, (
        f"missing {sum((expected - stored).values())}, extra {sum((stored - expected).values())}"
    )
    assert all(key[-1] == "simulator" for key in stored)  # no key: simulated data, marked
    log = stream.log()
    assert "SIMULATED DATA" in log and "stream worker stopped" in log
