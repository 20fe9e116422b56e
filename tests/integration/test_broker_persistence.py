"""The broker persistence check against real servers (the valkey binary the project ships, on a
free port of its own, started per test with and without persistence): what each process logs
at start, what `rrr status` shows, and a server that refuses CONFIG."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rrr.broker import free_port, is_up, server_binary
from rrr.broker_persistence import FIX, check_broker_persistence, probe_persistence
from rrr_cli.supervisor import stop_process
from tests.conftest import ROOT, WorkerProcess, pipeline_env
from tests.integration.stream_support import StreamProcess
from tests.support.waiting import wait_for

NO_PERSISTENCE = ("--appendonly", "no", "--save", "")
AOF_ONLY = ("--appendonly", "yes", "--save", "")
# What managed services do: the default user may run everything but CONFIG.
CONFIG_REFUSED = (*AOF_ONLY, "--user", "default", "on", "nopass", "~*", "&*", "+@all", "-config")

StartServer = Callable[..., str]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[StartServer]:
    """redis_server(*args) -> the URL of a new server started with those arguments."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> str:
        port = free_port()
        data = tmp_path / f"redis-{port}"
        data.mkdir()
        where = ["--bind", "127.0.0.1", "--port", str(port), "--dir", str(data)]
        procs.append(
            subprocess.Popen(
                [str(server_binary()), *where, "--logfile", str(data / "server.log"), *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        url = f"redis://127.0.0.1:{port}/0"
        wait_for(lambda: is_up(url, 0.2), 15, f"the server on {port}")
        return url

    yield start
    for proc in procs:
        stop_process(proc, 5)


@pytest.mark.parametrize(
    ("args", "durable", "problem"),
    [
        (AOF_ONLY, True, None),
        (("--appendonly", "no", "--save", "900 1"), True, None),  # RDB snapshots count
        (NO_PERSISTENCE, False, "no AOF and no RDB"),
        ((*AOF_ONLY, "--maxmemory-policy", "allkeys-lru"), False, "allkeys-lru"),
    ],
)
def test_probe_reads_the_servers_own_settings(
    redis_server: StartServer, args: tuple[str, ...], durable: bool, problem: str | None
) -> None:
    verdict = probe_persistence(redis_server(*args))
    assert verdict.checked
    assert verdict.ok is durable
    if problem is not None:
        assert len(verdict.problems) == 1 and problem in verdict.problems[0]


def test_a_non_durable_broker_is_one_loud_warning_with_the_fix(
    redis_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_server(*NO_PERSISTENCE)
    with caplog.at_level(logging.INFO, logger="rrr.broker_persistence"):
        check_broker_persistence(url, "test")
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "NOT DURABLE" in caplog.text and FIX in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rrr.broker_persistence"):
        check_broker_persistence(redis_server(*AOF_ONLY), "test")
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "durable (AOF on" in caplog.text


def test_a_server_that_refuses_config_or_does_not_answer_is_a_warning_not_a_crash(
    redis_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_server(*CONFIG_REFUSED)
    with caplog.at_level(logging.INFO, logger="rrr.broker_persistence"):
        refused = check_broker_persistence(url, "test")
        gone = check_broker_persistence(f"redis://127.0.0.1:{free_port()}/0", "test")
    for verdict in (refused, gone):
        assert not verdict.checked and not verdict.ok
    assert "refused CONFIG GET" in refused.found and "no permissions" in refused.found
    assert "no answer" in gone.found
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert caplog.text.count("persistence NOT CHECKED") == 2


def rrr_status(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "rrr_cli", "status"],
        cwd=ROOT,
        env={**env, "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr  # down: no stream worker runs in this test
    return out.stdout + out.stderr


def test_rrr_status_shows_the_brokers_persistence(
    redis_server: StartServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'rrr.db'}"
    shown = {
        name: rrr_status(pipeline_env(tmp_path, redis_server(*args), db))
        for name, args in (
            ("bare", NO_PERSISTENCE),
            ("aof", AOF_ONLY),
            ("refused", CONFIG_REFUSED),
        )
    }
    assert "NOT DURABLE" in shown["bare"] and "--appendonly yes" in shown["bare"]
    assert "durable (AOF on" in shown["aof"] and "NOT DURABLE" not in shown["aof"]
    assert "persistence NOT CHECKED" in shown["refused"] and "no permissions" in shown["refused"]


@pytest.mark.worker
@pytest.mark.slow
def test_worker_beat_and_stream_each_warn_once_at_start(
    redis_server: StartServer, tmp_path: Path
) -> None:
    url = redis_server(*NO_PERSISTENCE)
    env = pipeline_env(
        tmp_path,
        url,
        f"sqlite:///{tmp_path / 'rrr.db'}",
        POLYGON_WS_URL=f"ws://127.0.0.1:{free_port()}/crypto",  # nobody there: it retries
    )
    logs = {name: tmp_path / f"{name}.log" for name in ("worker", "beat", "stream")}
    worker = WorkerProcess(env, "ingest", logs["worker"], concurrency=2)
    with open(logs["beat"], "wb") as beat_log:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=beat_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stream = StreamProcess(env, logs["stream"])
    try:
        worker.wait_ready()  # its pool processes are up: each could have warned, too
        for name, path in logs.items():
            wait_for(lambda p=path: b"NOT DURABLE" in p.read_bytes(), 60, f"the {name} warning")
        for name, path in logs.items():
            text = path.read_text(errors="replace")
            warnings = [line for line in text.splitlines() if "NOT DURABLE" in line]
            assert len(warnings) == 1, f"{name}: {warnings}"
            assert "WARNING" in warnings[0] and FIX in warnings[0]
            assert "redis://127.0.0.1:" in warnings[0]  # which broker
    finally:
        worker.stop()
        stop_process(beat, 10)
        stream.kill()
