"""A 200 answer whose own ``status`` says it failed is an error, never an empty page; a result
that is the vendor's per-item error is rejected in the vendor's words (spec §2.2-§2.4)."""

from __future__ import annotations

import orjson
import pytest

from rrr.errors import VendorAuthError, VendorError, is_transient
from rrr.polygon.aggs_page import parse_aggs_page
from rrr.polygon.body_status import body_status_error
from rrr.polygon.trades_page import parse_trades_page

NOW_MS = 1_700_000_000_000
BAR = {"o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 3.0, "t": NOW_MS - 60_000}
TRADE = {
    "exchange": 1,
    "id": "9",
    "price": 2.0,
    "size": 1.0,
    "participant_timestamp": NOW_MS * 1_000_000,
}
NOT_FOUND = {"error": "NOT_FOUND", "message": "Ticker not found.", "ticker": "X:NOPE"}


def parse_aggs(payload: dict[str, object]) -> object:
    return parse_aggs_page(
        orjson.dumps(payload),
        ticker="X:BTCUSD",
        multiplier=1,
        timespan="minute",
        source="polygon",
        now_ms=NOW_MS,
    )


def parse_trades(payload: dict[str, object]) -> object:
    return parse_trades_page(
        orjson.dumps(payload), ticker="X:BTCUSD", source="polygon", now_ms=NOW_MS
    )


@pytest.mark.parametrize("status", ["OK", "DELAYED", "success", None])
def test_data_statuses_are_no_error(status: str | None) -> None:
    payload = {} if status is None else {"status": status}
    assert body_status_error(payload, "aggregates") is None


@pytest.mark.parametrize("parse", [parse_aggs, parse_trades], ids=["aggregates", "trades"])
def test_a_200_with_status_error_raises_with_the_vendors_text(parse: object) -> None:
    body = {"status": "ERROR", "request_id": "a", "error": "Internal lookup failed"}
    with pytest.raises(VendorError) as caught:
        parse(body)  # type: ignore[operator]
    assert type(caught.value) is VendorError and not is_transient(caught.value)
    assert "status 'ERROR'" in str(caught.value) and "Internal lookup failed" in str(caught.value)


@pytest.mark.parametrize("parse", [parse_aggs, parse_trades], ids=["aggregates", "trades"])
def test_a_200_with_not_authorized_is_an_auth_error(parse: object) -> None:
    body = {"status": "NOT_AUTHORIZED", "message": "You are not entitled to this data."}
    with pytest.raises(VendorAuthError) as caught:
        parse(body)  # type: ignore[operator]
    assert "not entitled" in str(caught.value) and "POLYGON_API_KEY" in str(caught.value)


def test_a_per_item_error_is_rejected_in_the_vendors_words() -> None:
    bars = parse_aggs_page(
        {"status": "OK", "results": [BAR, NOT_FOUND]},
        ticker="X:BTCUSD",
        multiplier=1,
        timespan="minute",
        source="polygon",
        now_ms=NOW_MS,
    )
    assert len(bars.bars) == 1
    assert [r.reason for r in bars.rejected] == [
        "aggregate is a vendor error: NOT_FOUND: Ticker not found."
    ]
    trades = parse_trades_page(
        {"status": "OK", "results": [NOT_FOUND, TRADE]},
        ticker="X:BTCUSD",
        source="polygon",
        now_ms=NOW_MS,
    )
    assert len(trades.trades) == 1
    assert [r.reason for r in trades.rejected] == [
        "trade is a vendor error: NOT_FOUND: Ticker not found."
    ]
