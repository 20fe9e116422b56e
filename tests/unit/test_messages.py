"""The WebSocket parser on every recorded vendor event in ../shared/fixtures/polygon and on
hand-made frames. Exact values, including the float each price decoded to."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from rrr.models import Bar, Quote, Rejected, Trade
from rrr.polygon.messages import (
    EVENT_PARSERS,
    Status,
    is_auth_success,
    parse_frame,
    parse_quote,
    parse_statuses,
    parse_trade,
)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "polygon"
NOW_MS = 1_706_700_000_000  # 2024-01-31T11:20Z, the receiving clock: after every event below

SPEC_TRADE = Trade(
    "X:BTCUSD", 3, "14272084", 33021.9, 0.01616617, (2,), 1610462007425, 1610462007576, "polygon"
)
SPEC_QUOTE = Quote(
    "X:BTCUSD", 1, 33052.79, 0.48, 33073.19, 0.601, 1610462411115, 1610462411128, "polygon"
)
SPEC_BAR = (0.772, 0.784, 0.771, 0.784, 951.6112, 0.7756, None, 1610463240000, 1610463300000)

# What each recorded event must parse to, by `ev` (and by status text for status events).
EXPECTED: dict[str, Any] = {
    "XT": SPEC_TRADE,
    "XQ": SPEC_QUOTE,
    "XA": Bar("X:BCDUSD", "1m", *SPEC_BAR, "polygon"),
    "XAS": Bar("X:BCDUSD", "1s", *SPEC_BAR, "polygon"),
    "XL2": "unknown event 'XL2'",  # deprecated 2024-07; not subscribed
    "FMV": "unknown event 'FMV'",  # business plans only
    "AM": "unknown event 'AM'",  # launchpad
    "LV": "unknown event 'LV'",
    "T": "unknown event 'T'",  # the stock trades of the client's mock server
}


def _events_in(node: Any) -> list[dict[str, Any]]:
    """Every JSON object with a string `ev`, anywhere in a document."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("ev"), str):
            found.append(node)
        for value in node.values():
            found += _events_in(value)
    elif isinstance(node, list):
        for value in node:
            found += _events_in(value)
    return found


FIXTURE_FILES = sorted(
    p for p in FIXTURES.rglob("*.json") if _events_in(orjson.loads(p.read_bytes()))
)


def test_the_fixtures_are_there() -> None:
    names = {p.name for p in FIXTURE_FILES}
    assert {"websocket.crypto-examples.json", "websocket.crypto-subset.json"} <= names


