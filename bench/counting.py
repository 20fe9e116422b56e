"""Counting by key, so that a benchmark can report a loss or a duplicate. Pure: plain values in,
counts out; the benches do the reading.

- Lost: keys the ground truth holds that the store does not; unexpected: the reverse. Both are
  set differences of distinct keys, so neither can be negative and one cannot cancel the other.
- Duplicated: deliveries applied twice. Every table is unique on its key, so a row stored twice
  shows up nowhere in the table; it shows in the batch ledger (``ingest_batches``), which holds
  the row count of every batch applied. Each row of an applied batch is either inserted,
  rejected (a dead letter) or skipped because its key was already there; the skipped ones that
  the ground truth does not explain (it sent that key more than once) were delivered twice.

Keys are 64-bit hashes (Python's ``hash`` of the key tuple, stable within one process): a few
million keys collide with odds around 1e-7, and the arrays stay small.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from rrr.models import Quote, Trade


def trade_key(ticker: str, exchange_id: int, trade_id: object) -> int:
    """A trade as the stores key it: (ticker, exchange_id, trade_id); the id is text there."""
    return hash(("trades", ticker, int(exchange_id), str(trade_id)))


def quote_key(
    ticker: str,
    exchange_id: int,
    ts_ms: int,
    bid_price: float,
    bid_size: float,
    ask_price: float,
    ask_size: float,
) -> int:
    """A quote as the stores key it: its whole top-of-book state. Prices compare as floats: the
    stores keep the shortest decimal that round-trips, which reads back as the same float."""
    return hash(
        (
            "quotes",
            ticker,
            int(exchange_id),
            int(ts_ms),
            float(bid_price),
            float(bid_size),
            float(ask_price),
            float(ask_size),
        )
    )


def record_key(record: Trade | Quote) -> int:
    if isinstance(record, Trade):
        return trade_key(record.ticker, record.exchange_id, record.trade_id)
    return quote_key(
        record.ticker,
        record.exchange_id,
        record.ts_ms,
        record.bid_price,
        record.bid_size,
        record.ask_price,
        record.ask_size,
    )


def key_array(keys: Iterable[int]) -> np.ndarray:
    return np.fromiter(keys, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class KeyCount:
    sent: int  # ground-truth rows, repeats included
    expected: int  # distinct ground-truth keys
    stored: int  # distinct stored keys
    lost: int  # expected keys not stored
    unexpected: int  # stored keys the ground truth does not hold

    @property
    def repeats_sent(self) -> int:
        """Rows the ground truth sent with a key it had already sent."""
        return self.sent - self.expected


def count_keys(truth: np.ndarray, stored: np.ndarray) -> KeyCount:
    """Compare ground-truth keys (one per row sent, repeats kept) with stored keys."""
    want, have = np.unique(truth), np.unique(stored)
    return KeyCount(
        sent=len(truth),
        expected=len(want),
        stored=len(have),
        lost=len(np.setdiff1d(want, have, assume_unique=True)),
        unexpected=len(np.setdiff1d(have, want, assume_unique=True)),
    )


def deliveries_applied_twice(
    rows_in_applied_batches: int, rows_stored: int, rows_rejected: int, repeats_sent: int = 0
) -> int:
    """Rows of applied batches that stored nothing because their key was already there, less
    the ones the ground truth sent twice itself. Never negative.

    Exact while only batches write the table (each bench counts in a schema of its own): a row
    deleted afterwards would count here as a duplicate, a row written outside any batch would
    hide one. A repeat the ground truth sent whose second copy was lost hides one too; the lost
    count shows that run anyway."""
    skipped = rows_in_applied_batches - rows_stored - rows_rejected
    return max(0, skipped - repeats_sent)
