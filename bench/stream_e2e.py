"""End to end for ``bench.stream``: simulator -> ``rrr stream`` -> Redis -> Celery worker ->
PostgreSQL, each its own process, as in production.

- Every throughput run gets a clean pipeline (``Pipeline``): its own PostgreSQL schema, Redis
  database, ``RRR_HOME`` (the stream worker's journal) and Celery worker, so nothing an earlier
  run left behind can land in a later one's tables, or hide its losses.
- Throughput: the simulator's load mode sends N events (ground truth recorded to a file). Once
  the stream worker has sent them, the run waits until the pipeline is drained (Redis queues and
  unacked messages empty, stored count still for ``QUIET_S``), at most ``DRAIN_TIMEOUT_S``; a
  run that does not drain says so. Then it counts by key (``bench.counting``): lost = ground-truth
  keys not stored (trades by id, quotes by their whole state, as the stores key them),
  duplicated = deliveries applied twice (from the batch ledger). The rate is N / (first event
  sent -> last row inserted).
- Burst: as fast as the simulator sends, at one event per frame (the worst case: every event
  costs a WebSocket frame on both sides), and again at ``FEED_PER_FRAME`` events per frame,
  the feed's shape when it is busy (the vendor sends arrays of events; specs/polygon-massive.md).
  Sustained (full run only): at ``FEED_PER_FRAME`` events per frame, paced at that burst's rate
  for 60 s, then 20% slower, up to three tries; the sustained figure is the fastest paced run
  that kept up (nothing lost or duplicated, drained, done within ``SUSTAIN_SLACK_S`` of its
  60 s), or none. Every run is printed.
- Latency: in the burst's pipeline once that run is counted, the normal (paced) simulator at
  2,000 events/s; per row, exchange time ``t`` -> ``created_at`` (PostgreSQL's ``now()`` of
  the inserting transaction, so the commit itself, a few ms, is not counted).
- Peak RSS (VmHWM) of the stream worker, the Celery worker (largest process) and simulator.
- CPU per run (bench.baselines.cpu_seconds, from /proc): user + system seconds of the stream
  worker (its whole life, start-up included), the Celery worker and its pool, the Redis server
  and the PostgreSQL server (every backend, the background writers, autovacuum), from just
  before the simulator starts to the pipeline drained; ``cpu_seconds_per_million_ticks`` is
  their sum over the events. The simulator plays the vendor: its CPU is shown, not counted.
- The machine's ceiling in the same run: a bare binary COPY of 100,000 trades at batch 1,000
  (bench.baselines); ``e2e_vs_bare_copy_ratio`` is the end-to-end rate over it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench.baselines import bare_copy_rows_per_s, cpu_seconds, postgres_server_pids
from bench.common import peak_rss_mb, postgres_schema, print_table
from bench.counting import (
    count_keys,
    deliveries_applied_twice,
    key_array,
    quote_key,
    record_key,
    trade_key,
)
from bench.stream_faults import Planted, plant_faults
from rrr.models import Quote, Trade
from rrr.simulator.truth import event_to_record, load_record
from rrr.storage import open_store
from rrr_cli.supervisor import stop_process

ROOT = Path(__file__).resolve().parent.parent
Proc = subprocess.Popen[bytes]
Start = Callable[..., tuple[Proc, str]]
Stop = Callable[[Proc], None]

CONSUMED_QUEUES = ("ingest", "default")
CELERY_START_TIMEOUT_S = 60  # Celery's start-up on a busy 2-core box
DRAIN_TIMEOUT_S = 120  # after the stream worker exits; a pipeline still busy then is reported
QUIET_S = 1.0  # queues empty, nothing unacked (acked = committed) and no new row: drained
SUSTAIN_S = 60
SUSTAIN_SLACK_S = 5  # a paced run that ends later than this after its 60 s fell behind
BARE_ROWS, BARE_BATCH = 100_000, 1_000  # the bare COPY baseline
FEED_PER_FRAME = 10  # the second burst's and the sustained runs' events per frame
POOL_EVENTS = 65_536  # distinct quotes in the load pool (bench.stream_sim); built at subscribe
PIPELINE_CPU = ("stream", "celery", "redis", "postgres")  # what cpu_seconds_per_million counts


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


def log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def start_celery(home: Path, env: dict[str, str], concurrency: int) -> Proc:
    proc = spawn(
        home,
        "celery",
        [
            *("-m", "celery", "-A", "tasks", "worker", "-Q", ",".join(CONSUMED_QUEUES)),
            *("-c", str(concurrency), "--without-gossip", "--without-mingle", "-l", "INFO"),
            *("-n", f"b{uuid.uuid4().hex[:6]}@%h"),
        ],
        env,
    )
    deadline = time.monotonic() + CELERY_START_TIMEOUT_S
    while b"ready." not in (home / "celery.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc, grace_s=0)  # never leave a worker (or its children) behind
            raise SystemExit(
                f"bench.stream: the Celery worker did not start within {CELERY_START_TIMEOUT_S} s;"
                f" its log:\n{log_tail(home / 'celery.log')}"
            )
        time.sleep(0.1)
    return proc


class RssWatch:
    def __init__(self, **procs: Proc) -> None:
        self.procs = procs
        self.peaks = dict.fromkeys(procs, 0.0)

    def sample(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self.peaks[name] = max(self.peaks[name], peak_rss_mb(proc.pid))


@dataclass
class Pipeline:
    """A clean schema, Redis database and home, and a Celery worker on them."""

    home: Path
    env: dict[str, str]
    db_url: str
    redis_url: str
    celery: Proc
    celery_rss_mb: float = 0.0
    rss: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def pipeline(home: Path, redis_base_url: str, redis_db: int, label: str) -> Iterator[Pipeline]:
    run_home = home / f"e2e-{label}"
    run_home.mkdir()
    redis_url = f"{redis_base_url.rsplit('/', 1)[0]}/{redis_db}"
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # nothing queued, no last-seen ticks that would ask for a repair
    client.close()
    with postgres_schema(f"bench_stream_{label}") as db_url:
        store = open_store(db_url)
        store.migrate()
        store.close()
        env = {
            "RRR_HOME": str(run_home),
            "REDIS_URL": redis_url,
            "DATABASE_URL": db_url,
            "LOG_LEVEL": "WARNING",
        }
        celery = start_celery(run_home, {**env, "LOG_LEVEL": "INFO"}, concurrency=2)  # "ready."
        p = Pipeline(run_home, env, db_url, redis_url, celery)
        try:
            yield p
        finally:
            p.celery_rss_mb = peak_rss_mb(celery.pid)
            stop_process(celery)


def applied_rows(db_url: str) -> int:
    """Rows of the batches applied so far, from the batch ledger: a few hundred rows to sum,
    where counting the tick tables would cost PostgreSQL CPU that the run's figure counts."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT coalesce(sum(row_count), 0) FROM ingest_batches").fetchone()
    return int(row[0]) if row else 0


