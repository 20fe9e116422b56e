"""bad-config: every entry point, started with a setting that cannot work, stops at once.

Missing keys, malformed URLs and numbers, unknown flags, a broker or a database that does not
answer at start: ``rrr stream``, ``rrr worker ingest``, ``rrr backfill``, ``rrr status`` and
``celery -A tasks worker`` each exit non-zero within a bound, with a message naming the setting
(or flag), and leave nothing half-written: no SQLite file, no table in the PostgreSQL schema,
no journal segment, nothing queued in the broker. One line per case::

    fault=bad-config case=backfill-broker-refused exit=2 message_ok=True seconds=3

The stream worker is absent from the unreachable-broker cases on purpose: its journal carries
it through a broker outage (DESIGN.md), so a broker that is down at its start is an outage it
rides out, not a configuration it refuses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from rrr.broker import die_with_parent, free_port
from tests.conftest import PG_BASE_URL, ROOT, broker_leftovers, pipeline_env
from tests.faults.harness import LONG, fault_line
from tests.faults.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.redis]

BOUND_S = 20  # every case ends well within this; a hang is a failure, not a slow pass
RRR = (sys.executable, "-m", "rrr_cli")
CELERY_WORKER = (
    *(sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "ingest", "-c", "1"),
    *("--without-gossip", "--without-mingle"),
)
COMMANDS: dict[str, tuple[str, ...]] = {
    "stream": (*RRR, "stream", "--max-seconds", "5"),
    "worker": (*RRR, "worker", "ingest"),
    "backfill": (*RRR, "backfill", "--months", "1", "--no-wait"),
    "status": (*RRR, "status"),
    "worker-nosuch": (*RRR, "worker", "nosuch"),
    "celery": CELERY_WORKER,
}
# Placeholders in a case's environment, filled in by the test.
REFUSING = "<a port nothing listens on>"
BLACKHOLE = "<a port that accepts and never answers>"
UNSET = None


@dataclass(frozen=True)
class Case:
    name: str
    command: str
    env: dict[str, str | None] = field(default_factory=dict)
    names: str = ""  # what the message must name: the setting or the flag
    flags: tuple[str, ...] = ()
    store: str = "sqlite"


def each(command_names: str, fault: str, **kwargs: object) -> list[Case]:
    return [Case(f"{c}-{fault}", c, **kwargs) for c in command_names.split()]  # type: ignore[arg-type]


ALL = "stream worker backfill status celery"
CASES: list[Case] = [
    *each(ALL, "no-redis-url", env={"REDIS_URL": UNSET}, names="REDIS_URL"),
    *each(ALL, "redis-url-malformed", env={"REDIS_URL": "http://127.0.0.1:6379"},
          names="REDIS_URL"),
    *each(ALL, "database-url-malformed", env={"DATABASE_URL": "mysql://127.0.0.1/x"},
          names="DATABASE_URL"),
    *each("stream celery", "ws-url-malformed", env={"POLYGON_WS_URL": "127.0.0.1:8765"},
          names="POLYGON_WS_URL"),
    *each("worker celery", "soft-limit-not-a-number", env={"RRR_TASK_SOFT_TIME_LIMIT": "abc"},
          names="RRR_TASK_SOFT_TIME_LIMIT"),
    *each("backfill status", "rate-malformed", env={"POLYGON_RATE_LIMIT": "fast"},
          names="POLYGON_RATE_LIMIT"),
    *each("stream backfill", "tickers-malformed", env={"RRR_TICKERS": "BTC USD!"},
          names="RRR_TICKERS"),
    *each(ALL, "unknown-flag", flags=("--bogus",), names="--bogus"),
    Case("worker-unknown-role", "worker-nosuch", names="nosuch"),
    *each("worker backfill status celery", "broker-refused", env={"REDIS_URL": REFUSING},
          names="REDIS_URL"),
    *each("worker backfill", "broker-blackholed", env={"REDIS_URL": BLACKHOLE}, names="REDIS_URL"),
    Case("backfill-broker-refused-postgres", "backfill", env={"REDIS_URL": REFUSING},
         names="REDIS_URL", store="postgres"),
    *each("backfill status", "database-refused", names="DATABASE_URL", store="refusing-postgres"),
]  # fmt: skip
# Every case under RRR_FAULTS_LONG=1; by default one per fault, the commands taking turns
# (each case is a fresh Python process of 1-6 s, and the whole table would cost minutes).
QUICK = {
    "stream-no-redis-url", "worker-redis-url-malformed", "backfill-database-url-malformed",
    "stream-ws-url-malformed", "worker-soft-limit-not-a-number", "status-rate-malformed",
    "backfill-tickers-malformed", "celery-unknown-flag", "worker-unknown-role",
    "backfill-broker-refused", "celery-broker-refused", "worker-broker-blackholed",
    "status-database-refused", "backfill-broker-refused-postgres",
}  # fmt: skip
CASES = CASES if LONG else [c for c in CASES if c.name in QUICK]


@pytest.fixture
def blackholed_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (the proxy, cut)."""
    with TcpProxy(("127.0.0.1", 6379)) as proxy:
        proxy.cut("blackhole")
        yield proxy.port


