"""The Supabase REST store through supabase-py against the real PostgREST (the pinned binary)
over the real PostgreSQL, with Supabase's roles and gateway (tests/support/supabase_local.py):
the store contract, exactly-once parts, error mapping against the server's own answers, the key
kept out of every message, pruning, the schema cache after a migration, and reads equal to the
PostgreSQL store's over the same rows.

Faults the real server cannot be made to show on demand are injected at the gateway in front of
it (``postgrest.inject``), where a real project's 429s, 502s and stalls come from; each such
test says which fault it needs.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pandas as pd
import psycopg
import pytest

from rrr.backfill_chunks import Chunk
from rrr.config import Secret
from rrr.errors import PermanentStorageError, TransientStorageError
from rrr.models import Bar, Batch, Quote, Sentiment, SystemEvent, Trade
from rrr.storage.full_schema import full_schema_sql
from rrr.storage.postgres import PostgresStore
from rrr.storage.supabase import SupabaseStore
from rrr.storage.supabase_errors import RestConflict, SchemaCacheMiss, rest_error
from tests.integration import test_store_contract as contract
from tests.integration.conftest import open_rest_store
from tests.support.supabase_keys import make_jwt
from tests.support.supabase_local import LocalSupabase

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
def pg_store(pg_url: str, postgrest: LocalSupabase) -> Iterator[PostgresStore]:
    """The PostgreSQL store on the same schema as ``store``, to compare reads and writes."""
    s = PostgresStore(pg_url)
    yield s
    s.close()


def trade(trade_id: str, price: float = 43575.6, ts: int = T0) -> Trade:
    return contract.trade(trade_id, price=price, ts=ts)


def test_a_big_batch_goes_in_parts_each_exactly_once(
    supabase_store_factory: OpenRest, postgrest: LocalSupabase
) -> None:
    """Injected: a 503 from the gateway in the middle of a redelivery."""
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


def test_reads_page_past_the_servers_max_rows(local_supabase: Callable[..., LocalSupabase]) -> None:
    small = local_supabase(max_rows=7)  # the project's "max rows" setting (db-max-rows)
    s = open_rest_store(small)
    s.apply_batch(Batch("t", "trades", [trade(str(i), ts=T0 + i) for i in range(30)]))
    df = s.read_trades("X:BTCUSD", T0, T0 + 30)
    assert list(df["ts_ms"]) == [T0 + i for i in range(30)]
    s.close()


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
    postgrest: LocalSupabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    forged = make_jwt("not-the-project-secret-but-32-chars-long", "service_role")
    for key in (postgrest.anon_key, forged, "sb_secret_not_a_jwt"):
        s = open_rest_store(postgrest, key)
        with pytest.raises(PermanentStorageError, match="SUPABASE_SERVICE_KEY") as info:
            s.apply_batch(Batch("b", "trades", [trade("1")]))
        assert key not in str(info.value) and key not in repr(s)
        s.close()
    service = open_rest_store(postgrest)
    service.count_rows("crypto_trades")
    assert postgrest.service_key not in repr(service)
    secrets = (postgrest.anon_key, forged, "sb_secret_not_a_jwt", postgrest.service_key,
               postgrest.jwt_secret)  # fmt: skip
    assert not [k for k in secrets if k in caplog.text]
    service.close()


SCHEMA_MISS_REPEATS = 200  # more than the store's retries within schema_wait_s below


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
    supabase_store_factory: OpenRest, postgrest: LocalSupabase, status: int, body: Any, error: type
) -> None:
    """Injected at the gateway: its 429 and 502, and answers of PostgREST's own it cannot be
    made to give at will (pool down, deadlock, statement timeout, PGRST205 from PostgREST
    12.2+). The real server's own codes: test_the_real_servers_errors_map_to_the_tree."""
    store = supabase_store_factory(schema_wait_s=0.3)
    cache_miss = body.get("code") == "PGRST205" if isinstance(body, dict) else False
    postgrest.inject(status, body, times=SCHEMA_MISS_REPEATS if cache_miss else 1)
    with pytest.raises(error) as info:
        store.apply_batch(Batch("b", "trades", [trade("1")]))
    assert str(status) in str(info.value)
    postgrest.gateway.clear_faults()
    assert store.apply_batch(Batch("b", "trades", [trade("1")])).stored == 1  # nothing half-done


