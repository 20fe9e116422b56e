"""Historical backfill, end to end: `rrr backfill --months 6` for two pairs of 1-minute bars
(~520,000) from the REST simulator through Redis and a real Celery worker into PostgreSQL,
rate limit off; then, under a limit of 5 requests per minute, the planner's ETA against a
measured run.

Figures: bars/s into PostgreSQL (first chunk claimed -> last chunk done) and the command's
wall time, beside the machine's ceiling in the same run (a bare binary COPY of a chunk's bars,
bench.baselines: ``backfill_vs_bare_copy_ratio``); where the time goes (per chunk: fetch =
limiter + HTTP + parse, store = ``apply_batch`` + bookkeeping, from the workers' logs);
``apply_batch`` alone on one 34-day chunk; an exact check of the stored bars against the
simulator's, by key (missing, unexpected), and of the batch ledger (duplicated: bar deliveries
applied twice).

The simulator runs in this process, on the same 2 cores as the pipeline, and rendering a
48,960-bar page (JSON, then gzip as the vendor sends it) costs it ~55 ms of CPU: ~0.8 s of a
~2.5 s run. In production that CPU is the vendor's. So ``postgres_bars_per_s`` is measured
with the pages rendered before the clock starts (the workers still receive, gunzip and parse
every page over HTTP); the same run with pages rendered live is ``sim_live_*``, and
``sim_cpu_s`` is the simulator's CPU during each timed run.

    .venv/bin/python -m bench.backfill [--quick]     (--quick: one month, a 3-request ETA run)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import psycopg
from celery import Celery

from bench.baselines import bare_copy_rows_per_s
from bench.common import parse_args, postgres_schema, print_figures, print_table
from bench.counting import deliveries_applied_twice
from rrr.backfill.plan import (
    BackfillRequest,
    estimate_duration_s,
    plan_backfill,
    request_from_flags,
)
from rrr.broker import start_embedded_redis
from rrr.clock import now_ms
from rrr.config import Rate
from rrr.models import Bar, Batch
from rrr.polygon.rest import aggs_path
from rrr.simulator.http import Request, Routes, SimulatorHTTPServer
from rrr.simulator.market import Market
from rrr.simulator.rest import RestSimOptions, rest_routes
from rrr.simulator.rest_aggs import AGGS_PREFIX
from rrr.storage import open_store
from rrr_cli.supervisor import stop_process

ROOT = Path(__file__).resolve().parent.parent
TICKERS = ("X:BTCUSD", "X:ETHUSD")
DAY = 86_400_000
CHUNK_DONE = re.compile(
    r"chunk \S+ done: (\d+) bars in (\d+) pages \(fetch ([\d.]+) s, store ([\d.]+) s\)"
)


def env_for(home: Path, redis_url: str, database_url: str, rest_url: str, rate: str) -> dict:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("POLYGON_", "MASSIVE_"))},
        "RRR_HOME": str(home),
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "POLYGON_REST_URL": rest_url,
        "POLYGON_RATE_LIMIT": rate,
        "RRR_TICKERS": ",".join(TICKERS),
        "LOG_LEVEL": "INFO",
        "COLUMNS": "120",
    }


def start_worker(env: dict, log_path: Path, concurrency: int) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - the worker owns it until it exits
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "backfill",
         "-c", str(concurrency), "--without-gossip", "--without-mingle", "-l", "INFO",
         "-n", f"bench-{uuid.uuid4().hex[:6]}@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while b"ready." not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc, grace_s=0)  # never leave a worker (or its children) behind
            raise SystemExit(
                f"bench.backfill: the worker did not start within 60 s:\n"
                f"{log_path.read_text()[-3000:]}"
            )
        time.sleep(0.1)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


def chunk_window(database_url: str) -> tuple[dict[str, tuple[int, int]], float, int, int]:
    """Per ticker the planned [start, end), the seconds from the first claim to the last
    finish, the chunks and their attempts."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT ticker, (extract(epoch from min(start_time)) * 1000)::bigint,"
            " (extract(epoch from max(end_time)) * 1000)::bigint FROM backfill_chunks"
            " GROUP BY ticker"
        ).fetchall()
        span = conn.execute(
            "SELECT extract(epoch from max(finished_at) - min(started_at)), count(*),"
            " sum(attempts) FROM backfill_chunks"
        ).fetchone()
    assert span is not None
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}, float(span[0]), span[1], span[2]


