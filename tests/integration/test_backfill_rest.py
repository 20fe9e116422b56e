"""The REST client and the chunk/gap logic, in-process, against the simulator's REST endpoint
on 127.0.0.1, the real Redis limiter and a real store: paging, error mapping, resuming."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
import requests as http

from rrr.backfill.chunks import ChunkInterrupted, fetch_chunk
from rrr.backfill.plan import BackfillRequest, plan_backfill
from rrr.backfill.repair import repair_gap
from rrr.clock import FrozenClock
from rrr.config import Secret
from rrr.errors import RateLimited, VendorAuthError, VendorUnavailable
from rrr.models import Batch
from rrr.polygon.rest import PolygonRest, new_session
from rrr.ratelimit import RedisRateLimiter, requests_granted
from rrr.simulator.http import SimulatorHTTPServer
from rrr.simulator.market import Market
from rrr.simulator.rest import RestSimOptions, rest_routes
from rrr.storage import Store, open_store

DAY, HOUR_MS, MINUTE = 86_400_000, 3_600_000, 60_000
KEY = "sk-test-0123456789"
TICKERS = ("X:BTCUSD", "X:ETHUSD")


@pytest.fixture
def market() -> Market:
    return Market(seed=7, tickers=TICKERS, quiet_ratio=0.05)  # some minutes without trades


def _ten_days_ago() -> int:
    return (time.time_ns() // 1_000_000 // DAY - 10) * DAY


@pytest.fixture
def day0() -> int:
    """A whole UTC day, ten days ago."""
    return _ten_days_ago()


class Sim:
    def __init__(self, market: Market, options: RestSimOptions) -> None:
        self.options = options
        self.server = SimulatorHTTPServer(rest_routes(market, options)).start()

    @property
    def url(self) -> str:
        return self.server.base_url


@pytest.fixture
def sim(market: Market) -> Iterator[Sim]:
    s = Sim(market, RestSimOptions(accepted_keys=frozenset({KEY}), page_size=500))
    yield s
    s.server.stop()


@pytest.fixture
def limiter_client(clean_redis: str) -> redis.Redis:
    return redis.Redis.from_url(clean_redis)


def client(
    sim: Sim, limiter_client: redis.Redis, key: str | None = KEY, **kw: object
) -> PolygonRest:
    limiter = RedisRateLimiter(limiter_client, None)
    return PolygonRest(new_session(), limiter, sim.url, Secret(key) if key else None, **kw)  # type: ignore[arg-type]


def test_pages_are_followed_and_every_bar_comes_once(
    sim: Sim,
    market: Market,
    day0: int,
    limiter_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    rest = client(sim, limiter_client)
    pages = list(rest.aggs_pages("X:BTCUSD", 1, "minute", day0, day0 + DAY))
    assert len(pages) == 3  # 1440 minutes in pages of 500 base bars
    bars = [b for _, page in pages for b in page.bars]
    expected = market.minute_bars("X:BTCUSD", day0, day0 + DAY)
    assert [b.start_ms for b in bars] == [e["t"] for e in expected]
    assert [(b.open, b.high, b.low, b.close, b.volume) for b in bars] == [
        (e["o"], e["h"], e["l"], e["c"], e["v"]) for e in expected
    ]
    assert len(bars) == market.expected_bar_count("X:BTCUSD", day0, day0 + DAY) < 1440
    log = sim.options.log.entries()
    assert len(log) == 3 == requests_granted(limiter_client)  # the limiter saw every page
    assert all(e.auth == "bearer" and "apiKey" not in e.query for e in log)
    assert "cursor=" in log[1].query and str(day0 + 500 * MINUTE) in log[1].path
    assert KEY not in caplog.text and KEY not in repr(rest)


def test_hour_and_day_bars_roll_up_the_same_minutes(
    sim: Sim, market: Market, day0: int, limiter_client: redis.Redis
) -> None:
    rest = client(sim, limiter_client)
    hours = rest.aggs("X:ETHUSD", 1, "hour", day0, day0 + DAY)
    minutes = market.minute_bars("X:ETHUSD", day0, day0 + HOUR_MS)
    assert len(hours) == 24 and hours[0].timeframe == "1h"
    assert hours[0].open == minutes[0]["o"] and hours[0].close == minutes[-1]["c"]
    assert hours[0].high == max(m["h"] for m in minutes)
    assert hours[0].trade_count == sum(m["n"] for m in minutes)
    days = rest.aggs("X:ETHUSD", 1, "day", day0 - 3 * DAY, day0 + DAY)
    assert [d.start_ms for d in days] == [day0 + k * DAY for k in range(-3, 1)]


def test_an_empty_range_is_no_bars(sim: Sim, limiter_client: redis.Redis) -> None:
    future = (_ten_days_ago() // DAY + 20) * DAY
    assert client(sim, limiter_client).aggs("X:BTCUSD", 1, "minute", future, future + DAY) == []


@pytest.mark.parametrize(
    ("key", "text"), [("wrong-key", "Unknown API Key"), (None, "API Key was not provided")]
)
def test_a_refused_key_is_an_auth_error_that_names_the_setting(
    sim: Sim, day0: int, limiter_client: redis.Redis, key: str | None, text: str
) -> None:
    with pytest.raises(VendorAuthError) as caught:
        client(sim, limiter_client, key=key).aggs("X:BTCUSD", 1, "minute", day0, day0 + DAY)
    assert text in str(caught.value) and "POLYGON_API_KEY" in str(caught.value)
    assert "wrong-key" not in str(caught.value)


def test_429_and_5xx_are_transient_and_carry_retry_after(
    sim: Sim, day0: int, limiter_client: redis.Redis
) -> None:
    sim.options.fail_requests.update({1: 429, 2: 503})
    sim.options.retry_after_s = 7
    rest = client(sim, limiter_client)
    with pytest.raises(RateLimited) as limited:
        rest.aggs("X:BTCUSD", 1, "minute", day0, day0 + DAY)
    assert limited.value.retry_after_s == 7.0 and limited.value.status == 429
    with pytest.raises(VendorUnavailable, match="503 Service Temporarily Unavailable"):
        rest.aggs("X:BTCUSD", 1, "minute", day0, day0 + DAY)  # an nginx HTML body
    assert len(rest.aggs("X:BTCUSD", 1, "minute", day0, day0 + DAY)) > 1000


def test_timeouts_and_refused_connections_are_transient(
    market: Market, day0: int, limiter_client: redis.Redis
) -> None:
    slow = Sim(market, RestSimOptions(delay_s=1.0))
    try:
        rest = PolygonRest(
            new_session(), RedisRateLimiter(limiter_client, None), slow.url, None,
            timeout_s=(1.0, 0.2),
        )  # fmt: skip
        with pytest.raises(VendorUnavailable, match="ReadTimeout"):
            rest.aggs("X:BTCUSD", 1, "minute", day0, day0 + DAY)
    finally:
        slow.server.stop()
    closed = PolygonRest(
        new_session(), RedisRateLimiter(limiter_client, None), slow.url, None, timeout_s=(1, 1)
    )
    with pytest.raises(VendorUnavailable, match="ConnectionError"):
        closed.aggs("X:BTCUSD", 1, "minute", day0, day0 + DAY)


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    s = open_store(sqlite_url)
    s.migrate()
    yield s
    s.close()


def test_an_interrupted_chunk_resumes_at_the_page_that_failed(
    sim: Sim, market: Market, day0: int, limiter_client: redis.Redis, store: Store
) -> None:
    plan = plan_backfill(BackfillRequest(("X:BTCUSD",), day0, day0 + DAY, 1, "minute"))
    chunk = plan.chunks[0]
    store.upsert_chunks(list(plan.chunks))
    sim.options.fail_requests.update({2: 429, 4: 500})
    rest, clock = client(sim, limiter_client), FrozenClock(day0 + 30 * DAY)
    resume = None
    for _ in range(2):
        with pytest.raises(ChunkInterrupted) as stopped:
            fetch_chunk(store, rest, chunk.chunk_id, clock=clock, resume=resume)
        resume = stopped.value.resume
        assert store.get_chunk(chunk.chunk_id).status == "pending"  # type: ignore[union-attr]
    assert resume is not None and (resume.page, resume.errors) == (2, 2)
    outcome = fetch_chunk(store, rest, chunk.chunk_id, clock=clock, resume=resume)
    assert (outcome.status, outcome.attempt) == ("done", 3)
    expected = market.expected_bar_count("X:BTCUSD", day0, day0 + DAY)
    assert outcome.bars_stored == expected == len(store.read_bars("X:BTCUSD", day0, day0 + DAY))
    paths = [e.path for e in sim.options.log.entries() if e.status == 200]
    assert len(paths) == len(set(paths)) == 3  # each page fetched once: no page twice
    state = store.get_chunk(chunk.chunk_id)
    assert state is not None and (state.status, state.bars_stored) == ("done", expected)
    again = fetch_chunk(store, rest, chunk.chunk_id, clock=clock)
    assert again.status == "already_done" and len(sim.options.log.entries()) == 5


class TimeUp(Exception):
    """Stands in for Celery's SoftTimeLimitExceeded, which the task passes as interrupted_by."""


