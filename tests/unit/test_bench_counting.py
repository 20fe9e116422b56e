"""bench.counting: a loss and a duplicate are counted by key, never netted against each other."""

from __future__ import annotations

from decimal import Decimal

from bench.counting import (
    count_keys,
    deliveries_applied_twice,
    key_array,
    quote_key,
    record_key,
    trade_key,
)
from rrr.models import Quote, Trade
from rrr.simulator.truth import event_to_record

T = 1_763_856_000_123
TRADE_EVENT = {"ev": "XT", "pair": "BTC-USD", "p": 91234.51, "s": 4.522e-05, "t": T, "x": 1,
               "i": 123, "c": [2], "r": T + 4}  # fmt: skip
QUOTE_EVENT = {"ev": "XQ", "pair": "ETH-USD", "bp": 3012.1, "bs": 0.3, "ap": 3012.2, "as": 1.7,
               "t": T, "x": 2, "r": T + 4}  # fmt: skip


def truth_record(event: dict[str, object]) -> Trade | Quote:
    record = event_to_record(event)
    assert isinstance(record, Trade | Quote)
    return record


def test_a_ground_truth_event_and_its_stored_row_have_one_key() -> None:
    # As PostgreSQL hands the rows back: REST ticker, trade id as text, prices as NUMERIC.
    assert record_key(truth_record(TRADE_EVENT)) == trade_key("X:BTCUSD", 1, "123")
    stored_quote = ("X:ETHUSD", 2, T, Decimal("3012.1"), Decimal("0.3"), Decimal("3012.2"),
                    Decimal("1.7"))  # fmt: skip
    assert record_key(truth_record(QUOTE_EVENT)) == quote_key(*stored_quote)


def test_keys_differ_by_every_part_of_the_key() -> None:
    base = quote_key("X:ETHUSD", 2, T, 3012.1, 0.3, 3012.2, 1.7)
    assert quote_key("X:ETHUSD", 2, T + 1, 3012.1, 0.3, 3012.2, 1.7) != base
    assert quote_key("X:ETHUSD", 2, T, 3012.1, 0.3, 3012.2, 1.8) != base
    assert trade_key("X:BTCUSD", 1, "123") != trade_key("X:BTCUSD", 2, "123")
    assert trade_key("X:BTCUSD", 1, "123") != trade_key("X:ETHUSD", 1, "123")


def test_a_stray_row_does_not_cancel_a_loss() -> None:
    truth = key_array(trade_key("X:BTCUSD", 1, i) for i in range(100))
    # Key 7 never stored; a row the truth never sent (a straggler of an earlier run) is.
    stored = key_array(trade_key("X:BTCUSD", 1, i) for i in [*range(7), *range(8, 100), 999])
    counted = count_keys(truth, stored)
    assert (counted.expected, counted.stored, counted.lost, counted.unexpected) == (100, 100, 1, 1)


def test_repeats_the_truth_sent_are_not_losses() -> None:
    truth = key_array([1, 2, 2, 3, 3, 3])
    counted = count_keys(truth, key_array([1, 2, 3]))
    assert (counted.sent, counted.expected, counted.lost, counted.repeats_sent) == (6, 3, 0, 3)


def test_a_batch_applied_twice_under_a_new_id_counts_its_rows() -> None:
    # 10 batches of 100 rows stored, then batch 4 again under another id: 100 rows skipped.
    assert deliveries_applied_twice(1_100, 1_000, 0) == 100
    assert deliveries_applied_twice(1_000, 1_000, 0) == 0


def test_rejected_rows_and_the_truths_own_repeats_are_not_duplicates() -> None:
    assert deliveries_applied_twice(1_000, 990, 10) == 0
    assert deliveries_applied_twice(1_000, 997, 0, repeats_sent=3) == 0
    assert deliveries_applied_twice(1_000, 990, 0, repeats_sent=3) == 7
    assert deliveries_applied_twice(1_000, 1_000, 5, repeats_sent=3) == 0  # never negative
