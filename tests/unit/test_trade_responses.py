"""Pure parsing of ``/v3/trades`` pages: the recorded bodies (the client repository's mock and
the vendor's documented crypto example) -> Trade rows with exact values; each bad result is
set aside alone with its reason."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from rrr.errors import ParseError
from rrr.models import Rejected, Trade
from rrr.polygon.rest import trades_path
from rrr.polygon.trades_page import TradesPage, parse_trades_page

SHARED = Path(__file__).resolve().parents[3] / "shared"
MOCK = SHARED / "fixtures/polygon/test_rest/mocks/v3/trades/AAPL&limit=2.json"
OPENAPI = SHARED / "fixtures/polygon/.massive/rest.crypto-subset.json"
NOW_MS = 1_700_000_000_000


def crypto_example() -> dict[str, Any]:
    """The 200 example of ``GET /v3/trades/{cryptoTicker}`` in the vendor's OpenAPI file."""
    spec = orjson.loads(OPENAPI.read_bytes())
    operation = spec["paths"]["/v3/trades/{cryptoTicker}"]["get"]
    example: dict[str, Any] = operation["responses"]["200"]["content"]["application/json"][
        "example"
    ]
    return example


def parse(body: bytes | dict[str, Any], ticker: str = "X:BTCUSD") -> TradesPage:
    return parse_trades_page(body, ticker=ticker, source="polygon", now_ms=NOW_MS)


def test_the_vendors_crypto_example_parses_to_exact_trades() -> None:
    body = orjson.dumps(crypto_example())
    page = parse(body)
    src = "polygon"
    assert page.trades == [
        Trade("X:BTCUSD", 1, "191450340", 35060.0, 1.0434526, (1,), 1625097600103, None, src),
        Trade("X:BTCUSD", 1, "191450341", 35059.99, 0.0058883, (2,), 1625097600368, None, src),
    ]
    assert page.rejected == [] and page.results_count == 2
    assert page.request_id == "a47d1beb8c11b6ae897ab76cdbbf35a3"
    # The cursor is followed against our own base: only its path and query count.
    assert page.next_path is not None and page.next_path.startswith("/v3/trades/X:BTC-USD?cursor=")
    assert "api.massive.com" not in page.next_path


def test_the_client_repositorys_mock_parses_and_its_stock_fields_are_ignored() -> None:
    """Two results with one id on two exchanges: two trades (the key includes the exchange)."""
    page = parse(MOCK.read_bytes(), ticker="X:BTCUSD")
    assert page.trades == [
        Trade("X:BTCUSD", 11, "183276", 156.43, 10.0, (12, 37), 1651181822461, None, "polygon"),
        Trade("X:BTCUSD", 12, "183276", 157.43, 10.0, (12, 37), 1651181822461, None, "polygon"),
    ]
    assert page.next_url is None and page.request_id == "756f9910624b35a47eb07f21a7a373bb"
    # Sub-millisecond nanoseconds (…461636600) are cut to the ms the stream would send.
    assert type(page.trades[0].size) is float


def test_the_same_trade_has_the_same_natural_key_as_on_the_stream() -> None:
    """XT sends the id as an integer here (spec §1.3), REST as text: both store "191450340"."""
    from rrr.polygon.messages import parse_trade

    streamed = parse_trade(
        {"ev": "XT", "pair": "BTC-USD", "p": 35060, "s": 1.0434526, "t": 1625097600103,
         "c": [1], "i": 191450340, "x": 1, "r": 1625097600150},
        "polygon", NOW_MS,
    )  # fmt: skip
    assert isinstance(streamed, Trade)
    fetched = parse(orjson.dumps(crypto_example())).trades[0]
    key = lambda t: (t.ticker, t.exchange_id, t.trade_id)  # noqa: E731
    assert key(streamed) == key(fetched)
    assert streamed._replace(received_ms=None) == fetched


