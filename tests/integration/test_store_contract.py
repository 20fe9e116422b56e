"""One contract, every store: exactly-once batches, natural-key dedupe, corrected bars,
dead letters, concurrent writers, event and sentiment dedupe, read helpers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from rrr.models import Bar, Batch, Quote, Rejected, Sentiment, SystemEvent, Trade
from rrr.storage import Store, open_store

T0 = 1_706_649_600_000  # 2024-01-30T21:20:00Z


@pytest.fixture
def store(store_factory: Callable[[], Store]) -> Iterator[Store]:
    s = store_factory()
    s.migrate()
    yield s
    s.close()


def trade(trade_id: str, price: float = 43575.6, exchange_id: int = 23, ts: int = T0) -> Trade:
    return Trade("X:BTCUSD", exchange_id, trade_id, price, 4.522e-05, (2,), ts, ts + 45, "polygon")


def bar(start: int, close: float, volume: float = 1.5) -> Bar:
    return Bar("X:BTCUSD", "1m", 100.0, 110.0, 90.0, close, volume, 101.0, 7, start, start + 60_000,
               "polygon")  # fmt: skip


def test_migrate_is_idempotent(store: Store) -> None:
    assert store.migrate() == []


def test_batch_applied_twice_stores_rows_once(store: Store) -> None:
    batch = Batch("b-1", "trades", [trade(str(i), ts=T0 + i) for i in range(50)])
    first = store.apply_batch(batch)
    second = store.apply_batch(batch)
    assert (first.applied, first.stored) == (True, 50)
    assert (second.applied, second.stored) == (False, 0)
    assert store.count_rows("crypto_trades") == 50
    assert store.count_rows("ingest_batches") == 1


def test_overlapping_batches_store_each_trade_once(store: Store) -> None:
    store.apply_batch(Batch("a", "trades", [trade(str(i)) for i in range(0, 60)]))
    result = store.apply_batch(Batch("b", "trades", [trade(str(i)) for i in range(40, 100)]))
    assert result.stored == 40
    assert store.count_rows("crypto_trades") == 100


def test_same_trade_id_on_another_exchange_is_another_trade(store: Store) -> None:
    store.apply_batch(Batch("a", "trades", [trade("7", exchange_id=1), trade("7", exchange_id=2)]))
    assert store.count_rows("crypto_trades") == 2


def test_corrected_bar_replaces_the_earlier_one(store: Store) -> None:
    store.apply_batch(Batch("bars-1", "bars", [bar(T0, 105.0), bar(T0 + 60_000, 106.0)]))
    store.apply_batch(Batch("bars-2", "bars", [bar(T0, 104.25, volume=2.5)]))
    df = store.read_bars("X:BTCUSD", T0, T0 + 120_000)
    assert list(df["close"]) == [104.25, 106.0]
    assert list(df["volume"]) == [2.5, 1.5]
    assert store.count_rows("crypto_aggregates") == 2


def test_last_correction_in_one_batch_wins(store: Store) -> None:
    store.apply_batch(Batch("bars-1", "bars", [bar(T0, 105.0), bar(T0, 107.5)]))
    assert list(store.read_bars("X:BTCUSD", T0, T0 + 60_000)["close"]) == [107.5]


def test_bad_row_goes_to_dead_letters_and_the_rest_lands(store: Store) -> None:
    rows = [trade("1"), trade("2")._replace(price=None), trade("3"), trade("4", price=-1.0)]
    result = store.apply_batch(Batch("b", "trades", rows))
    assert (result.stored, result.rejected) == (2, 2)
    assert store.count_rows("crypto_trades") == 2
    assert store.count_rows("dead_letters") == 2


def test_prices_are_stored_exactly_as_sent(store: Store) -> None:
    vendor_prices = [
        0.30000000000000004,
        43575.6,
        4.522e-05,
        0.1,
        33021.9,
        1e-08,
        123456789.12345679,
    ]
    store.apply_batch(
        Batch("p", "trades", [trade(str(i), price=p) for i, p in enumerate(vendor_prices)])
    )
    df = store.read_trades("X:BTCUSD", T0, T0 + 1)
    stored = dict(zip(df["trade_id"], df["price"], strict=True))
    assert [stored[str(i)] for i in range(len(vendor_prices))] == vendor_prices
    assert [repr(stored[str(i)]) for i in range(len(vendor_prices))] == [
        repr(p) for p in vendor_prices
    ]


def test_bar_prices_are_stored_exactly_as_sent(store: Store) -> None:
    # A REST page of bars takes the column-at-a-time COPY path in PostgreSQL; these digits and
    # exponents must come back exactly as sent there too.
    vendor_prices = [0.30000000000000004, 4.522e-05, 1e-08, 123456789.12345679, 1e16, 5, 0.1]
    rows = [
        Bar("X:BTCUSD", "1m", p, p, p, p, p, p, i, T0 + i * 60_000, T0 + (i + 1) * 60_000, "s")
        for i, p in enumerate(vendor_prices)
    ]
    store.apply_batch(Batch("exact", "bars", [*rows, rows[0]._replace(trade_count=None,
                                                                       vwap=None)]))  # fmt: skip
    df = store.read_bars("X:BTCUSD", T0, T0 + len(rows) * 60_000)
    for column in ("open", "high", "low", "close", "volume"):
        assert [repr(v) for v in df[column]] == [repr(float(p)) for p in vendor_prices]
    assert [repr(v) for v in df["vwap"][1:]] == [repr(float(p)) for p in vendor_prices[1:]]
    assert df["vwap"].isna().tolist() == [True] + [False] * (len(rows) - 1)  # the last one won


def test_a_bad_bar_goes_to_dead_letters_and_the_rest_of_the_page_lands(store: Store) -> None:
    rows = [bar(T0 + i * 60_000, 100.0 + i) for i in range(50)]
    rows[7] = rows[7]._replace(low=0.0)
    result = store.apply_batch(Batch("page", "bars", rows))
    assert (result.stored, result.rejected) == (49, 1)
    assert store.count_rows("crypto_aggregates") == 49
    assert store.count_rows("dead_letters") == 1


def write_at_once(
    store_factory: Callable[[], Store], batches_of: Callable[[int], list[Batch]]
) -> None:
    """Two writers, each on a store of its own, apply their batches at the same time."""
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        s = store_factory()
        try:
            for batch in batches_of(writer):
                s.apply_batch(batch)
        except BaseException as exc:
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []


def test_two_writers_of_overlapping_bars_lose_nothing(
    store: Store, store_factory: Callable[[], Store]
) -> None:
    def batches_of(writer: int) -> list[Batch]:
        batches = []
        for b in range(20):
            # Both writers store the same 30 minutes of each range: whichever comes second
            # finds the first one's bars (or races it) and replaces them.
            rows = [bar(T0 + (b * 200 + i) * 60_000, 100.0 + writer) for i in range(30)]
            rows += [bar(T0 + (b * 200 + writer * 30 + i) * 60_000, 1.0) for i in range(30)]
            batches.append(Batch(f"w{writer}-{b}", "bars", rows))
        return batches

    write_at_once(store_factory, batches_of)
    assert store.count_rows("crypto_aggregates") == 20 * (30 + 2 * 30)
    assert store.count_rows("ingest_batches") == 40


def test_quotes_replay_is_a_no_op_but_distinct_states_are_kept(store: Store) -> None:
    q = Quote("X:BTCUSD", 1, 33052.79, 0.48, 33073.19, 0.601, T0, T0 + 13, "polygon")
    store.apply_batch(Batch("q1", "quotes", [q, q._replace(bid_size=0.5)]))
    store.apply_batch(Batch("q2", "quotes", [q]))
    assert store.count_rows("crypto_quotes") == 2
    df = store.read_quotes("X:BTCUSD", T0, T0 + 1)
    assert sorted(df["bid_size"]) == [0.48, 0.5]


def test_two_writers_at_once_lose_nothing(store: Store, store_factory: Callable[[], Store]) -> None:
    def batches_of(writer: int) -> list[Batch]:
        batches = []
        for b in range(20):
            rows = [trade(f"{writer}-{b}-{i}", ts=T0 + i) for i in range(100)]
            # Half of each writer's batches overlap the other writer's trade ids.
            rows += [trade(f"shared-{b}-{i}", ts=T0 + i) for i in range(50)]
            batches.append(Batch(f"w{writer}-{b}", "trades", rows))
        return batches

    write_at_once(store_factory, batches_of)
    assert store.count_rows("crypto_trades") == 2 * 20 * 100 + 20 * 50
    assert store.count_rows("ingest_batches") == 40


def test_events_dedupe_on_key(store: Store) -> None:
    e = SystemEvent(
        "data_quality_validator",
        "price_outlier",
        "warning",
        "40% spike",
        T0,
        {"ticker": "X:BTCUSD", "move": 0.4},
        dedupe_key="price_outlier:X:BTCUSD:1",
    )
    assert store.add_events([e]) == 1
    assert store.add_events([e, e]) == 0
    unkeyed = SystemEvent("stream_worker", "reconnected", "info", "back", T0 + 5)
    assert store.add_events([unkeyed, unkeyed]) == 2
    df = store.read_events("data_quality_validator")
    assert len(df) == 1
    assert df["details"].iloc[0] == {"ticker": "X:BTCUSD", "move": 0.4}


def test_sentiments_dedupe_per_asset_source_interval(store: Store) -> None:
    s = Sentiment("BTC", "perplexity", "bullish", 0.6, 0.8, "ETF inflows", T0 + 3, T0,
                  {"model": "sonar", "sources": ["https://example.com/a"]})  # fmt: skip
    assert store.add_sentiments([s]) == 1
    assert store.add_sentiments([s]) == 0
    df = store.read_sentiments("BTC")
    assert list(df["label"]) == ["bullish"]
    assert df["metadata"].iloc[0]["sources"] == ["https://example.com/a"]


def test_latest_event_times_per_ticker_and_kind(store: Store) -> None:
    store.apply_batch(Batch("t", "trades", [trade("1", ts=T0), trade("2", ts=T0 + 999)]))
    store.apply_batch(Batch("b", "bars", [bar(T0, 1.0), bar(T0 + 60_000, 2.0)]))
    latest = store.latest_event_times()
    assert latest[("X:BTCUSD", "trades")] == T0 + 999
    assert latest[("X:BTCUSD", "bars")] == T0 + 60_000
    assert ("X:BTCUSD", "quotes") not in latest


def test_read_trades_returns_the_time_window_only(store: Store) -> None:
    store.apply_batch(Batch("t", "trades", [trade(str(i), ts=T0 + i * 1000) for i in range(10)]))
    df = store.read_trades("X:BTCUSD", T0 + 2000, T0 + 5000)
    assert list(df["ts_ms"]) == [T0 + 2000, T0 + 3000, T0 + 4000]
    assert str(df["event_time"].dt.tz) == "UTC"
    assert (
        df["conditions"].map(list).tolist() == [[2]] * 3 or df["conditions"].tolist() == ["[2]"] * 3
    )


def test_a_bar_with_a_nan_vwap_is_a_dead_letter_in_every_store(store: Store) -> None:
    result = store.apply_batch(Batch("b", "bars", [bar(T0, 1.0)._replace(vwap=float("nan"))]))
    assert (result.stored, result.rejected) == (0, 1)
    assert store.count_rows("dead_letters") == 1


def test_postgres_connect_refusals_are_permanent_and_outages_transient(pg_url: str) -> None:
    """A wrong database name is never retried; a server that is down may come back."""
    from rrr.errors import PermanentStorageError, TransientStorageError
    from tests.conftest import PG_BASE_URL

    base = PG_BASE_URL.rsplit("/", 1)[0]
    with pytest.raises(PermanentStorageError, match="does not exist"):
        open_store(f"{base}/rrr_no_such_database")
    with pytest.raises(TransientStorageError) as down:
        open_store("postgresql://postgres:s3cret@127.0.0.1:1/test")
    assert "127.0.0.1:1" in str(down.value) and "s3cret" not in str(down.value)


def test_pruned_batch_ids_leave_natural_keys_to_dedupe(store: Store) -> None:
    old = Batch("old", "trades", [trade("1"), trade("2")])
    store.apply_batch(old)
    store.prune_ingest_batches(older_than_ms=0)  # nothing is that old
    assert store.count_rows("ingest_batches") == 1
    far_future_ms = 4_102_444_800_000  # 2100-01-01
    store.prune_ingest_batches(older_than_ms=far_future_ms)
    assert store.count_rows("ingest_batches") == 0
    again = store.apply_batch(old)
    assert (again.applied, again.stored) == (True, 0)
    assert store.count_rows("crypto_trades") == 2


def test_a_dead_letter_written_twice_is_stored_once(store: Store) -> None:
    letter = Rejected(raw='{"ev":"XZ"}', reason="unknown event 'XZ'", kind="event", source="p")
    store.add_dead_letters([letter])
    store.add_dead_letters([letter, letter])  # a redelivered task, and a repeat inside it
    store.add_dead_letters([Rejected(raw='{"ev":"XZ"}', reason="another reason", kind="event")])
    assert store.count_rows("dead_letters") == 2
