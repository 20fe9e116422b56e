"""rrr.data over real stores: the same rows give identical DataFrames from SQLite, PostgreSQL
and the Supabase REST store (the real PostgREST over the same PostgreSQL schema); several
tickers in one read; streamed chunks return every row once; bad arguments fail clearly,
before or without touching data."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pandas as pd
import pytest

import rrr.data
from rrr.models import Bar, Batch, Quote, Sentiment, SystemEvent, Trade
from rrr.quality.events import COMPONENT as QUALITY
from rrr.storage import Store, open_store
from rrr.storage.range_reads import RangeQuery
from tests.integration.conftest import open_rest_store
from tests.support.supabase_local import LocalSupabase

pytestmark = pytest.mark.postgres

DAY0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z
M = 60_000
START, END = "2025-11-30T22:00:00Z", "2025-12-01T02:00:00Z"


def minute_bars(ticker: str, base: float) -> list[Bar]:
    """4 hours around midnight, every 7th minute quiet; prices with cents, as the vendor's."""
    out = []
    for i in range(-120, 120):
        if i % 7 == 3:
            continue
        p = round(base + i * 0.37, 2)
        out.append(
            Bar(ticker, "1m", p, p + 1.25, p - 0.5, p + 0.75, 0.125 + (i % 5), p + 0.1,
                1 + i % 3, DAY0 + i * M, DAY0 + (i + 1) * M, "test")
        )  # fmt: skip
    return out


def fill(store: Store) -> None:
    store.migrate()
    store.apply_batch(
        Batch("bars", "bars", minute_bars("X:BTCUSD", 90_000.01) + minute_bars("X:ETHUSD", 3_000.5))
    )
    trades = [
        Trade(t, 1 + i % 2, f"{t}-{i}", 90_000.12 + i, 0.001 * (i + 1), (1,) if i % 2 else (),
              DAY0 + i * 997, DAY0 + i * 997 + 3 if i % 3 else None, "test")
        for t in ("X:BTCUSD", "X:ETHUSD") for i in range(120)
    ]  # fmt: skip
    store.apply_batch(Batch("trades", "trades", trades))
    quotes = [
        Quote("X:BTCUSD", 1, 90_000.1 + i, 1.5, 90_000.2 + i, 2.5, DAY0 + i * 500, None, "test")
        for i in range(50)
    ] + [  # 12 states in one millisecond: more than a page of the capped REST server
        Quote("X:BTCUSD", 2, 90_000.1 + i, 1.5, 90_000.2, 2.5, DAY0 + 777, None, "test")
        for i in range(12)
    ]
    store.apply_batch(Batch("quotes", "quotes", quotes))
    store.add_sentiments(
        [
            Sentiment("BTC", "perplexity", "bullish", 0.6, 0.8, "inflows", t, t)
            for t in (DAY0, DAY0 + M, DAY0 + 2 * M)
        ]
    )
    store.add_events(
        [
            SystemEvent(QUALITY, "gap", "warning", "X:BTCUSD: 1 minute missing", DAY0 + 5,
                        {"ticker": "X:BTCUSD"}, "q1"),
            SystemEvent(QUALITY, "gap", "warning", "X:ETHUSD: 1 minute missing", DAY0 + 6,
                        {"ticker": "X:ETHUSD"}, "q2"),
            SystemEvent(QUALITY, "gap_repaired", "info", "repaired", DAY0 + 7, {}, "q3"),
        ]
    )  # fmt: skip


def filled(url: str) -> Iterator[Store]:
    store = open_store(url)
    fill(store)
    yield store
    store.close()


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    yield from filled(sqlite_url)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    yield from filled(pg_url)


def every_read(store: Store) -> dict[str, pd.DataFrame]:
    both = ["X:BTCUSD", "X:ETHUSD"]
    return {
        "bars": rrr.data.bars("X:BTCUSD", START, END, store=store),
        "bars multi": rrr.data.bars(both, START, END, store=store),
        "bars 1h": rrr.data.bars(both, START, END, timeframe="1h", store=store),
        "bars 15m exact": rrr.data.bars("X:ETHUSD", START, END, "15m", exact=True, store=store),
        "bars mark": rrr.data.bars("X:BTCUSD", START, END, fill="mark", store=store),
        "bars ffill": rrr.data.bars(both, START, END, "5m", fill="ffill", store=store),
        "trades": rrr.data.trades(both, START, END, store=store),
        "trades exact": rrr.data.trades("X:ETHUSD", START, END, exact=True, store=store),
        "quotes": rrr.data.quotes("X:BTCUSD", START, END, store=store),
        "sentiment": rrr.data.sentiment(["BTC"], START, END, store=store),
        "issues": rrr.data.issues(START, END, tickers="X:BTCUSD", store=store),
    }


def test_sqlite_and_postgres_give_identical_frames(sqlite_store: Store, pg_store: Store) -> None:
    from_sqlite, from_postgres = every_read(sqlite_store), every_read(pg_store)
    for name, frame in from_sqlite.items():
        assert len(frame), name
        pd.testing.assert_frame_equal(frame, from_postgres[name], obj=name)


