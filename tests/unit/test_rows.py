import math

from rrr.models import Bar, Batch, Trade
from rrr.storage.rows import (
    bar_columns,
    bar_key_range,
    bar_problem,
    columns_of,
    last_bar_per_key,
    split_storable,
)

GOOD = Trade("X:BTCUSD", 1, "a", 1.5, 0.1, (2,), 1, None, "polygon")


def test_good_rows_pass_and_bad_ones_carry_a_reason() -> None:
    rows = [
        GOOD,
        GOOD._replace(price=None),
        GOOD._replace(price=0.0),
        GOOD._replace(price=math.nan),
        GOOD._replace(size=-1.0),
        GOOD._replace(ts_ms=1.5),
        GOOD._replace(trade_id=""),
        ("too", "short"),
    ]
    good, bad = split_storable("trades", rows)
    assert good == [GOOD]
    assert [r.reason for r in bad] == [
        "price is null",
        "price must be positive: 0.0",
        "price is not finite: nan",
        "size must be a finite number >= 0: -1.0",
        "ts_ms must be integer milliseconds: 1.5",
        "trade_id is missing",
        "a trade has 9 fields, got 2",
    ]
    assert all(r.kind == "trades" for r in bad)
    assert bad[0].raw.startswith('["X:BTCUSD",1,"a",null')


def test_last_bar_per_key_keeps_the_last() -> None:
    a = Bar("X:BTCUSD", "1m", 1.0, 2.0, 0.5, 1.5, 3.0, None, None, 0, 60_000, "polygon")
    b = a._replace(close=1.75)
    c = a._replace(start_ms=60_000, end_ms=120_000)
    assert last_bar_per_key([a, c, b]) == [b, c]


def test_batch_message_round_trip() -> None:
    batch = Batch("id-1", "trades", [GOOD])
    message = batch.to_message()
    again = Batch.from_message({**message, "rows": [list(r) for r in message["rows"]]})
    assert again.rows[0][3] == 1.5 and again.kind == "trades" and again.id == "id-1"


def test_every_field_is_checked_and_named() -> None:
    cases = [
        (
            GOOD._replace(conditions=("x",)),
            "conditions must be a list of small non-negative integers",
        ),
        (GOOD._replace(conditions=5), "conditions must be a list of small non-negative integers"),
        (
            GOOD._replace(conditions=[70000]),
            "conditions must be a list of small non-negative integers",
        ),
        (GOOD._replace(received_ms="junk"), "received_ms must be integer milliseconds or null"),
        (GOOD._replace(exchange_id=2**31), "exchange_id must be a non-negative 32-bit integer"),
        (GOOD._replace(exchange_id="23"), "exchange_id must be a non-negative 32-bit integer"),
    ]
    good, bad = split_storable("trades", [row for row, _ in cases])
    assert good == []
    assert [r.reason.split(":")[0] for r in bad] == [reason for _, reason in cases]


def test_bar_optional_fields_are_checked() -> None:
    bar = Bar("X:BTCUSD", "1m", 1.0, 2.0, 0.5, 1.5, 3.0, None, None, 0, 60_000, "polygon")
    good, bad = split_storable(
        "bars", [bar, bar._replace(vwap="1.2"), bar._replace(trade_count=-1)]
    )
    assert good == [bar]
    assert [r.reason.split(":")[0] for r in bad] == [
        "vwap must be a finite number >= 0 or null",
        "trade_count must be a non-negative integer or null",
    ]


def test_rows_of_a_decoded_message_are_plain_lists_and_still_checked() -> None:
    message = {"id": "b", "kind": "trades", "rows": [list(GOOD), ["too", "short"]]}
    good, bad = split_storable("trades", Batch.from_message(message).rows)
    assert good == [list(GOOD)]
    assert bad[0].reason == "a trade has 9 fields, got 2"


BAR = Bar("X:BTCUSD", "1m", 1.0, 2.0, 0.5, 1.5, 3.0, 1.2, 7, 0, 60_000, "polygon")
# One field wrong at a time, each a way bar_problem refuses a bar.
BAD_BARS = [
    BAR._replace(ticker=""),
    BAR._replace(timeframe=None),
    BAR._replace(source=5),
    BAR._replace(open=None),
    BAR._replace(high=True),
    BAR._replace(low=0.0),
    BAR._replace(close=-1.0),
    BAR._replace(close=math.inf),
    BAR._replace(open=math.nan),
    BAR._replace(open="1.5"),
    BAR._replace(volume=-0.5),
    BAR._replace(volume=math.nan),
    BAR._replace(vwap=-1.0),
    BAR._replace(vwap=math.nan),
    BAR._replace(vwap="1.2"),
    BAR._replace(trade_count=-1),
    BAR._replace(trade_count=2**31),
    BAR._replace(trade_count=1.0),
    BAR._replace(start_ms=1.5),
    BAR._replace(end_ms=None),
    ("too", "short"),
]


def test_bar_columns_only_for_pages_of_storable_bars() -> None:
    page = [BAR._replace(start_ms=i * 60_000, end_ms=(i + 1) * 60_000) for i in range(100)]
    page += [BAR._replace(vwap=None, trade_count=None, open=2, volume=0)]
    columns = bar_columns(page)
    assert columns is not None
    assert [list(c) for c in zip(*columns, strict=True)] == [list(b) for b in page]
    for bad in BAD_BARS:
        assert bar_problem(bad) is not None
        assert bar_columns([*page, bad]) is None, bad


def test_a_page_with_one_bad_bar_keeps_the_rest_with_the_same_reason() -> None:
    page = [BAR._replace(start_ms=i * 60_000, end_ms=(i + 1) * 60_000) for i in range(10)]
    for bad in BAD_BARS:
        good, rejected = split_storable("bars", [*page, bad])
        assert good == page
        assert [r.reason for r in rejected] == [bar_problem(bad)]
    assert split_storable("bars", page) == (page, [])


def test_the_key_range_of_bars_of_one_ticker() -> None:
    a = BAR._replace(start_ms=120_000)
    assert bar_key_range(columns_of([a, BAR], 12)) == ("X:BTCUSD", "1m", 0, 120_000)
    assert bar_key_range(columns_of([a, BAR._replace(ticker="X:ETHUSD")], 12)) is None
    assert bar_key_range(columns_of([a, BAR._replace(timeframe="5m")], 12)) is None