def test_a_chunk_out_of_time_goes_on_from_its_page_not_its_first(
    sim: Sim, market: Market, day0: int, limiter_client: redis.Redis, store: Store
) -> None:
    """A chunk longer than the task's time limit still ends: each retry goes on from the page
    the limit stopped, and no time-up counts as an error."""
    plan = plan_backfill(BackfillRequest(("X:BTCUSD",), day0, day0 + DAY, 1, "minute"))
    chunk = plan.chunks[0]
    store.upsert_chunks(list(plan.chunks))
    rest, clock = client(sim, limiter_client), FrozenClock(day0 + 30 * DAY)
    pages = rest.aggs_pages
    resume = None
    for _ in range(2):  # the time is up after one page, twice

        def one_page(*args: object, **kwargs: object) -> Iterator[object]:
            yield next(iter(pages(*args, **kwargs)))  # type: ignore[arg-type]
            raise TimeUp

        rest.aggs_pages = one_page  # type: ignore[method-assign,assignment]
        with pytest.raises(ChunkInterrupted) as stopped:
            fetch_chunk(
                store, rest, chunk.chunk_id, clock=clock, resume=resume, interrupted_by=(TimeUp,)
            )
        resume = stopped.value.resume
        assert store.get_chunk(chunk.chunk_id).status == "pending"  # type: ignore[union-attr]
    assert resume is not None and (resume.page, resume.errors) == (2, 0)
    rest.aggs_pages = pages  # type: ignore[method-assign]
    outcome = fetch_chunk(store, rest, chunk.chunk_id, clock=clock, resume=resume)
    assert (outcome.status, outcome.pages) == ("done", 1)
    expected = market.expected_bar_count("X:BTCUSD", day0, day0 + DAY)
    assert outcome.bars_stored == expected == len(store.read_bars("X:BTCUSD", day0, day0 + DAY))
    paths = [e.path for e in sim.options.log.entries() if e.status == 200]
    assert len(paths) == len(set(paths)) == 3  # each page fetched once: no page twice


