"""Sentiment end to end: a real ``celery beat`` (SENTIMENT_INTERVAL=2) and a real worker score
every asset against the simulated Perplexity once per interval; without a key a run is one log
line and one system_event per interval; ``rrr sentiment`` prints a scored table."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from rrr.simulator.http import SimulatorHTTPServer
from rrr.simulator.perplexity import PerplexitySimOptions, perplexity_routes
from rrr.storage import open_store
from rrr_cli.supervisor import stop_process
from tests.conftest import ROOT, pipeline_env
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]


@pytest.fixture
def sim() -> Iterator[SimulatorHTTPServer]:
    server = SimulatorHTTPServer(perplexity_routes(PerplexitySimOptions(api_key="sim-key")))
    yield server.start()
    server.stop()


@pytest.fixture
def beat(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(tmp_path / "beat.log", "ab")  # noqa: SIM115  (closed with the process)
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", "INFO"),
                *("--schedule", str(tmp_path / "celerybeat-schedule")),
                *("--pidfile", str(tmp_path / "beat.pid"), "--max-interval", "1"),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_process(proc, grace_s=10)


def test_beat_and_worker_store_one_row_per_asset_per_interval(
    tmp_path: Path,
    clean_redis: str,
    sqlite_url: str,
    sim: SimulatorHTTPServer,
    start_worker: Any,
    beat: Callable[[dict[str, str]], subprocess.Popen[bytes]],
) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    extra = {
        "SENTIMENT_INTERVAL": "2",
        "PERPLEXITY_API_KEY": "sim-key",
        "PERPLEXITY_BASE_URL": sim.base_url,
        "RRR_TICKERS": "X:BTCUSD,X:ETHUSD,X:BTCEUR",
    }
    worker = start_worker(sqlite_url, queues="default", **extra)
    proc = beat(pipeline_env(tmp_path, clean_redis, sqlite_url, **extra))

    def rounds() -> int:
        rows = store.read_sentiments()
        return 0 if rows.empty else int(rows.groupby("asset")["interval_start_ms"].nunique().min())

    wait_for(lambda: rounds() >= 3, 30, "three sentiment rounds")
    proc.terminate()
    proc.wait(timeout=10)
    time.sleep(0.5)  # a round already queued may still land
    rows = store.read_sentiments()
    assert set(rows["asset"]) == {"BTC", "ETH"}  # X:BTCUSD and X:BTCEUR: one BTC call
    assert set(rows["source"]) == {"simulator"}
    assert not rows.duplicated(["asset", "source", "interval_start_ms"]).any()
    assert (rows["interval_start_ms"] % 2000 == 0).all()
    slots = rows.groupby("asset")["interval_start_ms"].apply(set)
    assert slots["BTC"] == slots["ETH"]  # every round scored every asset
    assert all(len(rows[rows["asset"] == a]) == len(slots[a]) for a in ("BTC", "ETH"))
    assert rows["metadata"].map(lambda m: len(m["sources"])).eq(3).all()
    assert store.count_rows("system_events") == 0
    store.close()
    assert "Traceback" not in worker.log()


def test_without_a_key_each_run_is_one_log_line_and_one_event_per_interval(
    clean_redis: str, sqlite_url: str, start_worker: Any
) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    worker = start_worker(sqlite_url, queues="default", SENTIMENT_INTERVAL="86400")
    producer = Celery("producer", broker=clean_redis)
    for _ in range(3):
        producer.send_task("tasks.sentiment.run_sentiment", queue="default")
    producer.close()
    wait_for(lambda: worker.log().count("succeeded in") >= 3, 30, "three finished runs")
    log = worker.log()
    ours = [line for line in log.splitlines() if "tasks.sentiment:" in line]
    assert len(ours) == 3  # one line per run, and nothing else from the task
    assert all("WARNING" in line and "PERPLEXITY_API_KEY is not set" in line for line in ours)
    assert log.count("succeeded in") == 3
    assert "Traceback" not in log and "Retry in" not in log
    events = store.read_events("sentiment")
    assert list(events["event_type"]) == ["skipped_no_key"]
    assert store.count_rows("market_sentiment") == 0
    store.close()


def test_an_asset_failing_transiently_is_retried_by_the_task_in_the_same_slot(
    clean_redis: str, sqlite_url: str, start_worker: Any
) -> None:
    options = PerplexitySimOptions(api_key="sim-key")
    server = SimulatorHTTPServer(perplexity_routes(options)).start()
    store = open_store(sqlite_url)
    store.migrate()
    try:
        worker = start_worker(
            sqlite_url,
            queues="default",
            SENTIMENT_INTERVAL="86400",  # the slot outlasts the test
            PERPLEXITY_API_KEY="sim-key",
            PERPLEXITY_BASE_URL=server.base_url,
            PERPLEXITY_API="sonar",
        )
        options.fail_next(503, count=3)  # every client try for BTC, the first asset
        producer = Celery("producer", broker=clean_redis)
        producer.send_task("tasks.sentiment.run_sentiment", queue="default")
        producer.close()
        wait_for(lambda: store.count_rows("market_sentiment") == 2, 30, "BTC scored on retry")
    finally:
        server.stop()
    rows = store.read_sentiments()
    assert sorted(rows["asset"]) == ["BTC", "ETH"]
    assert rows["interval_start_ms"].nunique() == 1  # the retry kept its slot
    events = store.read_events("sentiment")
    assert list(events["event_type"]) == ["vendor_error"]
    assert events.iloc[0]["details"]["asset"] == "BTC"
    assert "Retry in" in worker.log() and "Traceback" not in worker.log()
    store.close()


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PERPLEXITY_")}
    return subprocess.run(
        [sys.executable, "-m", "rrr_cli", "sentiment", *args],
        cwd=ROOT,
        env={**clean, "RRR_HOME": str(tmp_path), "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_scores_against_the_simulator_and_refuses_without_a_key(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "--simulator", "--api", "sonar", "BTC", "eth")
    assert done.returncode == 0, done.stderr
    for text in ("BTC", "ETH", "https://news.simulator.invalid/eth/1", "source simulator"):
        assert text in done.stdout
    refused = run_cli(tmp_path, "BTC")
    assert refused.returncode != 0
    assert "PERPLEXITY_API_KEY is not set" in refused.stderr
    assert "--simulator" in refused.stderr
