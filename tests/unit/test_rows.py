import math

from rrr.models import Bar, Batch, Quote, Trade
from rrr.storage.rows import (
    bar_columns,
    bar_key_range,
    bar_problem,
    columns_of,
    last_bar_per_key,
    split_storable,
)

T0 = 1_706_649_600_000  # 2024-01-30T21:20:00Z
GOOD = Trade("X:BTCUSD", 1, "a", 1.5, 0.1, (2,), T0, None, "polygon")


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
    a = Bar("X:BTCUSD", "1m", 1.0, 2.0, 0.5, 1.5, 3.0, None, None, T0, T0 + 60_000, "polygon")
    b = a._replace(close=1.75)
    c = a._replace(start_ms=T0 + 60_000, end_ms=T0 + 120_000)
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
    bar = Bar("X:BTCUSD", "1m", 1.0, 2.0, 0.5, 1.5, 3.0, None, None, T0, T0 + 60_000, "polygon")
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


BAR = Bar("X:BTCUSD", "1m", 1.0, 2.0, 0.5, 1.5, 3.0, 1.2, 7, T0, T0 + 60_000, "polygon")
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
    BAR._replace(start_ms=2**64 - 1),
    BAR._replace(start_ms=1_230_940_799_999),  # a millisecond before 2009-01-03
    BAR._replace(end_ms=10**16),
    BAR._replace(ticker="X:BTC\x00USD"),
    BAR._replace(timeframe="1m\x00"),
    BAR._replace(source="polygon\x00"),
    ("too", "short"),
]


def test_bar_columns_only_for_pages_of_storable_bars() -> None:
    page = [
        BAR._replace(start_ms=T0 + i * 60_000, end_ms=T0 + (i + 1) * 60_000) for i in range(100)
    ]
    page += [BAR._replace(vwap=None, trade_count=None, open=2, volume=0)]
    columns = bar_columns(page)
    assert columns is not None
    assert [list(c) for c in zip(*columns, strict=True)] == [list(b) for b in page]
    for bad in BAD_BARS:
        assert bar_problem(bad) is not None
        assert bar_columns([*page, bad]) is None, bad


def test_a_page_with_one_bad_bar_keeps_the_rest_with_the_same_reason() -> None:
    page = [BAR._replace(start_ms=T0 + i * 60_000, end_ms=T0 + (i + 1) * 60_000) for i in range(10)]
    for bad in BAD_BARS:
        good, rejected = split_storable("bars", [*page, bad])
        assert good == page
        assert [r.reason for r in rejected] == [bar_problem(bad)]
    assert split_storable("bars", page) == (page, [])


def test_the_key_range_of_bars_of_one_ticker() -> None:
    a = BAR._replace(start_ms=T0 + 120_000)
    assert bar_key_range(columns_of([a, BAR], 12)) == ("X:BTCUSD", "1m", T0, T0 + 120_000)
    assert bar_key_range(columns_of([a, BAR._replace(ticker="X:ETHUSD")], 12)) is None
    assert bar_key_range(columns_of([a, BAR._replace(timeframe="5m")], 12)) is None


# -- one bad time or text among good rows: rejected alone ---------------------------------------

NOW = T0 + 3_600_000  # the receiving clock
DAY = 86_400_000


def test_a_trade_with_a_time_no_database_holds_is_rejected_alone() -> None:
    # Issue 10: t = 10**16 made PostgreSQL refuse the whole batch ("timestamp out of range")
    # and 999 good trades became one dead letter.
    rows = [GOOD._replace(trade_id=str(i), ts_ms=T0 + i) for i in range(999)]
    rows.insert(500, GOOD._replace(trade_id="far", ts_ms=10**16))
    for now_ms in (NOW, None):
        good, bad = split_storable("trades", rows, now_ms)
        assert len(good) == 999 and all(r.trade_id != "far" for r in good)
        assert [r.kind for r in bad] == ["trades"]
        assert bad[0].raw.startswith('["X:BTCUSD",1,"far",1.5,0.1,[2],10000000000000000')
    assert split_storable("trades", rows, NOW)[1][0].reason == (
        "ts_ms 10000000000000000 is more than a day ahead of the receiving clock"
        f" ({NOW}) (Unix ms expected)"
    )
    assert split_storable("trades", rows)[1][0].reason == (
        "ts_ms 10000000000000000 is past the year 9999 (Unix ms expected)"
    )


def before(name: str, value: int) -> str:
    return f"{name} {value} is before 2009-01-03T00:00:00Z (Unix ms expected)"


def ahead(name: str, value: int) -> str:
    return (
        f"{name} {value} is more than a day ahead of the receiving clock ({NOW}) (Unix ms expected)"
    )