def queued_messages(redis_url: str) -> int:
    """Messages waiting in a queue the pipeline's worker consumes, or taken but not yet acked
    (kombu's ``unacked`` hash). Not ``backfill``: a restarted stream worker asks there for a
    repair of the time since the previous run, which no run here waits for."""
    client = redis.Redis.from_url(redis_url)
    try:
        waiting = sum(int(client.llen(queue)) for queue in CONSUMED_QUEUES)
        return waiting + int(client.hlen("unacked"))
    finally:
        client.close()


def wait_drained(p: Pipeline, watch: RssWatch) -> tuple[bool, float]:
    """Until nothing is queued or unacked and no row has arrived for ``QUIET_S``, at most
    ``DRAIN_TIMEOUT_S``. Returns (drained, seconds waited)."""
    started = time.monotonic()
    last, last_change = -1, started
    while time.monotonic() - started < DRAIN_TIMEOUT_S:
        watch.sample()
        n, now = applied_rows(p.db_url), time.monotonic()
        if n != last:
            last, last_change = n, now
        elif now - last_change >= QUIET_S and queued_messages(p.redis_url) == 0:
            return True, now - started
        time.sleep(0.25)
    return False, time.monotonic() - started


def truth_keys(record: Path) -> tuple[Any, float]:
    """(one key per event sent, wall time of the first event in s). One segment is expanded at
    a time and only a hash per row is kept, so millions fit."""
    keys: list[int] = []
    first_ms = float("inf")
    for segments in load_record(record).by_connection.values():
        for segment in segments:
            for e in segment.events():
                first_ms = min(first_ms, e["t"])
                row = event_to_record(e)
                if isinstance(row, Trade | Quote):  # the load mode sends nothing else
                    keys.append(record_key(row))
    return key_array(keys), first_ms / 1000