def verify(database_url: str, market: Market, window: dict[str, tuple[int, int]]) -> dict:
    """Count by key against the simulator's own bars: expected, stored, missing (expected keys
    not stored), unexpected (stored keys not expected); and duplicated: bar deliveries applied
    twice, from the batch ledger (``bench.counting``). The table is unique on its key, so a bar
    written twice is only visible there: every page is one batch whose row count the ledger
    keeps, and a page applied again (a re-fetch under a new attempt) counts its bars again."""
    expected = stored = missing = extra = 0
    with psycopg.connect(database_url) as conn:
        for ticker, (start, end) in window.items():
            want = set(market.minute_bar_arrays(ticker, start, end)["t"].tolist())
            rows = conn.execute(
                "SELECT (extract(epoch from event_time) * 1000)::bigint FROM crypto_aggregates"
                " WHERE ticker = %s AND timeframe = '1m'",
                (ticker,),
            ).fetchall()
            have = {r[0] for r in rows}
            expected += len(want)
            stored += len(have)
            missing += len(want - have)
            extra += len(have - want)
        ledger = conn.execute(
            "SELECT (SELECT coalesce(sum(row_count), 0) FROM ingest_batches WHERE kind = 'bars'),"
            " (SELECT count(*) FROM crypto_aggregates), (SELECT count(*) FROM dead_letters)"
        ).fetchone()
    assert ledger is not None
    delivered, bars_in_table, dead_letters = (int(v) for v in ledger)
    return {
        "bars_expected": expected,
        "bars_stored": stored,
        "bars_missing": missing,
        "bars_unexpected": extra,
        "bars_duplicated": deliveries_applied_twice(delivered, bars_in_table, dead_letters),
        "bars_delivered": delivered,
    }


def apply_batch_rate(
    database_url: str, market: Market, start_ms: int
) -> tuple[float, float, float]:
    """bars/s of one 34-day chunk through ``apply_batch``: fresh rows, then the same again
    (every row an ON CONFLICT update, as when a chunk is re-fetched); and the machine's ceiling
    in the same run, a bare binary COPY of those bars in one transaction (bench.baselines)."""
    columns = market.minute_bar_arrays("X:SOLUSD", start_ms, start_ms + 34 * DAY)
    bars = [
        Bar("X:SOLUSD", "1m", o, h, lo, c, v, vw, n, t, t + 60_000, "simulator")
        for o, h, lo, c, v, vw, t, n in zip(
            *(columns[k].tolist() for k in ("o", "h", "l", "c", "v", "vw", "t", "n")),
            strict=True,
        )
    ]
    store = open_store(database_url)
    rates = []
    for attempt in ("insert", "upsert"):
        started = time.perf_counter()
        store.apply_batch(Batch(f"bench-{attempt}", "bars", bars))
        rates.append(len(bars) / (time.perf_counter() - started))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM crypto_aggregates WHERE ticker = 'X:SOLUSD'")
    store.close()
    return rates[0], rates[1], bare_copy_rows_per_s(database_url, "bars", [bars])


@dataclass(frozen=True)
class Run:
    """One timed ``rrr backfill --months N`` with the rate limit off, into its own schema."""

    figures: dict  # verify()
    stderr: str  # what the command printed
    wall_s: float  # the command, start to exit
    pipeline_s: float  # first chunk claimed -> last chunk done
    chunks: int
    attempts: int
    requests: int  # that the simulator answered
    fetch_s: float  # sums over chunks, from the workers' log
    store_s: float
    sim_cpu_s: float  # CPU of this process (the simulator's threads) during the run
    window: dict[str, tuple[int, int]]

    @property
    def bars_per_s(self) -> float:
        return float(self.figures["bars_stored"]) / self.pipeline_s


