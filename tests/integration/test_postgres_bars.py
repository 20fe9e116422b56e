"""PostgresStore's two ways in for bars: a plain INSERT when none of the batch's keys is stored
yet, ON CONFLICT otherwise, and the way back to ON CONFLICT when another writer stores one of
the keys between the probe and the INSERT."""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import pytest

from rrr.models import Bar, Batch
from rrr.storage.postgres import PostgresStore

T0 = 1_706_649_600_000


def bar(start: int, close: float) -> Bar:
    return Bar("X:BTCUSD", "1m", 100.0, 110.0, 90.0, close, 1.5, 101.0, 7, start, start + 60_000,
               "polygon")  # fmt: skip


@pytest.fixture
def store(postgres_store: PostgresStore) -> PostgresStore:
    return postgres_store


def closes(store: PostgresStore) -> list[float]:
    return list(store.read_bars("X:BTCUSD", T0, T0 + 10 * 60_000)["close"])


def test_new_bars_then_a_page_over_them(store: PostgresStore) -> None:
    store.apply_batch(Batch("a", "bars", [bar(T0 + i * 60_000, 1.0) for i in range(0, 10, 2)]))
    result = store.apply_batch(Batch("b", "bars", [bar(T0 + i * 60_000, 2.0) for i in range(10)]))
    assert (result.applied, result.stored) == (True, 10)
    assert closes(store) == [2.0] * 10
    assert store.apply_batch(Batch("b", "bars", [bar(T0, 3.0)])).applied is False


def test_a_key_stored_by_another_writer_after_the_probe(
    store: PostgresStore, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The other writer's row is not committed yet, so the probe cannot see it: the plain
    # INSERT waits for it, fails on its commit, and the batch is applied again with
    # ON CONFLICT. Nothing is lost, nothing is stored twice, the batch id is recorded once.
    with psycopg.connect(pg_url) as other:
        other.execute(
            "INSERT INTO crypto_aggregates (ticker, timeframe, open, high, low, close, volume,"
            " event_time, end_time, source) VALUES ('X:BTCUSD', '1m', 1, 1, 1, 1, 1,"
            " 'epoch'::timestamptz + %s * interval '1 millisecond',"
            " 'epoch'::timestamptz + %s * interval '1 millisecond', 'other')",
            (T0 + 5 * 60_000, T0 + 6 * 60_000),
        )
        outcome: list[object] = []
        writer = threading.Thread(
            target=lambda: outcome.append(
                store.apply_batch(
                    Batch("page", "bars", [bar(T0 + i * 60_000, 2.0) for i in range(10)])
                )
            )
        )
        caplog.set_level(logging.INFO, logger="rrr.storage.postgres")
        writer.start()
        time.sleep(0.5)  # the writer is now waiting on the other row's index entry
        other.commit()
        writer.join(timeout=30)
    assert len(outcome) == 1
    assert "stored meanwhile; applying it again" in caplog.text
    assert closes(store) == [2.0] * 10
    assert store.count_rows("crypto_aggregates") == 10
    assert store.count_rows("ingest_batches") == 1
