"""Shared fixtures: real Redis, real PostgreSQL, real SQLite, real Celery worker processes.

- Redis: the server at 127.0.0.1:6379 (REDIS_TEST_URL overrides). Each test session claims a
  database number of its own (SET NX of a claim key), so parallel runs never share queues.
- PostgreSQL: 127.0.0.1:5432, database ``test`` (PG_TEST_URL overrides); each test gets a schema
  of its own, dropped after. With CI=true a missing server fails the run instead of skipping.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest
import redis

from rrr.broker import die_with_parent
from rrr.pids import pid_alive
from tests.support.missing import missing

FAULT_LINES_ENV = "RRR_FAULT_LINES_FILE"  # tests/faults/harness.py writes it

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
PG_BASE_URL = os.environ.get("PG_TEST_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_BASE = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379")
CLAIM_KEY = "rrr:test:claim"
CLAIM_TTL_S = 900  # a test that runs longer fails its timeout (pyproject) long before

if not (SHARED / "fixtures").is_dir():
    raise pytest.UsageError(
        f"the vendor fixtures are missing: tests read ../shared/fixtures ({SHARED / 'fixtures'}),"
        " which sits beside this checkout in CI and on developer machines"
    )


def _service_missing(what: str, exc: Exception) -> NoReturn:
    missing(f"{what} is not reachable ({exc}); start it to run this test", "this service must run")


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """The root logger as it was before each test: code run in-process (the CLI's commands, the
    original API) calls rrr.logs.configure_logging, whose console handler holds the sys.stderr
    of that moment, pytest's capture file of that test. Left on the root logger, it made a
    later test's log line a "Logging error" (I/O operation on closed file) on its stderr."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database number claimed by this test alone, flushed before and after.

    Per test, not per session: a message one test leaves behind (a batch a killed worker held,
    a repair nobody consumed) can never reach another test's worker. The claim (SET NX) keeps
    parallel runs on one server apart too."""
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    for db in range(1, 16):
        client = redis.Redis.from_url(f"{REDIS_BASE}/{db}")
        try:
            _free_if_claimer_dead(client)
            claimed = client.set(CLAIM_KEY, token, nx=True, ex=CLAIM_TTL_S)
        except redis.RedisError as exc:
            _service_missing(f"Redis at {REDIS_BASE}", exc)
        if claimed and _has_clients(client, db):
            # A process of an earlier run (killed before its teardown) still listens here and
            # would take this test's messages: leave the database alone, unclaimed.
            client.delete(CLAIM_KEY)
            client.close()
            continue
        if claimed:
            client.flushdb()
            client.set(CLAIM_KEY, token, ex=CLAIM_TTL_S)
            try:
                yield f"{REDIS_BASE}/{db}"
            finally:
                client.flushdb()  # the claim goes with it: the database is free again
                client.close()
            return
        client.close()
    pytest.fail("every Redis test database 1-15 is claimed; stale claims expire within 15 min")


def _free_if_claimer_dead(client: redis.Redis) -> None:
    """A claim whose test process is gone (killed, crashed) frees its database at once."""
    held = client.get(CLAIM_KEY)
    pid = held.split(b"-", 1)[0] if held else b""
    if pid.isdigit() and not pid_alive(int(pid)):
        client.delete(CLAIM_KEY)


def _has_clients(client: redis.Redis, db: int) -> bool:
    """Whether a consumer (a Celery worker's BRPOP: CLIENT LIST's last command) has ``db``
    selected. Only consumers: this very test process keeps idle connections of earlier tests,
    which take nothing."""
    return any(
        c.get("db") == str(db) and c.get("cmd") in ("brpop", "blpop", "blmove", "brpoplpush")
        for c in client.client_list()
    )


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    """The test's own Redis database, empty at the start (the claim key aside)."""
    return redis_url


# What a worker test must leave behind in its broker: nothing queued, nothing taken and unacked.
BROKER_QUEUES = ("ingest", "backfill", "default")


def broker_leftovers(redis_url: str) -> dict[str, int]:
    """Messages still in the broker's queues or held unacked, by key (empty when drained)."""
    client = redis.Redis.from_url(redis_url)
    try:
        found = {q: int(client.llen(q)) for q in BROKER_QUEUES}
        found["unacked"] = int(client.hlen("unacked"))
        found["unacked_index"] = int(client.zcard("unacked_index"))
    finally:
        client.close()
    return {key: n for key, n in found.items() if n}


