"""Issue 10, item 3 against real stores: one row a database cannot hold (a time out of range,
a NUL in its text) is a dead letter with its reason and every other row of its batch is stored;
a backfill page with such bars still finishes its chunk, the bad bars set aside."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import orjson
import pytest
import redis

from rrr.backfill.chunks import fetch_chunk
from rrr.backfill.plan import BackfillRequest, plan_backfill
from rrr.clock import FrozenClock
from rrr.config import Secret
from rrr.models import Batch, Trade
from rrr.polygon.rest import PolygonRest, new_session
from rrr.ratelimit import RedisRateLimiter
from rrr.simulator.http import Response, SimulatorHTTPServer
from rrr.storage import Store, open_store

DAY, MINUTE = 86_400_000, 60_000
T0 = 1_706_649_600_000  # 2024-01-30T21:20:00Z


@pytest.fixture
def store(store_factory: Callable[[], Store]) -> Iterator[Store]:
    s = store_factory()
    s.migrate()
    yield s
    s.close()


def test_a_poison_trade_is_a_dead_letter_and_its_batch_is_stored(store: Store) -> None:
    good = [
        Trade("X:BTCUSD", 23, str(i), 43575.6, 0.5, (2,), T0 + i, T0 + i + 45, "polygon")
        for i in range(999)
    ]
    poison = [
        good[0]._replace(trade_id="far", ts_ms=10**16),  # PostgreSQL: timestamp out of range
        good[0]._replace(trade_id="huge", ts_ms=2**64 - 1),  # SQLite: OverflowError
        good[0]._replace(trade_id="nul\x00"),  # PostgreSQL: text cannot hold NUL
        good[0]._replace(trade_id="µs", received_ms=(T0 + 45) * 1000),
    ]
    rows = good[:500] + poison + good[500:]
    result = store.apply_batch(Batch("poison-1", "trades", [list(r) for r in rows]))
    assert (result.applied, result.stored, result.rejected) == (True, 999, 4)
    stored = store.read_trades("X:BTCUSD", T0, T0 + DAY)
    assert sorted(stored["trade_id"], key=int) == [str(i) for i in range(999)]
    assert store.count_rows("dead_letters") == 4


def _ten_days_ago() -> int:
    return (time.time_ns() // 1_000_000 // DAY - 10) * DAY


def _page_with_poison(day0: int) -> bytes:
    good = [
        {"o": 1.5, "h": 2, "l": 1, "c": 1.25, "v": 0.5, "vw": 1.4, "n": 3, "t": day0 + i * MINUTE}
        for i in range(100)
    ]
    bad = [
        good[0] | {"t": 2**64 - 1},  # failed the whole chunk before
        good[0] | {"t": time.time_ns() // 1_000_000 + 2 * DAY},
        good[0] | {"t": None},
        good[0] | {"n": 2**31},  # PostgreSQL INTEGER
        good[0] | {"t": day0 + 100 * MINUTE, "vw": "DEEP"},  # nested past orjson's encoder
    ]
    body = orjson.dumps({"status": "OK", "results": good[:50] + bad + good[50:]})
    return body.replace(b'"DEEP"', b"[" * 400 + b"1" + b"]" * 400)


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_backfill_page_with_poison_bars_finishes_its_chunk(
    database: str, request: pytest.FixtureRequest, clean_redis: str
) -> None:
    day0 = _ten_days_ago()
    body = _page_with_poison(day0)
    server = SimulatorHTTPServer(
        {("GET", "/v2/aggs"): lambda _: Response(200, body, {"Content-Type": "application/json"})}
    ).start()
    url = str(request.getfixturevalue("sqlite_url" if database == "sqlite" else "pg_url"))
    store = open_store(url)
    limiter_client = redis.Redis.from_url(clean_redis)
    try:
        store.migrate()
        plan = plan_backfill(BackfillRequest(("X:BTCUSD",), day0, day0 + DAY, 1, "minute"))
        store.upsert_chunks(list(plan.chunks))
        rest = PolygonRest(
            new_session(), RedisRateLimiter(limiter_client, None), server.base_url, Secret("k")
        )
        chunk_id = plan.chunks[0].chunk_id
        outcome = fetch_chunk(store, rest, chunk_id, clock=FrozenClock(day0 + 10 * DAY))
        assert (outcome.status, outcome.bars_stored, outcome.error) == ("done", 100, None)
        assert len(store.read_bars("X:BTCUSD", day0, day0 + DAY)) == 100
        assert store.count_rows("dead_letters") == 5
        state = store.get_chunk(chunk_id)
        assert state is not None and state.status == "done"
    finally:
        limiter_client.close()
        store.close()
        server.stop()
