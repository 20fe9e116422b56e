"""The Procfile works under honcho: web (Flower, behind basic auth), the ingest worker, the
backfill/default worker, beat and stream against one broker, with ticks from the simulator
landing in the database."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import requests

from rrr.broker import free_port
from rrr.config import Settings
from rrr.errors import ConfigError
from rrr.simulator.server import Simulator, SimulatorOptions
from rrr_cli.runner import flower_command

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.worker]
PROCESSES = ("web", "ingest", "backfill", "beat", "stream")  # all but `release`


def test_flower_off_loopback_needs_basic_auth_and_keeps_it_out_of_argv(tmp_path: Path) -> None:
    bare = Settings.from_env({"RRR_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="FLOWER_BASIC_AUTH"):
        flower_command(bare, "0.0.0.0", 5555)
    argv, env = flower_command(bare, "127.0.0.1", 5555)
    assert "--address=127.0.0.1" in argv
    guarded = Settings.from_env({"RRR_HOME": str(tmp_path), "FLOWER_BASIC_AUTH": "ops:s3cret"})
    argv, env = flower_command(guarded, "0.0.0.0", 5555)
    assert env["FLOWER_BASIC_AUTH"] == "ops:s3cret"
    assert not any("s3cret" in arg for arg in argv)


def process_lines(output: str, name: str) -> list[str]:
    """What honcho printed for one process (``HH:MM:SS name.1 | text`` -> ``text``)."""
    out = []
    for line in output.splitlines():
        prefix, bar, text = line.partition("|")
        if bar and prefix.split()[-1:] == [name]:
            out.append(text)
    return out


def flower_status(port: int, auth: tuple[str, str] | None) -> int | None:
    """The HTTP status of Flower's front page, or None while nothing answers."""
    try:
        return requests.get(f"http://127.0.0.1:{port}/", auth=auth, timeout=3).status_code
    except requests.RequestException:
        return None


def test_procfile_under_honcho_streams_rows_and_flower_demands_auth(
    tmp_path: Path, clean_redis: str
) -> None:
    db = tmp_path / "rrr.db"
    port = free_port()
    user, password = "ops", "test-only-pass"
    with Simulator(SimulatorOptions(tickers=("X:BTCUSD",))) as sim:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("POLYGON_", "MASSIVE_", "PERPLEXITY_", "SUPABASE_", "RRR_"))
        }
        env.update(
            RRR_HOME=str(tmp_path),
            REDIS_URL=clean_redis,
            DATABASE_URL=f"sqlite:///{db}",
            POLYGON_WS_URL=sim.ws_url,
            RRR_SIMULATOR="true",
            RRR_TICKERS="X:BTCUSD",
            RRR_INGEST_CONCURRENCY="3",  # not the default (2): the Procfile reads the setting
            PORT=str(port),  # honcho's base port: the first process of the Procfile, web
            FLOWER_BASIC_AUTH=f"{user}:{password}",
            PATH=f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
        )
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "honcho"), "start", *PROCESSES],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            stored = 0
            anonymous = None
            while time.monotonic() < deadline and (stored == 0 or anonymous is None):
                time.sleep(0.5)
                anonymous = flower_status(port, None)
                if db.exists():
                    try:
                        with sqlite3.connect(db, timeout=1) as conn:
                            row = conn.execute("SELECT count(*) FROM crypto_trades").fetchone()
                            stored = row[0]
                    except sqlite3.Error:
                        stored = 0
            wrong = flower_status(port, (user, "not-the-password"))
            authorised = flower_status(port, (user, password))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                output = proc.communicate(timeout=60)[0].decode(errors="replace")
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                output = proc.communicate()[0].decode(errors="replace")
    tail = output[-4000:]
    assert stored > 0, f"no rows from the Procfile's processes within 60 s:\n{tail}"
    # Flower serves on $PORT, and only to whoever has the credentials.
    assert anonymous == 401, f"Flower without credentials: {anonymous}\n{tail}"
    assert wrong == 401
    assert authorised == 200
    # Two workers: ingest alone with RRR_INGEST_CONCURRENCY processes; backfill and default
    # together with RRR_BACKFILL_CONCURRENCY (default 1). Celery's banner says what it runs.
    ingest, backfill = process_lines(output, "ingest.1"), process_lines(output, "backfill.1")
    consumed = {
        name: {t.split(".>")[1].split()[0] for t in lines if ".>" in t and "exchange=" in t}
        for name, lines in (("ingest", ingest), ("backfill", backfill))
    }
    assert consumed == {"ingest": {"ingest"}, "backfill": {"backfill", "default"}}, tail
    assert any("concurrency: 3 (prefork)" in t for t in ingest), "\n".join(ingest[:40])
    assert any("concurrency: 1 (prefork)" in t for t in backfill), "\n".join(backfill[:40])
    for name in ("beat.1", "stream.1"):
        assert process_lines(output, name), f"{name} printed nothing:\n{tail}"
