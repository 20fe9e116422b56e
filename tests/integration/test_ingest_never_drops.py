"""No message an ingest worker takes is acked unless its rows are stored or set aside.

Each test hands a real Celery worker what production will one day hand it (a full disk, a row
the database refuses, a malformed payload, a stuck database, a message that kills its process)
and counts what ends up in the tables and what is left in the broker."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from celery import Celery

from rrr.clock import now_ms
from rrr.models import Bar, Batch, Trade
from rrr.storage import Store, open_store
from tests.conftest import ROOT, WorkerProcess, pipeline_env, wait_drained
from tests.support.missing import missing
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]

NOW = now_ms()


@pytest.fixture
def producer(redis_url: str) -> Iterator[Celery]:
    app = Celery("producer", broker=redis_url)
    yield app
    app.close()


def send(producer: Celery, name: str, payload: Any, serializer: str = "json") -> str:
    result = producer.send_task(
        f"tasks.ingest.{name}", args=[payload], queue="ingest", serializer=serializer
    )
    return str(result.id)


def send_batch(producer: Celery, batch: Batch) -> str:
    return send(producer, "insert_batch", batch.to_message(), serializer="msgpack")


def trades(prefix: str, n: int) -> list[Trade]:
    return [
        Trade("X:BTCUSD", 1, f"{prefix}-{i}", 43575.5, 0.01, (2,), NOW - n + i, NOW, "simulator")
        for i in range(n)
    ]


def migrated(database_url: str) -> Store:
    store = open_store(database_url)
    store.migrate()
    return store


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            return list(conn.execute(sql))
    with psycopg.connect(database_url) as conn:
        return list(conn.execute(sql))


def letters(database_url: str) -> list[tuple[str, str]]:
    """(kind, reason) of every dead letter, oldest first."""
    return [(r[0], r[1]) for r in query(database_url, "SELECT kind, reason FROM dead_letters")]


def test_a_row_the_database_refuses_is_set_aside_alone(
    database_url: str, redis_url: str, start_worker: Callable[..., WorkerProcess], producer: Celery
) -> None:
    """One refused row out of 1,000: 999 stored, the one in dead_letters with the database's
    own reason. The refusal is a trigger, standing for any constraint no row check knows."""
    store = migrated(database_url)
    if database_url.startswith("sqlite"):
        trigger = (
            "CREATE TRIGGER refuse_one BEFORE INSERT ON crypto_trades"
            " WHEN NEW.trade_id = 'mixed-500' BEGIN SELECT RAISE(ABORT, 'no trade 500'); END"
        )
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            conn.execute(trigger)
    else:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "ALTER TABLE crypto_trades ADD CONSTRAINT no_trade_500"
                " CHECK (trade_id <> 'mixed-500')"
            )
    start_worker(database_url)
    send_batch(producer, Batch("mixed", "trades", trades("mixed", 1000)))
    send_batch(producer, Batch("mixed", "trades", trades("mixed", 1000)))  # redelivered
    wait_drained(redis_url, 60)
    assert store.count_rows("crypto_trades") == 999
    ids = {r[0] for r in query(database_url, "SELECT trade_id FROM crypto_trades")}
    assert "mixed-500" not in ids and "mixed-499" in ids and "mixed-501" in ids
    (letter,) = letters(database_url)
    assert letter[0] == "trades" and "refused by the database in batch mixed" in letter[1]
    assert ("no trade 500" if database_url.startswith("sqlite") else "no_trade_500") in letter[1]
    applied = query(database_url, "SELECT batch_id FROM ingest_batches WHERE batch_id = 'mixed'")
    assert applied == [("mixed",)]
    store.close()


def test_a_row_out_of_range_is_rejected_alone(
    database_url: str, redis_url: str, start_worker: Callable[..., WorkerProcess], producer: Celery
) -> None:
    store = migrated(database_url)
    start_worker(database_url)
    rows = trades("far", 1000)
    rows[10] = rows[10]._replace(ts_ms=10**16)  # PostgreSQL: "timestamp out of range"
    rows[20] = rows[20]._replace(trade_id="a\x00b")  # PostgreSQL text holds no NUL
    send_batch(producer, Batch("far", "trades", rows))
    wait_drained(redis_url, 60)
    assert store.count_rows("crypto_trades") == 998
    reasons = " | ".join(reason for _, reason in letters(database_url))
    assert "10000000000000000" in reasons and "NUL" in reasons
    assert store.count_rows("dead_letters") == 2
    store.close()


def test_malformed_letters_and_events_are_stored_not_dropped(
    database_url: str, redis_url: str, start_worker: Callable[..., WorkerProcess], producer: Celery
) -> None:
    store = migrated(database_url)
    start_worker(database_url)
    good_event = {
        "component": "stream",
        "event_type": "gap",
        "severity": "warning",
        "message": "a gap",
        "ts_ms": NOW,
        "details": {},
        "dedupe_key": "gap-1",
    }
    far_future = {**good_event, "ts_ms": 10**16, "dedupe_key": "gap-2"}
    unknown_key = {**good_event, "colour": "red", "dedupe_key": "gap-3"}
    send(producer, "record_events", [good_event, far_future, unknown_key])
    send(producer, "record_events", {"not": "a list"})
    send(producer, "insert_dead_letters", [["raw\x00text", "a NUL in the raw", "trades", ""]])
    send(producer, "insert_dead_letters", [["only raw"], ["r", "why", "k", "s", "extra"], 7])
    wait_drained(redis_url, 60)
    assert store.count_rows("system_events") == 1
    got = letters(database_url)
    assert len(got) == 7, got
    reasons = " | ".join(reason for _, reason in got)
    assert "more than a day ahead" in reasons and "unknown event field(s) colour" in reasons
    assert "expected a list of events, got dict" in reasons
    assert "a NUL in the raw" in reasons
    assert sum(kind == "malformed" for kind, _ in got) == 6
    store.close()


def test_a_full_disk_is_retried_until_there_is_room(
    tmp_path: Path, redis_url: str, start_worker: Callable[..., WorkerProcess], producer: Celery
) -> None:
    """SQLite on a 16 MiB filesystem that a filler file has filled: the batch waits (retried
    with backoff, no dead letter), and is stored once the filler goes."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        missing(
            f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}",
            "it runs as root and must run this test",
        )
    try:
        url = f"sqlite:///{mount / 'rrr.db'}"
        store = migrated(url)
        filler = mount / "filler"
        with open(filler, "wb") as f, pytest.raises(OSError):
            f.write(b"\0" * (32 << 20))  # more than there is: the disk is full after this
        worker = start_worker(url)
        send_batch(producer, Batch("full", "trades", trades("full", 5_000)))
        wait_for(lambda: "retry" in worker.log() and "full" in worker.log(), 60, "a retry")
        assert store.count_rows("crypto_trades") == 0
        filler.unlink()
        wait_drained(redis_url, 120)
        assert store.count_rows("crypto_trades") == 5_000
        assert store.count_rows("dead_letters") == 0
        store.close()
        worker.stop()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_locked_table_is_retried_never_dead_lettered(
    pg_url: str, redis_url: str, start_worker: Callable[..., WorkerProcess], producer: Celery
) -> None:
    """The table is locked by another session, so the write waits until the statement timeout
    (set under the soft time limit): the batch is retried, not set aside, and stored once the
    lock goes. A retry is no failed delivery: however many there are, the delivery count never
    passes one. (A hang the statement timeout cannot see, a slow network, reaches the soft
    limit itself: the fault suite's postgres-slow.)"""
    store = migrated(pg_url)
    client = redis.Redis.from_url(redis_url)
    limits = {"RRR_TASK_SOFT_TIME_LIMIT": "2", "RRR_TASK_TIME_LIMIT": "20"}
    worker = start_worker(pg_url, **limits)
    with psycopg.connect(pg_url) as locker:
        locker.execute("LOCK TABLE crypto_trades IN ACCESS EXCLUSIVE MODE")
        task_id = send_batch(producer, Batch("slow", "trades", trades("slow", 100)))
        key = f"rrr:deliveries:{task_id}"
        retries = lambda: worker.log().count("statement timeout; retry")  # noqa: E731
        wait_for(lambda: retries() >= 3, 60, "three statement timeouts, each retried")
        wait_for(lambda: client.exists(key), 30, "the next delivery")
        assert int(client.hget(key, "n") or 0) == 1
        assert store.count_rows("dead_letters") == 0
    wait_drained(redis_url, 60)
    assert store.count_rows("crypto_trades") == 100
    assert store.count_rows("dead_letters") == 0
    assert client.exists(key) == 0
    client.close()
    store.close()


