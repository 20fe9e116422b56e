"""Issue 14, after adoption: the original system's tables, adopted by `rrr db migrate`, take
rrr's writes exactly once through the Supabase REST store (the real PostgREST), and from the
real Celery tasks (stream batches, backfill, quality, sentiment) on PostgreSQL; the original
rows keep their id, created_at and the user's column, and the original documented query
returns the validator's events."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery import Celery

from rrr.clock import now_ms
from rrr.models import Bar, Batch, Quote, Trade
from rrr.quality.events import COMPONENT
from rrr.simulator.http import SimulatorHTTPServer
from rrr.simulator.market import Market
from rrr.simulator.perplexity import PerplexitySimOptions, perplexity_routes
from rrr.simulator.rest import RestSimOptions, rest_routes
from rrr.storage import open_store
from tests.conftest import wait_drained
from tests.integration.conftest import open_rest_store
from tests.integration.test_adopt_original import (
    ALL_TABLES,
    ORIGINAL_TABLES,
    TICK_TABLES,
    catalog,
    fill_original,
    migrate,
    rows_by_id,
)
from tests.integration.test_backfill_worker import TICKERS, expected_bars, send_plan, the_plan
from tests.integration.test_quality_validator import DOCUMENTED_QUERY, found, plant_faulty_market
from tests.support.supabase_local import LocalSupabase, prepare_schema
from tests.support.waiting import wait_for

T0 = 1_704_189_600_000 + 3_600_000  # 11:00 UTC on the original rows' day (2024-01-02)
HOUR, DAY = 3_600_000, 86_400_000


def original_then_adopted(url: str, tmp_path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The original tables, filled, then `rrr db migrate` (adoption, then rrr's migrations).
    Returns the original rows by table and id, as they were before (times in UTC)."""
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(ORIGINAL_TABLES.encode())
        fill_original(pg)
        pg.execute("SET TimeZone = 'UTC'")
        before = {t: rows_by_id(pg, t) for t in ALL_TABLES}
    out = migrate(tmp_path, url)
    assert "crypto_trades:\n  rows kept: 4; duplicates set aside: 1;" in out
    return before


