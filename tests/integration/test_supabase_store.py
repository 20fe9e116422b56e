"""The Supabase REST store through supabase-py against a PostgREST stand-in on 127.0.0.1 over
the real PostgreSQL: the store contract, exactly-once parts, error mapping, the key kept out of
every message, and reads equal to the PostgreSQL store's over the same rows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pandas as pd
import psycopg
import pytest

from rrr.backfill.plan import Chunk
from rrr.config import Secret
from rrr.errors import PermanentStorageError, TransientStorageError
from rrr.models import Bar, Batch, Quote, Sentiment, SystemEvent, Trade
from rrr.storage.postgres import PostgresStore
from rrr.storage.supabase import SupabaseStore
from tests.integration import test_store_contract as contract
from tests.support.postgrest import PostgrestServer, make_jwt

pytestmark = pytest.mark.postgres

T0 = 1_706_649_600_000
OpenRest = Callable[..., SupabaseStore]

# The store contract itself runs against this store through `store_factory`
# (tests/integration/conftest.py); the tests here cover what is REST-specific.


@pytest.fixture
def store(supabase_store_factory: OpenRest) -> Iterator[SupabaseStore]:
    s = supabase_store_factory()
    s.migrate()
    yield s


@pytest.fixture
def pg_store(pg_url: str, postgrest: PostgrestServer) -> Iterator[PostgresStore]:
    """The PostgreSQL store on the same schema as ``store``, to compare reads and writes."""
    s = PostgresStore(pg_url)
    yield s
    s.close()


def trade(trade_id: str, price: float = 43575.6, ts: int = T0) -> Trade:
    return contract.trade(trade_id, price=price, ts=ts)


def test_a_big_batch_goes_in_parts_each_exactly_once(
    supabase_store_factory: OpenRest, postgrest: PostgrestServer
) -> None:
    store = supabase_store_factory(max_rows_per_request=40)
    rows = [trade(str(i), ts=T0 + i) for i in range(100)]
    rows[5] = rows[5]._replace(price=None)  # type: ignore[arg-type]
    first = store.apply_batch(Batch("big", "trades", rows))
    assert (first.applied, first.stored, first.rejected) == (True, 99, 1)
    # The second part fails mid-way through a redelivery: the parts already done stay done.
    postgrest.inject(503, times=1)
    with pytest.raises(TransientStorageError):
        store.apply_batch(Batch("big2", "trades", rows))
    again = store.apply_batch(Batch("big", "trades", rows))
    assert (again.applied, again.stored, again.rejected) == (False, 0, 0)
    assert store.count_rows("crypto_trades") == 99
    assert store.count_rows("dead_letters") == 1
    assert store.count_rows("ingest_batches") == 3  # big#1/3, big#2/3, big#3/3


def test_a_batch_the_database_refuses_is_not_half_applied(
    store: SupabaseStore, pg_url: str
) -> None:
    # A row that passes every row check but that the database refuses (here a constraint of
    # this test's own schema): the whole call rolls back, batch id included, so a corrected
    # redelivery still applies.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE crypto_trades ADD CONSTRAINT not_two CHECK (trade_id <> '2')")
    rows = [trade("1"), trade("2"), trade("3")]
    with pytest.raises(PermanentStorageError, match="23514"):
        store.apply_batch(Batch("b", "trades", rows))
    assert store.count_rows("crypto_trades") == 0
    assert store.count_rows("ingest_batches") == 0
    assert store.apply_batch(Batch("b", "trades", [rows[0], rows[2]])).stored == 2


def test_quotes_and_bars_round_trip_exactly(store: SupabaseStore) -> None:
    q = Quote("X:ETHUSD", 1, 0.30000000000000004, 1e-08, 2250.13, 123456789.12345679, T0, None, "p")
    b = Bar("X:ETHUSD", "1m", 0.1, 33021.9, 4.522e-05, 43575.6, 0.0, None, None, T0,
            T0 + 60_000, "p")  # fmt: skip
    store.apply_batch(Batch("q", "quotes", [q]))
    store.apply_batch(Batch("b", "bars", [b]))
    quote = store.read_quotes("X:ETHUSD", T0, T0 + 1).iloc[0]
    assert [repr(float(quote[c])) for c in ("bid_price", "bid_size", "ask_price", "ask_size")] == [
        "0.30000000000000004",
        "1e-08",
        "2250.13",
        "123456789.12345679",
    ]
    assert quote["received_ms"] is None
    bar = store.read_bars("X:ETHUSD", T0, T0 + 1).iloc[0]
    assert [repr(float(bar[c])) for c in ("open", "high", "low", "close")] == [
        "0.1",
        "33021.9",
        "4.522e-05",
        "43575.6",
    ]
    assert pd.isna(bar["vwap"])  # no VWAP: NULL
    assert bar["end_ms"] == T0 + 60_000


# -- reads: the same DataFrames as the PostgreSQL store over the same rows ----------------------
def test_reads_equal_the_postgres_stores_reads(
    store: SupabaseStore, pg_store: PostgresStore
) -> None:
    trades = [trade(str(i), price=43575.6 + i / 10, ts=T0 + i * 7) for i in range(30)]
    trades[3] = trades[3]._replace(received_ms=None, conditions=())
    quotes = [Quote("X:BTCUSD", i % 3, 33052.79, 0.48 + i, 33073.19, 0.601, T0 + i // 2, T0, "p")
              for i in range(12)]  # fmt: skip
    bars = [contract.bar(T0 + i * 60_000, 100.0 + i) for i in range(5)]
    store.apply_batch(Batch("t", "trades", trades))
    store.apply_batch(Batch("q", "quotes", quotes))
    store.apply_batch(Batch("b", "bars", bars))
    store.add_events(
        [
            SystemEvent("quality", "gap", "warning", "gap", T0, {"n": 1.5, "l": [1]}, "g1"),
            SystemEvent("stream", "reconnected", "info", "back", T0 + 9),
        ]
    )
    store.add_sentiments(
        [
            Sentiment("BTC", "perplexity", "bullish", 0.6, 0.8, "x", T0 + 3, T0, {"m": "s"}),
            Sentiment("ETH", "perplexity", "bearish", -0.2, 0.5, "y", T0 + 4, T0 + 900_000),
        ]
    )
    end = T0 + 10_000_000
    pairs = [
        (store.read_trades("X:BTCUSD", T0 + 7, end), pg_store.read_trades("X:BTCUSD", T0 + 7, end)),
        (store.read_quotes("X:BTCUSD", T0, end), pg_store.read_quotes("X:BTCUSD", T0, end)),
        (store.read_bars("X:BTCUSD", T0, end), pg_store.read_bars("X:BTCUSD", T0, end)),
        (store.read_events(), pg_store.read_events()),
        (store.read_events("quality", T0), pg_store.read_events("quality", T0)),
        (store.read_sentiments(), pg_store.read_sentiments()),
        (store.read_sentiments("ETH"), pg_store.read_sentiments("ETH")),
    ]
    for rest, sql in pairs:
        assert len(rest) > 0
        pd.testing.assert_frame_equal(rest, sql)
    assert store.latest_event_times() == pg_store.latest_event_times()


def test_reads_page_past_the_servers_max_rows(pg_url: str, postgrest: PostgrestServer) -> None:
    small = PostgrestServer(pg_url, max_rows=7).start()
    try:
        s = SupabaseStore(small.url, Secret(small.service_key))
        s.apply_batch(Batch("t", "trades", [trade(str(i), ts=T0 + i) for i in range(30)]))
        df = s.read_trades("X:BTCUSD", T0, T0 + 30)
        assert list(df["ts_ms"]) == [T0 + i for i in range(30)]
        s.close()
    finally:
        small.stop()


# -- backfill chunks: the same answers as the PostgreSQL store --------------------------------
def test_backfill_chunks_behave_as_in_the_postgres_store(
    store: SupabaseStore, pg_store: PostgresStore
) -> None:
    chunks = [Chunk(f"c{i}", "p1", "X:BTCUSD", 1, "minute", T0 + i, T0 + i + 1) for i in range(3)]
    assert store.upsert_chunks(chunks) == 3
    assert store.upsert_chunks(chunks) == 0
    moved = Chunk("c0", "p2", "X:BTCUSD", 1, "minute", T0, T0 + 1)
    assert store.upsert_chunks([moved]) == 0
    assert store.get_chunk("c0") == pg_store.get_chunk("c0")
    assert store.get_chunk("c0").chunk.plan_id == "p2"  # type: ignore[union-attr]
    assert store.get_chunk("nope") is None
    assert store.claim_chunk("c1", T0, lease_ms=1000) == 1
    assert store.claim_chunk("c1", T0 + 10, lease_ms=1000) is None  # held
    store.touch_chunk("c1", 50, T0 + 500)
    assert store.claim_chunk("c1", T0 + 1200, lease_ms=1000) is None  # touched: still held
    assert store.claim_chunk("c1", T0 + 1600, lease_ms=1000) == 2  # lease ran out: taken over
    store.finish_chunk("c1", 120, T0 + 2000)
    store.fail_chunk("c1", "late failure", T0 + 2100)  # a done chunk stays done
    assert store.claim_chunk("c2", T0, lease_ms=1000) == 1
    store.fail_chunk("c2", "429 from vendor", T0 + 50, retry=True)
    for state in (store.get_chunk("c1"), store.get_chunk("c2")):
        assert state is not None
    assert store.get_chunk("c1") == pg_store.get_chunk("c1")
    assert store.get_chunk("c2") == pg_store.get_chunk("c2")
    assert store.chunk_progress("p1") == pg_store.chunk_progress("p1")
    assert store.chunk_progress("p1").counts == {"done": 1, "pending": 1}
    assert store.chunk_progress("p1").last_error == "429 from vendor"
    assert store.chunks_not_done("p1") == pg_store.chunks_not_done("p1") == ["c2"]


# -- errors: mapped to the storage tree; the key never shows ----------------------------------
def test_wrong_keys_are_permanent_and_name_the_setting(
    postgrest: PostgrestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    forged = make_jwt("not-the-project-secret", "service_role")
    for key in (postgrest.anon_key, forged, "sb_secret_not_a_jwt"):
        s = SupabaseStore(postgrest.url, Secret(key))
        with pytest.raises(PermanentStorageError, match="SUPABASE_SERVICE_KEY") as info:
            s.apply_batch(Batch("b", "trades", [trade("1")]))
        assert key not in str(info.value) and key not in repr(s)
        s.close()
    service = SupabaseStore(postgrest.url, Secret(postgrest.service_key))
    service.count_rows("crypto_trades")
    assert postgrest.service_key not in repr(service)
    secrets = (postgrest.anon_key, forged, "sb_secret_not_a_jwt", postgrest.service_key)
    assert not [k for k in secrets if k in caplog.text]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (429, {"message": "Too many requests"}, TransientStorageError),
        (503, {"code": "PGRST000", "message": "Could not connect"}, TransientStorageError),
        (502, b"<html>Bad gateway</html>", TransientStorageError),
        (500, {"code": "40P01", "message": "deadlock detected"}, TransientStorageError),
        (500, {"code": "57014", "message": "statement timeout"}, TransientStorageError),
        (404, {"code": "PGRST205", "message": "no table"}, PermanentStorageError),
        (400, {"code": "23514", "message": "check"}, PermanentStorageError),
    ],
)
def test_http_failures_map_to_the_error_tree(
    store: SupabaseStore, postgrest: PostgrestServer, status: int, body: Any, error: type
) -> None:
    postgrest.inject(status, body)
    with pytest.raises(error) as info:
        store.apply_batch(Batch("b", "trades", [trade("1")]))
    assert str(status) in str(info.value)
    assert store.apply_batch(Batch("b", "trades", [trade("1")])).stored == 1  # nothing half-done


def test_a_slow_answer_is_a_transient_timeout(
    supabase_store_factory: OpenRest, postgrest: PostgrestServer
) -> None:
    s = supabase_store_factory(timeout_s=0.3)
    postgrest.inject(200, {}, delay_s=1.0)
    with pytest.raises(TransientStorageError, match=r"no answer within 0\.3 s"):
        s.count_rows("crypto_trades")


def test_an_unreachable_server_is_transient() -> None:
    s = SupabaseStore("http://127.0.0.1:9", Secret("k"), timeout_s=2)
    with pytest.raises(TransientStorageError, match="cannot reach"):
        s.count_rows("crypto_trades")
    s.close()


def test_a_409_on_a_dedupe_insert_is_retried_row_by_row(
    store: SupabaseStore, postgrest: PostgrestServer
) -> None:
    store.add_events([SystemEvent("c", "t", "info", "m", T0, dedupe_key="a")])
    postgrest.inject(409, {"code": "23505", "message": "duplicate key value"})
    events = [SystemEvent("c", "t", "info", "m", T0, dedupe_key=k) for k in ("a", "b", "c")]
    assert store.add_events(events) == 2
    assert store.count_rows("system_events") == 3


def test_a_check_violation_is_permanent(store: SupabaseStore) -> None:
    wild = Sentiment("BTC", "perplexity", "bullish", 2.0, 0.8, "", T0, T0)
    with pytest.raises(PermanentStorageError, match="23514"):
        store.add_sentiments([wild])


def test_migrate_says_how_to_install_a_missing_schema(pg_url: str) -> None:
    server = PostgrestServer(pg_url).start()  # an empty schema: nothing installed
    try:
        s = SupabaseStore(server.url, Secret(server.service_key))
        with pytest.raises(PermanentStorageError, match=r"supabase/schema\.sql"):
            s.migrate()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE schema_migrations (version text PRIMARY KEY);"
                " INSERT INTO schema_migrations VALUES ('0001_initial')"
            )
        with pytest.raises(PermanentStorageError, match="0002_supabase"):
            s.migrate()
        s.close()
    finally:
        server.stop()


# -- the stand-in answers as PostgREST documents ----------------------------------------------
def test_the_stand_in_reports_constraint_violations_as_postgrest_does(
    postgrest: PostgrestServer,
) -> None:
    headers = {"apikey": postgrest.service_key, "Authorization": f"Bearer {postgrest.service_key}"}
    rest = f"{postgrest.url}/rest/v1"
    row = {"batch_id": "x", "kind": "trades", "row_count": 1}
    anon = {"Authorization": f"Bearer {postgrest.anon_key}"}
    forged = {"Authorization": "Bearer x.y.z"}
    no_kind = {**row, "batch_id": "y", "kind": None}
    with httpx.Client(headers=headers) as http:
        assert http.post(f"{rest}/ingest_batches", json=row).status_code == 201
        cases = [
            (http.post(f"{rest}/ingest_batches", json=row), 409, "23505"),
            (http.post(f"{rest}/ingest_batches", json=no_kind), 400, "23502"),
            (http.post(f"{rest}/market_sentiment", json={"confidence": 7}), 400, "23502"),
            (http.get(f"{rest}/nope"), 404, "PGRST205"),
            (http.post(f"{rest}/rpc/nope", json={}), 404, "PGRST202"),
            (http.get(f"{rest}/crypto_trades", headers=anon), 401, "42501"),
            (http.get(f"{rest}/crypto_trades", headers=forged), 401, "PGRST301"),
        ]
    for response, status, code in cases:
        body = response.json()
        assert (response.status_code, body["code"]) == (status, code), body
        assert set(body) == {"code", "details", "hint", "message"}
