"""The stream worker stopped or killed while the feed is live (issue 11, items 1 and 2).

- SIGKILL while the broker hangs, so batches sit in the journal unconfirmed: the next start
  publishes every one of them, and the store holds each row once.
- SIGTERM: every event the worker had read is stored (the simulator's ground truth for that
  connection), and the process exits 0.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from rrr.models import Batch
from tests.conftest import WorkerProcess, pipeline_env, wait_drained
from tests.integration.stream_support import (
    RedisServer,
    StreamProcess,
    _normal,
    journal_items,
    migrate,
    sent_records,
    simulator,
    stored_records,
    wait_until,
)

pytestmark = [pytest.mark.worker, pytest.mark.slow]

RATE = 2000.0


def journaled_rows(items: list[tuple[str, Any]]) -> Counter[tuple[Any, ...]]:
    from rrr.models import Bar, Quote, Trade

    types: dict[str, Any] = {"trades": Trade, "quotes": Quote, "bars": Bar}
    rows: Counter[tuple[Any, ...]] = Counter()
    for kind, payload in items:
        if kind == "batch":
            assert isinstance(payload, Batch)
            row_type = types[payload.kind]
            rows.update(_normal(row_type(*r[: len(row_type._fields)])) for r in payload.rows)
    return rows


def is_prefix(flags: list[bool]) -> bool:
    """True, ..., True, False, ..., False: nothing lost in the middle."""
    return flags == sorted(flags, reverse=True)


def test_sigkill_with_the_broker_hanging_loses_nothing_journaled(
    tmp_path: Path, sqlite_url: str
) -> None:
    migrate(sqlite_url)
    (tmp_path / "redis").mkdir()
    broker = RedisServer(tmp_path / "redis")
    broker.start()
    env = pipeline_env(tmp_path, broker.url, sqlite_url)
    worker = WorkerProcess(env, "ingest,default", tmp_path / "worker.log")
    feed_s = 12.0
    first = second = sim = None
    try:
        worker.wait_ready()
        sim = simulator(RATE, max_events=int(RATE * feed_s))  # the feed starts now
        stream_env = {**env, "POLYGON_WS_URL": sim.ws_url}
        first = StreamProcess(stream_env, tmp_path / "first.log")
        wait_until(lambda: sum(sim.stats()["sent"].values()) > RATE, 20, "data flowing")
        broker.pause()  # publishes hang: batches stay unconfirmed in the journal
        time.sleep(1.5)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        first.kill()
        held = journal_items(tmp_path / "var" / "journal")
        broker.resume()
        second = StreamProcess(stream_env, tmp_path / "second.log")
        wait_until(lambda: sim.stats()["produced"] >= RATE * feed_s, 40, "the feed to end")
        wait_until(lambda: len(sim.truth().by_connection) == 2, 10, "the second connection")
        truth = sim.truth()
        first_conn, second_conn = sorted(truth.by_connection)
        after_restart = Counter(_normal(r) for r in truth.records(second_conn))
        wait_until(
            lambda: stored_records(sqlite_url) >= after_restart + journaled_rows(held),
            60,
            "the journaled rows and the second connection's rows",
            poll_s=0.5,
        )
        assert second.terminate() == 0, second.log()
        client = redis.Redis.from_url(broker.url)
        client.delete("backfill")  # restart repair requests; no backfill worker in this test
        wait_drained(broker.url, 60)
        stored = stored_records(sqlite_url)
        sent = sent_records(sim)
    finally:
        for stream in (first, second):
            if stream is not None:
                stream.kill()
        if sim is not None:
            sim.stop()
        worker.stop()
        broker.stop()

    held_rows = journaled_rows(held)
    assert sum(held_rows.values()) > 0, "nothing was waiting in the journal at the kill"
    assert all(n == 1 for n in stored.values()), "a row stored twice"
    assert not (stored - sent), "a row the simulator never sent"
    assert not (held_rows - stored), f"{sum((held_rows - stored).values())} journaled rows lost"
    assert not (after_restart - stored)
    # Of the killed connection, what is stored is a prefix per kind of what was sent: only
    # the tail the dead process had not yet journaled (open batch, unread socket) is missing.
    for kind in ("trade", "quote", "bar"):
        sequence = [_normal(r) for r in truth.records(first_conn)]
        flags = [row in stored for row in sequence if row[0] == kind]
        assert is_prefix(flags), f"{kind}s of the killed connection lost in the middle"
    log = second.log()
    assert "did not hand to the broker" in log and "publishing them first" in log


def test_sigterm_while_the_feed_is_live_stores_every_event_read(
    tmp_path: Path, redis_url: str, sqlite_url: str, start_worker: Callable[..., Any]
) -> None:
    migrate(sqlite_url)
    start_worker(sqlite_url)
    sim = simulator(RATE, max_events=None)  # never ends by itself: the stop comes mid-feed
    try:
        env = pipeline_env(tmp_path, redis_url, sqlite_url, POLYGON_WS_URL=sim.ws_url)
        stream = StreamProcess(env, tmp_path / "stream.log")
        try:
            wait_until(lambda: sum(sim.stats()["sent"].values()) > 3 * RATE, 30, "data flowing")
            assert stream.terminate() == 0, stream.log()
        finally:
            stream.kill()
        truth = sim.truth()
        (connection,) = truth.by_connection
        expected = Counter(_normal(r) for r in truth.records(connection))
        wait_until(lambda: stored_records(sqlite_url) == expected, 30, "every row", poll_s=0.5)
        wait_drained(redis_url, 30)
    finally:
        sim.stop()
    assert sum(expected.values()) > 3 * RATE
    log = stream.log()
    assert "SIGTERM: draining" in log and "stream worker stopped" in log
    assert not list((tmp_path / "var" / "journal").glob("*.seg"))  # all confirmed, cleaned up