# Wire field -> the record field it becomes, for every decimal the stores write as repr(float).
DECIMAL_FIELDS = {
    "XT": {"p": "price", "s": "size"},
    "XQ": {"bp": "bid_price", "bs": "bid_size", "ap": "ask_price", "as": "ask_size"},
    "XA": {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume", "vw": "vwap"},
}
DECIMAL_FIELDS["XAS"] = DECIMAL_FIELDS["XA"]


def numbers_written_in(text: str, name: str) -> set[Decimal]:
    """Every number the fixture's own text gives for the field ``name``, as written."""
    pattern = rf'"{re.escape(name)}"\s*:\s*(-?[0-9][0-9.eE+-]*)'
    return {Decimal(token) for token in re.findall(pattern, text)}


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_recorded_event_parses_exactly(path: Path) -> None:
    text = path.read_text()
    for event in _events_in(orjson.loads(text)):
        (parsed,) = parse_frame(orjson.dumps([event]), "polygon", NOW_MS)
        if event["ev"] == "status":
            assert parsed == Status(event["status"], event["message"])
            continue
        expected = EXPECTED[event["ev"]]
        if isinstance(expected, str):
            assert isinstance(parsed, Rejected)
            assert parsed.reason == expected
            assert orjson.loads(parsed.raw) == event  # the whole event is kept
            continue
        assert parsed == expected
        # What a store writes for each decimal (repr of the parsed float) is a number the
        # vendor wrote in the fixture file for that field: no float artefact on the way.
        for wire, field in DECIMAL_FIELDS[event["ev"]].items():
            value = getattr(parsed, field)
            if value is not None:
                assert Decimal(repr(value)) in numbers_written_in(text, wire), (wire, value)


def test_the_decimal_check_reads_the_fixture_text_and_can_fail() -> None:
    text = (FIXTURES / ".massive" / "websocket.crypto-examples.json").read_text()
    assert Decimal("33021.9") in numbers_written_in(text, "p")
    assert Decimal(repr(0.1 + 0.2)) not in numbers_written_in('{"p": 0.3}', "p")


def test_mock_server_frames_parse_whole() -> None:
    payloads = orjson.loads(
        (FIXTURES / "test_websocket" / "mock_server.payloads.json").read_bytes()
    )
    assert parse_frame(orjson.dumps(payloads["on_connect"]), "polygon", NOW_MS) == [
        Status("connected", "Connected Successfully")
    ]
    two_stock_trades = parse_frame(
        orjson.dumps(payloads["on_subscribe_for_each_param"][2]), "p", NOW_MS
    )
    assert [r.reason for r in two_stock_trades] == ["unknown event 'T'"] * 2  # type: ignore[union-attr]


# -- hand-made frames -----------------------------------------------------------------------------

TRADE = {
    "ev": "XT",
    "pair": "BTC-USD",
    "p": 43575.6,
    "t": 1706649628023,
    "s": 4.522e-05,
    "c": [2],
    "i": "1b254a48-7258-4465-8215-2610ccf9ab21",
    "x": 23,
    "r": 1706649628068,
}
QUOTE = {"ev": "XQ", "pair": "ETH-USD", "bp": 2300.12, "bs": 0.5, "ap": 2300.5, "as": 1.25}
QUOTE |= {"t": 1706649628030, "x": 1, "r": 1706649628031, "lp": 0, "ls": 0}


def test_real_capture_with_exponent_size_and_uuid_id() -> None:
    frame = (
        b'[{"ev":"XT","pair":"BTC-USD","p":43575.6,"t":1706649628023,"s":4.522e-05,"c":[2],'
        b'"i":"1b254a48-7258-4465-8215-2610ccf9ab21","x":23,"r":1706649628068}]'
    )
    assert parse_frame(frame, "polygon", NOW_MS) == [
        Trade(
            "X:BTCUSD",
            23,
            "1b254a48-7258-4465-8215-2610ccf9ab21",
            4.3575600000000001e4,
            4.522e-05,
            (2,),
            1706649628023,
            1706649628068,
            "polygon",
        )
    ]


def test_mixed_frame_keeps_order_and_parses_each_kind() -> None:
    bar = {"ev": "XA", "pair": "ETH-BTC", "v": 0.52725026, "vw": 0.0712, "z": 0, "o": 0.07119}
    bar |= {"c": 0.07114, "h": 0.07119, "l": 0.07114, "s": 1645140000000, "e": 1645140060000}
    status = {"ev": "status", "status": "max_connections", "message": "Maximum exceeded."}
    out = parse_frame(orjson.dumps([TRADE, QUOTE, status, bar, {"ev": "XZ"}]), "simulator", NOW_MS)
    assert [type(e) for e in out] == [Trade, Quote, Status, Bar, Rejected]
    assert out[1] == Quote(
        "X:ETHUSD", 1, 2300.12, 0.5, 2300.5, 1.25, 1706649628030, 1706649628031, "simulator"
    )
    assert out[2] == Status("max_connections", "Maximum exceeded.")
    assert out[3] == Bar(
        "X:ETHBTC", "1m", 0.07119, 0.07119, 0.07114, 0.07114, 0.52725026, 0.0712, None,
        1645140000000, 1645140060000, "simulator",
    )  # fmt: skip
    assert out[4] == Rejected(raw='{"ev":"XZ"}', reason="unknown event 'XZ'", source="simulator")


def test_status_mid_stream_between_trades() -> None:
    ack = {"ev": "status", "status": "success", "message": "subscribed to: XT.BTC-USD"}
    out = parse_frame(orjson.dumps([TRADE, ack, TRADE]), "polygon", NOW_MS)
    assert out[1] == Status("success", "subscribed to: XT.BTC-USD")
    assert out[0] == out[2] and type(out[0]) is Trade


def _reject(event: dict[str, Any]) -> Rejected:
    (out,) = parse_frame(orjson.dumps([event]), "polygon", NOW_MS)
    assert isinstance(out, Rejected), out
    assert orjson.loads(out.raw) == event
    return out


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"p": -1.5}, "field 'p' must be positive, got -1.5"),
        ({"p": 0}, "field 'p' must be positive, got 0"),
        ({"p": "43575.6"}, "field 'p' must be a number, got str"),
        ({"p": None}, "field 'p' must be a number, got null"),
        ({"p": True}, "field 'p' must be a number, got bool"),
        ({"s": -0.1}, "field 's' must not be negative, got -0.1"),
        ({"t": 1706649628023.5}, "field 't' must be integer milliseconds or an id, got float"),
        ({"t": "1706649628023"}, "field 't' must be integer milliseconds or an id, got str"),
        ({"x": "23"}, "field 'x' must be integer milliseconds or an id, got str"),
        ({"r": "late"}, "field 'r' must be integer milliseconds or an id, got str"),
        ({"i": ""}, "field 'i' must be a trade id (integer or non-empty text), got ''"),
        ({"i": 1.5}, "field 'i' must be a trade id (integer or non-empty text), got 1.5"),
        ({"c": [2, "buy"]}, "field 'c' must be a list of integer conditions, got [2, 'buy']"),
        ({"c": 2}, "field 'c' must be a list of integer conditions, got 2"),
        ({"pair": "BTCUSD"}, "bad pair 'BTCUSD': expected the WebSocket form like 'BTC-USD'"),
        ({"pair": "X:BTCUSD"}, "bad pair 'X:BTCUSD': expected the WebSocket form like 'BTC-USD'"),
        ({"pair": 7}, "bad pair 7: expected the WebSocket form like 'BTC-USD'"),
    ],
)
def test_ill_typed_or_impossible_trade_is_rejected_with_its_reason(
    change: dict[str, Any], reason: str
) -> None:
    rejected = _reject(TRADE | change)
    assert (rejected.reason, rejected.kind, rejected.source) == (reason, "trades", "polygon")


