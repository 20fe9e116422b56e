"""Shared fixtures: real Redis, real PostgreSQL, real SQLite, real Celery worker processes.

- Redis: the server at 127.0.0.1:6379 (REDIS_TEST_URL overrides). Each test session claims a
  database number of its own (SET NX of a claim key), so parallel runs never share queues.
- PostgreSQL: 127.0.0.1:5432, database ``test`` (PG_TEST_URL overrides); each test gets a schema
  of its own, dropped after. With CI=true a missing server fails the run instead of skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from rrr.runner import stop_process

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
IN_CI = os.environ.get("CI", "").lower() == "true"
PG_BASE_URL = os.environ.get("PG_TEST_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_BASE = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379")
CLAIM_KEY = "rrr:test:claim"

if not (SHARED / "fixtures").is_dir():
    raise pytest.UsageError(
        f"the vendor fixtures are missing: tests read ../shared/fixtures ({SHARED / 'fixtures'}),"
        " which sits beside this checkout in CI and on developer machines"
    )


def _service_missing(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable ({exc})"
    if IN_CI:
        pytest.fail(f"{message}; in CI this service must run", pytrace=False)
    pytest.skip(f"{message}; start it to run this test")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database number claimed by this test session and flushed before and after."""
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    for db in range(1, 16):
        client = redis.Redis.from_url(f"{REDIS_BASE}/{db}")
        try:
            claimed = client.set(CLAIM_KEY, token, nx=True, ex=3600)
        except redis.RedisError as exc:
            _service_missing(f"Redis at {REDIS_BASE}", exc)
        if claimed:
            client.flushdb()
            client.set(CLAIM_KEY, token, ex=3600)
            try:
                yield f"{REDIS_BASE}/{db}"
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    pytest.fail("every Redis test database 1-15 is claimed; stale claims expire within an hour")


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    """The session's Redis database, flushed for this test (the claim key is kept)."""
    client = redis.Redis.from_url(redis_url)
    token = client.get(CLAIM_KEY)
    client.flushdb()
    if token:
        client.set(CLAIM_KEY, token, ex=3600)
    yield redis_url
    client.close()


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


def pipeline_env(tmp_path: Path, redis_url: str, database_url: str, **extra: str) -> dict[str, str]:
    """Environment for a subprocess of the pipeline: its own RRR_HOME, broker and database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYGON_", "MASSIVE_"))}
    env.pop("PERPLEXITY_API_KEY", None)
    env.update(
        RRR_HOME=str(tmp_path),
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        **extra,
    )
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

    def stop(self, timeout_s: float = 20) -> None:
        stop_process(self.proc, timeout_s)
        self._log.close()


@pytest.fixture
def start_worker(tmp_path: Path, redis_url: str) -> Iterator[object]:
    """start_worker(database_url, queues="ingest", **env) -> a running WorkerProcess."""
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
    for worker in workers:
        worker.stop()
        if worker.proc.poll() is None:
            os.killpg(worker.proc.pid, 9)
