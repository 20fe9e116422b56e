"""`rrr backfill`: bad input is refused before anything is written or enqueued; a real run
plans, enqueues, waits with a progress bar and finishes; the same command again does nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from rrr.backfill.plan import plan_backfill, request_from_flags
from rrr.clock import now_ms
from rrr.simulator.http import SimulatorHTTPServer
from rrr.simulator.market import Market
from rrr.simulator.rest import RestSimOptions, rest_routes
from rrr.storage import open_store
from rrr_cli.main import app
from tests.conftest import ROOT, pipeline_env

DAY = 86_400_000
START_MS = (now_ms() // DAY - 9) * DAY


def day_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


FIRST_DAY, LAST_DAY = day_text(START_MS), day_text(START_MS + 2 * DAY)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tickers", "BTC-USD"], "bad ticker 'BTC-USD'"),
        (["--tickers", "X:BTCUSD", "ETH"], "bad ticker 'ETH'"),
        (["--start", "2026-05-01", "--end", "2026-04-01"], "must be after the start"),
        (["--timespan", "minutes"], "unknown timespan 'minutes'"),
        (["--multiplier", "0"], "multiplier must be"),
        (["--months", "6", "--start", "2026-05-01"], "either --months or --start"),
        (["--start", "someday"], "'someday' is not a date"),
    ],
)
def test_bad_input_is_a_clear_error_and_nothing_is_enqueued(
    tmp_path: Path, sqlite_url: str, clean_redis: str, args: list[str], message: str
) -> None:
    env = {"RRR_HOME": str(tmp_path), "DATABASE_URL": sqlite_url, "REDIS_URL": clean_redis,
           "COLUMNS": "200"}  # fmt: skip
    result = CliRunner().invoke(app, ["backfill", *args], env=env)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert redis.Redis.from_url(clean_redis).llen("backfill") == 0
    store = open_store(sqlite_url)
    store.migrate()
    assert store.count_rows("backfill_chunks") == 0
    store.close()


@pytest.fixture
def rest_simulator() -> Iterator[tuple[str, RestSimOptions]]:
    options = RestSimOptions()
    server = SimulatorHTTPServer(rest_routes(Market(seed=3, tickers=("X:BTCUSD",)), options))
    yield server.start().base_url, options
    server.stop()


def rrr_backfill(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rrr_cli", "backfill", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_plan_enqueue_watch_and_rerun(
    tmp_path: Path,
    sqlite_url: str,
    redis_url: str,
    rest_simulator: tuple[str, RestSimOptions],
    start_worker: Callable[..., object],
) -> None:
    url, sim = rest_simulator
    settings = {"POLYGON_REST_URL": url, "POLYGON_RATE_LIMIT": "off", "COLUMNS": "200"}
    env = pipeline_env(tmp_path, redis_url, sqlite_url, **settings)
    args = ["--tickers", "X:BTCUSD", "X:ETHUSD", "--start", FIRST_DAY, "--end", LAST_DAY]
    plan = plan_backfill(
        request_from_flags(
            ["X:BTCUSD", "X:ETHUSD"], months=None, start=FIRST_DAY, end=LAST_DAY,
            multiplier=1, timespan="minute", now_ms=now_ms(),
        )
    )  # fmt: skip

    queued = rrr_backfill(env, *args, "--no-wait")  # no worker yet: it only plans and enqueues
    assert queued.returncode == 0, queued.stderr
    assert f"plan {plan.plan_id}" in queued.stderr and "rrr status" in queued.stderr
    assert redis.Redis.from_url(redis_url).llen("backfill") == len(plan.chunks)

    watching = subprocess.Popen(  # --wait is the default; it continues the same plan
        [sys.executable, "-m", "rrr_cli", "backfill", *args],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    start_worker(sqlite_url, queues="backfill", **settings)  # the work starts while it watches
    _, watched = watching.communicate(timeout=60)
    assert watching.returncode == 0, watched
    total = len(plan.chunks)
    # The watcher reports the finished plan, whether it saw the work happen or (its start being
    # slower than the worker's work on a loaded box) only its end: "nothing to do: ...".
    assert f"{total}/{total} chunks done, {2 * 2 * 1440:,} bars" in watched

    again = rrr_backfill(env, *args)
    assert again.returncode == 0, again.stderr
    assert f"nothing to do: {total}/{total} chunks done, 5,760 bars" in again.stderr
    assert [e.status for e in sim.log.entries()] == [200] * total  # each chunk fetched once