GOOD = {
    "conditions": [2],
    "exchange": 23,
    "id": "1b254a48-7258-4465-8215-2610ccf9ab21",
    "participant_timestamp": 1_699_999_000_000_000_000,
    "price": 43575.6,
    "size": 4.522e-05,
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"exchange": None}, "trade 'exchange' must be an exchange id"),
        ({"exchange": True}, "trade 'exchange' must be an exchange id"),
        ({"exchange": 2**31}, "trade 'exchange' must be an exchange id"),
        ({"id": ""}, "trade 'id' must be a trade id"),
        ({"id": None}, "trade 'id' must be a trade id"),
        ({"id": "a\x00b"}, "trade 'id' contains a NUL character"),
        ({"price": None}, "trade without 'price'"),
        ({"price": "43575.6"}, "trade 'price' is not a finite number"),
        ({"price": 0}, "trade 'price' must be positive"),
        ({"price": math.nan}, "trade 'price' is not a finite number"),
        ({"size": -1.0}, "trade 'size' must not be negative"),
        ({"size": math.inf}, "trade 'size' is not a finite number"),
        ({"participant_timestamp": None}, "trade 'participant_timestamp' must be integer"),
        ({"participant_timestamp": 1.7e18}, "trade 'participant_timestamp' must be integer"),
        # milliseconds sent where nanoseconds belong land in 1970
        ({"participant_timestamp": 1_699_999_000_000}, "before 2009-01-03T00:00:00Z"),
        ({"participant_timestamp": (NOW_MS + 2 * 86_400_000) * 10**6}, "a day ahead"),
        ({"conditions": ["2"]}, "trade 'conditions' must be a list of integer codes"),
        ({"conditions": [2**15]}, "trade 'conditions' must be a list of integer codes"),
        ({"conditions": 2}, "trade 'conditions' must be a list of integer codes"),
    ],
)
def test_a_bad_result_is_rejected_alone_with_its_reason(
    change: dict[str, Any], reason: str
) -> None:
    bad = {**GOOD, **change}
    page = parse({"status": "OK", "results": [GOOD, bad, GOOD | {"id": "2"}]})
    assert [t.trade_id for t in page.trades] == [GOOD["id"], "2"]
    assert len(page.rejected) == 1
    rejected = page.rejected[0]
    assert reason in rejected.reason, rejected.reason
    assert (rejected.kind, rejected.source) == ("trades", "polygon")
    assert orjson.loads(rejected.raw)["exchange"] == orjson.loads(orjson.dumps(bad))["exchange"]
    assert page.results_count == 3


def test_ms_for_ns_says_which_unit_was_expected() -> None:
    page = parse({"results": [GOOD | {"participant_timestamp": 1_699_999_000_000}]})
    assert "(Unix ns expected)" in page.rejected[0].reason


def test_a_result_that_is_no_object_and_a_missing_key_are_rejected() -> None:
    page = parse({"results": [[1, 2], {k: v for k, v in GOOD.items() if k != "id"}, "x"]})
    assert page.trades == []
    assert [r.reason for r in page.rejected] == [
        "trade is not an object",
        "trade 'id' must be a trade id (non-empty text): None",
        "trade is not an object",
    ]


def test_optional_conditions_and_integer_ids() -> None:
    page = parse({"results": [{k: v for k, v in GOOD.items() if k != "conditions"} | {"id": 7}]})
    assert page.trades[0].conditions == () and page.trades[0].trade_id == "7"
    assert page.trades[0].ts_ms == 1_699_999_000_000


def test_an_empty_window_and_bodies_that_are_no_trades_page() -> None:
    assert parse(b'{"status":"OK","request_id":"ab"}') == TradesPage([], [], None, "ab", 0)
    assert parse({"status": "OK", "results": []}).trades == []
    with pytest.raises(ParseError, match="trades answer is not JSON"):
        parse(b"<html>502</html>")
    with pytest.raises(ParseError, match="trades answer is not a JSON object"):
        parse(b"[1]")
    with pytest.raises(ParseError, match="trades 'results' is not a list"):
        parse(b'{"results": {"a": 1}}')


def test_the_first_request_asks_for_the_window_in_ns_oldest_first() -> None:
    assert trades_path("X:BTCUSD", 1_700_000_000_000, 1_700_000_060_000) == (
        "/v3/trades/X:BTC-USD?timestamp.gte=1700000000000000000"
        "&timestamp.lt=1700000060000000000&order=asc&sort=timestamp&limit=50000"
    )


def test_rejected_rows_are_dead_letter_shaped() -> None:
    page = parse({"results": [{"exchange": 1}]})
    assert isinstance(page.rejected[0], Rejected) and page.rejected[0].raw == '{"exchange":1}'
