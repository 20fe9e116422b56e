"""The broker stops for 20 s while the feed runs: batches wait in the stream worker's journal,
go out in order when the broker is back, and every row arrives exactly once.

The stream worker stays connected to the feed the whole time, though its stream lease (10 s,
in that same Redis) cannot be renewed: no standby was listed when it last reached Redis, so it
keeps its connection past the lease instead of leaving the feed (workers.stream_lease). The
simulator sends only to a connected client, so stored == sent alone would also hold for a
worker that left the feed; the test asserts that the feed's first connection is the only one
and that it was fed throughout the outage.

The test runs its own server (valkey, the binary the project ships, so CI never skips; AOF on,
in tmp_path) so it can stop and restart it; AOF keeps what was already queued across the
restart, so only the journal is under test here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from rrr.clock import now_ms
from rrr.stats import get_stats
from tests.conftest import WorkerProcess, pipeline_env, short_visibility
from tests.integration.stream_support import (
    RedisServer,
    StreamProcess,
    migrate,
    sent_records,
    simulator,
    stored_count,
    stored_records,
    wait_until,
)
from tests.support.waiting import wait_while_progressing

pytestmark = [pytest.mark.worker, pytest.mark.slow]

OUTAGE_S = 20.0
RATE = 1000.0
LEASE_S = 10.0  # RRR_STREAM_LEASE_S's default: the outage outlasts it twice


def sent_count(sim: Any) -> int:
    return sum(sim.stats()["sent"].values())


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_broker_outage_journals_then_every_row_arrives_once(
    tmp_path: Path, own_redis: RedisServer, sqlite_url: str
) -> None:
    migrate(sqlite_url)
    # The batch the worker holds when Redis dies stays unacked in Redis (AOF keeps it) and
    # comes back after the visibility timeout: short here, so the test can wait for it.
    env = pipeline_env(tmp_path, own_redis.url, sqlite_url, **short_visibility(10))
    worker = WorkerProcess(env, "ingest,default", tmp_path / "worker.log")
    feed_s = OUTAGE_S + 8
    sim = simulator(RATE, max_events=int(RATE * feed_s))
    stream = None
    try:
        worker.wait_ready()
        stream = StreamProcess({**env, "POLYGON_WS_URL": sim.ws_url}, tmp_path / "stream.log")
        # Connected, so the lease was taken and the (empty) standbys list read just after.
        wait_until(lambda: sent_count(sim) > RATE, 20, "data flowing")
        own_redis.stop()
        outage_started = time.monotonic()
        sent_at_outage = sent_count(sim)
        journal = tmp_path / "var" / "journal"
        wait_until(lambda: "wait in the journal" in stream.log(), 20, "batches held back")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
        journal_bytes = sum(p.stat().st_size for p in journal.glob("*.seg"))
        # Still on the feed's first connection, fed all along (not only until the lease's 7.5 s).
        during = sim.stats()
        sent_in_outage = sent_count(sim) - sent_at_outage
        own_redis.start()
        assert during["connection_ids"] == [1], (during, stream.log()[-3000:])
        wait_until(lambda: sim.stats()["produced"] >= RATE * feed_s, 30, "the feed to end")
        # The truth is read again each time: a minute bar goes out when its window closes, which
        # may be after the last trade and quote. How long the backlog takes depends on the box;
        # what must hold is that rows keep arriving until every one is there. The worker's own
        # reconnect backoff (Celery's: 2, 4, 6... s, at most 30) and the visibility timeout of the
        # batch it held are the longest pauses, so 30 s without a new row is a stall.
        try:
            wait_while_progressing(
                lambda: stored_records(sqlite_url) == sent_records(sim),
                lambda: stored_count(sqlite_url),
                30,
                "every row",
            )
        except AssertionError:
            stored, expected = stored_records(sqlite_url), sent_records(sim)
            missing, extra = expected - stored, stored - expected
            raise AssertionError(
                f"missing {sum(missing.values())} e.g. {sorted(missing)[:3]}, "
                f"extra {sum(extra.values())} e.g. {sorted(extra)[:3]}"
            ) from None
        wait_until(lambda: "stream lease confirmed again" in stream.log(), 30, "lease renewed")
        ended = sim.stats()
        assert stream.terminate() == 0, stream.log()
        stats = get_stats(redis.Redis.from_url(own_redis.url), now_ms())
        pid = stream.proc.pid
    finally:
        if stream is not None:
            stream.kill()
        sim.stop()
        worker.stop()
    log = stream.log()
    assert ended["connection_ids"] == [1] and not ended["dropped"], ended
    assert sent_in_outage > RATE * LEASE_S, sent_in_outage  # ~RATE * OUTAGE_S expected
    assert stats["websocket"]["reconnects"] == 0
    assert "stream lease unconfirmed" in log and "stream lease lost" not in log
    assert "reconnecting in" not in log
    assert (stats["lease"]["holder_pid"], stats["lease"]["takeovers"]) == (pid, 0)
    assert journal_bytes > 0
    assert stats["batches"]["spooled"] > 0 and stats["batches"]["replayed"] > 0
    assert stats["spool"]["bytes"] == 0 and stats["broker"]["up"]
    assert not list(journal.glob("*.seg"))  # every item confirmed: the segments are gone
    assert "broker back after" in stream.log()
