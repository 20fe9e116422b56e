"""A full disk under the SQLite store is transient: the batch, and the dead letters that would
set it aside, are refused with an error the tasks retry with backoff, nothing is half-written,
and once there is room again the retry stores everything exactly once.

The database is made full with ``PRAGMA max_page_count`` on the store's own connection: SQLite
then answers SQLITE_FULL, "database or disk is full", exactly as when the disk itself is full."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rrr.errors import PermanentStorageError, TransientStorageError, is_transient
from rrr.models import Batch, Rejected, Trade
from rrr.storage.sqlite import SqliteStore

T0 = 1_706_649_600_000


@pytest.fixture
def store(sqlite_url: str) -> Iterator[SqliteStore]:
    s = SqliteStore(sqlite_url)
    s.migrate()
    yield s
    s.close()


def fill_the_disk(store: SqliteStore) -> None:
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")


def make_room(store: SqliteStore) -> None:
    store._conn.execute("PRAGMA max_page_count = 1073741823")


def trades(n: int) -> list[Trade]:
    return [Trade("X:BTCUSD", 1, str(i), 43575.6, 0.5, (2,), T0 + i, None, "p") for i in range(n)]


def test_a_full_disk_is_transient_and_the_retry_stores_the_batch_once(store: SqliteStore) -> None:
    store.apply_batch(Batch("first", "trades", trades(10)))
    fill_the_disk(store)
    batch = Batch("big", "trades", trades(5000))
    with pytest.raises(TransientStorageError, match="database or disk is full") as info:
        store.apply_batch(batch)
    assert is_transient(info.value)
    # Setting it aside is no way out: the dead letter does not fit either, and is not refused
    # for its content, so it is retried too rather than escaped or cut.
    letter = Rejected(raw="x" * 100_000, reason="would not fit", kind="trades")
    with pytest.raises(TransientStorageError, match="database or disk is full"):
        store.add_dead_letters([letter])
    assert store.count_rows("crypto_trades") == 10  # nothing half-written
    assert store.count_rows("ingest_batches") == 1
    assert store.count_rows("dead_letters") == 0

    make_room(store)
    assert store.apply_batch(batch).stored == 5000 - 10
    assert store.apply_batch(batch).applied is False
    assert store.count_rows("crypto_trades") == 5000


def test_a_full_disk_while_letters_are_written_one_by_one_is_transient(
    store: SqliteStore,
) -> None:
    # One letter refused for its content sends the letters one by one, each in a savepoint;
    # a full disk then makes SQLite roll the whole transaction back, savepoints and all. That
    # is still a full disk (retry), not a refusal of the letters.
    store._conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON dead_letters WHEN NEW.reason LIKE '%poison%'"
        " BEGIN SELECT RAISE(ABORT, 'refused by a rule of this database'); END"
    )
    fill_the_disk(store)
    letters = [
        Rejected(raw="x", reason="poison in every form", kind="trades"),
        Rejected(raw="y" * 100_000, reason="would not fit", kind="trades"),
    ]
    with pytest.raises(TransientStorageError, match="database or disk is full"):
        store.add_dead_letters(letters)
    make_room(store)
    with pytest.raises(PermanentStorageError, match="refused 1 of 2 dead letters"):
        store.add_dead_letters(letters)
    assert store.count_rows("dead_letters") == 1
