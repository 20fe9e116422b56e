"""`rrr run` as an operator sees it, with every secret set (fake values, a local simulator for
the vendors, PostgreSQL with trust auth that ignores the password): a console of fewer than 30
lines that are not warnings, besides a status line every 10 s; Flower that answers 401 without
its login; and no secret in any console line, any file the run wrote (the log file, the
broker's AOF with every task message, the journal) or any process's command line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rrr.broker import free_port
from tests.integration.stream_support import TICKERS, simulator
from tests.integration.test_run import alive, process_tree
from tests.support.http import http_status
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
# One whole `rrr run` at a time (with test_run.py / test_run_console.py): two on two cores would
# each miss test_run.py's first rows within 10 s.
pytestmark = [pytest.mark.slow, pytest.mark.worker, pytest.mark.xdist_group("rrr-run")]

POLYGON_KEY = "pk-fake-polygon-3f9a1c"
PERPLEXITY_KEY = "pplx-fake-perplexity-7d2e4b"
SUPABASE_KEY = "eyJfake.service.role.9c1d"
FLOWER_LOGIN = ("ops", "flower-fake-pass-5e8f")
DB_PASSWORD = "db-fake-pass-2b7a"
SECRETS = (POLYGON_KEY, PERPLEXITY_KEY, SUPABASE_KEY, FLOWER_LOGIN[1], DB_PASSWORD)
MAX_RUN_S = 150
_WARNING = re.compile(r"\b(?:WARNING|ERROR|CRITICAL)\b|\w+Warning: ")


def flower_status(port: int, login: tuple[str, str] | None) -> int:
    return http_status(f"http://127.0.0.1:{port}/", ":".join(login) if login else None)


def test_console_is_short_flower_needs_its_login_and_no_secret_leaks(
    tmp_path: Path, pg_url: str
) -> None:
    sim = simulator(300.0, max_events=None, accepted_keys=frozenset({POLYGON_KEY}))
    database_url = pg_url.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)
    assert DB_PASSWORD in database_url
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POLYGON_", "MASSIVE_", "PERPLEXITY_", "SUPABASE_", "FLOWER_"))
        and k not in ("REDIS_URL", "DATABASE_URL", "LOG_LEVEL")
    }
    env.update(
        RRR_HOME=str(tmp_path),
        PYTHONUNBUFFERED="1",
        DATABASE_URL=database_url,
        POLYGON_API_KEY=POLYGON_KEY,
        POLYGON_WS_URL=sim.ws_url,
        POLYGON_REST_URL=sim.rest_url,
        POLYGON_RATE_LIMIT="off",
        PERPLEXITY_API_KEY=PERPLEXITY_KEY,
        PERPLEXITY_BASE_URL=sim.rest_url,
        SUPABASE_SERVICE_KEY=SUPABASE_KEY,
        FLOWER_BASIC_AUTH=":".join(FLOWER_LOGIN),
    )
    flower_port = free_port()
    argv = [sys.executable, "-m", "rrr_cli", "run", "--flower-port", str(flower_port)]
    argv += ["--sentiment-interval", "5", "--quality-interval", "5"]
    argv += ["--max-seconds", str(MAX_RUN_S)]
    proc = subprocess.Popen(
        [*argv, "--tickers", *TICKERS],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started = time.monotonic()
    lines: list[str] = []
    stdout = proc.stdout
    assert stdout is not None
    reader = threading.Thread(
        target=lambda: lines.extend(raw.decode(errors="replace").rstrip() for raw in stdout),
        daemon=True,
    )
    reader.start()
    command_lines: set[str] = set()
    try:
        wait_for(lambda: flower_status(flower_port, None) != 0, 60, "Flower to listen")
        assert flower_status(flower_port, None) == 401
        assert flower_status(flower_port, (FLOWER_LOGIN[0], "wrong")) == 401
        assert flower_status(flower_port, FLOWER_LOGIN) == 200
        for pid in process_tree(proc.pid):  # no secret in any argv (`ps` shows them)
            try:
                command_lines.add(
                    Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                )
            except FileNotFoundError:
                pass
        log_file = tmp_path / "data_pipeline.log"
        # Until the Perplexity key was used and a status line printed (a loaded box is slow).
        wait_for(
            lambda: (
                "tasks.sentiment.run_sentiment[" in log_file.read_text(errors="replace")
                and any(line.startswith("status | ") for line in lines)
            ),
            100,
            "a sentiment round and a status line",
            poll_s=0.5,
        )
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert proc.wait(timeout=60) == 0
        ran_s = time.monotonic() - started
        reader.join(timeout=10)
    finally:
        tree = process_tree(proc.pid)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in tree:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        sim.stop()
    console = "\n".join(lines)
    # Fewer than 30 lines that are not warnings, status lines aside (one per 10 s of the run).
    status_lines = [line for line in lines if line.startswith("status | trades ")]
    assert 1 <= len(status_lines) <= ran_s / 10 + 1, console
    not_warnings = [line for line in lines if not _WARNING.search(line)]
    assert len(not_warnings) - len(status_lines) < 30, console
    for name in ("ingest", "stream", "backfill", "beat", "flower"):
        assert f"{name:>9} | started (pid " in console, console
    assert "basic auth: user and password from FLOWER_BASIC_AUTH" in console
    assert "tasks.ingest.insert_batch[" not in console  # per-task lines: in the file only
    assert "tasks.ingest.insert_batch[" in log_file.read_text(errors="replace")
    assert len(command_lines) >= 5
    written = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert any("appendonly" in str(p) for p in written), sorted(written)  # the broker's AOF
    for secret in SECRETS:
        assert secret not in console, secret
        assert not [p for p, data in written.items() if secret.encode() in data], secret
        assert not [c for c in command_lines if secret in c], secret