def tables_in(database_url: str) -> list[str]:
    schema = database_url.rpartition("search_path%3D")[2]
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    return [r[0] for r in rows]


def run_case(
    case: Case,
    tmp_path: Path,
    redis_url: str,
    request: pytest.FixtureRequest,
) -> tuple[int | None, str, float, Callable[[], list[str]]]:
    """Run the case's command; (exit code or None on a hang, output, seconds, what it wrote)."""
    sqlite_file = tmp_path / "rrr.db"
    if case.store == "postgres":
        database_url = str(request.getfixturevalue("pg_url"))
    elif case.store == "refusing-postgres":
        database_url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    else:
        database_url = f"sqlite:///{sqlite_file}"
    # A feed URL of our own, so that no case stops at the missing vendor key instead.
    env = pipeline_env(
        tmp_path, redis_url, database_url, COLUMNS="200",
        POLYGON_WS_URL=f"ws://127.0.0.1:{free_port()}/crypto",
        POLYGON_REST_URL=f"http://127.0.0.1:{free_port()}",
    )  # fmt: skip
    for name, value in case.env.items():
        if value is UNSET:
            env.pop(name, None)
        elif value == REFUSING:
            env[name] = f"redis://127.0.0.1:{free_port()}/0"
        elif value == BLACKHOLE:
            env[name] = f"redis://127.0.0.1:{request.getfixturevalue('blackholed_port')}/0"
        else:
            env[name] = value
    started = time.monotonic()
    proc = subprocess.Popen(
        [*COMMANDS[case.command], *case.flags],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    code: int | None
    try:
        output, _ = proc.communicate(timeout=BOUND_S)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # a hung worker's pool children too
        output, _ = proc.communicate(timeout=10)
        code = None
    seconds = time.monotonic() - started

    def written() -> list[str]:
        found = []
        if sqlite_file.exists():
            found.append(f"SQLite file {sqlite_file.name}")
        journal = tmp_path / "var" / "journal"
        if journal.is_dir() and any(journal.iterdir()):
            found.append(f"journal segments {sorted(p.name for p in journal.iterdir())}")
        if case.store == "postgres" and (tables := tables_in(database_url)):
            found.append(f"tables {tables}")
        if leftovers := broker_leftovers(redis_url):
            found.append(f"queued {leftovers}")
        return found

    return code, output, seconds, written


def message_ok(case: Case, output: str) -> bool:
    """The setting is named, and an ``rrr`` command says it in a sentence, not a traceback
    (``celery`` itself prints the traceback of our ConfigError, whose last line names it)."""
    if case.command == "celery":
        return case.names in output
    return case.names in output and "Traceback" not in output


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_config(
    case: Case, tmp_path: Path, redis_url: str, request: pytest.FixtureRequest
) -> None:
    code, output, seconds, written = run_case(case, tmp_path, redis_url, request)
    ok = message_ok(case, output)
    fault_line(
        f"fault=bad-config case={case.name} exit={code} message_ok={ok} seconds={seconds:.0f}"
    )
    assert code is not None, f"no exit within {BOUND_S} s:\n{output[-3000:]}"
    assert code != 0, output[-3000:]
    assert ok, output[-3000:]
    assert written() == [], output[-3000:]
