"""The reads behind `rrr status` on every store (SQLite, PostgreSQL, Supabase REST through the
real PostgREST): windowed counts per ticker and kind, newest times, backfill chunks by status,
the newest sentiment per asset, quality findings by severity (follow-ups left out)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from rrr.backfill_chunks import Chunk
from rrr.models import Batch, Quote, Sentiment, SystemEvent, Trade
from rrr.storage import Store
from rrr.storage.status_reads import (
    backfill_progress,
    latest_sentiments,
    quality_findings,
    ticker_activity,
)

NOW = 1_796_000_000_000
MIN = 60_000


@pytest.fixture
def store(store_factory: Callable[[], Store]) -> Iterator[Store]:
    s = store_factory()
    s.migrate()
    yield s
    s.close()


def trade(i: int, ts: int, ticker: str = "X:BTCUSD") -> Trade:
    return Trade(ticker, 1, str(i), 90_000.5, 0.01, (), ts, ts + 5, "simulator")


def test_status_reads(store: Store) -> None:
    # BTC trades: 3 in the last 5 minutes, 2 more in the hour, 4 older; ETH: one, 2 h old.
    ages_min = [1, 2, 4, 10, 50, 61, 120, 500, 1000]
    trades = [trade(i, NOW - age * MIN) for i, age in enumerate(ages_min)]
    trades.append(trade(99, NOW - 120 * MIN, "X:ETHUSD"))
    store.apply_batch(Batch("t", "trades", trades))
    quote = Quote("X:BTCUSD", 1, 90_000.0, 1.0, 90_001.0, 2.0, NOW - 30 * MIN, None, "simulator")
    store.apply_batch(Batch("q", "quotes", [quote]))

    activity = ticker_activity(store, ("X:BTCUSD", "X:ETHUSD", "X:SOLUSD"), NOW)
    btc = activity["X:BTCUSD"]
    assert (btc["trades"].last_ms, btc["trades"].rows_5m, btc["trades"].rows_1h) == (
        NOW - MIN,
        3,
        5,
    )
    assert (btc["quotes"].rows_5m, btc["quotes"].rows_1h) == (0, 1)
    assert btc["trades"].to_dict(NOW)["lag_s"] == 60.0
    assert (btc["bars"].last_ms, btc["bars"].rows_1h) == (None, 0)
    eth = activity["X:ETHUSD"]["trades"]
    assert (eth.last_ms, eth.rows_5m, eth.rows_1h) == (NOW - 120 * MIN, 0, 0)
    assert activity["X:SOLUSD"]["trades"].to_dict(NOW)["lag_s"] is None

    chunks = [
        Chunk(f"c{i}", "plan", "X:BTCUSD", 1, "minute", i * MIN, (i + 1) * MIN) for i in range(3)
    ]
    store.upsert_chunks(chunks)
    assert store.claim_chunk("c0", NOW, 60_000) == 1
    store.finish_chunk("c0", 120, NOW)
    assert store.claim_chunk("c1", NOW, 60_000) == 1
    assert backfill_progress(store) == {"chunks": {"done": 1, "running": 1, "pending": 1},
                                        "bars_stored": 120}  # fmt: skip

    def scored(asset: str, label: str, score: float, at: int) -> Sentiment:
        return Sentiment(asset, "simulator", label, score, 0.7, "why", at, at - at % (15 * MIN))  # type: ignore[arg-type]

    store.add_sentiments([
        scored("BTC", "bearish", -0.4, NOW - 40 * MIN),
        scored("BTC", "bullish", 0.5, NOW - 10 * MIN),
        scored("ETH", "neutral", 0.0, NOW - 70 * MIN),
    ])  # fmt: skip
    newest = latest_sentiments(store)
    assert sorted(newest) == ["BTC", "ETH"]
    assert (newest["BTC"]["label"], newest["BTC"]["score"]) == ("bullish", 0.5)
    assert newest["BTC"]["ts_ms"] == NOW - 10 * MIN and newest["ETH"]["source"] == "simulator"

    def event(kind: str, severity: str, at: int) -> SystemEvent:
        return SystemEvent("data_quality_validator", kind, severity, kind, at, {}, f"{kind}{at}")  # type: ignore[arg-type]

    store.add_events([
        event("gap", "error", NOW - 5 * MIN),
        event("price_move", "critical", NOW - 3 * MIN),
        event("volume_spike", "warning", NOW - 2 * MIN),
        event("repair_requested", "info", NOW - MIN),  # a follow-up, not a finding
        event("gap", "error", NOW - 30 * 60 * MIN),  # before the window
    ])  # fmt: skip
    found = quality_findings(store, NOW - 24 * 60 * MIN)
    assert found == {
        "last_event_ms": NOW - MIN,
        "by_severity": {"error": 1, "critical": 1, "warning": 1},
    }
