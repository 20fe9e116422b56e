"""End to end for ``bench.stream``: simulator -> ``rrr stream`` -> Redis -> Celery worker ->
PostgreSQL, each its own process, as in production.

- Throughput: the simulator's load mode sends N events (ground truth recorded to a file); the
  rate is N / (first event sent -> last row committed), so it is the slowest stage's rate.
  Loss is the ground truth (trades by id, quotes by their whole state, as the store keys them)
  minus what PostgreSQL holds. The full run then holds the measured rate for 60 s.
- Latency: the normal (paced) simulator at 2,000 events/s; per row, exchange time ``t`` ->
  ``inserted_at`` (PostgreSQL's ``now()`` of the inserting transaction, so the commit itself,
  a few ms, is not counted).
- Peak RSS (VmHWM) of the stream worker, the Celery worker (largest process) and simulator.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.common import postgres_schema, print_table
from rrr.simulator.truth import load_record
from rrr.storage import open_store

ROOT = Path(__file__).resolve().parent.parent
Proc = subprocess.Popen[bytes]


def spawn(home: Path, name: str, args: list[str], env: dict[str, str]) -> Proc:
    log = open(home / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_celery(home: Path, env: dict[str, str], concurrency: int) -> Proc:
    proc = spawn(
        home,
        "celery",
        [
            *("-m", "celery", "-A", "tasks", "worker", "-Q", "ingest,default"),
            *("-c", str(concurrency), "--without-gossip", "--without-mingle", "-l", "INFO"),
            *("-n", f"b{uuid.uuid4().hex[:6]}@%h"),
        ],
        env,
    )
    deadline = time.monotonic() + 60
    while b"ready." not in (home / "celery.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)  # never leave a worker (or its children) behind
            proc.wait()
            raise RuntimeError((home / "celery.log").read_text()[-3000:])
        time.sleep(0.1)
    return proc


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a process and, for a Celery worker, the largest of its children."""
    pids = [pid]
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    pids += [int(p) for p in out.stdout.split()]
    peak = 0.0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return peak


class RssWatch:
    def __init__(self, **procs: Proc) -> None:
        self.procs = procs
        self.peaks = dict.fromkeys(procs, 0.0)

    def sample(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self.peaks[name] = max(self.peaks[name], peak_rss_mb(proc.pid))


def stored(db_url: str) -> int:
    store = open_store(db_url)
    try:
        return store.count_rows("crypto_trades") + store.count_rows("crypto_quotes")
    finally:
        store.close()


def wait_stored(
    db_url: str, target: int, watch: RssWatch, stall_s: float = 20
) -> tuple[int, float]:
    """Poll until ``target`` rows are in; returns (rows, wall time when reached or stalled)."""
    last, last_change = -1, time.monotonic()
    while True:
        watch.sample()
        n = stored(db_url)
        now = time.monotonic()
        if n != last:
            last, last_change = n, now
        if n >= target or now - last_change > stall_s:
            return n, time.time()
        time.sleep(0.25)


def truth_counts(record: Path) -> tuple[int, int, float]:
    """(events sent, distinct rows they make, wall time of the first event in s).

    Rows are keyed as the store keys them (trades by id, quotes by their whole state); one
    segment is expanded at a time and only a hash per row is kept, so millions fit."""
    truth = load_record(record)
    sent, first_ms = 0, float("inf")
    keys: set[int] = set()
    for segments in truth.by_connection.values():
        for segment in segments:
            for e in segment.events():
                sent += 1
                first_ms = min(first_ms, e["t"])
                if e["ev"] == "XT":
                    keys.add(hash(("XT", e["pair"], e["x"], e["i"])))
                else:
                    keys.add(
                        hash(
                            (e["ev"], e["pair"], e["x"], e["t"], e["bp"], e["bs"], e["ap"], e["as"])
                        )
                    )
    return sent, len(keys), first_ms / 1000


def throughput_run(
    home: Path, env: dict[str, str], db_url: str, events: int, rate: float, start: Any, stop: Any
) -> dict[str, Any]:
    record = home / f"truth-{time.time_ns()}.jsonl"
    before = stored(db_url)
    sim, url = start(
        home,
        *("--load-events", str(events), "--load-rate", str(rate), "--events-per-frame", "1"),
        *("--pool-frames", "65536", "--record", str(record)),
    )
    stream = spawn(
        home,
        "stream",
        ["-m", "rrr.cli", "stream", "--max-messages", str(events)],
        {**env, "POLYGON_WS_URL": url},
    )
    watch = RssWatch(stream=stream, simulator=sim)
    try:
        deadline = time.monotonic() + 600
        while stream.poll() is None and time.monotonic() < deadline:  # exits after N events
            watch.sample()
            time.sleep(0.2)
    finally:
        stop(stream)
        stop(sim)  # flushes the ground truth
    sent, distinct, first_s = truth_counts(record)
    rows, done_at = wait_stored(db_url, before + distinct, watch)
    return {
        "events": sent,
        "lost": distinct - (rows - before),
        "rate": sent / (done_at - first_s),
        "seconds": done_at - first_s,
        "rss": watch.peaks,
    }


def latency_run(
    home: Path, env: dict[str, str], db_url: str, seconds: float, start: Any, stop: Any
) -> tuple[float, float, float]:
    since_ms = int(time.time() * 1000)
    sim, url = start(home, "--rate", "2000", "--events-per-frame", "1")
    stream = spawn(
        home,
        "stream-latency",
        ["-m", "rrr.cli", "stream", "--max-seconds", str(seconds)],
        {**env, "POLYGON_WS_URL": url},
    )
    watch = RssWatch(stream=stream)
    try:
        while stream.poll() is None:
            watch.sample()
            time.sleep(0.25)
        time.sleep(1.0)  # the last batches commit
    finally:
        stop(stream)
        stop(sim)
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY lag), count(*)"
            " FROM (SELECT extract(epoch FROM inserted_at - event_time) * 1000 AS lag"
            "  FROM crypto_trades WHERE event_time >= to_timestamp(%s / 1000.0)"
            "  UNION ALL SELECT extract(epoch FROM inserted_at - event_time) * 1000"
            "  FROM crypto_quotes WHERE event_time >= to_timestamp(%s / 1000.0)) AS lags",
            (since_ms, since_ms),
        ).fetchone()
    assert row is not None
    (p50, p99), _rows = row
    return float(p50), float(p99), watch.peaks["stream"]


