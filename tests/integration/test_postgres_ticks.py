"""PostgresStore's two ways in for trades and quotes: COPY straight into the table for a batch
of new keys, and the stage with ON CONFLICT when a key is stored already (a re-sent row, a key
twice in one batch, another writer's row committed first). Either way the same rows end up
stored, once each, with their exact times."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest

from rrr.models import Batch, Quote, Trade
from rrr.storage.postgres import PostgresStore, ticks
from rrr.storage.tables import TICK_TABLES

T0 = 1_706_649_600_000  # 2024-01-30T21:20:00Z


def trade(trade_id: str, ts: int = T0, received: int | None = T0 + 45) -> Trade:
    return Trade("X:BTCUSD", 23, trade_id, 43575.6, 4.522e-05, (2, 37), ts, received, "polygon")


def quote(ts: int, bid: float = 43575.5) -> Quote:
    return Quote("X:BTCUSD", 1, bid, 0.5, bid + 1.0, 0.25, ts, ts + 3, "polygon")


@pytest.fixture
def store(postgres_store: PostgresStore) -> PostgresStore:
    return postgres_store


def used_the_stage(store: PostgresStore, kind: str) -> bool:
    """The stage is a temp table of the store's session, made by the first batch that needs it:
    it exists only once a batch went the ON CONFLICT way."""
    return bool(
        store._query(f"SELECT to_regclass('pg_temp.{TICK_TABLES[kind].stage}') IS NOT NULL")[0][0]
    )


def test_new_trades_go_straight_in_with_exact_times(store: PostgresStore) -> None:
    rows = [trade(str(i), ts=T0 + i * 1_001, received=None if i == 3 else T0 + i) for i in range(9)]
    result = store.apply_batch(Batch("a", "trades", rows))
    assert (result.applied, result.stored, result.rejected) == (True, 9, 0)
    assert not used_the_stage(store, "trades")
    stored = store._query(
        "SELECT trade_id, (extract(epoch FROM event_time) * 1000)::bigint,"
        " (extract(epoch FROM received_time) * 1000)::bigint, conditions, price::text"
        " FROM crypto_trades ORDER BY event_time"
    )
    assert [tuple(r) for r in stored] == [
        (str(i), T0 + i * 1_001, None if i == 3 else T0 + i, [2, 37], "43575.6") for i in range(9)
    ]


def test_a_batch_over_stored_keys_goes_the_stage_way_and_stores_the_rest(
    store: PostgresStore,
) -> None:
    store.apply_batch(Batch("a", "trades", [trade(str(i)) for i in range(0, 60)]))
    result = store.apply_batch(Batch("b", "trades", [trade(str(i)) for i in range(40, 100)]))
    assert (result.applied, result.stored) == (True, 40)
    assert used_the_stage(store, "trades")
    assert store.count_rows("crypto_trades") == 100
    assert store.count_rows("ingest_batches") == 2  # the refused COPY's batch id did not stay


def test_a_key_twice_in_one_batch_is_stored_once(store: PostgresStore) -> None:
    rows = [quote(T0), quote(T0 + 1), quote(T0), quote(T0, bid=43576.0)]
    result = store.apply_batch(Batch("q", "quotes", rows))
    assert (result.applied, result.stored) == (True, 3)
    assert store.count_rows("crypto_quotes") == 3


def test_a_replayed_batch_stores_nothing_without_the_stage(store: PostgresStore) -> None:
    batch = Batch("q", "quotes", [quote(T0 + i) for i in range(20)])
    assert store.apply_batch(batch).stored == 20
    again = store.apply_batch(batch)
    assert (again.applied, again.stored) == (False, 0)
    assert not used_the_stage(store, "quotes")
    assert store.count_rows("crypto_quotes") == 20


def test_writers_of_overlapping_batches_at_once_store_every_key_once(pg_url: str) -> None:
    """Each writer's COPY waits on the other's uncommitted keys; the one that finds them
    committed goes the stage way. Twenty rounds of two writers, half their keys shared."""
    stores = [PostgresStore(pg_url) for _ in range(2)]
    stores[0].migrate()
    stored = [0, 0]
    try:
        for r in range(20):
            base = r * 1_000
            batches = [
                Batch(
                    f"{r}-{w}",
                    "trades",
                    [trade(str(base + i)) for i in range(w * 50, w * 50 + 100)],
                )
                for w in range(2)
            ]  # writer 0: keys 0-99, writer 1: 50-149 of this round
            barrier = threading.Barrier(2)

            def write(w: int, batch: Batch, barrier: threading.Barrier) -> None:
                barrier.wait()
                stored[w] += stores[w].apply_batch(batch).stored

            threads = [
                threading.Thread(target=write, args=(w, batches[w], barrier)) for w in range(2)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
        assert stores[0].count_rows("crypto_trades") == 20 * 150
        assert sum(stored) == 20 * 150  # what the writers said they stored: each key once
    finally:
        for s in stores:
            s.close()


def test_after_a_refused_copy_the_next_batches_of_its_kind_go_the_stage_way(
    store: PostgresStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Overlapping rows come in runs: one refused COPY, then the stage way for a while, rather
    than a refused COPY (and its wasted rows) per batch."""
    store.apply_batch(Batch("a", "trades", [trade(str(i)) for i in range(100)]))
    with caplog.at_level(logging.DEBUG, logger="rrr.storage.postgres.ticks"):
        for n in range(1, 6):  # each re-sends 10 stored keys beside 10 new ones
            rows = [trade(str(i)) for i in range(n * 10 - 10, n * 10)]
            rows += [trade(str(1000 + n * 10 + i)) for i in range(10)]
            assert store.apply_batch(Batch(f"o{n}", "trades", rows)).stored == 10
    refused = [r for r in caplog.records if "stored already" in r.getMessage()]
    assert len(refused) == 1
    assert store.count_rows("crypto_trades") == 150