def stored_keys(db_url: str) -> Any:
    """One key per stored trade and quote, read with a server-side cursor."""
    keys: list[int] = []
    with psycopg.connect(db_url) as conn:
        with conn.cursor(name="trades") as cur:
            cur.itersize = 50_000
            cur.execute("SELECT ticker, exchange_id, trade_id FROM crypto_trades")
            keys.extend(trade_key(*r) for r in cur)
        with conn.cursor(name="quotes") as cur:
            cur.itersize = 50_000
            cur.execute(
                "SELECT ticker, exchange_id, (extract(epoch FROM event_time) * 1000)::bigint,"
                " bid_price::float8, bid_size::float8, ask_price::float8, ask_size::float8"
                " FROM crypto_quotes"
            )
            keys.extend(quote_key(*r) for r in cur)
    return key_array(keys)


def ledger(db_url: str) -> tuple[int, int, float]:
    """(rows in applied batches, dead letters, epoch s of the last row inserted)."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(row_count), 0) FROM ingest_batches),"
            " (SELECT count(*) FROM dead_letters),"
            " extract(epoch FROM greatest((SELECT max(created_at) FROM crypto_trades),"
            "  (SELECT max(created_at) FROM crypto_quotes)))"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), float(row[2] or 0)


def exited(proc: Proc) -> bool:
    """Whether the process has exited, without reaping it: until it is reaped, /proc still
    shows what it spent."""
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def throughput_run(
    p: Pipeline,
    events: int,
    rate: float,
    start: Start,
    stop: Stop,
    inject_faults: bool,
    stream_env: dict[str, str] | None = None,
    redis_pid: int | None = None,
    per_frame: int = 1,
) -> dict[str, Any]:
    record = p.home / "truth.jsonl"

    def cpu_now() -> dict[str, float]:
        return {
            "celery": cpu_seconds([p.celery.pid]),
            "redis": cpu_seconds([redis_pid] if redis_pid else []),
            "postgres": cpu_seconds(postgres_server_pids()),
        }

    cpu_before = cpu_now()
    sim, url = start(
        p.home,
        *(
            "--load-events",
            str(events),
            "--load-rate",
            str(rate),
            "--events-per-frame",
            str(per_frame),
        ),
        *("--pool-frames", str(POOL_EVENTS // per_frame), "--record", str(record)),
    )
    stream = spawn(
        p.home,
        "stream",
        ["-m", "rrr_cli", "stream", "--max-messages", str(events)],
        {**p.env, "POLYGON_WS_URL": url, **(stream_env or {})},
    )
    watch = RssWatch(stream=stream, simulator=sim)
    planted: Planted | None = None
    cpu: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 600
        while not exited(stream) and time.monotonic() < deadline:  # exits after N events
            watch.sample()
            if inject_faults and planted is None:
                planted = plant_faults(p.redis_url)
            time.sleep(0.2)
        cpu["stream"] = cpu_seconds([stream.pid])
        cpu["simulator"] = cpu_seconds([sim.pid])
    finally:
        stop(stream)
        stop(sim)  # flushes the ground truth
    if inject_faults and planted is None:
        raise SystemExit("bench.stream --inject-faults: never two batches queued to plant on")
    truth, first_s = truth_keys(record)
    if len(truth) == 0:
        raise SystemExit(
            "bench.stream: the simulator sent nothing; the stream worker's log:\n"
            + log_tail(p.home / "stream.log")
        )
    drained, drain_s = wait_drained(p, watch)
    cpu |= {name: spent - cpu_before[name] for name, spent in cpu_now().items()}
    counted = count_keys(truth, stored_keys(p.db_url))
    if counted.stored == 0:
        raise SystemExit(
            "bench.stream: nothing reached PostgreSQL; the Celery worker's log:\n"
            + log_tail(p.home / "celery.log")
        )
    delivered, dead_letters, last_insert_s = ledger(p.db_url)
    seconds = last_insert_s - first_s
    return {
        "offered_rate": rate,
        "events": counted.sent,
        "stream_exit": stream.returncode,
        "lost": counted.lost,
        "duplicated": deliveries_applied_twice(
            delivered, counted.stored, dead_letters, counted.repeats_sent
        ),
        "unexpected": counted.unexpected,
        "dead_letters": dead_letters,
        "drained": drained,
        "drain_wait_s": drain_s,
        "rate": counted.sent / seconds,
        "seconds": seconds,
        "rss": watch.peaks,
        "planted": planted,
        "cpu": cpu,
        "cpu_per_million": sum(cpu[n] for n in PIPELINE_CPU) / counted.sent * 1e6,
    }


def latency_run(
    p: Pipeline, batch_max_age_ms: int | None, seconds: float, start: Start, stop: Stop
) -> tuple[float, float]:
    since_ms = int(time.time() * 1000)
    sim, url = start(p.home, "--rate", "2000", "--events-per-frame", "1")
    env = {**p.env, "POLYGON_WS_URL": url}
    if batch_max_age_ms is not None:
        env["RRR_BATCH_MAX_AGE_MS"] = str(batch_max_age_ms)
    stream = spawn(
        p.home, "stream-latency", ["-m", "rrr_cli", "stream", "--max-seconds", str(seconds)], env
    )
    watch = RssWatch(stream=stream)
    try:
        while stream.poll() is None:
            watch.sample()
            time.sleep(0.25)
    finally:
        stop(stream)
        stop(sim)
    wait_drained(p, watch)  # the last batches commit, and the next run starts from quiet
    p.rss["stream"] = max(p.rss.get("stream", 0.0), watch.peaks["stream"])
    with psycopg.connect(p.db_url) as conn:
        row = conn.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY lag), count(*)"
            " FROM (SELECT extract(epoch FROM created_at - event_time) * 1000 AS lag"
            "  FROM crypto_trades WHERE event_time >= to_timestamp(%s / 1000.0)"
            "  UNION ALL SELECT extract(epoch FROM created_at - event_time) * 1000"
            "  FROM crypto_quotes WHERE event_time >= to_timestamp(%s / 1000.0)) AS lags",
            (since_ms, since_ms),
        ).fetchone()
    assert row is not None
    (p50, p99), rows = row
    if not rows:
        raise SystemExit(
            "bench.stream: the latency run stored nothing; the stream worker's log:\n"
            + log_tail(p.home / "stream-latency.log")
        )
    return float(p50), float(p99)


def kept_up(run: dict[str, Any]) -> bool:
    return (
        run["lost"] == 0
        and run["duplicated"] == 0
        and run["drained"]
        and run["seconds"] <= SUSTAIN_S + SUSTAIN_SLACK_S
    )


def bare_copy_baseline() -> float:
    """Rows/s of a bare binary COPY of trades at batch 1,000 (bench.baselines), in a schema of
    its own: the ceiling the end-to-end rate is compared with, measured in the same run."""
    from bench.store import make_batches

    batches = [b.rows for b in make_batches(BARE_BATCH, BARE_ROWS)]
    with postgres_schema("bench_stream_bare") as url:
        return bare_copy_rows_per_s(url, "trades", batches)


def end_to_end(
    home: Path,
    redis_url: str,
    quick: bool,
    start: Start,
    stop: Stop,
    inject_faults: bool = False,
    redis_pid: int | None = None,
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    labels: list[str] = []
    celery_rss: list[float] = []
    redis_dbs = iter(range(2, 16))  # 0: the embedded server's default, 1: bench.stream's own

    def run_in_own_pipeline(
        label: str,
        events: int,
        rate: float,
        then: Callable[[Pipeline], None] | None = None,
        stream_env: dict[str, str] | None = None,
        per_frame: int = 1,
    ) -> dict[str, Any]:
        with pipeline(home, redis_url, next(redis_dbs), label) as p:
            plant = inject_faults and not runs
            run = throughput_run(
                p, events, rate, start, stop, plant, stream_env, redis_pid, per_frame
            )
            if then is not None:
                then(p)
        run["per_frame"] = per_frame
        celery_rss.append(p.celery_rss_mb)
        runs.append(run)
        labels.append(label)
        return run

    # Settings' batch age first (the figure), then (full run) shorter ones to choose the default.
    latencies: dict[int | None, tuple[float, float]] = {}
    stream_rss_latency: list[float] = []

    def latency_runs(p: Pipeline) -> None:
        """In the burst's pipeline once that run is counted: the rows it adds come after."""
        for age_ms in (None,) if quick else (None, 20, 10):
            latencies[age_ms] = latency_run(p, age_ms, 5 if quick else 30, start, stop)
        stream_rss_latency.append(p.rss.get("stream", 0.0))

    bare_copy = bare_copy_baseline()
    burst_events = 40_000 if quick else 500_000
    burst = run_in_own_pipeline("burst", burst_events, 0, then=latency_runs)
    # The same burst with the stream worker's journal off (RRR_JOURNAL=off, benchmarks only):
    # what keeping every batch on disk until it is stored costs, measured in the same run.
    no_journal = run_in_own_pipeline(
        "burst-no-journal", burst_events, 0, stream_env={"RRR_JOURNAL": "off"}
    )
    feed_burst = run_in_own_pipeline(
        f"burst-{FEED_PER_FRAME}-per-frame", burst_events, 0, per_frame=FEED_PER_FRAME
    )
    if not quick:  # hold that burst's rate for 60 s; slower until a run keeps up
        rate = int(feed_burst["rate"] // 1000 * 1000)
        for attempt in range(3):
            run = run_in_own_pipeline(
                f"paced{attempt}", rate * SUSTAIN_S, rate, per_frame=FEED_PER_FRAME
            )
            if kept_up(run):
                break
            rate = int(rate * 0.8 // 1000 * 1000)

    print_table(
        "End to end: simulator -> rrr stream -> Redis -> Celery (2 processes) -> PostgreSQL,"
        " each run in a clean schema and Redis database (dup: deliveries applied twice;"
        " stray: stored rows the ground truth does not hold)",
        ["run", "per frame", "offered/s", "events", "s", "events/s", "lost", "dup", "stray",
         "drained", "kept up"],
        [[label, r["per_frame"], r["offered_rate"] or "max", r["events"], round(r["seconds"], 1),
          r["rate"], r["lost"], r["duplicated"], r["unexpected"],
          "yes" if r["drained"] else f"no ({DRAIN_TIMEOUT_S} s)",
          "" if label.startswith("burst") else ("yes" if kept_up(r) else "no")]
         for label, r in zip(labels, runs, strict=True)],
    )  # fmt: skip
    print_table(
        "CPU seconds per million ticks, by process (user + system, /proc; the simulator plays"
        " the vendor and is not counted in the total)",
        ["run", *PIPELINE_CPU, "total", "simulator"],
        [[label, *(round(r["cpu"][n] / r["events"] * 1e6, 2) for n in PIPELINE_CPU),
          round(r["cpu_per_million"], 2), round(r["cpu"]["simulator"] / r["events"] * 1e6, 2)]
         for label, r in zip(labels, runs, strict=True)],
    )  # fmt: skip
    planted: Planted | None = burst["planted"]
    if planted is not None:
        print(
            f"Faults planted in the burst run: a batch of {planted.dropped_rows} rows dropped"
            f" from the queue (expect lost = {planted.dropped_rows}), a batch of"
            f" {planted.doubled_rows} rows delivered twice (expect duplicated ="
            f" {planted.doubled_rows}); counted: lost {burst['lost']}, duplicated"
            f" {burst['duplicated']}."
        )
    stream_rss = max([r["rss"]["stream"] for r in runs] + stream_rss_latency)
    print_table(
        "Latency at 2,000 events/s: exchange time -> row inserted, by batch max age",
        ["batch max age", "p50 ms", "p99 ms"],
        [[f"{age} ms" if age else "Settings default", round(a, 1), round(b, 1)]
         for age, (a, b) in latencies.items()],
    )  # fmt: skip
    print_table(
        "Peak RSS (VmHWM)",
        ["stream worker MB", "celery worker MB (largest process)", "simulator MB"],
        [[round(stream_rss, 1), round(max(celery_rss), 1),
          round(max(r["rss"]["simulator"] for r in runs), 1)]],
    )  # fmt: skip
    sustained = [r for label, r in zip(labels, runs, strict=True) if label.startswith("paced")]
    best = max((r for r in sustained if kept_up(r)), key=lambda r: r["rate"], default=None)
    figures: dict[str, Any] = {
        "e2e_burst_ticks_per_s": round(burst["rate"]),
        "e2e_burst_events": burst["events"],
        "e2e_burst_lost": burst["lost"],
        "e2e_burst_duplicated": burst["duplicated"],
        "e2e_burst_drained": burst["drained"],
        "e2e_no_journal_ticks_per_s": round(no_journal["rate"]),
        "e2e_journal_cost_ratio": round(burst["rate"] / no_journal["rate"], 3),
        "bare_copy_rows_per_s_batch_1000": round(bare_copy),
        "e2e_vs_bare_copy_ratio": round(burst["rate"] / bare_copy, 3),
        "cpu_seconds_per_million_ticks": round(burst["cpu_per_million"], 2),
        **{f"cpu_seconds_per_million_{n}": round(burst["cpu"][n] / burst["events"] * 1e6, 2)
           for n in (*PIPELINE_CPU, "simulator")},
        f"e2e_burst_{FEED_PER_FRAME}_per_frame_ticks_per_s": round(feed_burst["rate"]),
        f"e2e_burst_{FEED_PER_FRAME}_per_frame_vs_bare_copy_ratio":
            round(feed_burst["rate"] / bare_copy, 3),
        f"cpu_seconds_per_million_ticks_{FEED_PER_FRAME}_per_frame":
            round(feed_burst["cpu_per_million"], 2),
    }  # fmt: skip
    if not quick:
        figures["e2e_sustained_events_per_frame"] = FEED_PER_FRAME
        figures["e2e_sustained_60s_ticks_per_s"] = round(best["rate"]) if best else None
        figures["e2e_sustained_60s_offered_per_s"] = best["offered_rate"] if best else None
        if best:  # the long run's figures: start-up costs weigh least there
            figures["e2e_sustained_vs_bare_copy_ratio"] = round(best["rate"] / bare_copy, 3)
            figures["cpu_seconds_per_million_ticks_sustained"] = round(best["cpu_per_million"], 2)
    figures["e2e_lost"] = sum(r["lost"] for r in runs)  # each >= 0: nothing cancels
    figures["e2e_duplicated"] = sum(r["duplicated"] for r in runs)
    figures["e2e_unexpected"] = sum(r["unexpected"] for r in runs)
    if planted is not None:
        figures["planted_dropped_rows"] = planted.dropped_rows
        figures["planted_doubled_rows"] = planted.doubled_rows
    figures["p50_latency_ms_at_2000"] = round(latencies[None][0], 1)
    figures["p99_latency_ms_at_2000"] = round(latencies[None][1], 1)
    if 20 in latencies:
        figures["p99_latency_ms_at_2000_batch_age_20ms"] = round(latencies[20][1], 1)
    figures["stream_worker_peak_rss_mb"] = round(stream_rss, 1)
    figures["celery_worker_peak_rss_mb"] = round(max(celery_rss), 1)
    return figures
