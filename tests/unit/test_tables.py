"""The tables described once (rrr/storage/tables.py) agree with the rows and the migrations."""

from pathlib import Path

import pytest

from rrr.backfill_chunks import Chunk
from rrr.models import Trade
from rrr.storage.sqlite import SqliteStore
from rrr.storage.tables import CHUNKS, DESCRIBED, TRADES, Table, record_values, sqlite_insert


def test_a_table_must_name_its_row_fields_in_order() -> None:
    swapped = (TRADES.columns[1], TRADES.columns[0], *TRADES.columns[2:])
    with pytest.raises(TypeError, match="not Trade fields"):
        Table("trades", "crypto_trades", Trade, swapped, TRADES.key, "ignore")


@pytest.mark.parametrize("table", DESCRIBED, ids=lambda t: t.name)
def test_the_migrated_sqlite_schema_has_every_declared_column_and_key(
    table: Table, tmp_path: Path
) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path / 'rrr.db'}")
    try:
        store.migrate()
        info = store._query(f"PRAGMA table_info({table.name})")
        unique_keys = [
            [r[2] for r in store._query(f"PRAGMA index_info({index[1]})")]
            for index in store._query(f"PRAGMA index_list({table.name})")
            if index[2]  # unique
        ]
    finally:
        store.close()
    assert {c.name for c in table.columns} <= {row[1] for row in info}
    primary_key = [row[1] for row in sorted(info, key=lambda r: r[5]) if row[5]]
    assert list(table.key) in [primary_key, *unique_keys]


def test_a_chunk_row_is_its_table_values() -> None:
    chunk = Chunk("c", "p", "X:BTCUSD", 1, "minute", 0, 60_000)
    assert record_values(CHUNKS, chunk, lambda v: v) == chunk.row()


def test_statements_name_columns_in_row_order() -> None:
    assert sqlite_insert(TRADES).startswith(
        "INSERT OR IGNORE INTO crypto_trades (ticker, exchange_id, trade_id, price, size,"
        " conditions, event_time, received_time, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
