"""Adoption of the original system's tables (issue 14) on PostgreSQL: `rrr db migrate` takes
tables made as the original system documented them (plus a column the user added) to rrr's
shape in place; every original row is in its table or in adopted_duplicates, unchanged; a
second run changes nothing; a dry run changes nothing; rrr then writes into them once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from rrr.errors import PermanentStorageError
from rrr.models import Bar, Batch, Quote, SystemEvent, Trade
from rrr.storage import open_store
from rrr_cli.main import app

ORIGINAL_TABLES = """
CREATE TABLE crypto_aggregates (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(), ticker TEXT, event_time TIMESTAMP,
    open NUMERIC, high NUMERIC, low NUMERIC, close NUMERIC, volume NUMERIC, vwap NUMERIC,
    trade_count INTEGER, created_at TIMESTAMP DEFAULT now(), notes TEXT);
CREATE TABLE crypto_trades (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(), ticker TEXT, event_time TIMESTAMP,
    price NUMERIC, size NUMERIC, exchange_id INTEGER, conditions INTEGER[], trade_id TEXT,
    created_at TIMESTAMP DEFAULT now(), notes TEXT);
CREATE TABLE crypto_quotes (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(), ticker TEXT, event_time TIMESTAMP,
    bid_price NUMERIC, bid_size NUMERIC, ask_price NUMERIC, ask_size NUMERIC,
    exchange_id INTEGER, created_at TIMESTAMP DEFAULT now());
CREATE TABLE market_sentiment (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(), asset TEXT, source TEXT,
    sentiment_label TEXT, sentiment_score NUMERIC, confidence NUMERIC, text TEXT,
    metadata JSONB, event_time TIMESTAMP, created_at TIMESTAMP DEFAULT now());
CREATE TABLE system_events (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(), event_time TIMESTAMP, component TEXT,
    event_type TEXT, severity TEXT, message TEXT, details JSONB,
    created_at TIMESTAMP DEFAULT now());
