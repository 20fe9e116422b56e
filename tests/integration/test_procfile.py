"""The Procfile works under honcho: web (Flower), worker, beat and stream against one broker,
with ticks from the simulator landing in the database."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from rrr.broker import free_port
from rrr.config import Settings
from rrr.errors import ConfigError
from rrr.runner import flower_command
from rrr.simulator.server import Simulator, SimulatorOptions

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.worker]


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


def test_procfile_under_honcho_streams_rows(tmp_path: Path, clean_redis: str) -> None:
    db = tmp_path / "rrr.db"
    with Simulator(SimulatorOptions(tickers=("X:BTCUSD",))) as sim:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("POLYGON_", "MASSIVE_", "PERPLEXITY_", "SUPABASE_"))
        }
        env.update(
            RRR_HOME=str(tmp_path),
            REDIS_URL=clean_redis,
            DATABASE_URL=f"sqlite:///{db}",
            POLYGON_WS_URL=sim.ws_url,
            RRR_SIMULATOR="true",
            RRR_TICKERS="X:BTCUSD",
            PORT=str(free_port()),
            FLOWER_BASIC_AUTH="ops:test-only-pass",
            PATH=f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
        )
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "honcho"), "start", "web", "worker", "beat", "stream"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            stored = 0
            while time.monotonic() < deadline and stored == 0:
                time.sleep(0.5)
                if db.exists():
                    try:
                        with sqlite3.connect(db, timeout=1) as conn:
                            stored = conn.execute("SELECT count(*) FROM crypto_trades").fetchone()[
                                0
                            ]
                    except sqlite3.Error:
                        stored = 0
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                output = proc.communicate(timeout=30)[0].decode(errors="replace")
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                output = proc.communicate()[0].decode(errors="replace")
    assert stored > 0, f"no rows from the Procfile's processes within 30 s:\n{output[-4000:]}"
    for name in ("web.1", "worker.1", "beat.1", "stream.1"):
        assert f"{name} " in output or f"{name}|" in output.replace(" ", ""), output[-3000:]
