"""insert_batch through a real Redis and a real Celery worker into each store, exactly once,
including when the worker is SIGKILLed in the middle of a batch."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Callable, Iterator

import psycopg
import pytest
from celery import Celery

from rrr.models import Batch, Trade
from rrr.storage import Store, open_store
from tests.conftest import short_visibility, wait_drained
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]

T0 = 1_706_649_600_000


@pytest.fixture
def producer(redis_url: str) -> Iterator[Celery]:
    """A producer app of its own, like the stream worker: only a broker URL."""
    app = Celery("producer", broker=redis_url)
    yield app
    app.close()


def send(producer: Celery, batch: Batch) -> str:
    """Enqueue the batch as the stream worker does; returns the task id."""
    return str(
        producer.send_task(
            "tasks.ingest.insert_batch",
            args=[batch.to_message()],
            queue="ingest",
            serializer="msgpack",
        ).id
    )


def trades(prefix: str, n: int) -> list[Trade]:
    return [
        Trade(
            "X:BTCUSD",
            i % 4,
            f"{prefix}-{i}",
            43575.6 + (i % 100) / 100,
            0.01,
            (2,),
            T0 + i,
            T0 + i + 40,
            "simulator",
        )
        for i in range(n)
    ]


def migrated(database_url: str) -> Store:
    store = open_store(database_url)
    store.migrate()
    return store


def test_worker_consumes_batches_exactly_once(
    database_url: str, start_worker: Callable[..., object], producer: Celery
) -> None:
    store = migrated(database_url)
    start_worker(database_url)
    batches = [Batch(f"batch-{b}", "trades", trades(f"b{b}", 500)) for b in range(6)]
    for batch in batches:
        send(producer, batch)
    send(producer, batches[0])  # a redelivery: must change nothing
    send(producer, Batch("overlap", "trades", trades("b1", 500)))  # same trades, new id
    wait_for(lambda: store.count_rows("ingest_batches") == 7, 60, "7 batches applied")
    assert store.count_rows("crypto_trades") == 3000
    store.close()


def _in_flight_postgres(database_url: str, application: str) -> Callable[[], bool]:

    def copying() -> bool:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                " AND state = 'active' AND (query LIKE 'COPY stage_trades%%'"
                " OR query LIKE 'COPY crypto_trades%%'"  # a batch of new keys: straight in
                " OR query LIKE 'INSERT INTO crypto_trades%%')",
                (application,),
            ).fetchone()
            return bool(row and row[0])

    return copying


def _write_lock_held(database_url: str) -> Callable[[], bool]:
    """True while another connection holds SQLite's write lock (the batch's transaction)."""
    path = database_url.removeprefix("sqlite:///")

    def held() -> bool:
        probe = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError as exc:
            return "locked" in str(exc) or "busy" in str(exc)
        finally:
            probe.close()

    return held


def test_sigkill_mid_batch_is_redelivered_and_stored_once(
    database_url: str, redis_url: str, start_worker: Callable[..., object], producer: Celery
) -> None:
    """Kill the whole worker (parent and pool child) while a big batch is being written.

    The message was taken but never acked, so after the visibility timeout the next worker
    gets it again; the batch id makes the second delivery the only one that counts."""
    store = migrated(database_url)
    application = database_url.rsplit("search_path%3D", 1)[-1]
    if database_url.startswith("postgresql"):
        database_url += f"&application_name={application}"
    # Short, so the killed delivery comes back in about half a minute; not shorter, since a
    # 300,000-row message (15 MB) can take over 12 s to read and write on a loaded 2-core box,
    # and a delivery held longer than the timeout is handed out again (seen: a 12 s timeout
    # redelivered the batch in a loop).
    env = short_visibility(30)
    worker = start_worker(database_url, **env)
    n = 300_000
    task_id = send(producer, Batch("big", "trades", trades("big", n)))

    if database_url.startswith("postgresql"):
        wait_for(_in_flight_postgres(database_url, application), 60, "the COPY of the big batch")
    else:
        wait_for(_write_lock_held(database_url), 60, "the worker's write transaction")
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(timeout=10)
    # The killed worker was writing this very task, not some other message.
    assert f"insert_batch[{task_id}] received" in worker.log_path.read_text()
    assert store.count_rows("crypto_trades") == 0, "killed too late: the batch had committed"
    assert store.count_rows("ingest_batches") == 0

    second = start_worker(database_url, **env)
    wait_for(lambda: store.count_rows("ingest_batches") == 1, 120, "the redelivered batch")
    assert store.count_rows("crypto_trades") == n
    # ... and the batch stored is that same delivery, redelivered to the second worker.
    wait_for(
        lambda: f"insert_batch[{task_id}] succeeded" in second.log_path.read_text(),
        30,
        "the second worker to report the redelivered task",
    )
    # A delivery that outlived the short visibility timeout comes back once more: it must be
    # consumed as a no-op, leaving the broker empty and the batch stored once.
    wait_drained(redis_url, 60)
    assert store.count_rows("crypto_trades") == n
    assert store.count_rows("ingest_batches") == 1
    store.close()


def test_undecodable_and_refused_batches_become_dead_letters(
    database_url: str, start_worker: Callable[..., object], producer: Celery
) -> None:
    """Nothing a worker is handed is ever just dropped: what it cannot store is set aside."""
    store = migrated(database_url)
    start_worker(database_url)
    producer.send_task(
        "tasks.ingest.insert_batch",
        args=[{"id": "junk", "kind": "candles", "rows": []}],
        queue="ingest",
        serializer="msgpack",
    )
    send(producer, Batch("fine", "trades", trades("ok", 10)))
    wait_for(lambda: store.count_rows("dead_letters") == 1, 60, "the dead letter")
    wait_for(lambda: store.count_rows("crypto_trades") == 10, 60, "the good batch")
    reasons = " | ".join(_dead_letter_reasons(database_url))
    assert "undecodable batch: unknown batch kind 'candles'" in reasons
    # Refused rows, malformed letters and events: tests/integration/test_ingest_never_drops.py
    store.close()


def _dead_letter_reasons(database_url: str) -> list[str]:
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            return [r[0] for r in conn.execute("SELECT reason FROM dead_letters ORDER BY id")]
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute("SELECT reason FROM dead_letters ORDER BY id")]