@pytest.mark.parametrize("field", ["pair", "p", "s", "t", "x", "i"])
def test_trade_missing_a_required_field(field: str) -> None:
    event = {k: v for k, v in TRADE.items() if k != field}
    assert _reject(event).reason == f"missing field '{field}'"


def test_optional_trade_fields_may_be_absent() -> None:
    event = {k: v for k, v in TRADE.items() if k not in ("c", "r")}
    (trade,) = parse_frame(orjson.dumps([event]), "polygon", NOW_MS)
    assert trade == Trade(
        "X:BTCUSD", 23, TRADE["i"], 43575.6, 4.522e-05, (), 1706649628023, None, "polygon"
    )


def test_integer_id_and_integer_price_become_text_and_float() -> None:
    (trade,) = parse_frame(orjson.dumps([TRADE | {"i": 14272084, "p": 43575}]), "polygon", NOW_MS)
    assert isinstance(trade, Trade)
    assert (trade.trade_id, trade.price, type(trade.price)) == ("14272084", 43575.0, float)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"bp": -2300.0}, "field 'bp' must be positive, got -2300.0"),
        ({"ap": 0.0}, "field 'ap' must be positive, got 0.0"),
        ({"as": -1}, "field 'as' must not be negative, got -1"),
        ({"bs": "0.5"}, "field 'bs' must be a number, got str"),
    ],
)
def test_bad_quotes(change: dict[str, Any], reason: str) -> None:
    rejected = _reject(QUOTE | change)
    assert (rejected.reason, rejected.kind) == (reason, "quotes")


def test_bars_need_a_window_and_positive_prices() -> None:
    bar = {"ev": "XA", "pair": "BTC-USD", "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 3.0}
    bar |= {"s": 1610463240000, "e": 1610463300000}
    assert _reject(bar | {"l": -0.5}).reason == "field 'l' must be positive, got -0.5"
    assert _reject(bar | {"e": 1610463240000}).reason.startswith("window end 'e'")
    assert _reject({k: v for k, v in bar.items() if k != "v"}).reason == "missing field 'v'"
    (derived,) = parse_frame(
        orjson.dumps([{k: v for k, v in bar.items() if k != "e"}]), "p", NOW_MS
    )
    assert isinstance(derived, Bar) and derived.end_ms == 1610463300000  # s + 60 s for XA


def test_nan_and_infinity_are_rejected() -> None:
    # orjson refuses NaN and 1e400 in JSON text: the whole frame is set aside, not a row.
    for text in (b'[{"ev":"XT","p":NaN}]', b'[{"ev":"XT","p":1e400}]'):
        (out,) = parse_frame(text, "polygon", NOW_MS)
        assert isinstance(out, Rejected) and out.reason.startswith("frame is not JSON")
        assert out.raw == text.decode()
    # Events that reach a parser as dicts are checked too.
    for bad in (math.nan, math.inf, -math.inf):
        out = parse_trade(TRADE | {"p": bad}, "polygon", NOW_MS)
        assert isinstance(out, Rejected) and "must be finite" in out.reason
        out = parse_quote(QUOTE | {"bs": bad}, "polygon", NOW_MS)
        assert isinstance(out, Rejected) and "must be finite" in out.reason


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "frame is not JSON"),
        (b"not json", "frame is not JSON"),
        (b'{"ev":"XT"}', "frame is not a JSON array"),
        (b"42", "frame is not a JSON array"),
    ],
)
def test_a_frame_that_is_not_an_array_is_one_rejected_record(frame: bytes, reason: str) -> None:
    (out,) = parse_frame(frame, "polygon", NOW_MS)
    assert isinstance(out, Rejected) and out.reason.startswith(reason)
    assert out.raw == frame.decode()