def timed_backfill(
    label: str, sim: Simulator, home: Path, redis_url: str, database_url: str, months: int
) -> Run:
    open_store(database_url).migrate()
    env = env_for(home, redis_url, database_url, sim.server.base_url, "off")
    log_path = home / f"worker-{label}.log"
    worker = start_worker(env, log_path, concurrency=2)
    if sim.options.keep_pages:
        sim.prerender(months)
    sim.options.log.reset()
    cpu_started = time.process_time()  # the main thread only waits from here on
    started = time.monotonic()
    command = subprocess.run(
        [sys.executable, "-m", "rrr_cli", "backfill", "--months", str(months)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    wall_s = time.monotonic() - started
    sim_cpu_s = time.process_time() - cpu_started
    stop(worker)
    if command.returncode != 0:
        raise SystemExit(f"rrr backfill failed:\n{command.stderr}")
    window, pipeline_s, chunks, attempts = chunk_window(database_url)
    done = [tuple(map(float, m)) for m in CHUNK_DONE.findall(log_path.read_text())]
    return Run(
        verify(database_url, sim.market, window), command.stderr, wall_s, pipeline_s, chunks,
        attempts, len(sim.options.log.entries()), sum(d[2] for d in done),
        sum(d[3] for d in done), sim_cpu_s, window,
    )  # fmt: skip


@dataclass(frozen=True)
class Simulator:
    market: Market
    options: RestSimOptions
    routes: Routes
    server: SimulatorHTTPServer

    @classmethod
    def start(cls, market: Market, options: RestSimOptions) -> Simulator:
        routes = rest_routes(market, options)
        return cls(market, options, routes, SimulatorHTTPServer(routes).start())

    def prerender(self, months: int) -> int:
        """Render, into the simulator's memory, every page ``rrr backfill --months N`` is about
        to ask for (the same plan, from the same clock), so that the timed run costs the
        simulator almost nothing: in production the vendor renders and gzips on its own
        machines; here the simulator would take that CPU from the pipeline on the same cores.
        A minute turning between this and the command's plan changes each ticker's last
        chunk, which is then rendered live; ``sim_cpu_s`` shows it."""
        second = time.time() % 60
        if second > 50:
            time.sleep(60.5 - second)
        request = request_from_flags(
            list(TICKERS), months=months, start=None, end=None, multiplier=1, timespan="minute",
            now_ms=now_ms(),
        )  # fmt: skip
        handler = self.routes[("GET", AGGS_PREFIX)]
        headers = {"accept-encoding": "gzip", "host": f"127.0.0.1:{self.server.port}"}
        chunks = plan_backfill(request).chunks
        for c in chunks:
            path, _, query = aggs_path(
                c.ticker, c.multiplier, c.timespan, c.start_ms, c.end_ms
            ).partition("?")
            handler(Request("GET", path, parse_qs(query), headers, b""))
        return len(chunks)


def main() -> None:
    args = parse_args(__doc__ or "")
    months = 1 if args.quick else 6
    eta_requests = 3 if args.quick else 5
    market = Market(seed=42, tickers=TICKERS)
    sim = Simulator.start(market, RestSimOptions(keep_pages=True))
    live_sim = Simulator.start(market, RestSimOptions())
    home = Path(tempfile.mkdtemp(prefix="rrr-bench-backfill-"))
    redis_proc, redis_url = start_embedded_redis(home / "redis")
    try:
        with postgres_schema("bench_backfill_live") as database_url:
            live = timed_backfill("live", live_sim, home, redis_url, database_url, months)
        with postgres_schema("bench_backfill") as database_url:
            run = timed_backfill("off", sim, home, redis_url, database_url, months)
            insert_rate, upsert_rate, bare_rate = apply_batch_rate(
                database_url, market, min(s for s, _ in run.window.values())
            )

            # The ETA run: a limit of 5/min, one request per chunk (1-day chunks).
            eta_env = env_for(home, redis_url, database_url, sim.server.base_url, "5/min")
            first = (time.time_ns() // 1_000_000 // DAY - 400) * DAY  # outside the run above
            request = BackfillRequest(("X:BTCUSD",), first, first + eta_requests * DAY, 1, "minute")
            plan = plan_backfill(request, max_base_bars=1440)
            per_request_s = run.pipeline_s / max(1, run.chunks) if run.chunks else 0.5
            predicted_s = estimate_duration_s(
                len(plan.chunks), Rate(5, 60.0), request_s=per_request_s
            )
            worker = start_worker(eta_env, home / "worker-5min.log", concurrency=2)
            producer = Celery("bench", broker=redis_url)
            eta_started = time.monotonic()
            producer.send_task(
                "tasks.backfill.plan_backfill",
                kwargs={"tickers": list(request.tickers), "start_ms": request.start_ms,
                        "end_ms": request.end_ms, "max_base_bars": 1440},
                queue="backfill",
            )  # fmt: skip
            store = open_store(database_url)
            deadline = time.monotonic() + predicted_s * 2 + 30
            while not store.chunk_progress(plan.plan_id).finished:
                if time.monotonic() > deadline:
                    raise SystemExit("the rate-limited run did not finish in twice its ETA")
                time.sleep(0.2)
            measured_s = time.monotonic() - eta_started
            store.close()
            producer.close()
            stop(worker)
    finally:
        sim.server.stop()
        live_sim.server.stop()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)

    figures = run.figures
    stored = figures["bars_stored"]
    print("\n".join(run.stderr.strip().splitlines()[-3:]))  # what the user saw at the end
    print_table(
        f"rrr backfill --months {months}: {len(TICKERS)} pairs of 1-minute bars into PostgreSQL",
        ["figure", "value"],
        [
            ["bars expected / stored",
             f"{figures['bars_expected']:,} / {stored:,}"],
            ["bars delivered (batch ledger)", f"{figures['bars_delivered']:,}"],
            ["missing / duplicated / unexpected",
             f"{figures['bars_missing']} / {figures['bars_duplicated']} / "
             f"{figures['bars_unexpected']}"],
            ["chunks / requests / attempts", f"{run.chunks} / {run.requests} / {run.attempts}"],
            ["command wall time (s)", f"{run.wall_s:.1f}"],
            ["first claim -> last chunk done (s)", f"{run.pipeline_s:.2f}"],
            ["bars/s into PostgreSQL (end to end)", f"{run.bars_per_s:,.0f}"],
            ["simulator CPU in the run (s; pages rendered before it)", f"{run.sim_cpu_s:.2f}"],
            ["pages rendered live, on the same cores: bars/s",
             f"{live.bars_per_s:,.0f}"],
            ["  simulator CPU (s) / missing / duplicated",
             f"{live.sim_cpu_s:.2f} / {live.figures['bars_missing']} / "
             f"{live.figures['bars_duplicated']}"],
            ["per chunk: fetch s (sum) / store s (sum)", f"{run.fetch_s:.1f} / {run.store_s:.1f}"],
            ["bars/s of fetch+parse / of store (per process)",
             f"{stored / max(run.fetch_s, 1e-9):,.0f} / {stored / max(run.store_s, 1e-9):,.0f}"],
            ["apply_batch alone, 48,960 bars: insert / upsert bars/s",
             f"{insert_rate:,.0f} / {upsert_rate:,.0f}"],
            ["bare binary COPY of those bars (the ceiling, same run): bars/s",
             f"{bare_rate:,.0f}"],
            ["end to end / bare COPY", f"{run.bars_per_s / bare_rate:.3f}"],
            [f"5/min, {len(plan.chunks)} requests: ETA predicted / measured (s)",
             f"{predicted_s:.1f} / {measured_s:.1f}"],
            ["cores", str(os.cpu_count())],
        ],
    )  # fmt: skip
    print_figures(
        {
            **figures,
            "postgres_bars_per_s": round(run.bars_per_s),
            "wall_s": round(run.wall_s, 2),
            "pipeline_s": round(run.pipeline_s, 2),
            "sim_cpu_s": round(run.sim_cpu_s, 2),
            "sim_live_postgres_bars_per_s": round(live.bars_per_s),
            "sim_live_pipeline_s": round(live.pipeline_s, 2),
            "sim_live_sim_cpu_s": round(live.sim_cpu_s, 2),
            "sim_live_bars_missing": live.figures["bars_missing"],
            "sim_live_bars_duplicated": live.figures["bars_duplicated"],
            "months": months,
            "chunks": run.chunks,
            "requests": run.requests,
            "fetch_s_sum": round(run.fetch_s, 2),
            "store_s_sum": round(run.store_s, 2),
            "apply_batch_insert_bars_per_s": round(insert_rate),
            "apply_batch_upsert_bars_per_s": round(upsert_rate),
            "bare_copy_bars_per_s": round(bare_rate),
            "backfill_vs_bare_copy_ratio": round(run.bars_per_s / bare_rate, 3),
            "eta_requests": len(plan.chunks),
            "eta_predicted_s": round(predicted_s, 1),
            "eta_measured_s": round(measured_s, 1),
            "eta_error_pct": round(100 * (measured_s - predicted_s) / predicted_s, 1),
            "worker_processes": 2,
            "cores": os.cpu_count(),
            "quick": bool(args.quick),
        }
    )


if __name__ == "__main__":
    main()