"""
TICK_TABLES = ("crypto_trades", "crypto_quotes", "crypto_aggregates")
ALL_TABLES = (*TICK_TABLES, "market_sentiment", "system_events")
DAY = "2024-01-02"


def fill_original(pg: psycopg.Connection[Any]) -> None:
    """Rows as the original system wrote them: duplicates (no natural keys), a trade without
    a vendor id, 1- then 5-minute bars for BTC, 5-minute bars for ETH, and SOL's 1- and
    5-minute bars interleaved (the case spacing cannot tell apart)."""
    trades = [  # ticker, minute, price, exchange, trade_id, created (minute), notes
        ("X:BTCUSD", 0, 100, 1, "t1", 1, "first"),
        ("X:BTCUSD", 0, 100, 1, "t1", 2, "copy"),  # duplicate, written later
        ("X:BTCUSD", 1, 101, 1, "t2", 1, None),
        ("X:BTCUSD", 2, 102, 1, None, 1, "no vendor id"),
        ("X:ETHUSD", 0, 50, 2, "t1", 1, None),  # same trade_id, another ticker: not a copy
    ]
    for ticker, minute, price, exchange, trade_id, created, notes in trades:
        pg.execute(
            "INSERT INTO crypto_trades (ticker, event_time, price, size, exchange_id,"
            " conditions, trade_id, created_at, notes) VALUES (%s, %s, %s, 1, %s, '{1,2}', %s,"
            " %s, %s)",
            (ticker, at(minute), price, exchange, trade_id, at(created), notes),
        )
    for created in (1, 2):  # the same quote twice
        pg.execute(
            "INSERT INTO crypto_quotes (ticker, event_time, bid_price, bid_size, ask_price,"
            " ask_size, exchange_id, created_at) VALUES ('X:BTCUSD', %s, 99, 1, 101, 2, 1, %s)",
            (at(0), at(created)),
        )
    pg.execute(
        "INSERT INTO crypto_quotes (ticker, event_time, bid_price, bid_size, ask_price,"
        " ask_size, exchange_id) VALUES ('X:BTCUSD', %s, 98, 1, 102, 2, 1)",
        (at(1),),
    )
    bars = [("X:BTCUSD", m) for m in range(10)] + [("X:BTCUSD", m) for m in (10, 15, 20)]
    bars += [("X:ETHUSD", m) for m in (0, 5, 10, 15, 20)]
    bars += [("X:SOLUSD", m) for m in range(5)] + [("X:SOLUSD", 0)]  # the 5m bar written last
    bars += [("X:BTCUSD", 3)]  # BTC's 10:03 bar written twice
    for n, (ticker, minute) in enumerate(bars):
        pg.execute(
            "INSERT INTO crypto_aggregates (ticker, event_time, open, high, low, close, volume,"
            " vwap, trade_count, created_at, notes) VALUES (%s, %s, 1, 2, 1, %s, 3, 1.5, 7,"
            " %s, %s)",
            (ticker, at(minute), 1 + n, at(30 + n), f"bar {n}"),
        )
    for minute, score in ((1, 0.5), (7, 0.2)):  # two in one 15-minute slot
        pg.execute(
            "INSERT INTO market_sentiment (asset, source, sentiment_label, sentiment_score,"
            " confidence, text, metadata, event_time, created_at) VALUES ('BTC', 'perplexity',"
            " 'bullish', %s, 0.9, 'up', '{\"model\": \"sonar\"}', %s, %s)",
            (score, at(minute), at(minute)),
        )
    pg.execute(
        "INSERT INTO system_events (event_time, component, event_type, severity, message,"
        " details) VALUES (%s, 'data_quality_validator', 'gap', 'warning', 'gap found', '{}')",
        (at(5),),
    )


def at(minute: int) -> str:
    return f"{DAY} 10:{minute:02d}:00"


def rows_by_id(pg: psycopg.Connection[Any], table: str) -> dict[str, dict[str, Any]]:
    """Each row as JSON (the original's columns: times as text), by id."""
    rows = pg.execute(f"SELECT id::text, to_jsonb(t) FROM {table} AS t").fetchall()
    return {r[0]: r[1] for r in rows}


def catalog(pg: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    columns = pg.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = current_schema()"
        " ORDER BY 1, 2"
    ).fetchall()
    constraints = pg.execute(
        "SELECT conrelid::regclass::text, conname FROM pg_constraint"
        " WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 2"
    ).fetchall()
    counts = [pg.execute(f"SELECT count(*) FROM {t}").fetchall() for t in ALL_TABLES]
    return [*columns, *constraints, *counts]


def migrate(tmp_path: Path, url: str, *args: str) -> str:
    env = {"RRR_HOME": str(tmp_path), "DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:1/0",
           "COLUMNS": "200"}  # fmt: skip
    result = CliRunner().invoke(app, ["db", "migrate", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def original(pg_url: str) -> str:
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute(ORIGINAL_TABLES.encode())
        fill_original(pg)
    return pg_url


def test_dry_run_prints_the_plan_and_changes_nothing(original: str, tmp_path: Path) -> None:
    with psycopg.connect(original, autocommit=True) as pg:
        before = catalog(pg)
        out = migrate(tmp_path, original, "--dry-run")
        assert catalog(pg) == before
        assert pg.execute("SELECT to_regclass('adopted_duplicates')").fetchone() == (None,)
    assert "dry run: nothing changed" in out
    trades = out.split("crypto_trades:")[1].split("crypto_quotes:")[0]
    assert "columns to add: received_time, source" in trades
    assert "event_time timestamp -> timestamptz (UTC)" in trades
    assert "duplicates found: 1" in trades
    assert "crypto_trades_natural_key (ticker, exchange_id, trade_id)" in trades
    bars = out.split("crypto_aggregates:")[1]
    assert "columns to add: timeframe, end_time, source, updated_at" in bars
    assert "duplicates found: 2" in bars  # BTC 10:03 written twice, SOL's 5m bar at 10:00


def test_migrate_adopts_the_original_tables_losing_no_row(original: str, tmp_path: Path) -> None:
    with psycopg.connect(original, autocommit=True) as pg:
        pg.execute("SET TimeZone = 'UTC'")  # times as JSON in UTC, before and after
        originals = {t: rows_by_id(pg, t) for t in ALL_TABLES}
        out = migrate(tmp_path, original)
        assert "crypto_trades:\n  rows kept: 4; duplicates set aside: 1;" in out
        assert "crypto_aggregates:\n  rows kept: 23; duplicates set aside: 2;" in out
        assert "market_sentiment:\n  rows kept: 1; duplicates set aside: 1;" in out

        # Every original row is in its table or in adopted_duplicates, its content intact.
        for table in ALL_TABLES:
            kept = rows_by_id(pg, table)
            aside = {
                r[0]: r[1]
                for r in pg.execute(
                    "SELECT row->>'id', row FROM adopted_duplicates WHERE table_name = %s",
                    (table,),
                ).fetchall()
            }
            assert not kept.keys() & aside.keys()
            assert kept.keys() | aside.keys() == originals[table].keys(), table
            for row_id, row in originals[table].items():
                now = kept.get(row_id) or aside[row_id]
                for column, value in row.items():
                    if column in ("event_time", "created_at"):
                        # TIMESTAMP read as UTC: the same wall time, now with its zone.
                        assert now[column].startswith(value), (table, column)
                    elif not (table == "crypto_trades" and column == "trade_id"):
                        assert now[column] == value, (table, column)
        # The earliest copy stays; the later is set aside with its key.
        assert pg.execute(
            "SELECT notes FROM crypto_trades WHERE trade_id = 't1' AND ticker = 'X:BTCUSD'"
        ).fetchall() == [("first",)]
        assert pg.execute(
            "SELECT reason, key FROM adopted_duplicates WHERE table_name = 'crypto_trades'"
        ).fetchall() == [("duplicate", {"ticker": "X:BTCUSD", "exchange_id": 1, "trade_id": "t1"})]
        # A trade without a vendor id keeps its row: its id is its trade_id.
        assert pg.execute(
            "SELECT trade_id = id::text, notes, source FROM crypto_trades WHERE notes LIKE 'no%'"
        ).fetchall() == [(True, "no vendor id", "polygon")]
        # Timeframes from the spacing: BTC's 1-minute run, then its 5-minute run.
        bars = pg.execute(
            "SELECT ticker, extract(minute FROM event_time)::int, timeframe,"
            " end_time - event_time, updated_at = created_at FROM crypto_aggregates"
            " ORDER BY 1, 2"
        ).fetchall()
        frames = {(t, m): tf for t, m, tf, _, _ in bars}
        assert [frames["X:BTCUSD", m] for m in (*range(10), 10, 15, 20)] == ["1m"] * 10 + ["5m"] * 3
        assert {frames["X:ETHUSD", m] for m in (0, 5, 10, 15, 20)} == {"5m"}
        assert {frames["X:SOLUSD", m] for m in range(5)} == {"1m"}
        assert all(
            span.total_seconds() == {"1m": 60, "5m": 300}[tf] and same
            for _, _, tf, span, same in bars
        )
        assert pg.execute(
            "SELECT interval_start FROM market_sentiment"
        ).fetchone()[0].isoformat() == f"{DAY}T10:00:00+00:00"  # fmt: skip

        # rrr's checks hold for rows written from now on (NOT VALID: old rows kept as they are).
        with pytest.raises(psycopg.errors.CheckViolation, match="crypto_trades_price_check"):
            pg.execute(
                "INSERT INTO crypto_trades (ticker, exchange_id, trade_id, price, size,"
                " event_time, source) VALUES ('X:BTCUSD', 1, 'bad', -1, 1, now(), 'polygon')"
            )
        assert pg.execute(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'c' AND NOT convalidated"
            " AND conrelid = 'crypto_trades'::regclass"
        ).fetchone() == (2,)

        # A second run changes nothing.
        before = catalog(pg)
        again = migrate(tmp_path, original)
        assert "no original tables to adopt" in again
        assert "schema is up to date" in again
        assert catalog(pg) == before

        # rrr writes into the adopted tables, each batch exactly once.
        store = open_store(original)
        try:
            assert store.migrate() == []
            t0 = 1_704_189_600_000 + 3_600_000  # 11:00 UTC on DAY
            trade = Trade("X:BTCUSD", 1, "new", 100.5, 2.0, (37,), t0, t0, "polygon")
            quote = Quote("X:BTCUSD", 1, 99.0, 1.0, 101.0, 1.0, t0, t0, "polygon")
            bar = Bar("X:BTCUSD", "1m", 1, 2, 1, 1.5, 3, None, None, t0, t0 + 60_000, "polygon")
            batches = [
                Batch("b-trades", "trades", [trade]),
                Batch("b-quotes", "quotes", [quote]),
                Batch("b-bars", "bars", [bar]),
            ]
            counts = {t: store.count_rows(t) for t in TICK_TABLES}
            for _ in range(2):
                for batch in batches:
                    store.apply_batch(batch)
            # The same rows again under a new batch id: the natural keys hold.
            for batch in batches:
                store.apply_batch(Batch(batch.id + "-again", batch.kind, batch.rows))
            assert {t: store.count_rows(t) for t in TICK_TABLES} == {
                t: n + 1 for t, n in counts.items()
            }
            store.add_events(
                [SystemEvent("data_quality_validator", "gap", "warning", "gap", t0, {}, "k1")]
            )
        finally:
            store.close()
        new_trade = pg.execute(
            "SELECT id IS NOT NULL, created_at IS NOT NULL, conditions, notes FROM crypto_trades"
            " WHERE trade_id = 'new'"
        ).fetchall()
        assert new_trade == [(True, True, [37], None)]
        # The original system's documented query returns the validator's events, old and new.
        documented = pg.execute(
            "SELECT message FROM system_events WHERE component = 'data_quality_validator'"
            " ORDER BY event_time DESC LIMIT 10"
        ).fetchall()
        assert documented == [("gap",), ("gap found",)]


def test_pasting_schema_sql_onto_original_tables_stops_naming_the_adoption(
    original: str,
) -> None:
    script = (Path(__file__).resolve().parents[2] / "supabase" / "schema.sql").read_text()
    with psycopg.connect(original, autocommit=True) as pg:
        before = catalog(pg)
        with pytest.raises(psycopg.errors.RaiseException, match="rrr db migrate --dry-run"):
            pg.execute(script.encode())
        pg.execute("ROLLBACK")  # the script's own BEGIN left the session in the failed block
        assert catalog(pg) == before  # one transaction: nothing of the script stayed


def test_the_store_refuses_to_migrate_original_tables_not_adopted(original: str) -> None:
    store = open_store(original)
    try:
        with pytest.raises(PermanentStorageError, match="rrr db migrate --dry-run"):
            store.migrate()
    finally:
        store.close()


def test_a_run_stopped_at_one_table_keeps_the_ones_before_and_resumes(
    original: str, tmp_path: Path
) -> None:
    env = {"RRR_HOME": str(tmp_path), "DATABASE_URL": original}
    with psycopg.connect(original, autocommit=True) as pg:
        # market_sentiment cannot be adopted without its label (nothing to derive it from).
        pg.execute("ALTER TABLE market_sentiment RENAME COLUMN sentiment_label TO label")
        failed = CliRunner().invoke(app, ["db", "migrate"], env=env)
        assert failed.exit_code == 2
        said = " ".join(failed.output.split())
        assert "market_sentiment cannot be adopted: column sentiment_label is missing" in said
        assert "run `rrr db migrate` again" in said
        for table in TICK_TABLES:  # adopted before it, committed: said so too
            assert f"{table}: rows kept:" in said
        adopted = pg.execute(
            "SELECT conrelid::regclass::text FROM pg_constraint"
            " WHERE conname LIKE '%%natural_key'"
            # This test's schema only: other tests adopt or migrate beside it (pytest -n 2).
            " AND connamespace = current_schema()::regnamespace ORDER BY 1"
        ).fetchall()
        assert adopted == [(t,) for t in sorted(TICK_TABLES)]  # the tables before it
        pg.execute("ALTER TABLE market_sentiment RENAME COLUMN label TO sentiment_label")
        out = migrate(tmp_path, original)
    assert "crypto_trades" not in out  # already adopted: not again
    assert "market_sentiment:\n  rows kept: 1" in out and "system_events:" in out
