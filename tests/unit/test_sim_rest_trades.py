"""The simulator's ``/v3/trades``: the trades its market made for the stream (sent or not),
with the vendor's shape, paged by cursor without a gap or a repeat, in either order; a plan
without trades answers 403 NOT_AUTHORIZED. Handlers called as plain functions, no socket."""

from __future__ import annotations

import gzip
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from rrr.models import SOURCE_SIMULATOR
from rrr.polygon.rest import trades_path
from rrr.polygon.trades_page import parse_trades_page
from rrr.simulator.http import Handler, Request, Response
from rrr.simulator.market import Market
from rrr.simulator.rest import RestSimOptions, rest_routes
from rrr.simulator.rest_trades import TRADES_PREFIX, decode_cursor, window_ms
from rrr.simulator.tape import TradeTape
from rrr.simulator.truth import event_to_record

T0 = 1_700_000_000_000
TICKERS = ("X:BTCUSD", "X:ETHUSD")


@pytest.fixture(scope="module")
def market_and_events() -> tuple[Market, list[dict[str, Any]]]:
    """Two minutes of a live market, 40 events every 50 ms (many trades share a ms)."""
    market = Market(seed=3, tickers=TICKERS, id_epoch_s=T0 // 1000)
    events: list[dict[str, Any]] = []
    for now in range(T0, T0 + 120_000, 50):
        events += market.step(now, 40)
    return market, events


def streamed_trades(events: list[dict[str, Any]], ticker: str, start: int, end: int) -> list[Any]:
    out = []
    for e in events:
        record = event_to_record(e)
        if e["ev"] == "XT" and record.ticker == ticker and start <= e["t"] < end:  # type: ignore[union-attr]
            out.append(record._replace(received_ms=None))  # type: ignore[union-attr]
    return out


def get(handler: Handler, path_and_query: str, encoding: str = "gzip") -> Response:
    parts = urlsplit(path_and_query)
    headers = {"accept-encoding": encoding, "host": "127.0.0.1:1"}
    return handler(Request("GET", parts.path, parse_qs(parts.query), headers, b""))


def body(response: Response) -> dict[str, Any]:
    raw = response.body
    if response.headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    loaded: dict[str, Any] = orjson.loads(raw)
    return loaded


def walk(handler: Handler, first: str) -> tuple[list[dict[str, Any]], int]:
    """Every result of a cursor walk, and how many pages it took."""
    results: list[dict[str, Any]] = []
    path: str | None = first
    pages = 0
    while path is not None:
        response = get(handler, path)
        assert response.status == 200, response.body
        page = body(response)
        pages += 1
        results += page.get("results", [])
        next_url = page.get("next_url")
        path = (
            None if next_url is None else urlsplit(next_url)._replace(scheme="", netloc="").geturl()
        )
    return results, pages


def trades_handler(market: Market, **options: Any) -> Handler:
    return rest_routes(market, RestSimOptions(**options))[("GET", TRADES_PREFIX)]


def test_a_window_is_exactly_the_trades_the_stream_made_in_it(
    market_and_events: tuple[Market, list[dict[str, Any]]],
) -> None:
    market, events = market_and_events
    handler = trades_handler(market, page_size=700)  # several pages
    start, end = T0 + 30_000, T0 + 90_000
    for ticker in TICKERS:
        results, pages = walk(handler, trades_path(ticker, start, end))
        parsed = parse_trades_page(
            {"results": results}, ticker=ticker, source=SOURCE_SIMULATOR, now_ms=T0 + 10**6
        )
        expected = streamed_trades(events, ticker, start, end)
        assert parsed.rejected == []
        assert parsed.trades == expected  # same ids, exchanges, prices, sizes, ms, order
        assert len(expected) > 2 * 700 and pages == -(-len(expected) // 700)
        # UUID ids on exchange 23, integers elsewhere: both arrive as text
        assert {type(r["id"]) for r in results} == {str}
        assert {r["exchange"] for r in results} == {1, 2, 6, 23}


def test_the_vendors_shape(market_and_events: tuple[Market, list[dict[str, Any]]]) -> None:
    market, _ = market_and_events
    page = body(get(trades_handler(market), trades_path("X:BTCUSD", T0, T0 + 1000)))
    assert set(page) == {"results", "status", "request_id"}
    assert page["status"] == "OK" and len(page["request_id"]) == 32
    assert set(page["results"][0]) == {
        "conditions", "exchange", "id", "participant_timestamp", "price", "size",
    }  # fmt: skip
    assert page["results"][0]["participant_timestamp"] % 1_000_000 == 0
    empty = body(get(trades_handler(market), trades_path("X:BTCUSD", T0 - 5000, T0)))
    assert "results" not in empty and empty["status"] == "OK"
    unstreamed = body(get(trades_handler(market), trades_path("X:SOLUSD", T0, T0 + 60_000)))
    assert "results" not in unstreamed


def test_descending_by_default_and_the_cursor_never_repeats_or_skips(
    market_and_events: tuple[Market, list[dict[str, Any]]],
) -> None:
    market, events = market_and_events
    handler = trades_handler(market)
    start_ns, end_ns = (T0 + 1000) * 10**6, (T0 + 2000) * 10**6
    query = f"timestamp.gte={start_ns}&timestamp.lte={end_ns}&limit=7"
    results, pages = walk(handler, f"{TRADES_PREFIX}/X:ETH-USD?{query}")
    expected = streamed_trades(events, "X:ETHUSD", T0 + 1000, T0 + 2001)
    assert [r["id"] for r in results] == [t.trade_id for t in reversed(expected)]
    assert pages == -(-len(expected) // 7)
    # the no-dash form is served too
    same, _ = walk(handler, f"{TRADES_PREFIX}/X:ETHUSD?{query}")
    assert same == results


def test_the_cursor_carries_the_query_and_never_a_key(
    market_and_events: tuple[Market, list[dict[str, Any]]],
) -> None:
    market, _ = market_and_events
    handler = trades_handler(market, accepted_keys=frozenset({"k"}))
    path = trades_path("X:BTCUSD", T0, T0 + 60_000).replace("limit=50000", "limit=3") + "&apiKey=k"
    page = body(get(handler, path))
    assert len(page["results"]) == 3
    assert page["next_url"].startswith("http://127.0.0.1:1/v3/trades/X:BTC-USD?cursor=")
    cursor = decode_cursor(parse_qs(urlsplit(page["next_url"]).query)["cursor"][0])
    assert cursor["limit"] == "3" and cursor["order"] == "asc" and "apiKey" not in cursor
    assert cursor["timestamp.gte"] == str(T0 * 10**6) and int(cursor["page_marker"]) > 0


def test_a_plan_without_trades_is_refused_with_the_vendors_403(
    market_and_events: tuple[Market, list[dict[str, Any]]],
) -> None:
    market, _ = market_and_events
    response = get(
        trades_handler(market, trades_authorized=False), trades_path("X:BTCUSD", T0, T0 + 1)
    )
    assert response.status == 403
    payload = body(response)
    assert payload["status"] == "NOT_AUTHORIZED" and len(payload["request_id"]) == 32
    assert payload["message"].startswith("You are not entitled to this data.")
    # bars are still served on such a plan
    aggs = rest_routes(market, RestSimOptions(trades_authorized=False, now_ms=lambda: T0 + 10**6))
    bars = get(
        aggs[("GET", "/v2/aggs/ticker")],
        f"/v2/aggs/ticker/X:BTCUSD/range/1/minute/{T0}/{T0 + 59_999}",
    )
    assert bars.status == 200


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("limit=0", "limit must be 1..50000"),
        ("limit=50001", "limit must be 1..50000"),
        ("order=up", "order must be asc or desc"),
        ("sort=price", "sort timestamp"),
        ("timestamp.gte=yesterday", "timestamp.gte must be a nanosecond timestamp or YYYY-MM-DD"),
        ("cursor=%%%", "bad cursor"),
    ],
)
def test_bad_parameters_are_400_with_the_reason(
    market_and_events: tuple[Market, list[dict[str, Any]]], query: str, problem: str
) -> None:
    market, _ = market_and_events
    response = get(trades_handler(market), f"{TRADES_PREFIX}/X:BTC-USD?{query}")
    assert response.status == 400 and problem in body(response)["error"]
    assert get(trades_handler(market), f"{TRADES_PREFIX}/BTC/USD").status == 404
    assert get(trades_handler(market), f"{TRADES_PREFIX}/X:btc-usd").status == 400


@pytest.mark.parametrize(
    ("query", "window"),
    [
        ({"timestamp.gte": "1700000000000000001"}, (T0 + 1, 2**62 // 10**6)),
        ({"timestamp.gt": "1700000000000000000"}, (T0 + 1, 2**62 // 10**6)),
        (
            {"timestamp.gte": "1700000000000000000", "timestamp.lt": "1700000000001000001"},
            (T0, T0 + 2),
        ),
        ({"timestamp.lte": "1700000000001999999"}, (0, T0 + 2)),
        ({"timestamp": "1700000000001000000"}, (T0 + 1, T0 + 2)),
        ({"timestamp": "1700000000001000001"}, (T0 + 2, T0 + 2)),
        ({"timestamp": "2023-11-14"}, (1_699_920_000_000, 1_700_006_400_000)),
        ({"timestamp.gt": "2023-11-14"}, (1_700_006_400_000, 2**62 // 10**6)),
        ({"timestamp.lt": "2023-11-14"}, (0, 1_699_920_000_000)),
    ],
)
def test_time_filters_select_whole_ms(query: dict[str, str], window: tuple[int, int]) -> None:
    assert window_ms(query) == window


def test_the_tape_is_bounded_and_sequence_numbers_survive_trimming() -> None:
    tape = TradeTape(lambda x, n: n, max_trades=8)
    for i in range(20):
        tape.append(T0 + i, 1, i, 1.0, 1.0, 1)
    first, end = tape.seq_range(0, T0 + 100)
    assert end == 20 and end - first <= 8
    assert [t.trade_id for t in tape.read(first, end)] == list(range(first, 20))
    assert [t.seq for t in tape.read(0, 13)] == list(range(first, 13))  # the dropped are gone