def end_to_end(
    home: Path, redis_url: str, quick: bool, start: Callable[..., Any], stop: Callable[..., Any]
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with postgres_schema("bench_stream") as db_url:
        store = open_store(db_url)
        store.migrate()
        store.close()
        env = {
            "RRR_HOME": str(home / "e2e"),
            "REDIS_URL": redis_url,
            "DATABASE_URL": db_url,
            "LOG_LEVEL": "WARNING",
        }
        (home / "e2e").mkdir(exist_ok=True)
        celery = start_celery(home, {**env, "LOG_LEVEL": "INFO"}, concurrency=2)  # "ready."
        try:
            runs = [
                throughput_run(home, env, db_url, 150_000 if quick else 500_000, 0, start, stop)
            ]
            if not quick:  # hold the measured rate for 60 s
                rate = int(runs[0]["rate"] // 1000 * 1000)
                for _ in range(3):
                    run = throughput_run(home, env, db_url, rate * 60, rate, start, stop)
                    runs.append(run)
                    if run["lost"] == 0 and run["seconds"] <= 65:
                        break
                    rate = int(rate * 0.8 // 1000 * 1000)
            # Settings' batch age first (the figure), then shorter ones to choose the default.
            latencies = {}
            for age_ms in (None, 20) if quick else (None, 20, 10):
                age_env = env if age_ms is None else {**env, "RRR_BATCH_MAX_AGE_MS": str(age_ms)}
                latencies[age_ms] = latency_run(
                    home, age_env, db_url, 8 if quick else 30, start, stop
                )
            p50, p99, rss_latency = latencies[None]
            celery_rss = peak_rss_mb(celery.pid)
        finally:
            stop(celery)
    print_table(
        "End to end: simulator -> rrr stream -> Redis -> Celery (2 processes) -> PostgreSQL",
        ["run", "events", "seconds", "events/s", "lost"],
        [
            [f"load {i}", r["events"], round(r["seconds"], 1), r["rate"], r["lost"]]
            for i, r in enumerate(runs)
        ],
    )
    best = runs[-1]
    stream_rss = max(max(r["rss"]["stream"] for r in runs), rss_latency)
    print_table(
        "Latency at 2,000 events/s: exchange time -> row inserted, by batch max age",
        ["batch max age", "p50 ms", "p99 ms"],
        [[f"{age} ms" if age else "Settings default", round(a, 1), round(b, 1)]
         for age, (a, b, _) in latencies.items()],
    )  # fmt: skip
    print_table(
        "Peak RSS (VmHWM)",
        ["stream worker MB", "celery worker MB (largest process)", "simulator MB"],
        [[round(stream_rss, 1), round(celery_rss, 1),
          round(max(r["rss"]["simulator"] for r in runs), 1)]],
    )  # fmt: skip
    figures["e2e_postgres_ticks_per_s"] = round(best["rate"])
    figures["e2e_lost"] = sum(r["lost"] for r in runs)
    figures["p50_latency_ms_at_2000"] = round(p50, 1)
    figures["p99_latency_ms_at_2000"] = round(p99, 1)
    figures["p99_latency_ms_at_2000_batch_age_20ms"] = round(latencies[20][1], 1)
    figures["stream_worker_peak_rss_mb"] = round(stream_rss, 1)
    figures["celery_worker_peak_rss_mb"] = round(celery_rss, 1)
    return figures
