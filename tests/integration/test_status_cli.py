"""`rrr status --json` against a running pipeline (simulator -> `rrr stream` -> a real Celery
worker -> SQLite): fresh (exit 0) while ticks flow; stale (exit 1) once the feed is gone and
the stream worker is still alive, reconnecting; down (exit 2) once the stream worker stopped,
and down with the broker unreachable."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from rrr.broker import free_port
from rrr.clock import now_ms
from rrr.stats import StreamStats, publish_stats
from tests.conftest import pipeline_env
from tests.integration.stream_support import (
    TICKERS,
    StreamProcess,
    count_rows,
    migrate,
    simulator,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.worker, pytest.mark.redis, pytest.mark.slow]

STALE_AFTER_S = 8  # RRR_STALE_AFTER_S of this test: a few seconds without ticks is stale


def rrr_status(env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    """The exit code, the JSON object, and everything the command wrote (stdout, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "rrr_cli", "status", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        snapshot = json.loads(done.stdout)  # stdout is the JSON object and nothing else
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON:\n{done.stdout}\n{done.stderr}") from None
    assert snapshot["exit_code"] == done.returncode, snapshot
    return done.returncode, snapshot, done.stdout + done.stderr


def test_fresh_then_stale_then_down(
    tmp_path: Path, clean_redis: str, sqlite_url: str, start_worker: Callable[..., Any]
) -> None:
    migrate(sqlite_url)
    start_worker(sqlite_url, queues="ingest")
    sim = simulator(200.0, max_events=None)
    env = pipeline_env(
        tmp_path,
        clean_redis,
        sqlite_url,
        POLYGON_WS_URL=sim.ws_url,
        RRR_TICKERS=",".join(TICKERS),
        RRR_STALE_AFTER_S=str(STALE_AFTER_S),
    )
    stream = StreamProcess(env, tmp_path / "stream.log")
    try:
        wait_until(lambda: count_rows(sqlite_url, "crypto_trades") > 0, 30, "stored trades")
        seen: list[dict[str, Any]] = []

        def level_is(level: str) -> bool:
            seen.append(rrr_status(env)[1])
            return seen[-1]["level"] == level

        wait_until(lambda: level_is("fresh"), 60, "rrr status to say fresh", poll_s=0.5)
        code, fresh, _ = rrr_status(env)  # the one asserted on: fresh again, all keys there
        assert (code, fresh["level"], fresh["reasons"]) == (0, "fresh", []), fresh["reasons"]
        assert fresh["schema"] == 1 and fresh["broker"]["reachable"] and fresh["stream"]["alive"]
        assert fresh["stream"]["connected"] and fresh["stream"]["messages"] > 0
        assert fresh["workers"]["ingest"], fresh["workers"]  # the live Celery worker answered
        assert set(fresh["queues"]) == {"ingest", "backfill", "default"}
        for ticker in TICKERS:
            trades = fresh["tickers"][ticker]["trades"]
            assert trades["lag_s"] < STALE_AFTER_S and trades["rows_5m"] > 0
            assert trades["rows_1h"] >= trades["rows_5m"]
        assert fresh["database"]["rows"]["crypto_trades"] > 0
        # 200 events/s: the store keeps up, so batches close at the configured limits.
        assert fresh["stream"]["batches"] == {"size_limit": 1000, "max_age_ms": 20, "growth": 1}
        shown = subprocess.run(
            [sys.executable, "-m", "rrr_cli", "status"],
            cwd=ROOT, env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
        assert "batches close at" in shown and "1,000 rows or 20 ms" in shown, shown
        assert "the store is behind" not in shown

        sim.stop()  # the feed is gone; the stream worker lives on, reconnecting
        wait_until(lambda: level_is("stale"), 60, "rrr status to say stale", poll_s=1.0)
        code, stale, _ = rrr_status(env)
        assert (code, stale["level"]) == (1, "stale"), stale["reasons"]
        assert stale["stream"]["alive"] and not stale["stream"]["connected"]

        assert stream.terminate() == 0, stream.log()
        code, down, _ = rrr_status(env)
        assert (code, down["level"]) == (2, "down"), down["reasons"]
        assert "no stream worker alive" in " ".join(down["reasons"])
    finally:
        stream.kill()
        sim.stop()


def test_down_when_the_broker_is_unreachable(tmp_path: Path, sqlite_url: str) -> None:
    migrate(sqlite_url)
    closed = f"redis://:redis-fake-pw-77@127.0.0.1:{free_port()}/0"  # nobody listens there
    code, snapshot, shown = rrr_status(pipeline_env(tmp_path, closed, sqlite_url))
    assert (code, snapshot["level"]) == (2, "down")
    assert not snapshot["broker"]["reachable"] and "Connection" in snapshot["broker"]["error"]
    assert snapshot["database"]["reachable"]  # the database part is read all the same
    assert "redis-fake-pw-77" not in shown and snapshot["broker"]["url"].startswith("redis://")

    database = f"postgresql://rrr:pg-fake-pw-88@127.0.0.1:{free_port()}/market"
    code, snapshot, shown = rrr_status(pipeline_env(tmp_path, closed, database))
    assert (code, snapshot["level"]) == (2, "down")
    assert not snapshot["database"]["reachable"] and snapshot["database"]["error"]
    assert "pg-fake-pw-88" not in shown and "redis-fake-pw-77" not in shown
    assert "fake-pw" not in (tmp_path / "data_pipeline.log").read_text()  # status writes it too

    malformed = "redis://:redis-fake-pw-77@127.0.0.1:no-port/0"  # redis-py: ValueError
    code, snapshot, shown = rrr_status(pipeline_env(tmp_path, malformed, sqlite_url))
    assert (code, snapshot["level"]) == (2, "down")
    assert "Port could not be cast" in snapshot["broker"]["error"]
    assert "redis-fake-pw-77" not in shown


def test_watch_refreshes_until_ctrl_c_and_exits_with_the_last_verdict(
    tmp_path: Path, clean_redis: str, sqlite_url: str
) -> None:
    migrate(sqlite_url)
    # A live, connected stream worker's heartbeat and no rows stored: stale (exit 1), a verdict
    # other than the "down" _watch starts from, so the exit code must come from a snapshot.
    client = redis.Redis.from_url(clean_redis)
    stats = StreamStats("ws://127.0.0.1:1", started_ms=now_ms())
    stats.connected = True
    publish_stats(client, stats.snapshot(now_ms()))
    client.close()
    env = pipeline_env(tmp_path, clean_redis, sqlite_url)
    argv = [sys.executable, "-m", "rrr_cli", "status", "--watch", "--json", "--interval", "0.5"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        snapshots = [json.loads(proc.stdout.readline()) for _ in range(2)]  # two refreshes
        assert snapshots[1]["generated_ms"] > snapshots[0]["generated_ms"]
        assert [s["level"] for s in snapshots] == ["stale", "stale"], snapshots[1]["reasons"]
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert proc.wait(timeout=30) == 1  # the last verdict: stale
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
