"""Migration 0004 on a database written before bar versions: every row is kept, and a stored
bar stands at the time it was written, so a version observed before that write never replaces
it while a later one does."""

from __future__ import annotations

import sqlite3
import time

import psycopg
import pytest

from rrr.models import Bar, Batch
from rrr.storage import open_store
from rrr.storage.base import migrations
from rrr.storage.sqlite import split_statements, sqlite_path

T0 = 1_706_649_600_000
BEFORE_VERSIONS = 3  # 0001_initial .. 0003_dead_letter_keys
INSERT_OLD_BAR = (
    "INSERT INTO crypto_aggregates (ticker, timeframe, open, high, low, close, volume, vwap,"
    " trade_count, event_time, end_time, source) VALUES ('X:BTCUSD', '1m', 1, 2, 1, 1.5, 3,"
    " NULL, NULL, {start}, {end}, 'polygon')"
)


def schema_before_versions(url: str) -> None:
    """The schema and one bar as the code before this migration left them."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(sqlite_path(url))
        conn.execute(
            "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER)"
        )
        for version, sql in migrations("sqlite"):
            if version.startswith("0004"):
                break
            for statement in split_statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
        conn.execute(INSERT_OLD_BAR.format(start=T0, end=T0 + 60_000))
        conn.commit()
        conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(
            "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, sql in migrations("postgres")[:BEFORE_VERSIONS]:
            pg.execute(sql.encode())
            pg.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        ts = "'epoch'::timestamptz + {} * interval '1 millisecond'"
        pg.execute(INSERT_OLD_BAR.format(start=ts.format(T0), end=ts.format(T0 + 60_000)).encode())


def bar(close: float) -> Bar:
    return Bar("X:BTCUSD", "1m", 1.0, 2.0, 1.0, close, 3.0, None, None, T0, T0 + 60_000, "p")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_migration_keeps_old_bars_and_versions_them_by_their_write(
    kind: str, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue("sqlite_url" if kind == "sqlite" else "pg_url"))
    schema_before_versions(url)
    written_ms = int(time.time() * 1000)
    store = open_store(url)
    try:
        assert [v for v in store.migrate() if v.startswith("0004")] == ["0004_bar_versions"]
        assert list(store.read_bars("X:BTCUSD", T0, T0 + 60_000)["close"]) == [1.5]
        # Observed an hour before the old row was written: the old row stays.
        old = store.apply_batch(Batch("old", "bars", [bar(9.0)]), version_ms=written_ms - 3_600_000)
        assert old.stored == 0
        assert list(store.read_bars("X:BTCUSD", T0, T0 + 60_000)["close"]) == [1.5]
        new = store.apply_batch(Batch("new", "bars", [bar(2.5)]), version_ms=written_ms + 60_000)
        assert new.stored == 1
        assert list(store.read_bars("X:BTCUSD", T0, T0 + 60_000)["close"]) == [2.5]
        assert store.count_rows("crypto_aggregates") == 1
    finally:
        store.close()
