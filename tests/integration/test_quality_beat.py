"""A real `celery beat` (QUALITY_INTERVAL=2) and a real worker against SQLite with planted faults:
every planted fault becomes one system_events row and nothing else does, each gap's repair is
enqueued on the backfill queue exactly once over several runs, and no unverified minute is sent
to REST twice."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from rrr.clock import now_ms
from rrr.quality.events import COMPONENT, REPAIR_REQUESTED, VERIFY_REQUESTED, subtract_windows
from rrr.storage import open_store
from rrr_cli.supervisor import stop_process
from tests.conftest import ROOT, pipeline_env
from tests.integration.test_quality_validator import BTC, ETH, M, found, plant_faulty_market

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.slow]

RUNS_WANTED = 3
DEADLINE_S = 40


def start_beat(env: dict[str, str], tmp_path: Path) -> subprocess.Popen[bytes]:
    log = open(tmp_path / "beat.log", "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", "INFO",
         "-s", str(tmp_path / "beat-schedule"), "--pidfile", str(tmp_path / "beat.pid")],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def queued_tasks(client: redis.Redis, queue: str) -> list[tuple[str, dict[str, Any]]]:
    """(task name, kwargs) of each message waiting in a kombu Redis queue (a list by its name)."""
    out = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        out.append((message["headers"]["task"], kwargs))
    return out


def test_beat_and_worker_record_planted_faults_and_ask_each_repair_once(
    tmp_path: Path, clean_redis: str, sqlite_url: str, start_worker: Any
) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    scenario = plant_faulty_market(store, now_ms())
    extra = {"QUALITY_INTERVAL": "2", "RRR_TICKERS": f"{BTC},{ETH}",
             "RRR_SENTIMENT_ENABLED": "false"}  # fmt: skip
    worker = start_worker(sqlite_url, queues="default", **extra)
    beat = start_beat(pipeline_env(tmp_path, clean_redis, sqlite_url, **extra), tmp_path)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            runs = worker.log().count("tasks.quality.run_quality_checks[")
            if runs >= 2 * RUNS_WANTED:  # each run logs "received" and "succeeded"
                break
            assert beat.poll() is None, (tmp_path / "beat.log").read_text()
            time.sleep(0.5)
        else:
            pytest.fail(f"fewer than {RUNS_WANTED} runs in {DEADLINE_S} s:\n{worker.log()}")
    finally:
        stop_process(beat)
    assert "succeeded" in worker.log() and "Traceback" not in worker.log()

    events = store.read_events(COMPONENT)
    assert found(events) == scenario.expected
    assert events["dedupe_key"].is_unique
    assert (events["event_type"] == REPAIR_REQUESTED).sum() == 2
    asked = events[events["event_type"] == VERIFY_REQUESTED]
    assert len(events) == len(scenario.expected) + 2 + len(asked)  # nothing else recorded
    assert set(events[events["event_type"] == "stale_feed"]["severity"]) == {"critical"}

    client = redis.Redis.from_url(clean_redis)
    repairs = queued_tasks(client, "backfill")
    client.delete("backfill")  # asserted on below; no backfill worker here to take them
    client.close()
    down, traded = scenario.m["down"], scenario.m["traded_gap"]
    gap_windows = {(traded, traded + M), (down, down + 3 * M)}
    verify = sorted(
        (kw["ticker"], kw["start_ms"], kw["end_ms"])
        for _, kw in repairs
        if (kw["start_ms"], kw["end_ms"]) not in gap_windows
    )
    recorded = sorted(
        (d["ticker"], d["window_start_ms"], d["window_end_ms"]) for d in asked["details"]
    )
    assert verify == recorded  # every request enqueued is recorded, and only those
    for ticker in (BTC, ETH):  # no minute asked twice; every unverified run asked
        windows = [(s, e) for t, s, e in verify if t == ticker]
        assert sum(e - s for s, e in windows) == max(windows)[1] - min(windows)[0] - sum(
            e - s for s, e in subtract_windows(min(windows)[0], max(windows)[1], windows)
        )
        for t, s, e in scenario.unverified:
            if t == ticker:
                # Each run looks back from its own clock: the scenario's first minute may
                # have slid out of a later run's lookback (seen at a minute boundary).
                left = subtract_windows(s, e, windows)
                assert all(ls == s and le - ls <= 2 * M for ls, le in left), (t, s, e, windows)
    repairs = [r for r in repairs if (r[1]["start_ms"], r[1]["end_ms"]) in gap_windows]
    assert sorted(repairs, key=lambda r: r[1]["start_ms"]) == [
        ("tasks.backfill.repair_gap",
         {"ticker": BTC, "start_ms": traded, "end_ms": traded + M, "reason": "quality_gap"}),
        ("tasks.backfill.repair_gap",
         {"ticker": BTC, "start_ms": down, "end_ms": down + 3 * M, "reason": "quality_gap"}),
    ]  # fmt: skip
    store.close()
