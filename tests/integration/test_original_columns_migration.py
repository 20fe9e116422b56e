"""Migration 0005 (issue 14): rrr's tables become a superset of the original system's documented
ones. A database rrr wrote before it keeps every row, each row gets its own uuid ``id`` and
keeps its write time as ``created_at``; the natural keys, now UNIQUE beside the ``id`` primary
key, still make a re-sent row a no-op; a fresh database gets the same shape; and on PostgreSQL
running the step again (as on a table adopted with these columns already) changes nothing."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import psycopg
import pytest

from rrr.models import Batch, Trade
from rrr.storage import open_store
from rrr.storage.base import migrations
from rrr.storage.sqlite import split_statements, sqlite_path
from rrr.storage.tables import BARS, QUOTES, SENTIMENTS, TRADES

T0 = 1_706_649_600_000
WRITTEN_MS = T0 + 5_000  # when the old rows were written: their inserted_at
TICK_TABLES = (TRADES, QUOTES, BARS)
WITH_UUID = (*TICK_TABLES, SENTIMENTS)

OLD_ROWS = (
    "INSERT INTO crypto_trades (ticker, exchange_id, trade_id, price, size, conditions,"
    " event_time, received_time, source, inserted_at)"
    " VALUES ('X:BTCUSD', 1, 't1', 100, 1, {conditions}, {t0}, NULL, 'polygon', {written})",
    "INSERT INTO crypto_quotes (ticker, exchange_id, bid_price, bid_size, ask_price, ask_size,"
    " event_time, received_time, source, inserted_at)"
    " VALUES ('X:BTCUSD', 1, 99, 1, 101, 1, {t0}, NULL, 'polygon', {written})",
    "INSERT INTO crypto_aggregates (ticker, timeframe, open, high, low, close, volume, vwap,"
    " trade_count, event_time, end_time, source, inserted_at) VALUES ('X:BTCUSD', '1m', 1, 2,"
    " 1, 1.5, 3, NULL, NULL, {t0}, {t0}, 'polygon', {written})",
    "INSERT INTO market_sentiment (asset, source, sentiment_label, sentiment_score, confidence,"
    " text, metadata, event_time, interval_start)"
    " VALUES ('BTC', 'perplexity', 'bullish', 0.25, 0.5, 'up', '{{}}', {t0}, {t0})",
    "INSERT INTO system_events (event_time, component, event_type, severity, message)"
    " VALUES ({t0}, 'quality', 'gap', 'warning', 'a gap')",
)


def schema_before_0005(url: str) -> None:
    """The schema through 0004 and one row in each table, as rrr wrote them before 0005."""
    dialect = "sqlite" if url.startswith("sqlite:") else "postgres"
    before = [(v, sql) for v, sql in migrations(dialect) if v < "0005"]
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(sqlite_path(url))
        conn.execute(
            "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER)"
        )
        for version, sql in before:
            for statement in split_statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
        for insert in OLD_ROWS:
            conn.execute(insert.format(conditions="'[1]'", t0=T0, written=WRITTEN_MS))
        conn.commit()
        conn.close()
        return
    ts = "'epoch'::timestamptz + {} * interval '1 millisecond'"
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(
            "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, sql in before:
            pg.execute(sql.encode())
            pg.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        for insert in OLD_ROWS:
            sql = insert.format(conditions="'{1}'", t0=ts.format(T0), written=ts.format(WRITTEN_MS))
            pg.execute(sql.encode())


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(sqlite_path(url))
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    with psycopg.connect(url, autocommit=True) as pg:
        return pg.execute(sql.encode()).fetchall()


def column_names(url: str, table: str) -> set[str]:
    if url.startswith("sqlite:"):
        return {r[1] for r in query(url, f"PRAGMA table_info({table})")}
    return {
        r[0]
        for r in query(
            url,
            "SELECT column_name FROM information_schema.columns"
            f" WHERE table_schema = current_schema() AND table_name = '{table}'",
        )
    }


def ms(url: str, column: str) -> str:
    return column if url.startswith("sqlite:") else f"(extract(epoch FROM {column}) * 1000)::bigint"


def assert_id(kind: str, row_id: Any) -> None:
    """PostgreSQL's ids are uuid4s; SQLite's 128 random bits as 32 hex digits (its 0005 says
    why), which PostgreSQL's uuid type reads as they are."""
    if kind == "postgres":
        assert uuid.UUID(str(row_id)).version == 4
    else:
        assert len(row_id) == 32 and uuid.UUID(row_id).hex == row_id


