"""The tables described once (rrr/storage/tables.py) agree with the rows and the migrations."""

from pathlib import Path

import pytest

from rrr.models import Trade
from rrr.storage.sqlite import SqliteStore
from rrr.storage.tables import TICK_TABLES, TRADES, Table, sqlite_insert


def test_a_table_must_name_its_row_fields_in_order() -> None:
    swapped = (TRADES.columns[1], TRADES.columns[0], *TRADES.columns[2:])
    with pytest.raises(TypeError, match="not Trade fields"):
        Table("trades", "crypto_trades", Trade, swapped, TRADES.key, "ignore")


@pytest.mark.parametrize("kind", sorted(TICK_TABLES))
def test_the_migrated_sqlite_schema_has_every_declared_column_and_key(
    kind: str, tmp_path: Path
) -> None:
    table = TICK_TABLES[kind]
    store = SqliteStore(f"sqlite:///{tmp_path / 'rrr.db'}")
    try:
        store.migrate()
        info = store._query(f"PRAGMA table_info({table.name})")
    finally:
        store.close()
    stored = {row[1] for row in info}
    key = [row[1] for row in sorted(info, key=lambda r: r[5]) if row[5]]
    assert {c.name for c in table.columns} <= stored
    assert key == list(table.key)


def test_statements_name_columns_in_row_order() -> None:
    assert sqlite_insert(TRADES).startswith(
        "INSERT OR IGNORE INTO crypto_trades (ticker, exchange_id, trade_id, price, size,"
        " conditions, event_time, received_time, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
