"""README "Using the data": its Python example runs as written (a subprocess, the settings from
the environment as a user's shell has them) on a store filled by a real `rrr backfill` of the
dates it names, from the simulator's REST API through a real Celery worker."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import rrr.data
from rrr.simulator.http import SimulatorHTTPServer
from rrr.simulator.market import Market
from rrr.simulator.rest import RestSimOptions, rest_routes
from rrr.storage import open_store
from tests.conftest import ROOT, pipeline_env

pytestmark = [pytest.mark.worker, pytest.mark.redis, pytest.mark.slow]


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def code_blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def rest_simulator() -> Iterator[str]:
    server = SimulatorHTTPServer(
        rest_routes(Market(seed=11, tickers=("X:BTCUSD",)), RestSimOptions())
    )
    yield server.start().base_url
    server.stop()


def test_the_readme_example_runs_on_backfilled_data(
    tmp_path: Path,
    sqlite_url: str,
    redis_url: str,
    rest_simulator: str,
    start_worker: Callable[..., object],
) -> None:
    section = readme_section("Using the data")
    [python] = code_blocks(section, "python")
    shell = code_blocks(section, "bash")[0]
    backfill = next(line for line in shell.splitlines() if line.startswith("rrr backfill"))
    settings = {"POLYGON_REST_URL": rest_simulator, "POLYGON_RATE_LIMIT": "off"}
    env = pipeline_env(tmp_path, redis_url, sqlite_url, **settings)
    start_worker(sqlite_url, queues="backfill", **settings)

    loaded = subprocess.run(
        [sys.executable, "-m", "rrr_cli", *backfill.split()[1:]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    store = open_store(sqlite_url)
    try:
        stored = store.count_rows("crypto_aggregates")
        minutes = rrr.data.bars("X:BTCUSD", "2026-11-01", "2026-12-01", store=store)
    finally:
        store.close()
    assert 0.9 * 30 * 1440 < stored == len(minutes) <= 30 * 1440  # the month, quiet minutes out

    run = subprocess.run(
        [sys.executable, "-c", python],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"{stored:,} minute bars -> {30 * 24} hourly bars", run.stdout
    assert lines[1].startswith("buy and hold ") and ", momentum " in lines[1]
    assert lines[2].startswith("hourly volatility ") and "+00:00" in lines[2]