def wait_drained(redis_url: str, timeout_s: float, quiet_s: float = 2.0) -> None:
    """Wait until the broker shows no message for ``quiet_s`` on end.

    One empty look is not enough while a worker runs: a message it has just popped is in its
    socket (a 15 MB batch takes a while to read) before kombu records it as unacked."""
    deadline = time.monotonic() + timeout_s
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        if broker_leftovers(redis_url):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.05)
    raise AssertionError(f"broker not drained in {timeout_s} s: {broker_leftovers(redis_url)}")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A DATABASE_URL whose search_path is a fresh schema, dropped after the test."""
    schema = f"rrr_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_BASE_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as exc:
        _service_missing(f"PostgreSQL at {PG_BASE_URL}", exc)
    sep = "&" if "?" in PG_BASE_URL else "?"
    yield f"{PG_BASE_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'rrr.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per SQL store."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


def short_visibility(seconds: int) -> dict[str, str]:
    """Settings for a test that wants a killed worker's message back in ``seconds``: the task
    time limits must stay under the visibility timeout (rrr/config.py checks it), so they
    shrink with it, to 60% and 80% of it."""
    return {
        "RRR_VISIBILITY_TIMEOUT": str(seconds),
        "RRR_TASK_SOFT_TIME_LIMIT": str(max(1, seconds * 6 // 10)),
        "RRR_TASK_TIME_LIMIT": str(max(2, seconds * 8 // 10)),
    }


def pipeline_env(tmp_path: Path, redis_url: str, database_url: str, **extra: str) -> dict[str, str]:
    """Environment for a subprocess of the pipeline: its own RRR_HOME, broker and database;
    ``extra`` may override any of them (a test's own broker: REDIS_URL=...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYGON_", "MASSIVE_"))}
    env.pop("PERPLEXITY_API_KEY", None)
    env.update(
        RRR_HOME=str(tmp_path),
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class WorkerProcess:
    """A real ``celery worker`` subprocess, stopped (or killed) by the test."""

    def __init__(self, env: dict[str, str], queues: str, log_path: Path, concurrency: int = 1):
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tasks",
                "worker",
                "-Q",
                queues,
                "-c",
                str(concurrency),
                "--pool",
                "prefork",
                "-n",
                f"test-{uuid.uuid4().hex[:6]}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A worker outlives a killed test run otherwise, and takes later tests' messages.
            preexec_fn=die_with_parent,
        )

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            if b"ready." in self.log_path.read_bytes():
                return
            time.sleep(0.1)
        raise AssertionError(f"worker not ready in {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def children(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        )
        return [int(p) for p in out.stdout.split()]

    def stop(self, timeout_s: float = 60) -> None:
        """Warm shutdown: SIGTERM to the main process only, which lets the pool finish the task
        in hand and ack it (a TERM to the whole group kills the pool child before its ack, and
        the message comes back later). Then prove nothing the worker started is alive."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
                raise AssertionError(
                    f"worker did not stop within {timeout_s} s of SIGTERM:\n{self.log()}"
                ) from None
        self._log.close()
        deadline = time.monotonic() + 10
        while group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # pool children exit right after their parent
        if group_alive(self.proc.pid):
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError(f"worker {self.proc.pid} left processes behind")


def group_alive(pgid: int) -> bool:
    """Whether any process of the group (the worker and its pool children) still runs."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies of our own children count as gone. The worker leads its own session
    # (start_new_session), whose id is its group's: ps selects by session, not by group.
    out = subprocess.run(
        ["ps", "-o", "stat=", "--sid", str(pgid)], capture_output=True, text=True, check=False
    )
    return any(not stat.startswith("Z") for stat in out.stdout.split())


@pytest.fixture
def start_worker(tmp_path: Path, redis_url: str) -> Iterator[object]:
    """start_worker(database_url, queues="ingest", **env) -> a running WorkerProcess.

    At teardown every worker is stopped warmly and the test's broker must be drained: nothing
    queued in ingest/backfill/default and nothing held unacked. A test that leaves messages on
    purpose takes them out itself, after asserting on them."""
    workers: list[WorkerProcess] = []

    def start(
        database_url: str, queues: str = "ingest,default", concurrency: int = 1, **extra: str
    ) -> WorkerProcess:
        env = pipeline_env(tmp_path, redis_url, database_url, **extra)
        worker = WorkerProcess(env, queues, tmp_path / f"worker{len(workers)}.log", concurrency)
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    errors = []
    for worker in workers:
        try:
            worker.stop()
        except AssertionError as exc:
            errors.append(str(exc))
    leftovers = broker_leftovers(redis_url)
    if leftovers:
        errors.append(f"the test left messages in its broker: {leftovers}")
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


# -- the fault suite (tests/faults): its lines at the end of every run, its one process --
def pytest_configure(config: pytest.Config) -> None:
    # The controller names the file before its test processes start: they inherit the name.
    if FAULT_LINES_ENV not in os.environ:
        handle, path = tempfile.mkstemp(prefix="rrr-fault-lines-", suffix=".txt")
        os.close(handle)
        os.environ[FAULT_LINES_ENV] = path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # One test process runs the scenarios one after another (pytest-xdist --dist loadgroup):
    # each measures what a fault costs, and two at once would measure each other.
    for item in items:
        if "tests/faults/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.xdist_group("faults"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    path = Path(os.environ.get(FAULT_LINES_ENV, ""))
    if not path.is_file() or hasattr(terminalreporter.config, "workerinput"):
        return
    lines = path.read_text().splitlines()
    path.unlink()
    if lines:
        terminalreporter.section("fault suite: one line per scenario")
        for line in lines:
            terminalreporter.write_line(line)
