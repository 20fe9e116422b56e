"""repair_gap with trades, in-process: a live simulated market, the simulator's REST endpoints
on 127.0.0.1, the real Redis limiter and a real SQLite store. A hole in what the "stream"
stored is filled exactly (trades and bars), the stream's own rows are not doubled, an
interrupted repair resumes at the trades page that failed, and a plan without trades gets
bars and one event per ticker saying why trades were not repaired."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from rrr.backfill.repair import RepairInterrupted, RepairProgress, repair_gap
from rrr.models import Bar, Batch, Trade
from rrr.polygon.rest import PolygonRest, new_session
from rrr.ratelimit import RedisRateLimiter
from rrr.simulator.http import SimulatorHTTPServer
from rrr.simulator.market import Market
from rrr.simulator.rest import RestSimOptions, rest_routes
from rrr.simulator.truth import event_to_record
from rrr.storage import Store, open_store

MINUTE = 60_000
TICKERS = ("X:BTCUSD", "X:ETHUSD")
NOW = time.time_ns() // 1_000_000 // MINUTE * MINUTE
T0 = NOW - 10 * MINUTE  # the market went live here
HOLE = (T0 + MINUTE + 12_345, T0 + 150_000 + 777)  # what the stream missed (ms, as reported)
WINDOW = (T0 + MINUTE, T0 + 3 * MINUTE)  # the whole minutes a repair fetches for it
REPAIR_AT = T0 + 6 * MINUTE


@pytest.fixture(scope="module")
def market_events() -> tuple[Market, list[dict[str, Any]]]:
    """Four live minutes, 10 events every 50 ms, and every bar closed."""
    market = Market(seed=5, tickers=TICKERS, id_epoch_s=T0 // 1000)
    events: list[dict[str, Any]] = []
    for now in range(T0, T0 + 4 * MINUTE, 50):
        events += market.step(now, 10)
    events += market.close_bars(T0 + 5 * MINUTE)
    return market, events


def sent_at(event: dict[str, Any]) -> int:
    return int(event["e"] if "e" in event else event["t"])  # a bar goes out when it closes


def streamed(events: list[dict[str, Any]]) -> list[Trade | Bar]:
    """What the stream got: everything sent outside the hole (trades with their receive time)."""
    out = []
    for e in events:
        record = event_to_record(e)
        if isinstance(record, Trade | Bar) and not HOLE[0] < sent_at(e) < HOLE[1]:
            out.append(record)
    return out


def all_trades(events: list[dict[str, Any]], ticker: str) -> dict[tuple[int, str], Trade]:
    """Every trade the market made for ``ticker``, by natural key."""
    out = {}
    for e in events:
        record = event_to_record(e)
        if isinstance(record, Trade) and record.ticker == ticker:
            out[(record.exchange_id, record.trade_id)] = record
    return out


class Sim:
    def __init__(self, market: Market, **options: Any) -> None:
        self.options = RestSimOptions(now_ms=lambda: REPAIR_AT, **options)
        self.server = SimulatorHTTPServer(rest_routes(market, self.options)).start()

    def client(self, limiter_client: redis.Redis) -> PolygonRest:
        limiter = RedisRateLimiter(limiter_client, None)
        return PolygonRest(new_session(), limiter, self.server.base_url, None, source="simulator")


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    s = open_store(sqlite_url)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def limiter_client(clean_redis: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(clean_redis)
    yield client
    client.close()


def store_streamed(store: Store, events: list[dict[str, Any]]) -> None:
    rows = streamed(events)
    store.apply_batch(Batch("stream-trades", "trades", [r for r in rows if isinstance(r, Trade)]))
    store.apply_batch(Batch("stream-bars", "bars", [r for r in rows if isinstance(r, Bar)]))


def stored_trades(store: Store, ticker: str) -> dict[tuple[int, str], Trade]:
    frame = store.read_trades(ticker, 0, 10**13)
    out = {}
    for r in frame.itertuples(index=False):
        received = None if r[7] is None or r[7] != r[7] else int(r[7])
        trade = Trade(r[0], int(r[1]), str(r[2]), float(r[3]), float(r[4]),
                      tuple(int(c) for c in r[5]), int(r[6]), received, r[8])  # fmt: skip
        assert (trade.exchange_id, trade.trade_id) not in out, "a trade stored twice"
        out[(trade.exchange_id, trade.trade_id)] = trade
    return out


def bar_values(rows: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (int(b[9]), float(b[2]), float(b[3]), float(b[4]), float(b[5]), float(b[6])) for b in rows
    ]


def test_a_repair_makes_trades_and_bars_whole_without_doubling_the_streams_rows(
    market_events: tuple[Market, list[dict[str, Any]]],
    store: Store,
    limiter_client: redis.Redis,
) -> None:
    market, events = market_events
    store_streamed(store, events)
    sim = Sim(market, page_size=400)  # trades come in several pages
    try:
        rest = sim.client(limiter_client)
        for ticker in TICKERS:
            result = repair_gap(store, rest, ticker, *HOLE, "stream_gap", REPAIR_AT)
            assert (result.start_ms, result.end_ms) == WINDOW
            want = all_trades(events, ticker)
            in_window = [k for k, t in want.items() if WINDOW[0] <= t.ts_ms < WINDOW[1]]
            missed = {k for k, t in want.items() if HOLE[0] < t.ts_ms < HOLE[1]}
            assert result.trades_from_vendor == len(in_window) > 800
            assert result.trades_added == len(missed) > 0
            assert result.verified and result.trades_repaired and result.event_recorded
            # Whole run: every trade once; the stream's keep their receive time, the repaired
            # ones have none (REST does not say when the vendor received a trade).
            got = stored_trades(store, ticker)
            assert set(got) == set(want)
            for key, trade in want.items():
                expected = trade._replace(received_ms=None) if key in missed else trade
                assert got[key] == expected
            bars = store.read_bars(ticker, 0, 10**13, "1m")
            truth = market.minute_bars(ticker, T0, T0 + 4 * MINUTE)
            assert bar_values(list(bars.itertuples(index=False))) == [
                (b["t"], b["o"], b["h"], b["l"], b["c"], b["v"]) for b in truth
            ]
            assert result.bars_from_vendor == 2 and result.bars_added >= 1
        trade_requests = [e for e in sim.options.log.entries() if e.path.startswith("/v3/trades")]
        assert len(trade_requests) >= 2 * 3 and all(e.status == 200 for e in trade_requests)
        assert "timestamp.gte=" in trade_requests[0].query and "cursor=" in trade_requests[1].query

        again = repair_gap(store, rest, "X:BTCUSD", *HOLE, "quality_gap", REPAIR_AT + 1)
        assert not again.event_recorded and again.trades_added == 0 and again.verified
        assert len(stored_trades(store, "X:BTCUSD")) == len(all_trades(events, "X:BTCUSD"))
    finally:
        sim.server.stop()
    events_table = store.read_events("backfill")
    assert sorted(events_table["event_type"]) == ["gap_repaired", "gap_repaired"]
    details = events_table["details"].iloc[0]
    assert details["quotes_missing_ms"] == HOLE[1] - HOLE[0]
    assert details["trades_missing"] == 0 and details["bars_missing"] == 0
    assert details["trades_from_vendor"] > 0 and details["verified"] is True
    assert "quotes missing for" in events_table["message"].iloc[0]


def test_an_interrupted_repair_resumes_at_the_trades_page_that_failed(
    market_events: tuple[Market, list[dict[str, Any]]],
    store: Store,
    limiter_client: redis.Redis,
) -> None:
    market, events = market_events
    store_streamed(store, events)
    sim = Sim(market, page_size=400, fail_requests={3: 503})  # 1 bars, 2 trades, 3 fails
    try:
        rest = sim.client(limiter_client)
        with pytest.raises(RepairInterrupted) as caught:
            repair_gap(store, rest, "X:ETHUSD", *HOLE, "stream_gap", REPAIR_AT)
        progress = caught.value.progress
        assert progress.bars_from_vendor == 2 and progress.trade_pages == 1
        assert progress.trades_path is not None and "cursor=" in progress.trades_path
        assert store.read_events("backfill").empty  # nothing recorded half-way
        again = RepairProgress.from_dict(progress.to_dict())  # as it travels in a retry
        result = repair_gap(store, rest, "X:ETHUSD", *HOLE, "stream_gap", REPAIR_AT, again)
        log = sim.options.log.entries()
    finally:
        sim.server.stop()
    assert [e.status for e in log][:4] == [200, 200, 503, 200]
    assert log[3].path + "?" + log[3].query == log[2].path + "?" + log[2].query
    assert sum(e.path.startswith("/v2/aggs") for e in log) == 1  # bars were not fetched again
    assert result.verified and result.bars_before < result.bars_after
    assert set(stored_trades(store, "X:ETHUSD")) == set(all_trades(events, "X:ETHUSD"))


def test_a_plan_without_trades_repairs_bars_and_says_once_per_ticker_why_not_trades(
    market_events: tuple[Market, list[dict[str, Any]]],
    store: Store,
    limiter_client: redis.Redis,
) -> None:
    market, events = market_events
    store_streamed(store, events)
    sim = Sim(market, trades_authorized=False)
    try:
        rest = sim.client(limiter_client)
        for ticker in TICKERS:
            first = repair_gap(store, rest, ticker, *HOLE, "stream_gap", REPAIR_AT)
            second = repair_gap(store, rest, ticker, HOLE[0] - MINUTE, HOLE[1], "q", REPAIR_AT)
            assert not first.trades_repaired and not second.trades_repaired
            assert first.trades_from_vendor == 0 and first.verified
            bars = store.read_bars(ticker, 0, 10**13, "1m")
            truth = market.minute_bars(ticker, T0, T0 + 4 * MINUTE)
            assert bar_values(list(bars.itertuples(index=False))) == [
                (b["t"], b["o"], b["h"], b["l"], b["c"], b["v"]) for b in truth
            ]
            stream_only = {k for k, t in all_trades(events, ticker).items()
                           if not HOLE[0] < t.ts_ms < HOLE[1]}  # fmt: skip
            assert set(stored_trades(store, ticker)) == stream_only
    finally:
        sim.server.stop()
    events_table = store.read_events("backfill")
    why = events_table[events_table["event_type"] == "trades_not_repairable"]
    assert sorted(d["ticker"] for d in why["details"]) == sorted(TICKERS)
    assert all(
        "NOT_AUTHORIZED" in m and "plan that includes crypto trades" in m for m in why["message"]
    )
    assert all(d["vendor"].startswith("Polygon/Massive: the plan") for d in why["details"])
    repaired = events_table[events_table["event_type"] == "gap_repaired"]
    assert len(repaired) == 4
    assert all(d["trades_repaired"] is False for d in repaired["details"])