def test_an_auth_failure_fails_the_chunk_with_the_reason(
    sim: Sim, day0: int, limiter_client: redis.Redis, store: Store
) -> None:
    plan = plan_backfill(BackfillRequest(("X:BTCUSD",), day0, day0 + DAY, 1, "minute"))
    store.upsert_chunks(list(plan.chunks))
    rest = client(sim, limiter_client, key="bad")
    outcome = fetch_chunk(store, rest, plan.chunks[0].chunk_id, clock=FrozenClock(day0 + 9 * DAY))
    assert outcome.status == "failed" and "POLYGON_API_KEY" in (outcome.error or "")
    assert store.chunk_progress(plan.plan_id).counts == {"failed": 1}


def test_repair_gap_fills_the_hole_and_records_it_once(
    sim: Sim, market: Market, day0: int, limiter_client: redis.Redis, store: Store
) -> None:
    rest = client(sim, limiter_client)
    hour = rest.aggs("X:BTCUSD", 1, "minute", day0, day0 + HOUR_MS)
    hole_start, hole_end = day0 + 20 * MINUTE, day0 + 35 * MINUTE
    streamed = [b for b in hour if not hole_start <= b.start_ms < hole_end]
    store.apply_batch(Batch("stream", "bars", streamed))
    now = day0 + 2 * DAY
    # the stream reports the gap in whatever ms it saw; the window widens to whole minutes
    result = repair_gap(
        store, rest, "BTC-USD", hole_start + 1_234, hole_end - 5_000, "stream_gap", now
    )
    assert (result.ticker, result.start_ms, result.end_ms) == ("X:BTCUSD", hole_start, hole_end)
    assert result.bars_before == 0 and result.bars_after == result.bars_from_vendor
    assert result.bars_added == market.expected_bar_count("X:BTCUSD", hole_start, hole_end)
    assert len(store.read_bars("X:BTCUSD", day0, day0 + HOUR_MS)) == len(hour)
    assert result.event_recorded
    again = repair_gap(store, rest, "X:BTCUSD", hole_start, hole_end, "quality_gap", now + 1)
    assert not again.event_recorded and again.bars_added == 0
    events = store.read_events("backfill")
    assert list(events["event_type"]) == ["gap_repaired"]
    details = events["details"].iloc[0]
    assert details["bars_added"] == result.bars_added and details["reason"] == "stream_gap"


def test_simulator_pages_descending_with_dates_and_a_query_key(
    sim: Sim, market: Market, day0: int
) -> None:
    """A client other than ours: apiKey in the query (re-appended to each next_url, which
    never carries it), dates for from/to (to inclusive), newest first."""
    day = datetime.fromtimestamp(day0 / 1000, tz=UTC).strftime("%Y-%m-%d")
    url = f"{sim.url}/v2/aggs/ticker/X:ETHUSD/range/5/minute/{day}/{day}?sort=desc&limit=50000"
    times: list[int] = []
    for _ in range(10):
        body = http.get(f"{url}&apiKey={KEY}", timeout=10).json()
        times += [r["t"] for r in body.get("results", [])]
        if "next_url" not in body:
            break
        assert KEY not in body["next_url"]
        url = body["next_url"]  # followed verbatim; the key is appended again above
    expected = {
        t // 300_000 * 300_000
        for t in market.minute_bar_arrays("X:ETHUSD", day0, day0 + DAY)["t"].tolist()
    }
    assert times == sorted(expected, reverse=True)  # 288 five-minute bars, newest first
    stats = http.get(f"{sim.url}/_sim/rest/stats", timeout=10).json()
    assert stats["requests"] == 3 and stats["by_status"] == {"200": 3}  # 500 base bars a page
    assert {e.auth for e in sim.options.log.entries()} == {"query"}