def trade(trade_id: str) -> Trade:
    return Trade("X:BTCUSD", 1, trade_id, 100.0, 1.0, (1,), T0, None, "polygon")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_rows_written_before_keep_their_data_and_get_ids_and_keys_still_dedupe(
    kind: str, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue("sqlite_url" if kind == "sqlite" else "pg_url"))
    schema_before_0005(url)
    store = open_store(url)
    try:
        assert store.migrate() == ["0005_original_columns"]
        for table in WITH_UUID:
            assert "inserted_at" not in column_names(url, table.name)
            [(row_id, created_ms)] = query(
                url, f"SELECT id, {ms(url, 'created_at')} FROM {table.name}"
            )
            assert_id(kind, row_id)
            if table in TICK_TABLES:  # the write time is kept; sentiments had none
                assert created_ms == WRITTEN_MS
        [(event_created,)] = query(url, "SELECT created_at FROM system_events")
        assert event_created is not None

        # The natural key still makes a re-sent trade a no-op; a new one gets its own id.
        assert store.apply_batch(Batch("again", "trades", [trade("t1")])).stored == 0
        assert store.apply_batch(Batch("new", "trades", [trade("t2")])).stored == 1
        ids = query(url, "SELECT id FROM crypto_trades")
        assert len({str(i) for (i,) in ids}) == 2
        conditions = store.read_trades("X:BTCUSD", T0, T0 + 1)["conditions"]
        assert [list(c) for c in conditions] == [[1], [1]]
        sentiments = store.read_sentiments("BTC")
        assert list(sentiments["score"]) == [0.25] and list(sentiments["confidence"]) == [0.5]
    finally:
        store.close()


def postgres_shape(url: str) -> list[tuple[Any, ...]]:
    """What 0005 decides: columns and types, constraints, and the rows' ids."""
    columns = query(
        url,
        "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = current_schema()"
        " ORDER BY table_name, column_name",
    )
    constraints = query(
        url,
        "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)"
        " FROM pg_constraint WHERE connamespace = current_schema()::regnamespace"
        " ORDER BY 1, 2",
    )
    ids = query(url, "SELECT id::text FROM crypto_trades ORDER BY id")
    return [*columns, *constraints, *ids]


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "from_0004"])
def test_postgres_target_shape_and_a_second_run_changes_nothing(pg_url: str, fresh: bool) -> None:
    if not fresh:
        schema_before_0005(pg_url)
    store = open_store(pg_url)
    try:
        store.migrate()
        store.apply_batch(Batch("b", "trades", [trade("t9")]))
    finally:
        store.close()
    for table in TICK_TABLES:
        constraints = dict(
            query(
                pg_url,
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                f" WHERE conrelid = '{table.name}'::regclass AND contype IN ('p', 'u')",
            )
        )
        assert constraints == {
            f"{table.name}_pkey": "PRIMARY KEY (id)",
            f"{table.name}_natural_key": f"UNIQUE ({', '.join(table.key)})",
        }
    types = dict(
        query(
            pg_url,
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND column_name IN"
            " ('id', 'created_at', 'conditions', 'sentiment_score', 'confidence')",
        )
    )
    for table in WITH_UUID:
        assert types[f"{table.name}.id"] == "uuid"
        assert types[f"{table.name}.created_at"] == "timestamp with time zone"
    assert types["system_events.created_at"] == "timestamp with time zone"
    assert types["crypto_trades.conditions"] == "ARRAY"
    assert query(
        pg_url,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = 'crypto_trades'::regclass AND attname = 'conditions'",
    ) == [("integer[]",)]
    assert types["market_sentiment.sentiment_score"] == "numeric"
    assert types["market_sentiment.confidence"] == "numeric"

    # A column the user added is kept, and the step run again changes nothing.
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute("ALTER TABLE crypto_trades ADD COLUMN notes TEXT DEFAULT 'mine'")
    shape = postgres_shape(pg_url)
    [(_, step)] = [(v, sql) for v, sql in migrations("postgres") if v.startswith("0005")]
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute(step.encode())
    assert postgres_shape(pg_url) == shape
    assert {n for (n,) in query(pg_url, "SELECT notes FROM crypto_trades")} == {"mine"}
