"""The simulator's ``GET /v1/last/crypto/{from}/{to}`` (the official client's
``get_last_crypto_trade``) and the REST key check, as plain handler calls (no socket): the
vendor's body shape (fixture ``test_rest/mocks/v1/last/crypto/BTC/USD.json``), the newest
trade the stream made, 403 on a plan without trades, 401 for a key the feed would refuse."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from rrr.simulator.http import Handler, Request, Response
from rrr.simulator.market import Market
from rrr.simulator.rest import RestSimOptions, rest_routes
from rrr.simulator.rest_last_trade import LAST_TRADE_PREFIX

T0 = 1_700_000_000_000
FIXTURE = (
    Path(__file__).resolve().parents[3]
    / "shared/fixtures/polygon/test_rest/mocks/v1/last/crypto/BTC/USD.json"
)


def handler(market: Market, **options: Any) -> Handler:
    return rest_routes(market, RestSimOptions(**options))[("GET", LAST_TRADE_PREFIX)]


def get(h: Handler, path: str, headers: dict[str, str] | None = None) -> Response:
    return h(Request("GET", path, {}, {"accept-encoding": "gzip", **(headers or {})}, b""))


def body(response: Response) -> dict[str, Any]:
    raw = response.body
    if response.headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    loaded: dict[str, Any] = orjson.loads(raw)
    return loaded


@pytest.fixture
def market() -> Market:
    market = Market(seed=5, tickers=("X:BTCUSD", "X:ETHUSD"), id_epoch_s=T0 // 1000)
    for now in range(T0, T0 + 3_000, 50):
        market.step(now, 20)
    return market


def test_the_newest_trade_in_the_vendors_shape(market: Market) -> None:
    response = get(handler(market), f"{LAST_TRADE_PREFIX}/BTC/USD")
    assert response.status == 200
    payload = body(response)
    vendor = orjson.loads(FIXTURE.read_bytes())
    assert set(payload) == set(vendor)
    assert set(payload["last"]) == set(vendor["last"])
    assert payload["status"] == "success" and payload["symbol"] == "BTC-USD"
    assert response.headers["X-Request-Id"] == payload["request_id"]
    tape = market.trade_tape("X:BTCUSD")
    assert tape is not None
    newest = tape.between(T0, T0 + 10_000)[-1]
    assert payload["last"] == {
        "conditions": [newest.side],
        "exchange": newest.exchange,
        "price": newest.price,
        "size": newest.size,
        "timestamp": newest.t_ms,  # ms, unlike /v3/trades
    }
    # lower-case symbols are the same pair
    assert body(get(handler(market), f"{LAST_TRADE_PREFIX}/eth/usd"))["symbol"] == "ETH-USD"


def test_before_any_trade_there_is_no_last(market: Market) -> None:
    quiet = Market(seed=5, tickers=("X:BTCUSD",), id_epoch_s=T0 // 1000)
    payload = body(get(handler(quiet), f"{LAST_TRADE_PREFIX}/BTC/USD"))
    assert "last" not in payload and payload["status"] == "success"


@pytest.mark.parametrize(
    ("path", "status"),
    [("/SOL/USD", 404), ("/BTC", 404), ("/BTC/USD/x", 404), ("/B-T/USD", 400)],
)
def test_unknown_pairs_and_bad_paths(market: Market, path: str, status: int) -> None:
    response = get(handler(market), LAST_TRADE_PREFIX + path)
    assert response.status == status and body(response)["status"] == "ERROR"


def test_a_plan_without_trades_gets_the_vendors_403(market: Market) -> None:
    response = get(handler(market, trades_authorized=False), f"{LAST_TRADE_PREFIX}/BTC/USD")
    assert response.status == 403
    payload = body(response)
    assert payload["status"] == "NOT_AUTHORIZED"
    assert payload["message"].startswith("You are not entitled to this data.")


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 401, "API Key was not provided"),
        ({"authorization": "Bearer wrong"}, 401, "Unknown API Key"),
        ({"authorization": "Bearer sim-key"}, 200, None),
    ],
)
def test_rest_accepts_only_the_feeds_keys(
    market: Market, headers: dict[str, str], status: int, error: str | None
) -> None:
    h = handler(market, accepted_keys=frozenset({"sim-key"}))
    response = get(h, f"{LAST_TRADE_PREFIX}/BTC/USD", headers)
    assert response.status == status
    assert body(response).get("error") == error
    if status == 401:
        assert body(response)["status"] == "ERROR"
    # any non-empty key when the feed takes any key; still none without one
    anyone = handler(market, accepted_keys=frozenset(), accept_any_key=True)
    assert get(anyone, f"{LAST_TRADE_PREFIX}/BTC/USD", headers).status == (
        401 if not headers else 200
    )