def test_a_slow_answer_is_a_transient_timeout(
    supabase_store_factory: OpenRest, postgrest: LocalSupabase
) -> None:
    """Injected: a stall in the network (the gateway answers after 1 s)."""
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
    store: SupabaseStore, postgrest: LocalSupabase
) -> None:
    """Injected: the 409 of a concurrent writer's row landing between the store's check and its
    insert (a race no test can time); the real 409 is in the test below."""
    store.add_events([SystemEvent("c", "t", "info", "m", T0, dedupe_key="a")])
    postgrest.inject(409, {"code": "23505", "message": "duplicate key value"})
    events = [SystemEvent("c", "t", "info", "m", T0, dedupe_key=k) for k in ("a", "b", "c")]
    assert store.add_events(events) == 2
    assert store.count_rows("system_events") == 3


def test_a_real_409_from_another_unique_key_is_retried_row_by_row(
    store: SupabaseStore, pg_url: str
) -> None:
    # A unique key besides dedupe_key (a rule of this test's own schema): PostgREST refuses the
    # whole insert with 409 23505, and row by row the others still land.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE UNIQUE INDEX one_per_message ON system_events (message)")
    store.add_events([SystemEvent("c", "t", "info", "taken", T0, dedupe_key="a")])
    events = [
        SystemEvent("c", "t", "info", message, T0, dedupe_key=key)
        for key, message in (("a", "taken"), ("b", "taken"), ("c", "new 1"), ("d", "new 2"))
    ]
    assert store.add_events(events) == 2
    assert store.count_rows("system_events") == 3


def test_a_check_violation_is_permanent(store: SupabaseStore) -> None:
    wild = Sentiment("BTC", "perplexity", "bullish", 2.0, 0.8, "", T0, T0)
    with pytest.raises(PermanentStorageError, match="23514"):
        store.add_sentiments([wild])


def test_migrate_says_how_to_install_a_missing_schema(
    local_supabase: Callable[..., LocalSupabase], pg_url: str
) -> None:
    server = local_supabase(install=False)  # an empty schema: nothing installed
    s = open_rest_store(server)
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


# -- pruning: no rows sent back -----------------------------------------------------------------
def test_prune_sends_no_row_back_and_says_how_many(
    store: SupabaseStore, postgrest: LocalSupabase, pg_url: str
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ingest_batches (batch_id, kind, row_count, applied_at)"
            " SELECT 'b' || i, 'trades', 1, '2024-01-01'::timestamptz"
            " FROM generate_series(1, 1500) i"
        )
    assert store.prune_ingest_batches(older_than_ms=T0) == 1500
    (delete,) = [e for e in postgrest.exchanges if e.method == "DELETE"]
    assert "return=minimal" in delete.prefer and "count=exact" in delete.prefer
    assert (delete.status, delete.response_bytes) == (204, 0)  # not 1,500 rows (~150 KB)
    assert store.prune_ingest_batches(older_than_ms=T0) == 0
    assert store.count_rows("ingest_batches") == 0


# -- PostgREST's schema cache right after a migration -------------------------------------------
def install_schema(pg_url: str, *, notify: bool) -> None:
    """supabase/schema.sql as pasted; without ``notify`` its NOTIFYs are left out, so PostgREST
    keeps its old schema cache until the test reloads it."""
    script = full_schema_sql("postgres")
    if not notify:
        script = script.replace("NOTIFY pgrst, 'reload schema';", "")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(script.encode())


def test_a_call_right_after_the_migration_waits_for_the_schema_cache(
    local_supabase: Callable[..., LocalSupabase], pg_url: str
) -> None:
    server = local_supabase(install=False, channel="pgrst")  # Supabase's channel
    s = open_rest_store(server)
    install_schema(pg_url, notify=True)  # PostgREST reloads some 0.1 s after the NOTIFY
    assert s.apply_batch(Batch("b", "trades", [trade("1")])).stored == 1
    s.close()


