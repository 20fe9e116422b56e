"""Backfill through real Celery workers, real Redis and a real database, from the simulator's
REST endpoint: pages and injected failures, a SIGKILLed worker and a re-run, the shared rate
limit across worker processes, and repair_gap sent by name."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator

import pytest
from celery import Celery

from rrr.backfill.plan import BackfillRequest, Plan, plan_backfill
from rrr.simulator.http import SimulatorHTTPServer
from rrr.simulator.market import Market
from rrr.simulator.rest import RestSimOptions, rest_routes
from rrr.storage import Store, open_store
from tests.conftest import short_visibility, wait_drained
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]

DAY, HOUR, MINUTE = 86_400_000, 3_600_000, 60_000
TICKERS = ("X:BTCUSD", "X:ETHUSD")
DAY0 = (time.time_ns() // 1_000_000 // DAY - 12) * DAY  # a whole UTC day, 12 days ago


@pytest.fixture
def market() -> Market:
    return Market(seed=11, tickers=TICKERS, quiet_ratio=0.02)


@pytest.fixture
def simulator(market: Market) -> Iterator[Callable[..., tuple[str, RestSimOptions]]]:
    """simulator(**RestSimOptions) -> (base URL, options) of a REST simulator on 127.0.0.1."""
    servers: list[SimulatorHTTPServer] = []

    def start(**options: object) -> tuple[str, RestSimOptions]:
        opts = RestSimOptions(**options)  # type: ignore[arg-type]
        servers.append(SimulatorHTTPServer(rest_routes(market, opts)).start())
        return servers[-1].base_url, opts

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def producer(redis_url: str) -> Iterator[Celery]:
    """Like the stream worker: a Celery app that only knows the broker (and results)."""
    app = Celery("producer", broker=redis_url, backend=redis_url)
    yield app
    app.close()


def migrated(url: str) -> Store:
    store = open_store(url)
    store.migrate()
    return store


def the_plan(hours: int, max_base_bars: int, start_ms: int = DAY0) -> Plan:
    request = BackfillRequest(TICKERS, start_ms, start_ms + hours * HOUR, 1, "minute")
    return plan_backfill(request, max_base_bars)


def send_plan(producer: Celery, plan: Plan) -> None:
    r = plan.request
    producer.send_task(
        "tasks.backfill.plan_backfill",
        kwargs={
            "tickers": list(r.tickers),
            "start_ms": r.start_ms,
            "end_ms": r.end_ms,
            "multiplier": r.multiplier,
            "timespan": r.timespan,
            "max_base_bars": plan.chunk_span_ms // MINUTE,
        },
        queue="backfill",
    )


def expected_bars(market: Market, plan: Plan) -> int:
    r = plan.request
    return sum(market.expected_bar_count(t, r.start_ms, r.end_ms) for t in r.tickers)


def assert_complete(store: Store, market: Market, plan: Plan) -> None:
    progress = store.chunk_progress(plan.plan_id)
    assert progress.counts == {"done": len(plan.chunks)}
    expected = expected_bars(market, plan)
    assert store.count_rows("crypto_aggregates") == expected  # every bar, none twice
    assert progress.bars_stored == expected  # and each chunk counted its own once
    r = plan.request
    for ticker in r.tickers:
        bars = store.read_bars(ticker, r.start_ms, r.end_ms)
        want = market.minute_bars(ticker, r.start_ms, r.end_ms)
        assert list(bars["start_ms"]) == [w["t"] for w in want]
        assert list(bars["close"]) == [w["c"] for w in want]


def chunk_path(chunk: object) -> str:
    c = chunk  # a Chunk: its first request, as the client sends it
    return f"/v2/aggs/ticker/{c.ticker}/range/1/minute/{c.start_ms}/{c.end_ms - 1}"  # type: ignore[attr-defined]


def test_pages_429s_and_500s_end_with_every_bar_once(
    pg_url: str,
    market: Market,
    simulator: Callable[..., tuple[str, RestSimOptions]],
    start_worker: Callable[..., object],
    producer: Celery,
) -> None:
    store = migrated(pg_url)
    url, sim = simulator(page_size=400, fail_every=4, fail_requests={2: 429}, retry_after_s=0.3)
    start_worker(pg_url, queues="backfill", POLYGON_REST_URL=url, POLYGON_RATE_LIMIT="off")
    plan = the_plan(hours=24, max_base_bars=720)  # 12 h chunks, 2 pages each
    assert len(plan.chunks) == 4
    send_plan(producer, plan)
    wait_for(lambda: store.chunk_progress(plan.plan_id).finished, 60, "the backfill")
    assert_complete(store, market, plan)
    statuses = [e.status for e in sim.log.entries()]
    assert statuses.count(200) == 8 and 429 in statuses and 500 in statuses
    store.close()


def test_sigkill_mid_backfill_then_rerun_finishes_exactly_without_refetching(
    pg_url: str,
    redis_url: str,
    market: Market,
    simulator: Callable[..., tuple[str, RestSimOptions]],
    start_worker: Callable[..., object],
    producer: Celery,
) -> None:
    store = migrated(pg_url)
    url, sim = simulator()
    # A short visibility timeout is a short lease: the killed worker's claim expires in 8 s.
    env = {"POLYGON_REST_URL": url, "POLYGON_RATE_LIMIT": "8/s", **short_visibility(8)}
    worker = start_worker(pg_url, queues="backfill", **env)
    plan = the_plan(hours=18, max_base_bars=60)  # 36 one-hour chunks, one request each
    send_plan(producer, plan)
    wait_for(lambda: store.chunk_progress(plan.plan_id).done >= 8, 60, "8 chunks done")
    os.killpg(worker.proc.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    worker.proc.wait(timeout=10)  # type: ignore[attr-defined]
    not_done = set(store.chunks_not_done(plan.plan_id))
    done_before = [c for c in plan.chunks if c.chunk_id not in not_done]
    assert 8 <= len(done_before) < len(plan.chunks), "the kill came too late"
    # Killed inside a task or between two (a rate-limited task no longer waits in the limiter:
    # it retries with a countdown): a claim may be left behind that no one renews, and the
    # re-run must then take it over once its lease runs out.
    assert store.chunk_progress(plan.plan_id).counts.get("running", 0) <= 1

    start_worker(pg_url, queues="backfill", **env)
    send_plan(producer, plan)  # the same command again
    wait_for(lambda: store.chunk_progress(plan.plan_id).finished, 90, "the re-run")
    assert_complete(store, market, plan)
    fetched = [e.path for e in sim.log.entries() if e.status == 200]
    for chunk in done_before:
        assert fetched.count(chunk_path(chunk)) == 1, f"done chunk {chunk} fetched again"
    assert len(fetched) <= len(plan.chunks) + 2  # at most the in-flight chunk(s) twice
    # The killed worker's message comes back after the visibility timeout and must be a no-op.
    wait_drained(redis_url, 60)
    assert_complete(store, market, plan)
    store.close()


def test_worker_processes_never_exceed_the_shared_rate_limit(
    sqlite_url: str,
    market: Market,
    simulator: Callable[..., tuple[str, RestSimOptions]],
    start_worker: Callable[..., object],
    producer: Celery,
) -> None:
    store = migrated(sqlite_url)
    per_second = 10
    url, sim = simulator(page_size=30)  # two requests per one-hour chunk
    env = {"POLYGON_REST_URL": url, "POLYGON_RATE_LIMIT": f"{per_second}/s"}
    workers = [
        start_worker(sqlite_url, queues="backfill", concurrency=2, **env),
        start_worker(sqlite_url, queues="backfill", concurrency=1, **env),
    ]  # three worker processes on two worker instances
    plan = the_plan(hours=12, max_base_bars=60)
    send_plan(producer, plan)
    started = time.monotonic()
    wait_for(lambda: store.chunk_progress(plan.plan_id).finished, 60, "the backfill")
    assert_complete(store, market, plan)
    requests = len(sim.log.entries())
    assert requests == 2 * len(plan.chunks) == 48
    # The bucket holds 1 token (the burst): at most 10 + 1 arrivals in any one second.
    assert sim.log.max_in_window(1.0) <= per_second + 1
    assert time.monotonic() - started >= (requests - 1) / per_second - 0.5
    processes = set()
    for w in workers:
        processes |= {
            (w.log_path, m)
            for m in re.findall(r"(ForkPoolWorker-\d+) tasks.backfill: chunk", w.log())  # type: ignore[attr-defined]
        }
    assert len(processes) >= 2, "the work was not spread over processes"
    store.close()


def test_repair_gap_by_name_fills_the_hole_and_records_one_event(
    pg_url: str,
    market: Market,
    simulator: Callable[..., tuple[str, RestSimOptions]],
    start_worker: Callable[..., object],
    producer: Celery,
) -> None:
    from rrr.models import Bar, Batch

    store = migrated(pg_url)
    url, _ = simulator()
    start_worker(pg_url, queues="backfill", POLYGON_REST_URL=url, POLYGON_RATE_LIMIT="off")
    start, hole = DAY0 + 3 * HOUR, (DAY0 + 3 * HOUR + 20 * MINUTE, DAY0 + 3 * HOUR + 50 * MINUTE)
    streamed = [
        Bar("X:ETHUSD", "1m", b["o"], b["h"], b["l"], b["c"], b["v"], b["vw"], b["n"], b["t"],
            b["t"] + MINUTE, "simulator")
        for b in market.minute_bars("X:ETHUSD", start, start + HOUR)
        if not hole[0] <= b["t"] < hole[1]
    ]  # fmt: skip
    store.apply_batch(Batch("stream-1", "bars", streamed))
    kwargs = {"ticker": "X:ETHUSD", "start_ms": hole[0], "end_ms": hole[1], "reason": "stream_gap"}
    first = producer.send_task("tasks.backfill.repair_gap", kwargs=kwargs, queue="backfill")
    result = first.get(timeout=60)
    assert result["bars_added"] == market.expected_bar_count("X:ETHUSD", *hole) > 0
    assert len(store.read_bars("X:ETHUSD", start, start + HOUR)) == market.expected_bar_count(
        "X:ETHUSD", start, start + HOUR
    )
    again = producer.send_task("tasks.backfill.repair_gap", kwargs=kwargs, queue="backfill")
    assert again.get(timeout=60)["event_recorded"] is False
    events = store.read_events("backfill")
    assert list(events["event_type"]) == ["gap_repaired"]
    assert events["details"].iloc[0]["bars_added"] == result["bars_added"]
    store.close()
