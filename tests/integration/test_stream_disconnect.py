"""A forced disconnect mid-stream: the worker reconnects and resubscribes, records a gap per
ticker in system_events and sends a repair request to the backfill queue; nothing sent is lost."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from rrr.storage import open_store
from tests.conftest import pipeline_env, wait_drained
from tests.integration.stream_support import (
    TICKERS,
    StreamProcess,
    migrate,
    queued_tasks,
    sent_records,
    simulator,
    stored_records,
    wait_until,
)

pytestmark = [pytest.mark.worker, pytest.mark.redis, pytest.mark.slow]


def test_reconnect_resubscribe_gap_event_and_repair_request(
    tmp_path: Path, clean_redis: str, sqlite_url: str, start_worker: Callable[..., Any]
) -> None:
    migrate(sqlite_url)
    start_worker(sqlite_url)  # ingest and default queues only: repair requests wait on backfill
    sim = simulator(1000.0, max_events=6000)
    try:
        env = pipeline_env(tmp_path, clean_redis, sqlite_url, POLYGON_WS_URL=sim.ws_url)
        stream = StreamProcess(env, tmp_path / "stream.log")
        try:
            wait_until(lambda: sum(sim.stats()["sent"].values()) > 500, 20, "data flowing")
            assert sim.disconnect_all() == 1
            wait_until(lambda: len(sim.truth().by_connection) == 2, 10, "a second connection")
            wait_until(lambda: sim.stats()["produced"] >= 6000, 15, "the feed to end")
            expected = sent_records(sim)

            def gaps_stored() -> bool:
                store = open_store(sqlite_url)
                events = store.read_events("stream_worker")
                store.close()
                return (events["event_type"] == "gap").sum() == len(TICKERS)

            wait_until(gaps_stored, 20, "a gap event per ticker", poll_s=0.3)
            wait_until(lambda: stored_records(sqlite_url) == expected, 20, "every row", poll_s=0.5)
            assert stream.terminate() == 0, stream.log()
        finally:
            stream.kill()
        stats = sim.stats()
    finally:
        sim.stop()
    # Resubscribed: the second connection got data too.
    truth = sim.truth()
    assert all(len(truth.events(c)) > 0 for c in truth.by_connection)
    assert stats["dropped"] == {"force_disconnect": 1}

    store = open_store(sqlite_url)
    events = store.read_events("stream_worker")
    store.close()
    gaps = events[events["event_type"] == "gap"]
    assert sorted(d["ticker"] for d in gaps["details"]) == sorted(TICKERS)
    for details in gaps["details"]:
        assert details["start_ms"] <= details["end_ms"]
        assert details["reason"] == "stream_gap" and details["repair_requested"]
    assert "disconnected" in set(events["event_type"])

    repairs = queued_tasks(redis.Redis.from_url(clean_redis), "backfill")
    assert sorted(r["kwargs"]["ticker"] for r in repairs) == sorted(TICKERS)
    assert {r["task"] for r in repairs} == {"tasks.backfill.repair_gap"}
    by_ticker = {d["ticker"]: d for d in gaps["details"]}
    for r in repairs:
        gap = by_ticker[r["kwargs"]["ticker"]]
        assert (r["kwargs"]["start_ms"], r["kwargs"]["end_ms"]) == (gap["start_ms"], gap["end_ms"])
    redis.Redis.from_url(clean_redis).delete("backfill")  # no backfill worker here: asserted on
    wait_drained(clean_redis, 30)


def test_a_restarted_stream_worker_asks_for_the_repair_of_its_downtime(
    tmp_path: Path, clean_redis: str, sqlite_url: str, start_worker: Callable[..., Any]
) -> None:
    """After a SIGKILL the next run opens a gap per ticker from a minute before the last event
    its predecessor reported, so backfill repairs what the dead process never read."""
    from rrr.stats import load_last_seen
    from workers.stream import RESTART_MARGIN_MS

    migrate(sqlite_url)
    start_worker(sqlite_url)  # ingest and default only: repair requests wait on backfill
    client = redis.Redis.from_url(clean_redis)
    sim = simulator(1000.0, max_events=30_000)
    try:
        env = pipeline_env(tmp_path, clean_redis, sqlite_url, POLYGON_WS_URL=sim.ws_url)
        first = StreamProcess(env, tmp_path / "first.log")
        try:
            wait_until(lambda: set(load_last_seen(client)) == set(TICKERS), 20, "a heartbeat")
        finally:
            first.kill()  # SIGKILL: no flush, no goodbye
        before = load_last_seen(client)
        second = StreamProcess(env, tmp_path / "second.log")
        try:
            wait_until(lambda: len(queued_tasks(client, "backfill")) == len(TICKERS), 20, "repairs")
        finally:
            second.terminate()
            second.kill()
    finally:
        sim.stop()
    repairs = {r["kwargs"]["ticker"]: r["kwargs"] for r in queued_tasks(client, "backfill")}
    assert sorted(repairs) == sorted(TICKERS)
    for ticker, request in repairs.items():
        assert request["start_ms"] == before[ticker] - RESTART_MARGIN_MS
        assert request["end_ms"] > before[ticker]
    client.delete("backfill")  # no backfill worker here: asserted on
    wait_drained(clean_redis, 60)
