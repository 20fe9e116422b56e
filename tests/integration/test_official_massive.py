"""The vendor's official Python client (``massive`` 2.9.1, as pinned) against the running
simulator: every call rrr's users may make with it gets the answer the real service gives,
read through the client's own models (its dataclasses), and agrees with what the WebSocket sent.

The minute boundary: the simulator runs on ``MinuteSoonClock``, the wall clock's pace with its
labels moved so a minute closes 2 s after start; nothing is sped up, so the counts, the XA
bar and the REST answers are what a client would see at any real minute boundary.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from massive.exceptions import AuthError, BadResponse
from massive.rest.models import Agg, CryptoTrade, Trade
from massive.websocket.models import CryptoQuote, CurrencyAgg
from massive.websocket.models import CryptoTrade as WsTrade

from rrr.simulator.rest import RestSimOptions
from rrr.simulator.server import Simulator, SimulatorOptions, with_feed
from tests.integration.massive_support import (
    MINUTE_MS,
    MinuteSoonClock,
    massive_client,
    massive_rest,
)

DAY_MS = 86_400_000
NS_PER_MS = 1_000_000
TICKERS = ("X:BTCUSD", "X:ETHUSD")
EVENTS = 3_000  # at 600 events/s: the feed runs 5 s, past the minute boundary at 2 s


@dataclass
class Session:
    """What one official WebSocket client received across a minute boundary."""

    sim: Simulator
    clock: MinuteSoonClock
    received: list[Any]


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    clock = MinuteSoonClock(lead_s=2.0)
    options = with_feed(
        SimulatorOptions(tickers=TICKERS, seed=11, rest=RestSimOptions(page_size=500)),
        rate=600.0,
        events_per_frame=4,
        max_events=EVENTS,
    )
    sim = Simulator(options, clock=clock).start()
    client = massive_client(sim, ["XT.*", "XQ.*", "XA.*"])
    received: list[Any] = []

    async def handler(messages: list[Any]) -> None:
        received.extend(messages)

    async def read() -> None:
        task = asyncio.create_task(client.connect(handler))
        deadline = time.monotonic() + 15
        # Until the feed has ended and the boundary minute's bar (one per pair) has come.
        while time.monotonic() < deadline and not (
            sim.stats()["produced"] >= EVENTS
            and sum(isinstance(m, CurrencyAgg) for m in received) >= len(TICKERS)
        ):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the last frames in flight
        await client.close()
        task.cancel()

    try:
        asyncio.run(read())
        yield Session(sim, clock, received)
    finally:
        sim.stop()


def by_type(received: list[Any], kind: type) -> list[Any]:
    return [m for m in received if isinstance(m, kind)]


def test_websocket_counts_across_a_minute_boundary_equal_what_was_sent(session: Session) -> None:
    received, sim = session.received, session.sim
    counts = Counter(
        {"XT": len(by_type(received, WsTrade)), "XQ": len(by_type(received, CryptoQuote))}
    ) + Counter({"XA": len(by_type(received, CurrencyAgg))})
    (connection,) = sim.truth().by_connection
    assert counts == sim.truth().counts(connection)
    assert counts["XT"] > 300 and counts["XQ"] > 300
    # The minute that closed at the boundary: one bar per pair, for exactly that minute.
    bars = by_type(received, CurrencyAgg)
    assert {(b.pair, b.start_timestamp) for b in bars} == {
        (pair, session.clock.boundary_ms - MINUTE_MS) for pair in ("BTC-USD", "ETH-USD")
    }
    trades = by_type(received, WsTrade)
    assert min(t.timestamp for t in trades) < session.clock.boundary_ms
    assert max(t.timestamp for t in trades) >= session.clock.boundary_ms


def test_list_trades_is_what_the_websocket_sent_for_the_same_milliseconds(
    session: Session,
) -> None:
    rest = massive_rest(session.sim)
    ws = [t for t in by_type(session.received, WsTrade) if t.pair == "BTC-USD"]
    # Whole milliseconds strictly inside what the client saw: every trade in them reached it.
    first_ms, last_ms = ws[0].timestamp + 1, ws[-1].timestamp
    expected = [t for t in ws if first_ms <= t.timestamp < last_ms]
    got = list(
        rest.list_trades(
            "X:BTC-USD",
            timestamp_gte=first_ms * NS_PER_MS,
            timestamp_lt=last_ms * NS_PER_MS,
            order="asc",
            limit=100,  # several pages (next_url), followed by the client
        )
    )
    assert len(expected) > 100 and all(type(t) is Trade for t in got)
    assert [
        (t.id, t.exchange, t.price, t.size, t.conditions, t.participant_timestamp) for t in got
    ] == [
        (str(t.id), t.exchange, t.price, t.size, t.conditions, t.timestamp * NS_PER_MS)
        for t in expected
    ]


def test_the_boundary_minute_bar_agrees_on_rest_websocket_and_trades(session: Session) -> None:
    rest = massive_rest(session.sim)
    start = session.clock.boundary_ms - MINUTE_MS
    (ws_bar,) = [b for b in by_type(session.received, CurrencyAgg) if b.pair == "BTC-USD"]
    (rest_bar,) = rest.get_aggs("X:BTCUSD", 1, "minute", start, start + MINUTE_MS - 1)
    assert type(rest_bar) is Agg and rest_bar.timestamp == start
    assert (rest_bar.open, rest_bar.high, rest_bar.low, rest_bar.close) == (
        ws_bar.open,
        ws_bar.high,
        ws_bar.low,
        ws_bar.close,
    )
    assert rest_bar.volume == pytest.approx(ws_bar.volume, abs=1e-8)
    # ... and both are made of exactly the trades /v3/trades has for that minute.
    trades = list(
        rest.list_trades(
            "X:BTC-USD",
            timestamp_gte=start * NS_PER_MS,
            timestamp_lt=(start + MINUTE_MS) * NS_PER_MS,
            order="asc",
            limit=50_000,
        )
    )
    prices = [t.price for t in trades]
    assert (prices[0], max(prices), min(prices), prices[-1]) == (
        rest_bar.open,
        rest_bar.high,
        rest_bar.low,
        rest_bar.close,
    )
    assert rest_bar.transactions == len(trades)


def test_get_last_crypto_trade_is_the_last_trade_the_websocket_sent(session: Session) -> None:
    last = massive_rest(session.sim).get_last_crypto_trade("BTC", "USD")
    assert type(last) is CryptoTrade
    sent = [t for t in by_type(session.received, WsTrade) if t.pair == "BTC-USD"][-1]
    assert (last.price, last.size, last.exchange, last.conditions, last.timestamp) == (
        sent.price,
        sent.size,
        sent.exchange,
        sent.conditions,
        sent.timestamp,  # ms, as the vendor's v1 answer
    )


def test_list_aggs_pages_and_get_aggs_rolls_up_minute_hour_day(session: Session) -> None:
    rest = massive_rest(session.sim)
    day0 = (session.clock.now_ms() // DAY_MS - 5) * DAY_MS  # a whole day, five days ago
    before = session.sim.rest_options.log.stats()
    minutes = list(rest.list_aggs("X:ETHUSD", 1, "minute", day0, day0 + DAY_MS - 1, limit=50_000))
    pages = session.sim.rest_options.log.stats()["requests"] - before["requests"]
    assert pages == 3  # 1440 minutes at 500 base bars a page: next_url followed twice
    assert all(type(m) is Agg for m in minutes)
    assert [m.timestamp for m in minutes] == [day0 + k * MINUTE_MS for k in range(1440)]
    truth = session.sim.market.minute_bars("X:ETHUSD", day0, day0 + DAY_MS)
    assert [(m.open, m.close, m.transactions) for m in minutes] == [
        (b["o"], b["c"], b["n"]) for b in truth
    ]
    one_page = rest.get_aggs("X:ETHUSD", 1, "minute", day0, day0 + DAY_MS - 1)
    assert [m.timestamp for m in one_page] == [day0 + k * MINUTE_MS for k in range(500)]
    hours = rest.get_aggs("X:ETHUSD", 1, "hour", day0, day0 + DAY_MS - 1)
    assert [h.timestamp for h in hours] == [day0 + k * 3_600_000 for k in range(8)]  # one page
    first_hour = minutes[:60]
    assert (hours[0].open, hours[0].close) == (first_hour[0].open, first_hour[-1].close)
    assert hours[0].high == max(m.high for m in first_hour)
    assert hours[0].low == min(m.low for m in first_hour)
    assert hours[0].transactions == sum(m.transactions for m in first_hour)
    days = rest.get_aggs("X:ETHUSD", 1, "day", day0 - 2 * DAY_MS, day0 + DAY_MS - 1)
    assert [d.timestamp for d in days] == [day0 - 2 * DAY_MS, day0 - DAY_MS, day0]
    assert (days[-1].open, days[-1].close) == (minutes[0].open, minutes[-1].close)
    assert days[-1].volume == pytest.approx(sum(m.volume for m in minutes), rel=1e-9)


def vendor_body(error: BadResponse) -> dict[str, Any]:
    """The client's BadResponse carries the body text (PY:massive/rest/base.py ``_get``)."""
    body: dict[str, Any] = orjson.loads(str(error))
    return body


