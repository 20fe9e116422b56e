"""One contract, every store: exactly-once batches, natural-key dedupe, corrected bars and bar
versions, dead letters whatever their text, concurrent writers, event and sentiment dedupe,
read helpers."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator

import psycopg
import pytest

from rrr.errors import PermanentStorageError
from rrr.models import Bar, Batch, Quote, Rejected, Sentiment, SystemEvent, Trade
from rrr.storage import Store, open_store
from rrr.storage.dead_letters import ESCAPED, KEPT_CHARS, original_text

T0 = 1_706_649_600_000  # 2024-01-30T21:20:00Z


@pytest.fixture
def store(store_factory: Callable[[], Store]) -> Iterator[Store]:
    s = store_factory()
    s.migrate()
    yield s
    s.close()


def trade(trade_id: str, price: float = 43575.6, exchange_id: int = 23, ts: int = T0) -> Trade:
    return Trade("X:BTCUSD", exchange_id, trade_id, price, 4.522e-05, (2,), ts, ts + 45, "polygon")


def bar(start: int, close: float, volume: float = 1.5) -> Bar:
    return Bar("X:BTCUSD", "1m", 100.0, 110.0, 90.0, close, volume, 101.0, 7, start, start + 60_000,
               "polygon")  # fmt: skip


def test_migrate_is_idempotent(store: Store) -> None:
    assert store.migrate() == []


def test_batch_applied_twice_stores_rows_once(store: Store) -> None:
    batch = Batch("b-1", "trades", [trade(str(i), ts=T0 + i) for i in range(50)])
    first = store.apply_batch(batch)
    second = store.apply_batch(batch)
    assert (first.applied, first.stored) == (True, 50)
    assert (second.applied, second.stored) == (False, 0)
    assert store.count_rows("crypto_trades") == 50
    assert store.count_rows("ingest_batches") == 1


def test_overlapping_batches_store_each_trade_once(store: Store) -> None:
    store.apply_batch(Batch("a", "trades", [trade(str(i)) for i in range(0, 60)]))
    result = store.apply_batch(Batch("b", "trades", [trade(str(i)) for i in range(40, 100)]))
    assert result.stored == 40
    assert store.count_rows("crypto_trades") == 100


def test_same_trade_id_on_another_exchange_is_another_trade(store: Store) -> None:
    store.apply_batch(Batch("a", "trades", [trade("7", exchange_id=1), trade("7", exchange_id=2)]))
    assert store.count_rows("crypto_trades") == 2


def test_corrected_bar_replaces_the_earlier_one(store: Store) -> None:
    store.apply_batch(Batch("bars-1", "bars", [bar(T0, 105.0), bar(T0 + 60_000, 106.0)]))
    store.apply_batch(Batch("bars-2", "bars", [bar(T0, 104.25, volume=2.5)]))
    df = store.read_bars("X:BTCUSD", T0, T0 + 120_000)
    assert list(df["close"]) == [104.25, 106.0]
    assert list(df["volume"]) == [2.5, 1.5]
    assert store.count_rows("crypto_aggregates") == 2


def test_last_correction_in_one_batch_wins(store: Store) -> None:
    store.apply_batch(Batch("bars-1", "bars", [bar(T0, 105.0), bar(T0, 107.5)]))
    assert list(store.read_bars("X:BTCUSD", T0, T0 + 60_000)["close"]) == [107.5]


def test_bad_row_goes_to_dead_letters_and_the_rest_lands(store: Store) -> None:
    rows = [trade("1"), trade("2")._replace(price=None), trade("3"), trade("4", price=-1.0)]
    result = store.apply_batch(Batch("b", "trades", rows))
    assert (result.stored, result.rejected) == (2, 2)
    assert store.count_rows("crypto_trades") == 2
    assert store.count_rows("dead_letters") == 2


def test_prices_are_stored_exactly_as_sent(store: Store) -> None:
    vendor_prices = [
        0.30000000000000004,
        43575.6,
        4.522e-05,
        0.1,
        33021.9,
        1e-08,
        123456789.12345679,
    ]
    store.apply_batch(
        Batch("p", "trades", [trade(str(i), price=p) for i, p in enumerate(vendor_prices)])
    )
    df = store.read_trades("X:BTCUSD", T0, T0 + 1)
    stored = dict(zip(df["trade_id"], df["price"], strict=True))
    assert [stored[str(i)] for i in range(len(vendor_prices))] == vendor_prices
    assert [repr(stored[str(i)]) for i in range(len(vendor_prices))] == [
        repr(p) for p in vendor_prices
    ]


def test_bar_prices_are_stored_exactly_as_sent(store: Store) -> None:
    # A REST page of bars takes the column-at-a-time COPY path in PostgreSQL; these digits and
    # exponents must come back exactly as sent there too.
    vendor_prices = [0.30000000000000004, 4.522e-05, 1e-08, 123456789.12345679, 1e16, 5, 0.1]
    rows = [
        Bar("X:BTCUSD", "1m", p, p, p, p, p, p, i, T0 + i * 60_000, T0 + (i + 1) * 60_000, "s")
        for i, p in enumerate(vendor_prices)
    ]
    store.apply_batch(Batch("exact", "bars", [*rows, rows[0]._replace(trade_count=None,
                                                                       vwap=None)]))  # fmt: skip
    df = store.read_bars("X:BTCUSD", T0, T0 + len(rows) * 60_000)
    for column in ("open", "high", "low", "close", "volume"):
        assert [repr(v) for v in df[column]] == [repr(float(p)) for p in vendor_prices]
    assert [repr(v) for v in df["vwap"][1:]] == [repr(float(p)) for p in vendor_prices[1:]]
    assert df["vwap"].isna().tolist() == [True] + [False] * (len(rows) - 1)  # the last one won


def test_a_bad_bar_goes_to_dead_letters_and_the_rest_of_the_page_lands(store: Store) -> None:
    rows = [bar(T0 + i * 60_000, 100.0 + i) for i in range(50)]
    rows[7] = rows[7]._replace(low=0.0)
    result = store.apply_batch(Batch("page", "bars", rows))
    assert (result.stored, result.rejected) == (49, 1)
    assert store.count_rows("crypto_aggregates") == 49
    assert store.count_rows("dead_letters") == 1


def write_at_once(
    store_factory: Callable[[], Store], batches_of: Callable[[int], list[Batch]]
) -> None:
    """Two writers, each on a store of its own, apply their batches at the same time."""
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        s = store_factory()
        try:
            for batch in batches_of(writer):
                s.apply_batch(batch)
        except BaseException as exc:
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []


def test_two_writers_of_overlapping_bars_lose_nothing(
    store: Store, store_factory: Callable[[], Store]
) -> None:
    def batches_of(writer: int) -> list[Batch]:
        batches = []
        for b in range(20):
            # Both writers store the same 30 minutes of each range: whichever comes second
            # finds the first one's bars (or races it) and replaces them.
            rows = [bar(T0 + (b * 200 + i) * 60_000, 100.0 + writer) for i in range(30)]
            rows += [bar(T0 + (b * 200 + writer * 30 + i) * 60_000, 1.0) for i in range(30)]
            batches.append(Batch(f"w{writer}-{b}", "bars", rows))
        return batches

    write_at_once(store_factory, batches_of)
    assert store.count_rows("crypto_aggregates") == 20 * (30 + 2 * 30)
    assert store.count_rows("ingest_batches") == 40


def test_quotes_replay_is_a_no_op_but_distinct_states_are_kept(store: Store) -> None:
    q = Quote("X:BTCUSD", 1, 33052.79, 0.48, 33073.19, 0.601, T0, T0 + 13, "polygon")
    store.apply_batch(Batch("q1", "quotes", [q, q._replace(bid_size=0.5)]))
    store.apply_batch(Batch("q2", "quotes", [q]))
    assert store.count_rows("crypto_quotes") == 2
    df = store.read_quotes("X:BTCUSD", T0, T0 + 1)
    assert sorted(df["bid_size"]) == [0.48, 0.5]


def test_two_writers_at_once_lose_nothing(store: Store, store_factory: Callable[[], Store]) -> None:
    def batches_of(writer: int) -> list[Batch]:
        batches = []
        for b in range(20):
            rows = [trade(f"{writer}-{b}-{i}", ts=T0 + i) for i in range(100)]
            # Half of each writer's batches overlap the other writer's trade ids.
            rows += [trade(f"shared-{b}-{i}", ts=T0 + i) for i in range(50)]
            batches.append(Batch(f"w{writer}-{b}", "trades", rows))
        return batches

    write_at_once(store_factory, batches_of)
    assert store.count_rows("crypto_trades") == 2 * 20 * 100 + 20 * 50
    assert store.count_rows("ingest_batches") == 40


def test_events_dedupe_on_key(store: Store) -> None:
    e = SystemEvent(
        "data_quality_validator",
        "price_outlier",
        "warning",
        "40% spike",
        T0,
        {"ticker": "X:BTCUSD", "move": 0.4},
        dedupe_key="price_outlier:X:BTCUSD:1",
    )
    assert store.add_events([e]) == 1
    assert store.add_events([e, e]) == 0
    unkeyed = SystemEvent("stream_worker", "reconnected", "info", "back", T0 + 5)
    assert store.add_events([unkeyed, unkeyed]) == 2
    df = store.read_events("data_quality_validator")
    assert len(df) == 1
    assert df["details"].iloc[0] == {"ticker": "X:BTCUSD", "move": 0.4}


def test_sentiments_dedupe_per_asset_source_interval(store: Store) -> None:
    s = Sentiment("BTC", "perplexity", "bullish", 0.6, 0.8, "ETF inflows", T0 + 3, T0,
                  {"model": "sonar", "sources": ["https://example.com/a"]})  # fmt: skip
    assert store.add_sentiments([s]) == 1
    assert store.add_sentiments([s]) == 0
    df = store.read_sentiments("BTC")
    assert list(df["label"]) == ["bullish"]
    assert df["metadata"].iloc[0]["sources"] == ["https://example.com/a"]


def test_latest_event_times_per_ticker_and_kind(store: Store) -> None:
    store.apply_batch(Batch("t", "trades", [trade("1", ts=T0), trade("2", ts=T0 + 999)]))
    store.apply_batch(Batch("b", "bars", [bar(T0, 1.0), bar(T0 + 60_000, 2.0)]))
    latest = store.latest_event_times()
    assert latest[("X:BTCUSD", "trades")] == T0 + 999
    assert latest[("X:BTCUSD", "bars")] == T0 + 60_000
    assert ("X:BTCUSD", "quotes") not in latest


def test_read_trades_returns_the_time_window_only(store: Store) -> None:
    store.apply_batch(Batch("t", "trades", [trade(str(i), ts=T0 + i * 1000) for i in range(10)]))
    df = store.read_trades("X:BTCUSD", T0 + 2000, T0 + 5000)
    assert list(df["ts_ms"]) == [T0 + 2000, T0 + 3000, T0 + 4000]
    assert str(df["event_time"].dt.tz) == "UTC"
    assert (
        df["conditions"].map(list).tolist() == [[2]] * 3 or df["conditions"].tolist() == ["[2]"] * 3
    )


def test_a_bar_with_a_nan_vwap_is_a_dead_letter_in_every_store(store: Store) -> None:
    result = store.apply_batch(Batch("b", "bars", [bar(T0, 1.0)._replace(vwap=float("nan"))]))
    assert (result.stored, result.rejected) == (0, 1)
    assert store.count_rows("dead_letters") == 1


def test_postgres_connect_refusals_are_permanent_and_outages_transient(pg_url: str) -> None:
    """A wrong database name is never retried; a server that is down may come back."""
    from rrr.errors import PermanentStorageError, TransientStorageError
    from tests.conftest import PG_BASE_URL

    base = PG_BASE_URL.rsplit("/", 1)[0]
    with pytest.raises(PermanentStorageError, match="does not exist"):
        open_store(f"{base}/rrr_no_such_database")
    with pytest.raises(TransientStorageError) as down:
        open_store("postgresql://postgres:s3cret@127.0.0.1:1/test")
    assert "127.0.0.1:1" in str(down.value) and "s3cret" not in str(down.value)


def test_pruned_batch_ids_leave_natural_keys_to_dedupe(store: Store) -> None:
    old = Batch("old", "trades", [trade("1"), trade("2")])
    store.apply_batch(old)
    store.prune_ingest_batches(older_than_ms=0)  # nothing is that old
    assert store.count_rows("ingest_batches") == 1
    far_future_ms = 4_102_444_800_000  # 2100-01-01
    store.prune_ingest_batches(older_than_ms=far_future_ms)
    assert store.count_rows("ingest_batches") == 0
    again = store.apply_batch(old)
    assert (again.applied, again.stored) == (True, 0)
    assert store.count_rows("crypto_trades") == 2


def test_a_dead_letter_written_twice_is_stored_once(store: Store) -> None:
    letter = Rejected(raw='{"ev":"XZ"}', reason="unknown event 'XZ'", kind="event", source="p")
    store.add_dead_letters([letter])
    store.add_dead_letters([letter, letter])  # a redelivered task, and a repeat inside it
    store.add_dead_letters([Rejected(raw='{"ev":"XZ"}', reason="another reason", kind="event")])
    assert store.count_rows("dead_letters") == 2


# -- bar versions: a bar is replaced only by a newer version of itself ------------------------
V1 = T0 + 90_000  # when the first version of the bar at T0 was received
V2 = T0 + 15 * 60_000  # when the vendor's correction was received, minutes later


def closes(store: Store, minutes: int = 1) -> list[float]:
    return list(store.read_bars("X:BTCUSD", T0, T0 + minutes * 60_000)["close"])


def test_a_stale_bar_landing_after_its_correction_is_ignored(store: Store) -> None:
    # A retried stream batch, a second worker or an old backfill page lands last.
    corrected = store.apply_batch(Batch("fix", "bars", [bar(T0, 104.25)]), version_ms=V2)
    stale = store.apply_batch(Batch("old", "bars", [bar(T0, 105.0)]), version_ms=V1)
    assert (corrected.stored, stale.applied, stale.stored) == (1, True, 0)
    assert closes(store) == [104.25]


def test_a_correction_landing_after_the_stale_bar_replaces_it(store: Store) -> None:
    store.apply_batch(Batch("old", "bars", [bar(T0, 105.0)]), version_ms=V1)
    corrected = store.apply_batch(Batch("fix", "bars", [bar(T0, 104.25)]), version_ms=V2)
    assert corrected.stored == 1
    assert closes(store) == [104.25]


def test_a_stale_page_over_corrections_adds_only_the_bars_it_is_first_with(store: Store) -> None:
    # Three corrected bars are stored; a page fetched before them covers them and seven more.
    fixes = [bar(T0 + i * 60_000, 200.0 + i) for i in (2, 5, 7)]
    store.apply_batch(Batch("fixes", "bars", fixes), version_ms=V2)
    page = [bar(T0 + i * 60_000, 100.0 + i) for i in range(10)]
    result = store.apply_batch(Batch("page", "bars", page), version_ms=V1)
    assert result.stored == 7
    expected = [200.0 + i if i in (2, 5, 7) else 100.0 + i for i in range(10)]
    assert closes(store, 10) == expected


def test_equal_versions_the_later_write_wins(store: Store) -> None:
    store.apply_batch(Batch("a", "bars", [bar(T0, 105.0)]), version_ms=V1)
    store.apply_batch(Batch("b", "bars", [bar(T0, 106.0)]), version_ms=V1)
    assert closes(store) == [106.0]


def test_a_bar_without_a_version_is_versioned_by_its_write(store: Store) -> None:
    # Without a version the time of the write stands in: later than any 2024 version here.
    store.apply_batch(Batch("now", "bars", [bar(T0, 105.0)]))
    assert store.apply_batch(Batch("old", "bars", [bar(T0, 1.0)]), version_ms=V2).stored == 0
    far_future_ms = 4_102_444_800_000  # 2100-01-01
    store.apply_batch(Batch("new", "bars", [bar(T0, 107.0)]), version_ms=far_future_ms)
    assert closes(store) == [107.0]
    store.apply_batch(Batch("now2", "bars", [bar(T0, 108.0)]))  # its write is before 2100
    assert closes(store) == [107.0]


# -- dead letters: every letter is stored, whatever its text ----------------------------------
@pytest.fixture
def letters_in_database(
    store: Store, request: pytest.FixtureRequest
) -> Callable[[], list[tuple[str, str, str, str, str | None]]]:
    """Reads ``dead_letters`` straight from the database behind ``store``, as people and tools
    will: (kind, source, reason, raw, text_encoding) in insertion order."""
    query = "SELECT kind, source, reason, raw, text_encoding FROM dead_letters ORDER BY id"
    if store.dialect == "sqlite":
        path = store.path  # type: ignore[attr-defined]

        def read_sqlite() -> list[tuple[str, str, str, str, str | None]]:
            with sqlite3.connect(path) as conn:
                return conn.execute(query).fetchall()

        return read_sqlite
    url = str(request.getfixturevalue("pg_url"))

    def read_postgres() -> list[tuple[str, str, str, str, str | None]]:
        with psycopg.connect(url) as conn:
            return conn.execute(query).fetchall()

    return read_postgres


def test_every_dead_letter_is_stored_whatever_its_text(
    store: Store, letters_in_database: Callable[[], list[tuple[str, str, str, str, str | None]]]
) -> None:
    huge = "x" * 3_000_000 + "\x00" + "é" * 1_000_000
    letters = [
        Rejected(raw='{"ev":"XT","i":"a\x00b"}', reason="trade_id holds a NUL", kind="trades"),
        Rejected(raw="surrogate \ud800 and \udfff", reason="reason with NUL \x00", kind="event"),
        Rejected(raw=b"\xff\xfe not UTF-8 \x00", reason="bytes", kind="raw", source="p\x00"),  # type: ignore[arg-type]
        Rejected(raw=huge, reason="huge", kind="event"),
        Rejected(raw='{"ev":"XZ"} \\u0000 as text', reason="plain, non-ASCII: é 中", kind="e"),
    ]
    assert store.add_dead_letters(letters) == len(letters)
    assert store.add_dead_letters(letters) == 0  # a redelivery stores nothing twice
    stored = letters_in_database()
    assert len(stored) == len(letters)
    as_sent = [
        tuple(original_text(text, row[4]) for text in row[:4]) for row in stored
    ]  # fmt: skip
    expected = [(r.kind, r.source, r.reason, r.raw) for r in letters]
    expected[2] = (
        "raw",
        "p\x00",
        "bytes",
        b"\xff\xfe not UTF-8 \x00".decode("utf-8", "surrogateescape"),
    )
    assert as_sent == expected
    assert [row[4] for row in stored] == [ESCAPED, ESCAPED, ESCAPED, ESCAPED, None]
    assert stored[4][3] == '{"ev":"XZ"} \\u0000 as text'  # a plain letter is stored as it is


def refuse_letters(store: Store, request: pytest.FixtureRequest, constraint: str) -> None:
    """Make the database behind ``store`` refuse dead letters matching ``constraint`` (an SQL
    condition on the new row), as a limit or rule of a real database would."""
    if store.dialect == "sqlite":
        with sqlite3.connect(store.path) as conn:  # type: ignore[attr-defined]
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON dead_letters"
                f" WHEN {constraint.replace('raw', 'NEW.raw').replace('reason', 'NEW.reason')}"
                " BEGIN SELECT RAISE(ABORT, 'refused by a rule of this database'); END"
            )
        return
    with psycopg.connect(str(request.getfixturevalue("pg_url")), autocommit=True) as conn:
        conn.execute(f"ALTER TABLE dead_letters ADD CONSTRAINT refuse CHECK (NOT ({constraint}))")


def test_one_refused_letter_never_takes_its_companions_with_it(
    store: Store,
    request: pytest.FixtureRequest,
    letters_in_database: Callable[[], list[tuple[str, str, str, str, str | None]]],
) -> None:
    refuse_letters(store, request, "reason LIKE '%poison%' OR length(raw) > 100000")
    letters = [
        Rejected(raw="first", reason="fine", kind="e"),
        Rejected(raw="second", reason="poison in every form", kind="e"),
        Rejected(raw="y" * 200_000, reason="too long for this database", kind="e"),
        Rejected(raw="last", reason="fine too", kind="e"),
    ]
    with pytest.raises(PermanentStorageError, match="refused 1 of 4 dead letters"):
        store.add_dead_letters(letters)
    stored = letters_in_database()
    assert [original_text(row[3], row[4])[:5] for row in stored] == ["first", "yyyyy", "last"]
    cut = stored[1]
    assert len(original_text(cut[3], cut[4])) == KEPT_CHARS
    assert "cut to the first 65536 of 200000 characters" in original_text(cut[2], cut[4])
    assert "Reason given: too long for this database" in original_text(cut[2], cut[4])
    assert store.count_rows("dead_letters") == 3


def test_a_batch_whose_dead_letter_is_refused_in_every_form_is_refused_whole(
    store: Store, request: pytest.FixtureRequest
) -> None:
    # Stored without its letter, the bad row would be lost; refused whole, the batch is set
    # aside by the caller (rrr.storage.isolate, the poison path) with nothing half-written.
    refuse_letters(store, request, "reason LIKE '%price is null%'")
    rows = [trade("1"), trade("2")._replace(price=None), trade("3")]
    with pytest.raises(PermanentStorageError):
        store.apply_batch(Batch("b", "trades", rows))
    assert store.count_rows("crypto_trades") == 0
    assert store.count_rows("ingest_batches") == 0
    assert store.count_rows("dead_letters") == 0


def test_dead_letters_are_counted_by_kind(store: Store) -> None:
    from rrr.models import Rejected

    letters = [Rejected("{}", f"poison {n}", "poison") for n in range(2)]
    store.add_dead_letters([*letters, Rejected("{}", "a bad trade", "trades")])
    assert store.count_dead_letters("poison") == 2
    assert store.count_dead_letters("trades") == 1
    assert store.count_dead_letters("quotes") == 0
