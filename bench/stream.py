"""The stream path's figures: parse + batch + enqueue rate next to the official client, end to
end into PostgreSQL, latency at 2,000 msg/s, and peak RSS.

    .venv/bin/python -m bench.stream [--quick] [--inject-faults]

1. Stream worker alone: the simulator's load mode (pre-encoded frames, its own process) ->
   ``StreamWorker`` with the production journal and Celery publisher -> the embedded Redis
   (no consumer).
   Clock: first frame read -> last batch published. Beside it, the official ``massive``
   ``WebSocketClient`` (``feed=127.0.0.1:PORT``, ``secure=False``, ``Market.Crypto``) with a
   counting handler on the same kind of feed. At 1 and 10 events per frame.
2. End to end (``bench.stream_e2e``): simulator -> ``rrr stream`` -> Redis -> Celery worker
   -> PostgreSQL, every process real, each run in a clean schema and Redis database; rate =
   events / (first sent -> last row committed), beside the stream worker's own rate; after the
   pipeline drains, lost = ground-truth keys not stored, duplicated = deliveries applied twice;
   latency = exchange time -> row insert at 2,000 msg/s.

``--inject-faults`` drops one queued batch and delivers another twice in the burst run: its
lost and duplicated counts must then show exactly those rows (a check that they can).

The last line is one JSON object of the figures.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import parse_args, print_figures, print_table
from rrr.broker import free_port, start_embedded_redis

ROOT = Path(__file__).resolve().parent.parent
TICKERS = ("X:BTCUSD", "X:ETHUSD")  # bench.stream_sim's
DEFAULT_GC_THRESHOLDS = gc.get_threshold()
LOAD_START_DELAY_S = 0.05  # rrr.simulator.load.LoadOptions.start_delay_s


def start_simulator(home: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """``bench.stream_sim`` in its own process (so it does not share our GIL); returns its URL.
    Load-mode arguments as ``rrr simulate`` takes them, plus ``--pool-frames``."""
    port = free_port()
    log_path = home / f"sim-{port}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.stream_sim", "--port", str(port), *args],
        cwd=ROOT,
        env={**os.environ, "RRR_HOME": str(home), "LOG_LEVEL": "WARNING"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while b"POLYGON_WS_URL" not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"bench.stream: the simulator did not start: {log_path.read_text()}")
        time.sleep(0.05)
    return proc, f"ws://127.0.0.1:{port}/crypto"


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def worker_rate(home: Path, events: int, per_frame: int, batch_size: int) -> float:
    """Events/s through parse + batch + journal + enqueue (Celery publish to Redis) in this
    process; the journal as ``rrr stream`` keeps it by default (Settings' fsync mode)."""
    from rrr.batching import Batcher, sequential_ids
    from rrr.clock import SystemClock
    from rrr.config import Secret, Settings
    from rrr.gc_tuning import tune_gc
    from rrr.polygon.stream import PolygonStream
    from workers.journal import Journal
    from workers.stream import StreamWorker
    from workers.stream_process import CeleryOutbox

    class TimedWorker(StreamWorker):
        connected_at = 0.0

        def on_connected(self) -> None:  # no wrapper on on_frame: it would cost per frame
            self.connected_at = time.perf_counter()
            super().on_connected()

    sim, url = start_simulator(
        home, "--load-events", str(events), "--events-per-frame", str(per_frame)
    )
    journal = Journal(
        home / f"journal-{time.time_ns()}", 10**9, fsync=Settings.from_env().journal_fsync
    )
    try:
        outbox = CeleryOutbox()
        stream = PolygonStream(url, Secret("bench"), TICKERS)
        worker = TimedWorker(
            stream,
            Batcher(batch_size, 50, sequential_ids()),
            outbox.publish_batch,
            SystemClock(),
            send_dead_letters=outbox.send_dead_letters,
            record_events=outbox.record_events,
            request_repair=outbox.request_repair,
            journal=journal,
            tickers=TICKERS,
            source="simulator",
            max_messages=events,
        )
        tune_gc()  # as ``rrr stream`` does
        try:
            worker.run()
        finally:
            gc.unfreeze()
            gc.set_threshold(*DEFAULT_GC_THRESHOLDS)  # the official client runs as users run it
        # The load starts start_delay_s after the subscribe (the acks come before it).
        elapsed = time.perf_counter() - worker.connected_at - LOAD_START_DELAY_S
        assert worker.stats.rows_published == events, worker.stats.snapshot(0)
        return events / elapsed
    finally:  # the worker closes the journal when it stops
        stop(sim)


def official_rate(home: Path, events: int, per_frame: int) -> float:
    """Events/s the official client hands to a handler that only counts them."""
    from massive import WebSocketClient
    from massive.websocket.models import Market

    sim, url = start_simulator(
        home, "--load-events", str(events), "--events-per-frame", str(per_frame)
    )
    seen = {"n": 0, "first": 0.0, "last": 0.0}

    async def count(messages: list[Any]) -> None:
        if not seen["n"]:
            seen["first"] = time.perf_counter()
        seen["n"] += len(messages)
        seen["last"] = time.perf_counter()

    try:
        client = WebSocketClient(
            api_key="bench",
            feed=url.removeprefix("ws://").removesuffix("/crypto"),
            market=Market.Crypto,
            secure=False,
            subscriptions=[
                f"{ev}.{pair}" for ev in ("XT", "XQ") for pair in ("BTC-USD", "ETH-USD")
            ],
        )
        asyncio.run(asyncio.wait_for(client.connect(count), timeout=120))
    finally:
        stop(sim)
    assert seen["n"] == events, seen
    return events / (seen["last"] - seen["first"])


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        {"--inject-faults": "drop one queued batch and deliver another twice in the burst run"},
    )
    quick = args.quick
    home = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    redis_proc, redis_url = start_embedded_redis(home / "redis")
    # Before celeryconfig is imported (CeleryOutbox). Database 1: the batches published by the
    # in-process runs pile up there unread, away from the end-to-end runs on database 0.
    os.environ["REDIS_URL"] = redis_url.rsplit("/", 1)[0] + "/1"
    os.environ["RRR_HOME"] = str(home)
    figures: dict[str, Any] = {}
    rows: list[list[object]] = []
    try:
        n1 = 100_000 if quick else 1_000_000
        for per_frame in (1, 10):
            n = n1 if per_frame == 1 else n1 * 2
            ours = worker_rate(home, n, per_frame, 1000)
            official = official_rate(home, n // (2 if quick else 1), per_frame)
            rows.append(
                [f"stream worker, {per_frame}/frame", ours, official, round(ours / official, 2)]
            )
            if per_frame == 1:
                figures["parse_events_per_s_1_per_frame"] = round(ours)
                figures["official_client_events_per_s_1_per_frame"] = round(official)
                figures["parse_vs_official_ratio"] = round(ours / official, 2)
            else:
                figures["parse_events_per_s_10_per_frame"] = round(ours)
                figures["official_client_events_per_s_10_per_frame"] = round(official)
        if not quick:
            for size in (500, 2000):
                rows.append(
                    [
                        f"stream worker, 1/frame, batch {size}",
                        worker_rate(home, n1, 1, size),
                        "",
                        "",
                    ]
                )
        print_table(
            "Stream worker alone (parse + batch + Celery publish) vs the official client",
            ["run", "ours events/s", "official events/s", "ratio"],
            rows,
        )
        from bench.stream_e2e import end_to_end

        figures |= end_to_end(
            home, redis_url, quick, start_simulator, stop, args.inject_faults, redis_proc.pid
        )
        # The baseline measured in this run: the stream worker alone, same events per frame.
        figures["e2e_burst_vs_stream_worker_alone"] = round(
            figures["e2e_burst_ticks_per_s"] / figures["parse_events_per_s_1_per_frame"], 3
        )
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
    print_figures(figures)


if __name__ == "__main__":
    main()