def test_supabase_rest_gives_the_same_frames(
    pg_store: Store, sqlite_store: Store, local_supabase: type[LocalSupabase]
) -> None:
    """The REST store reads the rows the PostgreSQL store wrote, over the same schema, from a
    server capping responses at 5 rows: many pages, 12 quotes of one millisecond across
    three of them (the keyset paging skips the ones it has)."""
    server = local_supabase(max_rows=5)  # type: ignore[call-arg]
    rest = open_rest_store(server)
    try:
        from_rest, from_sqlite = every_read(rest), every_read(sqlite_store)
    finally:
        rest.close()
    for name, frame in from_sqlite.items():
        pd.testing.assert_frame_equal(from_rest[name], frame, obj=name)


def test_shapes_columns_and_values(sqlite_store: Store) -> None:
    reads = every_read(sqlite_store)
    one = reads["bars"]
    assert isinstance(one.index, pd.DatetimeIndex) and str(one.index.tz) == "UTC"
    assert one.index.name == "event_time" and one.index.is_monotonic_increasing
    assert list(one.columns) == [
        "ticker", "timeframe", "open", "high", "low", "close", "volume", "vwap",
        "trade_count", "end_time", "source",
    ]  # fmt: skip
    assert one["close"].dtype == "float64"
    # 240 minutes, every 7th quiet: 240 - 34 bars.
    assert len(one) == 240 - len([i for i in range(-120, 120) if i % 7 == 3])
    assert one.loc["2025-12-01T00:00:00Z", "open"] == 90_000.01
    multi = reads["bars multi"]
    assert multi.index.names == ["ticker", "event_time"]
    assert sorted(multi.index.get_level_values("ticker").unique()) == ["X:BTCUSD", "X:ETHUSD"]
    assert "ticker" not in multi.columns
    hourly = reads["bars 1h"]
    assert len(hourly) == 8 and set(hourly["timeframe"]) == {"1h"}
    first_hour = multi.loc["X:BTCUSD"].loc["2025-11-30T22:00Z":"2025-11-30T22:59Z"]
    assert hourly.loc[("X:BTCUSD", pd.Timestamp("2025-11-30T22:00Z")), "volume"] == pytest.approx(
        first_hour["volume"].sum()
    )
    exact = reads["bars 15m exact"]
    assert isinstance(exact["open"].iloc[0], Decimal)
    assert exact["open"].iloc[0] == Decimal(str(round(3_000.5 - 120 * 0.37, 2)))
    mark = reads["bars mark"]
    assert len(mark) == 240 and mark["quiet"].sum() == 34
    trades = reads["trades"]
    assert list(trades.columns) == [
        "exchange_id", "trade_id", "price", "size", "conditions", "received_time", "source",
    ]  # fmt: skip
    assert trades.loc["X:BTCUSD", "conditions"].iloc[1] == [1]
    assert list(reads["sentiment"].columns[:4]) == [
        "source",
        "sentiment_label",
        "sentiment_score",
        "confidence",
    ]
    issues = reads["issues"]
    assert issues["message"].tolist() == ["X:BTCUSD: 1 minute missing"]
    every_issue = rrr.data.issues(START, END, store=sqlite_store)
    assert every_issue["event_type"].tolist() == ["gap", "gap"]  # not the gap_repaired follow-up
    # Bars starting in the range: no partial 22:00 window from a 22:02 start.
    late = rrr.data.bars("X:BTCUSD", "2025-11-30T22:02Z", END, "5m", store=sqlite_store)
    assert late.index[0] == pd.Timestamp("2025-11-30T22:05Z") and len(late) == 4 * 12 - 1


def test_stream_chunks_return_every_row_once(pg_store: Store, sqlite_store: Store) -> None:
    query = RangeQuery("trades", ("X:ETHUSD", "X:BTCUSD"), 0, DAY0 + 86_400_000)
    for store in (pg_store, sqlite_store):
        chunks = list(store.iter_range(query, chunk_rows=7))
        assert [len(c) for c in chunks[:-1]] == [7] * (len(chunks) - 1)
        rows = [r for c in chunks for r in c]
        assert len(rows) == 240
        keys = [(r[0], r[6], r[1], r[2]) for r in rows]  # ticker, time, exchange, id
        assert keys == sorted(keys) and len(set(keys)) == 240


def test_bad_arguments_fail_clearly(sqlite_store: Store) -> None:
    with pytest.raises(ValueError, match=r"no bars stored for X:DOGEUSD at all.*rrr backfill"):
        rrr.data.bars(["X:BTCUSD", "X:DOGEUSD"], START, END, store=sqlite_store)
    with pytest.raises(ValueError, match="no trades stored for X:DOGEUSD"):
        rrr.data.trades("X:DOGEUSD", START, END, store=sqlite_store)
    with pytest.raises(ValueError, match="must be after start"):
        rrr.data.bars("X:BTCUSD", END, START, store=sqlite_store)
    with pytest.raises(ValueError, match="unknown timeframe"):
        rrr.data.bars("X:BTCUSD", START, END, timeframe="1 hour", store=sqlite_store)
    with pytest.raises(ValueError, match="bad ticker"):
        rrr.data.bars("BTCUSD", START, END, store=sqlite_store)
    with pytest.raises(ValueError, match="unknown fill"):
        rrr.data.bars("X:BTCUSD", START, END, fill="bfill", store=sqlite_store)
    # A known ticker with nothing in the range is no error: an empty frame.
    empty = rrr.data.bars("X:BTCUSD", "2020-01-01", "2020-01-02", store=sqlite_store)
    assert empty.empty and isinstance(empty.index, pd.DatetimeIndex)