def id_versions(store: PostgresStore, table: str) -> list[int]:
    """The version of each stored row's id, in the order the rows were written (physical)."""
    return [
        uuid.UUID(str(r[0])).version for r in store._query(f"SELECT id FROM {table} ORDER BY ctid")
    ]


def test_the_short_way_writes_time_ordered_ids_the_stage_way_the_tables_own(
    store: PostgresStore,
) -> None:
    store.apply_batch(Batch("a", "trades", [trade(f"{i:03}") for i in range(100)]))
    ids = [str(r[0]) for r in store._query("SELECT id FROM crypto_trades ORDER BY trade_id")]
    assert ids == sorted(ids) and len(set(ids)) == 100  # ascending in the batch's row order
    assert (
        store.apply_batch(Batch("b", "trades", [trade(f"{i:03}") for i in range(50, 150)])).stored
        == 50
    )
    assert used_the_stage(store, "trades")
    assert id_versions(store, "crypto_trades") == [7] * 100 + [4] * 50  # gen_random_uuid()
    store.apply_batch(Batch("q", "quotes", [quote(T0 + i) for i in range(30)]))
    assert id_versions(store, "crypto_quotes") == [7] * 30


def test_an_id_stored_already_refuses_the_copy_and_the_stage_way_stores_every_row(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two batches made in the same ms with the same random bits (odds 2**-54) get the same
    ids: the second one's COPY is refused by the primary key, and it goes the stage way."""
    monkeypatch.setattr(ticks, "now_ms", lambda: T0 + 60_000)
    monkeypatch.setattr(ticks, "randbits", lambda bits: 12345)
    assert store.apply_batch(Batch("a", "trades", [trade(str(i)) for i in range(60)])).stored == 60
    result = store.apply_batch(Batch("b", "trades", [trade(str(i)) for i in range(100, 160)]))
    assert (result.applied, result.stored) == (True, 60)
    assert used_the_stage(store, "trades")
    assert id_versions(store, "crypto_trades") == [7] * 60 + [4] * 60
    assert store.count_rows("crypto_trades") == 120