def test_a_function_missing_from_the_schema_cache_is_retried_until_it_reloads(
    local_supabase: Callable[..., LocalSupabase], pg_url: str
) -> None:
    # Its own channel (the default): other tests' schema installs NOTIFY pgrst.
    channel = f"pgrst_{uuid.uuid4().hex[:8]}"
    server = local_supabase(install=False, channel=channel)
    s = open_rest_store(server)
    install_schema(pg_url, notify=False)  # the functions exist; PostgREST does not know yet

    def reload_later() -> None:
        time.sleep(0.5)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"NOTIFY {channel}, 'reload schema'")

    reloader = threading.Thread(target=reload_later)
    reloader.start()
    try:
        assert s.apply_batch(Batch("b", "trades", [trade("1")])).stored == 1
    finally:
        reloader.join()
    calls = [e.status for e in server.exchanges if e.path == "/rpc/rrr_apply_batch"]
    assert calls[0] == 404 and calls[-1] == 200, calls
    s.close()


def test_a_function_still_missing_after_the_wait_is_permanent(
    local_supabase: Callable[..., LocalSupabase],
) -> None:
    server = local_supabase(install=False)  # and never installed
    s = open_rest_store(server, schema_wait_s=0.5)
    started = time.monotonic()
    with pytest.raises(SchemaCacheMiss, match=r"PGRST202.*supabase/schema\.sql.*after 0\.5 s"):
        s.latest_event_times()
    assert 0.4 <= time.monotonic() - started < 3
    s.close()


# -- the real server's own error answers, as the store maps them ------------------------------
def test_the_real_servers_errors_map_to_the_tree(postgrest: LocalSupabase) -> None:
    service = {"apikey": postgrest.service_key, "Authorization": f"Bearer {postgrest.service_key}"}
    profile = {"Accept-Profile": postgrest.schema, "Content-Profile": postgrest.schema}
    rest = f"{postgrest.url}/rest/v1"
    row = {"batch_id": "x", "kind": "trades", "row_count": 1}
    anon = {"apikey": postgrest.anon_key, "Authorization": f"Bearer {postgrest.anon_key}"}
    forged = {"Authorization": "Bearer " + make_jwt("another-projects-secret-32-chars-long", "x")}
    with httpx.Client(headers={**service, **profile}) as http:
        assert http.post(f"{rest}/ingest_batches", json=row).status_code == 201
        cases = [
            (http.post(f"{rest}/ingest_batches", json=row), 409, "23505", RestConflict),
            (http.post(f"{rest}/ingest_batches", json={**row, "batch_id": "y", "kind": None}),
             400, "23502", PermanentStorageError),
            (http.get(f"{rest}/nope"), 404, "42P01", PermanentStorageError),
            (http.post(f"{rest}/rpc/nope", json={}), 404, "PGRST202", SchemaCacheMiss),
            (http.post(f"{rest}/rpc/rrr_apply_batch", json={"wrong": 1}), 404, "42883",
             PermanentStorageError),
            (http.get(f"{rest}/crypto_trades", headers=anon), 401, "42501", PermanentStorageError),
            (http.post(f"{rest}/rpc/rrr_latest_event_times", headers=anon, json={}), 401, "42501",
             PermanentStorageError),
            (http.get(f"{rest}/crypto_trades", headers=forged), 401, "PGRST301",
             PermanentStorageError),
            (http.get(f"{rest}/crypto_trades", headers={"Accept-Profile": "public"}), 406,
             "PGRST106", PermanentStorageError),
        ]  # fmt: skip
    helps = {
        "42P01": "supabase/schema.sql",
        "PGRST202": "supabase/schema.sql",
        "42883": "supabase/schema.sql",
        "42501": "SUPABASE_SERVICE_KEY",
        "PGRST301": "SUPABASE_SERVICE_KEY",
        "PGRST106": "Exposed schemas",
    }
    for response, status, code, error in cases:
        body = response.json()
        assert (response.status_code, body["code"]) == (status, code), body
        assert set(body) == {"code", "details", "hint", "message"}
        mapped = rest_error(response.status_code, body["code"], body["message"], "request")
        assert type(mapped) is error, (code, mapped)
        assert helps.get(code, code) in str(mapped)