def test_a_wrong_key_is_refused_on_rest_and_on_the_websocket(session: Session) -> None:
    sim = session.sim
    with pytest.raises(BadResponse) as refused:
        massive_rest(sim, api_key="wrong-key").get_aggs("X:BTCUSD", 1, "day", 0, DAY_MS)
    body = vendor_body(refused.value)
    assert (body["status"], body["error"]) == ("ERROR", "Unknown API Key")
    with pytest.raises(BadResponse):
        list(massive_rest(sim, api_key="wrong-key").list_trades("X:BTC-USD"))
    with pytest.raises(BadResponse):
        massive_rest(sim, api_key="wrong-key").get_last_crypto_trade("BTC", "USD")
    with pytest.raises(AuthError):  # no key at all: the client refuses to start
        massive_rest(sim, api_key=None)  # type: ignore[arg-type]
    # The same key on the WebSocket: auth_failed, which the client raises as AuthError.
    client = massive_client(sim, ["XT.*"], api_key="wrong-key")

    async def handler(messages: list[Any]) -> None:
        pass

    with pytest.raises(AuthError, match="authentication failed"):
        asyncio.run(asyncio.wait_for(client.connect(handler), 10))


def test_a_plan_without_trades_gets_403_not_authorized_and_still_gets_bars() -> None:
    sim = Simulator(
        with_feed(
            SimulatorOptions(tickers=TICKERS, seed=2, rest=RestSimOptions(trades_authorized=False)),
            rate=200.0,
        )
    ).start()
    try:
        rest = massive_rest(sim)
        for call in (
            lambda: list(rest.list_trades("X:BTC-USD", order="asc", limit=10)),
            lambda: rest.get_last_crypto_trade("BTC", "USD"),
        ):
            with pytest.raises(BadResponse) as refused:
                call()
            body = vendor_body(refused.value)
            assert body["status"] == "NOT_AUTHORIZED"
            assert body["message"].startswith("You are not entitled to this data.")
        day0 = (time.time_ns() // 1_000_000 // DAY_MS - 3) * DAY_MS
        assert len(rest.get_aggs("X:BTCUSD", 1, "hour", day0, day0 + DAY_MS - 1)) == 24
    finally:
        sim.stop()
