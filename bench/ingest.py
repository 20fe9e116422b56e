"""Ticks/s through Redis and one Celery worker into each store, batch 1,000, JSON vs msgpack.

A producer thread publishes pre-built batches as fast as Redis takes them while a real
``celery worker`` (prefork, ingest queue) applies them; the clock runs from the first publish
to the commit of the last batch. The broker is the embedded server `make run` uses (AOF on).

    .venv/bin/python -m bench.ingest [--quick]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from celery import Celery

from bench.common import parse_args, postgres_schema, print_figures, print_table
from bench.store import make_batches
from rrr.broker import start_embedded_redis
from rrr.storage import open_store

ROOT = Path(__file__).resolve().parent.parent


def start_worker(
    home: Path, redis_url: str, database_url: str, concurrency: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RRR_HOME": str(home),
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
    }
    log = open(home / "worker.log", "ab")  # noqa: SIM115 - the worker owns it until it exits
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tasks",
            "worker",
            "-Q",
            "ingest",
            "-c",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "-l",
            "WARNING",
            "-n",
            f"bench-{uuid.uuid4().hex[:6]}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc


def run_once(
    redis_url: str, database_url: str, serializer: str, concurrency: int, total: int, home: Path
) -> tuple[float, int]:
    store = open_store(database_url)
    store.migrate()
    before = store.count_rows("crypto_trades")
    batches = make_batches(1000, total)
    for b in batches:  # unique ids and trade ids per run
        object.__setattr__(b, "id", f"{serializer}-{concurrency}-{b.id}")
    batches = [
        type(b)(b.id, b.kind, [r._replace(trade_id=f"{b.id}:{r.trade_id}") for r in b.rows])
        for b in batches
    ]
    messages = [b.to_message() for b in batches]
    worker = start_worker(home, redis_url, database_url, concurrency)
    producer = Celery("bench", broker=redis_url)
    try:
        # Wait until the worker consumes (a marker batch) so start-up is not timed.
        applied_before = store.count_rows("ingest_batches") + 1
        marker = make_batches(1, 1)[0]
        marker = type(marker)(marker.id, "trades", [marker.rows[0]._replace(trade_id=marker.id)])
        producer.send_task(
            "tasks.ingest.insert_batch",
            args=[marker.to_message()],
            queue="ingest",
            serializer=serializer,
        )
        deadline = time.monotonic() + 60
        while store.count_rows("ingest_batches") < applied_before and time.monotonic() < deadline:
            time.sleep(0.05)
        start = time.perf_counter()
        for message in messages:
            producer.send_task(
                "tasks.ingest.insert_batch", args=[message], queue="ingest", serializer=serializer
            )
        deadline = time.monotonic() + 300
        while store.count_rows("ingest_batches") < applied_before + len(messages):
            if time.monotonic() > deadline:
                raise SystemExit("bench.ingest: batches did not all arrive in 300 s")
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        stored = store.count_rows("crypto_trades") - before - 1
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        producer.close()
        store.close()
    return total / elapsed, stored


PLANS = [
    (store, serializer, concurrency)
    for store, concurrencies in (("sqlite", (1,)), ("postgres", (1, 2, 3)))
    for concurrency in concurrencies
    for serializer in ("json", "msgpack")
]


def main() -> None:
    args = parse_args(__doc__ or "")
    total = 100_000 if args.quick else 400_000
    figures: dict[str, object] = {"bench": "ingest", "quick": args.quick, "batch_size": 1000}
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        redis_proc, redis_url = start_embedded_redis(home / "redis")
        try:
            for name, serializer, concurrency in PLANS:
                # A fresh database per plan: no plan pays for the rows of the one before.
                with postgres_schema() as pg_url:
                    url = (
                        pg_url if name == "postgres" else f"sqlite:///{home / uuid.uuid4().hex}.db"
                    )
                    rate, stored = run_once(redis_url, url, serializer, concurrency, total, home)
                if stored != total:
                    raise SystemExit(
                        f"bench.ingest: {name}/{serializer} stored {stored} of {total}"
                    )
                rows.append([name, serializer, concurrency, rate])
                key = f"{name}_{serializer}_c{concurrency}_ticks_per_s"
                figures[key] = round(rate)
                best_key = f"{name}_{serializer}_ticks_per_s"
                figures[best_key] = max(round(rate), int(figures.get(best_key, 0)))  # type: ignore[call-overload]
        finally:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
    for name in ("sqlite", "postgres"):
        best = max(("json", "msgpack"), key=lambda s: float(figures[f"{name}_{s}_ticks_per_s"]))  # type: ignore[arg-type]
        figures[f"{name}_ticks_per_s"] = figures[f"{name}_{best}_ticks_per_s"]
        figures[f"{name}_faster_serializer"] = best
    print_table(
        "insert_batch through Redis + one worker (ticks/s)",
        ["store", "serializer", "processes", "ticks/s"],
        rows,
    )
    print_figures(figures)


if __name__ == "__main__":
    main()