def test_every_time_of_every_kind_is_bounded() -> None:
    quote = Quote("X:BTCUSD", 1, 1.0, 2.0, 1.5, 3.0, T0, T0 + 5, "polygon")
    cases = [
        ("trades", GOOD._replace(ts_ms=1_230_940_799_999), before("ts_ms", 1_230_940_799_999)),
        ("trades", GOOD._replace(ts_ms=1_706_649_600), before("ts_ms", 1_706_649_600)),  # s
        ("trades", GOOD._replace(ts_ms=NOW + DAY + 1), ahead("ts_ms", NOW + DAY + 1)),
        ("trades", GOOD._replace(ts_ms=2**64 - 1), ahead("ts_ms", 2**64 - 1)),
        ("trades", GOOD._replace(received_ms=T0 * 1000), ahead("received_ms", T0 * 1000)),  # µs
        ("trades", GOOD._replace(received_ms=0), before("received_ms", 0)),
        ("quotes", quote._replace(ts_ms=-1), before("ts_ms", -1)),
        ("quotes", quote._replace(ts_ms=NOW + 2 * DAY), ahead("ts_ms", NOW + 2 * DAY)),
        ("quotes", quote._replace(received_ms=T0 * 10**6), ahead("received_ms", T0 * 10**6)),
        ("bars", BAR._replace(start_ms=NOW + DAY + 1), ahead("start_ms", NOW + DAY + 1)),
        ("bars", BAR._replace(start_ms=0), before("start_ms", 0)),
        (
            "bars",
            BAR._replace(end_ms=2**63),
            f"end_ms {2**63} is past the year 9999 (Unix ms expected)",
        ),
    ]
    for kind, bad_row, reason in cases:
        good_row = {"trades": GOOD, "quotes": quote, "bars": BAR}[kind]
        good, bad = split_storable(kind, [good_row, bad_row, good_row], NOW)  # type: ignore[arg-type]
        assert good == [good_row, good_row], bad_row
        assert [r.reason for r in bad] == [reason]


def test_the_day_ahead_limit_is_inclusive_and_a_bar_may_end_past_the_clock() -> None:
    at_limit = GOOD._replace(ts_ms=NOW + DAY, received_ms=NOW + DAY)
    assert split_storable("trades", [at_limit], NOW) == ([at_limit], [])
    month = BAR._replace(timeframe="1mo", start_ms=NOW - DAY, end_ms=NOW + 30 * DAY)
    assert split_storable("bars", [month], NOW) == ([month], [])  # the column path
    assert split_storable("bars", [month, ("bad",)], NOW)[0] == [month]  # the row path
    # Without a clock, a time a year ahead is still storable: callers that have a clock pass it.
    ahead = GOOD._replace(ts_ms=NOW + 365 * DAY)
    assert split_storable("trades", [ahead]) == ([ahead], [])
    assert split_storable("trades", [ahead], NOW)[0] == []


def test_a_nul_in_any_text_rejects_its_row_alone() -> None:
    quote = Quote("X:BTCUSD", 1, 1.0, 2.0, 1.5, 3.0, T0, None, "polygon")
    cases = [
        ("trades", GOOD._replace(ticker="X:BTC\x00USD"), "ticker contains a NUL character"),
        ("trades", GOOD._replace(trade_id="a\x00b"), "trade_id contains a NUL character"),
        ("trades", GOOD._replace(source="poly\x00gon"), "source contains a NUL character"),
        ("quotes", quote._replace(ticker="\x00"), "ticker contains a NUL character"),
        ("quotes", quote._replace(source="p\x00"), "source contains a NUL character"),
        ("bars", BAR._replace(timeframe="1\x00m"), "timeframe contains a NUL character"),
    ]
    for kind, bad_row, reason in cases:
        good_row = {"trades": GOOD, "quotes": quote, "bars": BAR}[kind]
        good, bad = split_storable(kind, [good_row, bad_row], NOW)  # type: ignore[arg-type]
        assert good == [good_row]
        assert [r.reason for r in bad] == [reason]
        # The dead letter itself holds no NUL (PostgreSQL would refuse it too): the raw text
        # escapes it, and a source with a NUL is not copied to the letter's source.
        assert "\x00" not in bad[0].raw + bad[0].reason + bad[0].source + bad[0].kind
        assert "\\u0000" in bad[0].raw


def test_values_json_cannot_encode_still_become_dead_letters() -> None:
    # An integer past 64 bits or nesting past orjson's 254 levels used to make the dead
    # letter's raw text raise, taking the whole batch down with it.
    deep: list[object] = []
    for _ in range(1000):
        deep = [deep]
    rows = [BAR, BAR._replace(trade_count=2**70), BAR._replace(vwap=deep)]
    good, bad = split_storable("bars", rows, NOW)
    assert good == [BAR]
    assert [r.reason.split(":")[0] for r in bad] == [
        "trade_count must be a non-negative integer or null",
        "vwap must be a finite number >= 0 or null",
    ]
    assert '"1180591620717411303424"' in bad[0].raw
    assert "<nested deeper than 200 levels>" in bad[1].raw
    assert len(bad[1].reason) < 200
