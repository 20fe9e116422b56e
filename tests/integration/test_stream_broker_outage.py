"""The broker stops for 20 s while the feed runs: the stream worker spools batches to disk,
replays them in order when the broker is back, and every row arrives exactly once.

The test runs its own server (valkey, the binary the project ships, so CI never skips; AOF on,
in tmp_path) so it can stop and restart it; AOF keeps what was already queued across the
restart, so only the spool is under test here."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from rrr.broker import free_port, is_up, server_binary
from rrr.clock import now_ms
from rrr.stats import get_stats
from tests.conftest import WorkerProcess, pipeline_env
from tests.integration.stream_support import (
    StreamProcess,
    migrate,
    sent_records,
    simulator,
    stored_records,
    wait_until,
)

pytestmark = [pytest.mark.worker, pytest.mark.slow]

OUTAGE_S = 20.0
RATE = 1000.0


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *(
                    str(server_binary()),
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                ),
                *("--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: is_up(self.url, 0.2), 10, "redis-server to start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis flushes the AOF and exits
            self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_broker_outage_spools_then_every_row_arrives_once(
    tmp_path: Path, own_redis: RedisServer, sqlite_url: str
) -> None:
    migrate(sqlite_url)
    # The batch the worker holds when Redis dies stays unacked in Redis (AOF keeps it) and
    # comes back after the visibility timeout: short here, so the test can wait for it.
    env = pipeline_env(tmp_path, own_redis.url, sqlite_url, RRR_VISIBILITY_TIMEOUT="10")
    worker = WorkerProcess(env, "ingest,default", tmp_path / "worker.log")
    feed_s = OUTAGE_S + 8
    sim = simulator(RATE, max_events=int(RATE * feed_s))
    stream = None
    try:
        worker.wait_ready()
        stream = StreamProcess({**env, "POLYGON_WS_URL": sim.ws_url}, tmp_path / "stream.log")
        wait_until(lambda: sum(sim.stats()["sent"].values()) > RATE, 20, "data flowing")
        own_redis.stop()
        outage_started = time.monotonic()
        spool = tmp_path / "var" / "spool"
        wait_until(lambda: any(spool.glob("*.seg")), 10, "batches in the spool")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
        spooled_bytes = sum(p.stat().st_size for p in spool.glob("*.seg"))
        own_redis.start()
        wait_until(lambda: sim.stats()["produced"] >= RATE * feed_s, 30, "the feed to end")
        expected = sent_records(sim)
        wait_until(lambda: stored_records(sqlite_url) == expected, 40, "every row", poll_s=0.5)
        assert stream.terminate() == 0, stream.log()
        stats = get_stats(redis.Redis.from_url(own_redis.url), now_ms())
    finally:
        if stream is not None:
            stream.kill()
        sim.stop()
        worker.stop()
    assert spooled_bytes > 0
    assert stats["batches"]["spooled"] > 0 and stats["batches"]["replayed"] > 0
    assert stats["spool"]["bytes"] == 0 and stats["broker"]["up"]
    assert not list(spool.glob("*.seg"))  # drained and deleted
    assert "spooling to" in stream.log() and "spool replayed" in stream.log()