def test_a_message_that_kills_its_process_becomes_poison_after_five_deliveries(
    tmp_path: Path,
    pg_url: str,
    redis_url: str,
    start_worker: Callable[..., WorkerProcess],
    producer: Celery,
) -> None:
    """The pool process is killed (as the OOM killer would) in each of five deliveries: the
    sixth sets the message aside as poison, whole, and acks it; the next batch is stored."""
    store = migrated(pg_url)
    worker = start_worker(pg_url)
    client = redis.Redis.from_url(redis_url)
    task_id = send_batch(producer, Batch("killer", "trades", trades("killer", 60_000)))
    key = f"rrr:deliveries:{task_id}"
    for delivery in range(1, 6):
        what = f"delivery {delivery}"
        wait_for(lambda d=delivery: int(client.hget(key, "n") or 0) == d, 60, what)
        for pid in worker.children():
            os.kill(pid, signal.SIGKILL)
    wait_drained(redis_url, 60)
    ((kind, reason),) = letters(pg_url)
    assert kind == "poison"
    assert "5 deliveries of tasks.ingest.insert_batch in a row ended without an outcome" in reason
    assert store.count_rows("crypto_trades") == 0
    (raw,) = query(pg_url, "SELECT raw FROM dead_letters")[0]
    assert '"id":"killer"' in raw.replace(" ", "") and task_id in raw
    assert client.exists(key) == 0
    status = subprocess.run(
        [sys.executable, "-m", "rrr_cli", "status"],
        cwd=ROOT,
        env={**pipeline_env(tmp_path, redis_url, pg_url), "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 2, status.stderr  # down: no stream worker runs in this test
    assert re.search(r"poison messages[\s│]+1 \(set aside", status.stdout), status.stdout
    send_batch(producer, Batch("after", "trades", trades("after", 10)))
    wait_drained(redis_url, 60)
    assert store.count_rows("crypto_trades") == 10
    store.close()


def bar_batch(batch_id: str, close: float, version_ms: int) -> Batch:
    bar = Bar("X:BTCUSD", "1m", 100.0, 106.0, 99.0, close, 3.0, 101.0, 40, NOW - 120_000,
              NOW - 60_000, "simulator")  # fmt: skip
    return Batch(batch_id, "bars", [bar], version_ms=version_ms)


@pytest.mark.parametrize("order", ["stale-last", "correction-last"])
def test_a_stale_bar_never_overwrites_its_correction_through_a_worker(
    order: str,
    database_url: str,
    redis_url: str,
    start_worker: Callable[..., WorkerProcess],
    producer: Celery,
) -> None:
    """The vendor corrected a bar (close 104.25, received later) after a first version (105.0);
    whichever delivery lands last, the correction is what stays."""
    store = migrated(database_url)
    start_worker(database_url)
    stale, correction = bar_batch("v1", 105.0, NOW - 50_000), bar_batch("v2", 104.25, NOW - 10_000)
    for batch in [correction, stale] if order == "stale-last" else [stale, correction]:
        send_batch(producer, batch)
        wait_drained(redis_url, 60)
    closes = [r[0] for r in query(database_url, "SELECT close FROM crypto_aggregates")]
    assert [float(c) for c in closes] == [104.25]
    store.close()
