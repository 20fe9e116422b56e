"""COPY text of bars written a column at a time: every field the same NUMERIC as the
``repr`` row writer it replaced, NULLs, escapes, one line per key (the last bar wins); and the
timestamps of trades and quotes."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from rrr.models import Bar
from rrr.storage.copy_text import bar_copy_text, timestamp_fields
from rrr.storage.rows import columns_of

T0 = 1_706_649_600_000


def repr_line(b: Bar) -> list[str]:
    """How the row writer wrote a bar before: ``repr`` per number, ``\\N`` for None."""
    return ["\\N" if v is None else (v if isinstance(v, str) else repr(v)) for v in b]


def copy_lines(bars: list[Bar]) -> list[list[str]]:
    text = bar_copy_text(columns_of(bars, len(Bar._fields))).decode()
    assert text.endswith("\n")
    return [line.split("\t") for line in text[:-1].split("\n")]


def same_value(ours: str, theirs: str) -> bool:
    if ours == theirs:
        return True
    return Decimal(ours) == Decimal(theirs)  # only an exponent spelled differently


def test_every_number_is_the_decimal_repr_writes() -> None:
    rng = random.Random(7)
    bars = []
    for i in range(5_000):
        price = round(rng.uniform(1e-9, 1e6), rng.randint(0, 12))
        low = rng.uniform(1e-12, 1.0)
        high = 10 ** rng.randint(-8, 17) * 1.0
        volume = rng.random() * 10 ** rng.randint(-8, 8)
        vwap = rng.choice([None, price, 7])
        count = rng.choice([None, 0, 2**31 - 1])
        start_ms = T0 + i * 60_000
        fields = (price, high, low, price * 1.001, volume, vwap, count)
        bars.append(Bar("X:BTCUSD", "1m", *fields, start_ms, start_ms + 60_000, "polygon"))
    bars.append(bars[0]._replace(start_ms=T0 - 60_000, open=1e-05, high=1e16, low=5, close=0.1))
    for ours, b in zip(copy_lines(bars), bars, strict=True):
        theirs = repr_line(b)
        assert len(ours) == len(theirs) == 12
        assert all(same_value(o, t) for o, t in zip(ours, theirs, strict=True)), (ours, theirs)


def test_nulls_escapes_and_the_last_bar_per_key() -> None:
    first = Bar("X:A\tB", "1m", 1.5, 2.0, 1.0, 1.75, 0.0, None, None, T0, T0 + 60_000, "s\\x")
    later = first._replace(close=1.8, vwap=1.6, trade_count=3)
    other = first._replace(start_ms=T0 + 60_000, end_ms=T0 + 120_000)
    assert copy_lines([first, other, later]) == [
        ["X:A\\tB", "1m", "1.5", "2.0", "1.0", "1.8", "0.0", "1.6", "3", str(T0),
         str(T0 + 60_000), "s\\\\x"],
        ["X:A\\tB", "1m", "1.5", "2.0", "1.0", "1.75", "0.0", "\\N", "\\N", str(T0 + 60_000),
         str(T0 + 120_000), "s\\\\x"],
    ]  # fmt: skip


def test_the_same_start_on_two_tickers_is_two_keys() -> None:
    a = Bar("X:BTCUSD", "1m", 1.0, 1.0, 1.0, 1.0, 1.0, None, None, T0, T0 + 60_000, "s")
    b = a._replace(ticker="X:ETHUSD")
    assert [line[0] for line in copy_lines([a, b])] == ["X:BTCUSD", "X:ETHUSD"]


def test_what_orjson_cannot_write_falls_back_to_repr() -> None:
    # The row checks keep NaN and ints past 64 bits out of a bar; were one to slip through, it
    # is written as repr would have (and PostgreSQL judges it), never silently as NULL.
    b = Bar("X:BTCUSD", "1m", 1.0, 1.0, 1.0, 1.0, 1.0, float("nan"), 2**70, T0, T0 + 60_000, "s")
    assert copy_lines([b])[0][7:9] == ["nan", str(2**70)]


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (1_230_940_800_000, "2009-01-03 00:00:00.000+00"),  # rrr.bounds.EARLIEST_MS
        (1_706_649_600_005, "2024-01-30 21:20:00.005+00"),
        (1_706_649_659_999, "2024-01-30 21:20:59.999+00"),
        (1_706_649_660_000, "2024-01-30 21:21:00.000+00"),
        (253_402_300_799_999, "9999-12-31 23:59:59.999+00"),  # rrr.bounds.LATEST_STORABLE_MS
    ],
)
def test_timestamps_are_exact_to_the_ms(ms: int, text: str) -> None:
    assert timestamp_fields([ms, None]) == [text.encode(), b"\\N"]
    assert timestamp_fields([ms]) == [text.encode()]  # from the cache of seconds, too
