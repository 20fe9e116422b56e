"""Ticks/s through Redis and one Celery worker into each store, batch 1,000, JSON vs msgpack,
per number of worker processes (SQLite: 1; PostgreSQL: 1, 2, 3; --quick: see ``plans``).

The producer publishes pre-built batches as fast as Redis takes them while a real
``celery worker -c N`` (prefork, ingest queue) applies them; the clock runs from the first
publish to the commit of the last batch. The broker is the embedded server `make run` uses
(AOF on). Every figure names its store, serializer and process count; beside each msgpack
figure is its ratio to JSON measured in the same run (the baseline), and beside each
multi-process figure its ratio to one process. A worker that does not take the first batch
within ``STARTUP_TIMEOUT_S`` stops the bench with a non-zero exit.

    .venv/bin/python -m bench.ingest [--quick]
"""

from __future__ import annotations

import os
import signal
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
STARTUP_TIMEOUT_S = 60  # Celery's start-up plus the first batch, on a busy 2-core box
DRAIN_TIMEOUT_S = 300


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


def log_tail(home: Path) -> str:
    return (home / "worker.log").read_text(errors="replace")[-3000:]


def reap(retiring: list[subprocess.Popen[bytes]]) -> None:
    """Wait for workers told to stop (SIGKILL to the group of one that takes over 30 s)."""
    while retiring:
        worker = retiring.pop()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:  # never leave a worker (or its children) behind
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def run_once(
    redis_url: str,
    database_url: str,
    serializer: str,
    concurrency: int,
    total: int,
    home: Path,
    retiring: list[subprocess.Popen[bytes]],
) -> tuple[float, int]:
    """One plan. The worker is told to stop at the end and left in ``retiring``: its warm
    shutdown (~3 s) overlaps the next plan's start-up and is reaped before that plan's clock
    starts, so no two workers ever run during a timed section."""
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
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while store.count_rows("ingest_batches") < applied_before:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"bench.ingest: the worker did not apply a first batch within"
                    f" {STARTUP_TIMEOUT_S} s (exit code {worker.poll()}); its log:\n"
                    + log_tail(home)
                )
            time.sleep(0.05)
        reap(retiring)  # the previous plan's worker is gone before the clock starts
        start = time.perf_counter()
        for message in messages:
            producer.send_task(
                "tasks.ingest.insert_batch", args=[message], queue="ingest", serializer=serializer
            )
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while store.count_rows("ingest_batches") < applied_before + len(messages):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"bench.ingest: batches not all applied within {DRAIN_TIMEOUT_S} s"
                    f" (worker exit code {worker.poll()}); its log:\n" + log_tail(home)
                )
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        stored = store.count_rows("crypto_trades") - before - 1
    finally:
        worker.terminate()  # TERM to the main process: a warm shutdown, the queue is empty
        retiring.append(worker)
        producer.close()
        store.close()
    return total / elapsed, stored


def plans(quick: bool) -> list[tuple[str, str, int]]:
    """(store, serializer, worker processes). --quick (< 60 s) keeps JSON, the baseline, at one
    process, and msgpack at one and two."""
    full = [
        (store, serializer, concurrency)
        for store, concurrencies in (("sqlite", (1,)), ("postgres", (1, 2, 3)))
        for concurrency in concurrencies
        for serializer in ("json", "msgpack")
    ]
    if not quick:
        return full
    return [p for p in full if p[2] == 1 or (p[1] == "msgpack" and p[2] == 2)]


def main() -> None:
    args = parse_args(__doc__ or "")
    total = 30_000 if args.quick else 400_000
    figures: dict[str, object] = {"bench": "ingest", "quick": args.quick, "batch_size": 1000}
    rates: dict[tuple[str, str, int], float] = {}
    retiring: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        redis_proc, redis_url = start_embedded_redis(home / "redis")
        try:
            for plan, (name, serializer, concurrency) in enumerate(plans(args.quick), 1):
                # A fresh database and Redis database per plan: no plan pays for the rows of
                # the one before, nor receives a message it left.
                plan_redis_url = f"{redis_url.rsplit('/', 1)[0]}/{plan}"
                with postgres_schema() as pg_url:
                    url = (
                        pg_url if name == "postgres" else f"sqlite:///{home / uuid.uuid4().hex}.db"
                    )
                    rate, stored = run_once(
                        plan_redis_url, url, serializer, concurrency, total, home, retiring
                    )
                if stored != total:
                    raise SystemExit(
                        f"bench.ingest: {name}/{serializer} stored {stored} of {total}"
                    )
                rates[(name, serializer, concurrency)] = rate
                figures[f"{name}_{serializer}_c{concurrency}_ticks_per_s"] = round(rate)
        finally:
            reap(retiring)
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
    rows: list[list[object]] = []
    for (name, serializer, concurrency), rate in rates.items():
        json_rate = rates.get((name, "json", concurrency))
        vs_json = round(rate / json_rate, 2) if json_rate else ""
        vs_one = round(rate / rates[(name, serializer, 1)], 2)
        rows.append([name, serializer, concurrency, rate, vs_json, vs_one])
        if serializer == "msgpack" and json_rate:
            figures[f"{name}_msgpack_vs_json_c{concurrency}"] = vs_json
        if concurrency > 1:
            figures[f"{name}_{serializer}_c{concurrency}_vs_c1"] = vs_one
    print_table(
        "insert_batch through Redis + one worker of N processes (ticks/s, batch 1,000)",
        ["store", "serializer", "processes", "ticks/s", "vs JSON", "vs 1 process"],
        rows,
    )
    print_figures(figures)


if __name__ == "__main__":
    main()