def test_non_objects_and_events_without_ev() -> None:
    out = parse_frame(b'[1, "XT", null, {"pair": "BTC-USD"}, {"ev": ["XT"]}]', "polygon", NOW_MS)
    assert [r.reason for r in out] == [  # type: ignore[union-attr]
        "event is not a JSON object: int",
        "event is not a JSON object: str",
        "event is not a JSON object: NoneType",
        "missing field 'ev'",
        "unknown event ['XT']",
    ]


def test_one_bad_event_does_not_spoil_its_frame() -> None:
    out = parse_frame(orjson.dumps([TRADE, TRADE | {"p": -1}, QUOTE]), "polygon", NOW_MS)
    assert [type(e) for e in out] == [Trade, Rejected, Quote]


def test_str_and_bytes_frames_parse_the_same() -> None:
    text = orjson.dumps([TRADE, QUOTE]).decode()
    assert parse_frame(text, "polygon", NOW_MS) == parse_frame(text.encode(), "polygon", NOW_MS)


def test_statuses_only() -> None:
    frame = orjson.dumps([{"ev": "status", "status": "auth_failed", "message": "nope"}, TRADE])
    assert parse_statuses(frame) == [Status("auth_failed", "nope")]


def test_the_routing_table_names_every_crypto_event() -> None:
    assert set(EVENT_PARSERS) == {"XT", "XQ", "XA", "XAS", "status"}


# -- issue 10: one bad event is rejected alone, its frame's good events kept -------------------

DAY = 86_400_000
BAR_EVENT = {"ev": "XA", "pair": "BTC-USD", "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 3.0}
BAR_EVENT |= {"s": 1706649600000, "e": 1706649660000}


def _alone(bad: dict[str, Any] | bytes) -> Rejected:
    """``bad`` between two good trades of one frame: it alone is rejected, and its raw text
    is JSON a store can keep (no literal NUL)."""
    middle = bad if isinstance(bad, bytes) else orjson.dumps(bad)
    frame = b"[" + orjson.dumps(TRADE) + b"," + middle + b"," + orjson.dumps(QUOTE) + b"]"
    out = parse_frame(frame, "polygon", NOW_MS)
    assert [type(e) for e in out] == [Trade, Rejected, Quote], out
    assert out[0] == parse_frame(orjson.dumps([TRADE]), "polygon", NOW_MS)[0]
    rejected = out[1]
    assert isinstance(rejected, Rejected) and "\x00" not in rejected.raw + rejected.reason
    orjson.loads(rejected.raw)
    return rejected


def _ahead(field: str, value: int) -> str:
    return (
        f"field '{field}' {value} is more than a day ahead of the receiving clock ({NOW_MS})"
        " (Unix ms expected)"
    )


def _before(field: str, value: int) -> str:
    return f"field '{field}' {value} is before 2009-01-03T00:00:00Z (Unix ms expected)"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (TRADE | {"t": 10**16}, _ahead("t", 10**16)),  # the poison trade
        (TRADE | {"t": 2**64 - 1}, _ahead("t", 2**64 - 1)),
        (TRADE | {"t": NOW_MS + DAY + 1}, _ahead("t", NOW_MS + DAY + 1)),
        (TRADE | {"t": 1706649628}, _before("t", 1706649628)),  # seconds, not ms
        (TRADE | {"t": -5}, _before("t", -5)),
        (TRADE | {"r": 1706649628068000}, _ahead("r", 1706649628068000)),  # microseconds
        (TRADE | {"r": 0}, _before("r", 0)),
        (QUOTE | {"t": 10**16}, _ahead("t", 10**16)),
        (QUOTE | {"r": 1230940799999}, _before("r", 1230940799999)),
        (BAR_EVENT | {"s": 10**16, "e": 10**16 + 60_000}, _ahead("s", 10**16)),
        (BAR_EVENT | {"e": NOW_MS + 2 * DAY}, _ahead("e", NOW_MS + 2 * DAY)),
        (BAR_EVENT | {"s": 60_000, "e": 120_000}, _before("s", 60_000)),
        (BAR_EVENT | {"e": None}, "field 'e' must be integer milliseconds or an id, got null"),
        (
            {k: v for k, v in BAR_EVENT.items() if k != "e"} | {"s": NOW_MS + DAY - 1},
            f"field 's' {NOW_MS + DAY - 1}: its window ends more than a day ahead of the"
            f" receiving clock ({NOW_MS})",
        ),
        (TRADE | {"x": 2**31}, "field 'x' must be an id from 0 to 2147483647, got 2147483648"),
        (QUOTE | {"x": -1}, "field 'x' must be an id from 0 to 2147483647, got -1"),
        (TRADE | {"c": [70000]}, "field 'c' must be a list of integer conditions, got [70000]"),
        (TRADE | {"i": "a\x00b"}, "field 'i' contains a NUL character"),
        (
            TRADE | {"pair": "BTC\x00-USD"},
            "bad pair 'BTC\\x00-USD': expected the WebSocket form like 'BTC-USD'",
        ),
        ({"ev": "status", "status": "succ\x00ess"}, "field 'status' contains a NUL character"),
    ],
)
def test_a_bad_time_id_or_text_rejects_its_event_not_its_frame(
    event: dict[str, Any], reason: str
) -> None:
    rejected = _alone(event)
    assert rejected.reason == reason
    assert orjson.loads(rejected.raw) == event


