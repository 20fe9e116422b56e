"""Backfill never starves ingest (issue 10, item 5), through the production commands
(`rrr worker ingest`, `rrr worker backfill`, `rrr stream`), real Redis, SQLite and the simulator.

- 20 gap repairs under the free tier's 5/min while the stream runs: trades keep landing every
  second.
- A task turned away by the limiter gives its process back: with one backfill process and 20
  repairs waiting their turn, a task on the `default` queue still runs within seconds, and no
  repair is dropped or failed for waiting.
"""

from __future__ import annotations

import base64
import itertools
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis
from celery import Celery

from rrr.config import Rate
from rrr.ratelimit import max_grants, requests_granted
from tests.conftest import ROOT, WorkerProcess, pipeline_env
from tests.integration.stream_support import StreamProcess, migrate, simulator
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.redis, pytest.mark.slow]

DAY, HOUR = 86_400_000, 3_600_000
DAY0 = (time.time_ns() // 1_000_000 // DAY - 10) * DAY  # a whole UTC day, 10 days ago
REPAIRS = 20
RRR_WORKER = (sys.executable, "-m", "rrr_cli", "worker")
FREE_TIER = "5/min"  # a token every 12 s
REASON = "test_backlog"


class RoleWorker(WorkerProcess):
    """`rrr worker <role>` (the Procfile's command) as a subprocess; started, watched and
    stopped (warmly) like conftest's WorkerProcess."""

    def __init__(self, env: dict[str, str], role: str, log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*RRR_WORKER, role, "--without-gossip", "--without-mingle"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def role_workers(tmp_path: Path) -> Iterator[Callable[..., RoleWorker]]:
    started: list[RoleWorker] = []

    def start(env: dict[str, str], role: str) -> RoleWorker:
        started.append(RoleWorker(env, role, tmp_path / f"{role}{len(started)}.log"))
        return started[-1]

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.stop()


@pytest.fixture
def producer(clean_redis: str) -> Iterator[Celery]:
    """Like the stream worker and beat: an app that only knows the broker (and results)."""
    app = Celery("producer", broker=clean_redis, backend=clean_redis)
    yield app
    app.close()


def send_repairs(producer: Celery, count: int = REPAIRS) -> set[int]:
    """``count`` repairs of distinct one-hour holes (a request each); returns their starts."""
    starts = {DAY0 + i * HOUR for i in range(count)}
    for start in sorted(starts):
        producer.send_task(
            "tasks.backfill.repair_gap",
            # The reason tells them from repairs the stream itself asks for after a reconnect.
            kwargs={
                "ticker": "X:BTCUSD",
                "start_ms": start,
                "end_ms": start + HOUR,
                "reason": REASON,
            },
            queue="backfill",
        )
    return starts


def trades(db: Path) -> int:
    with sqlite3.connect(db, timeout=5) as conn:
        return int(conn.execute("SELECT count(*) FROM crypto_trades").fetchone()[0])


def repair_events(db: Path) -> list[tuple[str, int]]:
    """(event type, requested start) of every repair event of the test's own repairs."""
    with sqlite3.connect(db, timeout=5) as conn:
        rows = conn.execute(
            "SELECT event_type, details FROM system_events WHERE component = 'backfill'"
        ).fetchall()
    found = [(kind, orjson.loads(details)) for kind, details in rows]
    return [
        (kind, int(d.get("requested_start_ms", d.get("start_ms"))))
        for kind, d in found
        if d.get("reason") == REASON
    ]


def repaired(db: Path) -> list[int]:
    return [start for kind, start in repair_events(db) if kind == "gap_repaired"]


def full_log(worker: RoleWorker) -> str:
    return worker.log_path.read_text(errors="replace")


def take_out_waiting_repairs(broker_url: str) -> None:
    """The test leaves repairs queued on purpose (at 5/min they would take minutes): once it
    has counted them, it takes them out, so its broker ends empty."""
    client = redis.Redis.from_url(broker_url)
    try:
        client.delete("backfill")
        left = {k: client.llen(k) for k in ("ingest", "backfill", "default")}
        assert not any(left.values()) and not client.hlen("unacked"), left
    finally:
        client.close()


def repairs_waiting(broker_url: str) -> list[int]:
    """Starts of the test's repairs still in the broker: queued, or held unacked by a worker
    (a retry waiting for its countdown is held by the worker that took it)."""
    client = redis.Redis.from_url(broker_url)
    try:
        queued = [orjson.loads(raw) for raw in client.lrange("backfill", 0, -1)]
        held = [orjson.loads(raw)[0] for raw in client.hvals("unacked")]  # [message, ex, key]
    finally:
        client.close()
    starts = []
    for message in [*queued, *held]:
        if message["headers"]["task"] == "tasks.backfill.repair_gap":
            kwargs = orjson.loads(base64.b64decode(message["body"]))[1]
            if kwargs.get("reason") == REASON:
                starts.append(int(kwargs["start_ms"]))
    return starts


def grants(broker_url: str) -> int:
    """REST requests the shared limiter let through so far (each repair needs one or more)."""
    client = redis.Redis.from_url(broker_url)
    try:
        return requests_granted(client)
    finally:
        client.close()


def assert_the_limit_held(broker_url: str, since_send_s: float) -> None:
    """No more requests than the free tier allows since the repairs were sent: the repairs were
    really there and really waiting on the limiter, not run past it."""
    granted = grants(broker_url)
    assert 1 <= granted <= max_grants(Rate(5, 60.0), since_send_s), granted


def assert_none_dropped(db: Path, broker_url: str, sent: set[int], log: str) -> None:
    """Every repair sent is done or still waiting in the broker, once, and none failed."""
    done, waiting = repaired(db), repairs_waiting(broker_url)
    assert not [kind for kind, _ in repair_events(db) if kind != "gap_repaired"], log
    assert sorted(done + waiting) == sorted(sent), f"done {done}, waiting {waiting}:\n{log}"


def test_twenty_repairs_at_5_per_min_never_stop_rows_arriving(
    tmp_path: Path,
    clean_redis: str,
    sqlite_url: str,
    role_workers: Callable[..., RoleWorker],
    producer: Celery,
) -> None:
    db = tmp_path / "rrr.db"
    migrate(sqlite_url)
    sim = simulator(400.0, max_events=None)
    try:
        env = pipeline_env(
            tmp_path,
            clean_redis,
            sqlite_url,
            POLYGON_WS_URL=sim.ws_url,
            POLYGON_REST_URL=sim.rest_url,
            POLYGON_RATE_LIMIT=FREE_TIER,
        )  # worker sizes: the defaults, 2 ingest processes and 1 for backfill + default
        workers = [role_workers(env, "ingest"), role_workers(env, "backfill")]
        for worker in workers:
            worker.wait_ready()
        stream = StreamProcess(env, tmp_path / "stream.log")
        try:
            wait_for(lambda: trades(db) > 0, 30, "the first trades")
            sent, sent_at = send_repairs(producer), time.monotonic()
            wait_for(lambda: grants(clean_redis) >= 1, 30, "the first repair request")
            samples = [trades(db)]
            started = time.monotonic()
            for second in range(1, 11):
                time.sleep(max(0.0, started + second - time.monotonic()))
                samples.append(trades(db))
            assert_the_limit_held(clean_redis, time.monotonic() - sent_at)
            assert stream.proc.poll() is None, stream.log()[-3000:]
            steps = [b - a for a, b in itertools.pairwise(samples)]
            assert all(step > 0 for step in steps), f"a second without new trades: {samples}"
        finally:
            stream.terminate()
        broker = redis.Redis.from_url(clean_redis)
        wait_for(lambda: broker.llen("ingest") == 0, 30, "the last inserts")
        broker.close()
        for worker in workers:
            worker.stop()  # warm: the repairs it held go back to the queue
    finally:
        sim.stop()
    # The repairs waited their turn meanwhile (retries, not sleeps); none gave up or was dropped.
    assert "retry: Retry in" in full_log(workers[1])
    assert_none_dropped(db, clean_redis, sent, full_log(workers[1]))
    take_out_waiting_repairs(clean_redis)


def test_a_rate_limited_repair_does_not_hold_the_only_backfill_process(
    tmp_path: Path,
    clean_redis: str,
    sqlite_url: str,
    role_workers: Callable[..., RoleWorker],
    producer: Celery,
) -> None:
    db = tmp_path / "rrr.db"
    migrate(sqlite_url)
    sim = simulator(10.0, max_events=1)  # REST only: the repairs' vendor
    try:
        env = pipeline_env(
            tmp_path,
            clean_redis,
            sqlite_url,
            POLYGON_REST_URL=sim.rest_url,
            POLYGON_RATE_LIMIT=FREE_TIER,
            RRR_BACKFILL_CONCURRENCY="1",
            QUALITY_AUTO_REPAIR="false",
        )
        worker = role_workers(env, "backfill")
        worker.wait_ready()
        sent, sent_at = send_repairs(producer), time.monotonic()
        wait_for(lambda: grants(clean_redis) >= 1, 30, "the first repair request")
        latencies = []
        for _ in range(4):  # spread over a 12 s token interval: every phase of the retries
            asked = time.monotonic()
            result = producer.send_task("tasks.quality.run_quality_checks", queue="default")
            result.get(timeout=60)
            latencies.append(time.monotonic() - asked)
            time.sleep(max(0.0, 4.0 - latencies[-1]))
        assert_the_limit_held(clean_redis, time.monotonic() - sent_at)
        # A repair that slept in the limiter would hold the process for ~12 s per token.
        assert max(latencies) < 5.0, f"default task latencies: {latencies}\n{worker.log()[-3000:]}"
        worker.stop()  # warm shutdown: the retries it held go back to the queue
    finally:
        sim.stop()
    assert "retry: Retry in" in full_log(worker)
    # Nothing dropped for waiting: every repair is either done or still in the broker.
    assert_none_dropped(db, clean_redis, sent, full_log(worker))
    take_out_waiting_repairs(clean_redis)
