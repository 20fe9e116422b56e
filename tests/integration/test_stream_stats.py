"""Heartbeat and stats in a real Redis: the shape ``get_stats`` returns, the TTL, ``alive``."""

from __future__ import annotations

import pytest
import redis

from rrr.models import Trade
from rrr.stats import STATS_KEY, STATS_TTL_S, StreamStats, get_stats, publish_stats

pytestmark = [pytest.mark.redis]
T0 = 1_700_000_000_000


def test_stats_round_trip_shaped_like_the_original_system(clean_redis: str) -> None:
    client = redis.Redis.from_url(clean_redis)
    stats = StreamStats(url="ws://127.0.0.1:1/crypto", started_ms=T0)
    stats.connected, stats.messages, stats.records, stats.reconnects = True, 12, 10, 1
    stats.by_kind["trades"], stats.by_kind["bars"], stats.rejected = 7, 3, 2
    rows = [Trade("X:BTCUSD", 1, str(n), 1.0, 1.0, (), T0 + n, None, "polygon") for n in range(8)]
    stats.sample_lag("trades", rows, T0 + 50)
    publish_stats(client, stats.snapshot(T0 + 100))
    assert 0 < client.ttl(STATS_KEY) <= STATS_TTL_S

    got = get_stats(client, now_ms=T0 + 1_000)
    assert got["alive"] is True
    assert got["websocket"]["message_count"] == 12 and got["websocket"]["connected"] is True
    assert got["websocket"]["messages_by_kind"] == {"trades": 7, "quotes": 0, "bars": 3}
    original = ("trade_count", "quote_count", "aggregate_count", "error_count")  # its names
    assert [got["websocket"][k] for k in original] == [7, 0, 3, 2]
    assert got["websocket"]["reconnects"] == 1
    assert got["lag_ms"] == {"p50": 47.0, "p99": 50.0}  # lags 43..50 ms
    assert got["batches"]["spooled"] == 0 and got["spool"]["bytes"] == 0

    stale = get_stats(client, now_ms=T0 + 100 + STATS_TTL_S * 1000 + 1)
    assert stale["alive"] is False and stale["websocket"]["connected"] is False
    stats.stopped_ms = T0 + 200
    publish_stats(client, stats.snapshot(T0 + 200))
    assert get_stats(client, now_ms=T0 + 300)["alive"] is False


def test_no_worker_ever_reported(clean_redis: str) -> None:
    got = get_stats(redis.Redis.from_url(clean_redis))
    assert got["alive"] is False
    assert got["websocket"] == {"connected": False, "message_count": 0}