def test_the_day_ahead_limit_is_inclusive() -> None:
    at_limit = TRADE | {"t": NOW_MS + DAY, "r": NOW_MS + DAY}
    (trade,) = parse_frame(orjson.dumps([at_limit]), "polygon", NOW_MS)
    assert type(trade) is Trade and trade.ts_ms == NOW_MS + DAY


@pytest.mark.parametrize("levels", [300, 1000])  # past orjson's encoder (254), within its decoder
def test_a_field_nested_too_deep_to_encode_rejects_its_event_not_its_frame(levels: int) -> None:
    deep = b"[" * levels + b"2" + b"]" * levels
    for field in ("c", "i", "p", "pair", "t", "x", "r"):
        rejected = _alone(orjson.dumps(TRADE | {field: "DEEP"}).replace(b'"DEEP"', deep))
        assert rejected.kind == "trades"
        assert rejected.reason.startswith(("bad pair", f"field '{field}'")), rejected.reason
        assert len(rejected.reason) < 250  # the value is shown cut short
        kept = orjson.loads(rejected.raw)
        assert kept["ev"] == "XT" and "<nested deeper than 200 levels>" in rejected.raw
    rejected = _alone(orjson.dumps(BAR_EVENT | {"e": "DEEP"}).replace(b'"DEEP"', deep))
    assert rejected.reason == "field 'e' must be integer milliseconds or an id, got list"
    # A deep field the parser ignores costs nothing.
    ignored = orjson.dumps(BAR_EVENT | {"z": "DEEP"}).replace(b'"DEEP"', deep)
    (bar,) = parse_frame(b"[" + ignored + b"]", "polygon", NOW_MS)
    assert type(bar) is Bar


def test_only_a_frame_that_is_not_json_is_rejected_whole() -> None:
    too_deep = b"[" + orjson.dumps(TRADE) + b"," + b"[" * 1100 + b"]" * 1100 + b"]"
    (out,) = parse_frame(too_deep, "polygon", NOW_MS)
    assert isinstance(out, Rejected) and out.reason.startswith("frame is not JSON")
    assert out.raw == too_deep.decode()
    # A literal NUL makes a frame unreadable; its dead letter keeps the text, NUL escaped.
    nul = b'[{"ev":"XT","i":"a\x00b"}]'
    (out,) = parse_frame(nul, "polygon", NOW_MS)
    assert isinstance(out, Rejected) and out.reason.startswith("frame is not JSON")
    assert out.raw == '[{"ev":"XT","i":"a\\u0000b"}]'


def test_a_status_message_with_a_nul_is_kept_with_the_nul_escaped() -> None:
    frame = orjson.dumps([{"ev": "status", "status": "auth_success", "message": "ok\x00"}])
    assert parse_frame(frame, "", NOW_MS) == [Status("auth_success", "ok\\u0000")]
    assert parse_statuses(frame) == [Status("auth_success", "ok\\u0000")]


@pytest.mark.parametrize(
    ("status", "authenticated"),
    [
        (Status("auth_success", "authenticated"), True),
        (Status("success", "authenticated"), True),  # the legacy reply (spec §1.1 step 4)
        (Status("success", "subscribed to: XT.BTC-USD"), False),  # an ack, not auth
        (Status("auth_failed", "authentication failed"), False),
        (Status("connected", "Connected Successfully"), False),
    ],
)
def test_auth_success_and_its_legacy_variant(status: Status, authenticated: bool) -> None:
    assert is_auth_success(status) is authenticated