def assert_originals_kept(url: str, before: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Each original row is in its table (same id, created_at, notes) or in adopted_duplicates."""
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("SET TimeZone = 'UTC'")
        for table, rows in before.items():
            now = rows_by_id(pg, table)
            aside = {
                r[0]
                for r in pg.execute(
                    "SELECT row->>'id' FROM adopted_duplicates WHERE table_name = %s", (table,)
                ).fetchall()
            }
            assert rows.keys() <= now.keys() | aside, table
            kept = rows.keys() - aside
            assert kept, table
            for row_id in kept:
                assert now[row_id]["created_at"].startswith(rows[row_id]["created_at"]), table
                if "notes" in rows[row_id]:
                    assert now[row_id]["notes"] == rows[row_id]["notes"], table


def batches_at(t0: int, tag: str) -> list[Batch]:
    trade = Trade("X:BTCUSD", 1, f"{tag}-t", 100.5, 2.0, (37,), t0, t0, "polygon")
    quote = Quote("X:BTCUSD", 1, 99.0, 1.0, 101.0, 1.0, t0, t0, "polygon")
    bar = Bar("X:BTCUSD", "1m", 1, 2, 1, 1.5, 3, None, None, t0, t0 + 60_000, "polygon")
    return [
        Batch(f"{tag}-trades", "trades", [trade]),
        Batch(f"{tag}-quotes", "quotes", [quote]),
        Batch(f"{tag}-bars", "bars", [bar]),
    ]


# -- 1. The same through the Supabase REST store --------------------------------------------


@pytest.mark.postgres
def test_rest_store_writes_into_adopted_tables_exactly_once(
    pg_url: str, tmp_path: Path, local_supabase: Callable[..., LocalSupabase]
) -> None:
    # A Supabase project (its roles and grants) whose schema holds the original tables.
    prepare_schema(pg_url, install=False)
    before = original_then_adopted(pg_url, tmp_path)
    with psycopg.connect(pg_url, autocommit=True) as pg:
        adopted = catalog(pg)
    # Then supabase/schema.sql pasted too (as a user may): on adopted tables it changes nothing.
    server = local_supabase(install=True)
    with psycopg.connect(pg_url, autocommit=True) as pg:
        assert catalog(pg) == adopted
    store = open_rest_store(server)
    try:
        store.migrate()  # the REST store's check: every migration recorded
        counts = {t: store.count_rows(t) for t in TICK_TABLES}
        assert counts == {"crypto_trades": 4, "crypto_quotes": 2, "crypto_aggregates": 23}
        batches = batches_at(T0, "rest")
        for _ in range(2):
            for batch in batches:
                store.apply_batch(batch)
        for batch in batches:  # the same rows under new batch ids: the natural keys hold
            store.apply_batch(Batch(batch.id + "-again", batch.kind, batch.rows))
        assert {t: store.count_rows(t) for t in TICK_TABLES} == {
            t: n + 1 for t, n in counts.items()
        }
        # Reads return the new rows, and the original ones beside them.
        trades = store.read_trades("X:BTCUSD", T0 - HOUR, T0 + 1)
        assert list(trades["trade_id"])[-1] == "rest-t"
        assert len(trades) == 4  # t1, t2, the one without a vendor id, and ours
        assert list(trades["conditions"])[-1] in ([37], (37,))
        quotes = store.read_quotes("X:BTCUSD", T0 - HOUR, T0 + 1)
        assert len(quotes) == 3 and list(quotes["ts_ms"])[-1] == T0
        bars = store.read_bars("X:BTCUSD", T0, T0 + 60_000)
        assert list(bars["start_ms"]) == [T0] and list(bars["close"]) == [1.5]
        assert len(store.read_bars("X:BTCUSD", T0 - HOUR, T0, "5m")) == 3  # 10:10, 10:15, 10:20
    finally:
        store.close()
    assert_originals_kept(pg_url, before)
    with psycopg.connect(pg_url, autocommit=True) as pg:
        new = pg.execute(
            "SELECT id, created_at IS NOT NULL, notes FROM crypto_trades WHERE trade_id = 'rest-t'"
        ).fetchall()
        assert len(new) == 1 and isinstance(new[0][0], uuid.UUID) and new[0][1:] == (True, None)
        assert pg.execute(
            "SELECT notes FROM crypto_trades WHERE trade_id = 't1' AND ticker = 'X:BTCUSD'"
        ).fetchall() == [("first",)]


# -- 2. The stream, backfill, quality and sentiment tasks on adopted tables ------------------


@pytest.fixture
def producer(redis_url: str) -> Iterator[Celery]:
    app = Celery("producer", broker=redis_url)
    yield app
    app.close()


@pytest.fixture
def rest_sim() -> Iterator[tuple[Market, str]]:
    market = Market(seed=11, tickers=TICKERS, quiet_ratio=0.02)
    server = SimulatorHTTPServer(rest_routes(market, RestSimOptions())).start()
    yield market, server.base_url
    server.stop()


@pytest.fixture
def perplexity_sim() -> Iterator[str]:
    server = SimulatorHTTPServer(perplexity_routes(PerplexitySimOptions(api_key="sim-key")))
    yield server.start().base_url
    server.stop()


def succeeded(worker: Any, task: str) -> int:
    return sum(
        1 for line in worker.log().splitlines() if f"{task}[" in line and "succeeded in" in line
    )


def wait_until_succeeded(worker: Any, task: str, n: int, what: str) -> None:
    wait_for(lambda: succeeded(worker, task) == n, 20, what)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.worker
@pytest.mark.slow
def test_tasks_write_into_adopted_tables_exactly_once(
    pg_url: str,
    redis_url: str,
    tmp_path: Path,
    rest_sim: tuple[Market, str],
    perplexity_sim: str,
    start_worker: Callable[..., Any],
    producer: Celery,
) -> None:
    market, rest_url = rest_sim
    before = original_then_adopted(pg_url, tmp_path)
    store = open_store(pg_url)
    worker = start_worker(
        pg_url,
        queues="ingest,backfill,default",
        POLYGON_REST_URL=rest_url,
        POLYGON_RATE_LIMIT="off",
        PERPLEXITY_API_KEY="sim-key",
        PERPLEXITY_BASE_URL=perplexity_sim,
        SENTIMENT_INTERVAL="86400",  # one slot for the whole test
        QUALITY_AUTO_REPAIR="false",
        RRR_TICKERS=",".join(TICKERS),
    )
    try:
        # The stream's batches: each sent twice (a redelivery), stored once.
        counts = {t: store.count_rows(t) for t in TICK_TABLES}
        for batch in batches_at(T0, "stream"):
            for _ in range(2):
                producer.send_task(
                    "tasks.ingest.insert_batch",
                    args=[batch.to_message()],
                    queue="ingest",
                    serializer="msgpack",
                )
        wait_for(lambda: succeeded(worker, "tasks.ingest.insert_batch") == 6, 20, "6 batches")
        assert {t: store.count_rows(t) for t in TICK_TABLES} == {
            t: n + 1 for t, n in counts.items()
        }
        assert store.count_rows("ingest_batches") == 3

        # A small backfill from the simulator's REST: 2 tickers x 2 one-hour chunks.
        bars_before = store.count_rows("crypto_aggregates")
        plan = the_plan(hours=2, max_base_bars=60)
        assert len(plan.chunks) == 4
        send_plan(producer, plan)
        wait_for(lambda: store.chunk_progress(plan.plan_id).finished, 30, "the backfill")
        want = expected_bars(market, plan)
        assert store.chunk_progress(plan.plan_id).counts == {"done": 4}
        assert store.count_rows("crypto_aggregates") == bars_before + want
        r = plan.request
        for ticker in TICKERS:
            bars = store.read_bars(ticker, r.start_ms, r.end_ms)
            assert list(bars["start_ms"]) == [
                b["t"] for b in market.minute_bars(ticker, r.start_ms, r.end_ms)
            ]

        # The quality task, twice: its findings recorded once, under the original component.
        planted_at = now_ms()
        scenario = plant_faulty_market(store, planted_at)
        for n in (1, 2):
            producer.send_task("tasks.quality.run_quality_checks", queue="default")
            wait_until_succeeded(worker, "tasks.quality.run_quality_checks", n, f"quality run {n}")
        events = store.read_events(COMPONENT, since_ms=planted_at - 2 * DAY)  # rrr's only
        assert found(events) == scenario.expected
        assert events["dedupe_key"].is_unique

        # A sentiment round, twice in one slot: one row per asset.
        for n in (1, 2):
            producer.send_task("tasks.sentiment.run_sentiment", queue="default")
            wait_until_succeeded(worker, "tasks.sentiment.run_sentiment", n, f"sentiment round {n}")
        wait_drained(redis_url, 10, quiet_s=0.5)
    finally:
        store.close()
    assert "Traceback" not in worker.log()

    with psycopg.connect(pg_url, autocommit=True) as pg:
        # The original documented query: the validator's events, old and new, with id and
        # created_at, newest first.
        rows = pg.execute(DOCUMENTED_QUERY).fetchall()
        names = [d.name for d in pg.execute(DOCUMENTED_QUERY).description or ()]
        documented = [dict(zip(names, row, strict=True)) for row in rows]
        assert len(documented) == 10
        assert {d["component"] for d in documented} == {COMPONENT}
        times = [d["event_time"] for d in documented]
        assert times == sorted(times, reverse=True)
        assert all(isinstance(d["id"], uuid.UUID) and d["created_at"] for d in documented)
        assert pg.execute(
            "SELECT count(*) FROM system_events WHERE component = %s AND message = 'gap found'",
            (COMPONENT,),
        ).fetchone() == (1,)  # the original system's own event is still there
        sentiments = pg.execute(
            "SELECT asset, id, created_at, interval_start FROM market_sentiment"
            " WHERE source = 'simulator' ORDER BY asset"
        ).fetchall()
        assert [s[0] for s in sentiments] == ["BTC", "ETH"]
        assert all(isinstance(s[1], uuid.UUID) and s[2] is not None for s in sentiments)
        assert len({s[3] for s in sentiments}) == 1
        assert sentiments[0][2] > datetime(2025, 1, 1, tzinfo=UTC)  # written now, by rrr
        new_trade = pg.execute(
            "SELECT id, created_at IS NOT NULL, conditions FROM crypto_trades"
            " WHERE trade_id = 'stream-t'"
        ).fetchall()
        assert len(new_trade) == 1 and isinstance(new_trade[0][0], uuid.UUID)
        assert new_trade[0][1:] == (True, [37])
    assert_originals_kept(pg_url, before)
