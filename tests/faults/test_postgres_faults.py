"""postgres-outage and postgres-slow: the database behind a TCP proxy the test cuts or slows.

The pipeline's DATABASE_URL names the proxy (tests/faults/tcp_proxy.py) in front of the real
server, so the server itself is never touched; the count reads the store directly.

- postgres-outage: the database unreachable for a while during a run (open connections reset;
  new ones refused, or accepted and never answered): inserts retry as transient and every row
  lands once, nothing dead-lettered.
- postgres-slow: every packet held 3 s, so each statement outlasts the task's 2 s soft time
  limit: the batches retry (a soft limit is slowness, not poison), none is dead-lettered, and
  every row lands once after the delay goes.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from rrr.storage import open_store
from tests.conftest import WorkerProcess
from tests.faults.harness import Pipeline, Tally, delivered_twice, pipeline, report, scaled
from tests.faults.tcp_proxy import TcpProxy
from tests.integration.stream_support import count_rows, sent_records, stored_records

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.postgres]

# What the ingest tasks log for each retry (tasks/ingest.py, tasks/delivery.py).
# Batches of up to 250 ms, not the 20 ms default: the same rows in a tenth of the tasks, so the
# backlog an outage leaves drains in seconds on this 2-core machine (at ~40 ms a task, 20 ms
# batches queue faster than one worker process takes them even without a fault).
BATCH_MAX_AGE_MS = "250"
STORAGE_RETRY = re.compile(r"; retry \d+ in [\d.]+ s")
SOFT_LIMIT_RETRY = re.compile(r"soft time limit; retry in")


def proxied_url(database_url: str, port: int) -> str:
    """``database_url`` with its host and port swapped for the proxy's; user, database and
    parameters (the test schema's ``options=-csearch_path=...``) kept."""
    parts = urlsplit(database_url)
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def upstream_of(database_url: str) -> tuple[str, int]:
    parts = urlsplit(database_url)
    return (parts.hostname or "127.0.0.1", parts.port or 5432)


def worker_log_matches(run: Pipeline, pattern: re.Pattern[str]) -> int:
    return sum(len(pattern.findall(w.log_path.read_text(errors="replace"))) for w in run.workers)


def finish(run: Pipeline, events: int, feed_s: float, direct_url: str) -> tuple[Tally, int]:
    """Let the feed end, stop the stream, drain the broker; the count and the dead letters,
    read past the proxy."""
    run.wait_feed_done(events, feed_s + 60)
    run.stop_streams()
    run.drain(timeout_s=180)
    sent = sent_records(run.sim)
    return (
        Tally.of(sent, stored_records(direct_url), delivered_twice(direct_url, sent)),
        count_rows(direct_url, "dead_letters"),
    )


@pytest.mark.parametrize("how", ["refuse", "blackhole"])
def test_postgres_outage(
    how: str,
    tmp_path: Path,
    redis_url: str,
    pg_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    started = time.monotonic()
    outage_s = scaled(8, 30)
    rate = scaled(1_000, 3_000)
    before_s, after_s = scaled(3, 10), scaled(3, 10)
    feed_s = before_s + outage_s + after_s
    events = int(rate * feed_s)
    with TcpProxy(upstream_of(pg_url)) as proxy, pipeline(
        tmp_path, redis_url, proxied_url(pg_url, proxy.port), start_worker,
        rate=rate, events=events, RRR_BATCH_MAX_AGE_MS=BATCH_MAX_AGE_MS,
    ) as run:  # fmt: skip
        run.start_ingest_worker()
        run.start_stream()
        run.wait_connected()
        time.sleep(before_s)
        stored_before = count_rows(pg_url, "ingest_batches")
        proxy.cut(how)
        time.sleep(outage_s)
        proxy.restore()
        restored = time.monotonic()
        tally, dead_letters = finish(run, events, feed_s, pg_url)
        recovered_s = time.monotonic() - restored
        retries = worker_log_matches(run, STORAGE_RETRY)
        logs = run.logs()
    report(
        "postgres-outage", pg_url, tally, started,
        cut=how, outage_s=round(outage_s), storage_retries=retries, dead_letters=dead_letters,
        dropped_connections=proxy.stats.dropped, recovered_s=round(recovered_s),
    )  # fmt: skip
    assert stored_before > 0, "nothing was stored before the cut: the fault hit an idle pipeline"
    assert retries > 0, f"no insert retried: the outage was never felt\n{logs}"
    assert tally.sent > rate * outage_s  # the feed ran through the outage
    assert (tally.lost, tally.duplicates, dead_letters) == (0, 0, 0), logs


def test_postgres_slow(
    tmp_path: Path,
    redis_url: str,
    pg_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    started = time.monotonic()
    delay_s = 3.0  # each way: a statement's round trip is >= 6 s, three times the soft limit
    slow_s = scaled(8, 30)
    rate = scaled(1_000, 3_000)
    before_s, after_s = scaled(3, 10), scaled(3, 10)
    feed_s = before_s + slow_s + after_s
    events = int(rate * feed_s)
    with TcpProxy(upstream_of(pg_url)) as proxy, pipeline(
        tmp_path, redis_url, proxied_url(pg_url, proxy.port), start_worker,
        rate=rate, events=events, RRR_BATCH_MAX_AGE_MS=BATCH_MAX_AGE_MS,
        RRR_TASK_SOFT_TIME_LIMIT="2", RRR_TASK_TIME_LIMIT="20",
    ) as run:  # fmt: skip
        run.start_ingest_worker()
        run.start_stream()
        run.wait_connected()
        time.sleep(before_s)
        proxy.set_delay(delay_s)
        time.sleep(slow_s)
        proxy.set_delay(0)
        restored = time.monotonic()
        tally, dead_letters = finish(run, events, feed_s, pg_url)
        recovered_s = time.monotonic() - restored
        soft_retries = worker_log_matches(run, SOFT_LIMIT_RETRY)
        storage_retries = worker_log_matches(run, STORAGE_RETRY)
        logs = run.logs()
    report(
        "postgres-slow", pg_url, tally, started,
        delay_s=round(delay_s), slow_s=round(slow_s), soft_limit_s=2,
        soft_limit_retries=soft_retries, storage_retries=storage_retries,
        dead_letters=dead_letters, recovered_s=round(recovered_s),
    )  # fmt: skip
    assert soft_retries > 0, f"no statement outlasted the soft limit\n{logs}"
    assert tally.sent > rate * slow_s
    assert (tally.lost, tally.duplicates, dead_letters) == (0, 0, 0), logs


class Interrupted(Exception):
    """Raised from a signal handler in mid-statement, as Celery raises SoftTimeLimitExceeded."""


def test_a_statement_interrupted_mid_flight_leaves_the_store_usable(pg_url: str) -> None:
    """The store's connection is mid-statement when the exception lands (its answer still
    due): the next call must work on a fresh connection, not fail with "another command is
    already in progress" for the rest of the process's life (what postgres-slow found)."""

    def interrupt(*_: object) -> None:
        raise Interrupted

    with TcpProxy(upstream_of(pg_url)) as proxy:
        store = open_store(proxied_url(pg_url, proxy.port))
        store.migrate()
        proxy.set_delay(1.0)
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(Interrupted):
                store.count_rows("crypto_trades")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        proxy.set_delay(0)
        assert store.count_rows("crypto_trades") == 0
        store.close()
