"""The simulator over real sockets on 127.0.0.1: protocol conformance (spec section 1), ground
truth equal to what a client received, load mode, and the official ``massive`` client."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from massive.websocket.models import CryptoQuote, CryptoTrade
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rrr.simulator.load import LoadOptions
from rrr.simulator.server import Simulator, SimulatorOptions, with_feed
from rrr.simulator.truth import load_record
from tests.integration.massive_support import massive_client

T0 = 1_767_225_600_000
CONNECTED = [{"ev": "status", "status": "connected", "message": "Connected Successfully"}]
AUTHED = [{"ev": "status", "status": "auth_success", "message": "authenticated"}]
StartSim = Callable[..., Simulator]


@pytest.fixture
def start_sim() -> Iterator[StartSim]:
    """start_sim(**feed_option_changes, sim=SimulatorOptions(...)) -> a running Simulator."""
    running: list[Simulator] = []

    def start(sim: SimulatorOptions | None = None, **feed: Any) -> Simulator:
        simulator = Simulator(with_feed(sim or SimulatorOptions(), **feed)).start()
        running.append(simulator)
        return simulator

    yield start
    for simulator in running:
        simulator.stop()


def status(kind: str, message: str) -> list[dict[str, str]]:
    return [{"ev": "status", "status": kind, "message": message}]


async def recv(ws: ClientConnection, timeout_s: float = 3.0) -> Any:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout_s))


async def login(url: str, topics: str | None = None, n_topics: int = 0) -> ClientConnection:
    ws = await connect(url, compression=None, max_size=2**22)
    assert await recv(ws) == CONNECTED
    await ws.send('{"action":"auth","params":"sim-key"}')
    assert await recv(ws) == AUTHED
    if topics:
        await ws.send(orjson.dumps({"action": "subscribe", "params": topics}).decode())
        for _ in range(n_topics):
            assert (await recv(ws))[0]["status"] == "success"
    return ws


async def read_for(ws: ClientConnection, seconds: float) -> list[list[dict[str, Any]]]:
    """Frames until ``seconds`` pass or the server closes."""
    frames, deadline = [], time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            frames.append(await recv(ws, left))
    except (TimeoutError, ConnectionClosed):
        pass
    return frames


def data_events(frames: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [e for f in frames for e in f if e["ev"] != "status"]


def http(sim: Simulator, method: str, path: str) -> Any:
    body = b"" if method == "POST" else None
    request = urllib.request.Request(sim.rest_url + path, method=method, data=body)
    with urllib.request.urlopen(request, timeout=5) as response:
        return orjson.loads(response.read())


# -- protocol ----------------------------------------------------------------------------------


def test_pipelined_auth_and_subscribe_get_one_ack_per_trimmed_topic(start_sim: StartSim) -> None:
    sim = start_sim(rate=0)

    async def scenario() -> list[Any]:
        async with connect(sim.ws_url) as ws:
            await ws.send('{"action":"auth","params":"sim-key"}')  # before reading anything
            await ws.send('{"action":"subscribe","params":"XT.BTC-USD, XQ.* ,XT.X:BTCUSD,,XA.*"}')
            return [await recv(ws) for _ in range(6)]

    assert asyncio.run(scenario()) == [
        CONNECTED,
        AUTHED,
        status("success", "subscribed to: XT.BTC-USD"),
        status("success", "subscribed to: XQ.*"),
        status("success", "subscribed to: XT.X:BTCUSD"),
        status("success", "subscribed to: XA.*"),
    ]


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (['{"action":"auth","params":"wrong"}'], status("auth_failed", "authentication failed")),
        ([], status("auth_timeout", "No authentication request received.")),
    ],
    ids=["bad-key", "no-auth"],
)
def test_failed_or_missing_auth_is_told_then_closed(
    start_sim: StartSim, messages: list[str], expected: Any
) -> None:
    sim = start_sim(rate=0, auth_timeout_s=0.3)

    async def scenario() -> tuple[Any, int | None]:
        async with connect(sim.ws_url) as ws:
            assert await recv(ws) == CONNECTED
            for m in messages:
                await ws.send(m)
            reply = await recv(ws)
            with pytest.raises(ConnectionClosed):
                await recv(ws)
            return reply, ws.close_code

    assert asyncio.run(scenario()) == (expected, 1008)


def test_bad_requests_get_error_statuses(start_sim: StartSim) -> None:
    sim = start_sim(rate=0)

    async def scenario() -> list[Any]:
        async with connect(sim.ws_url) as ws:
            await recv(ws)
            await ws.send('{"action":"subscribe","params":"XT.*"}')  # before auth
            await ws.send("{“action”: “auth”}")  # smart quotes, as a user once pasted
            await ws.send('{"action":"dance","params":"x"}')
            await ws.send('{"action":"auth","params":42}')
            return [(await recv(ws))[0] for _ in range(4)]

    replies = asyncio.run(scenario())
    assert [(r["status"], r["message"]) for r in replies] == [
        ("auth_required", "authentication required"),
        ("error", "Invalid JSON"),
        ("error", "unknown action: dance"),
        ("error", "params must be a string"),
    ]


def test_only_the_crypto_cluster_path_exists(start_sim: StartSim) -> None:
    sim = start_sim(rate=0)

    async def scenario() -> None:
        with pytest.raises(InvalidStatus) as failure:
            await connect(sim.ws_url.replace("/crypto", "/stocks"))
        assert failure.value.response.status_code == 404

    asyncio.run(scenario())


def test_events_follow_topics_and_the_rest_ticker_form_stays_silent(start_sim: StartSim) -> None:
    sim = start_sim(rate=2000, events_per_frame=5)

    async def scenario() -> list[Any]:
        ws = await login(sim.ws_url, "XT.BTC-USD,XQ.X:ETH-USD", 2)
        frames = await read_for(ws, 0.7)
        await ws.close()
        return frames

    events = data_events(asyncio.run(scenario()))
    assert events
    assert {(e["ev"], e["pair"]) for e in events} == {("XT", "BTC-USD"), ("XQ", "ETH-USD")}

    quiet = start_sim(rate=2000)  # one connection per key: a second simulator

    async def rest_form_only() -> list[Any]:
        ws = await login(quiet.ws_url, "XT.X:BTCUSD,XQ.X:ETHUSD", 2)
        frames = await read_for(ws, 0.5)
        await ws.close()
        return frames

    assert asyncio.run(rest_form_only()) == []


def test_frames_are_arrays_mixing_kinds_with_every_field(start_sim: StartSim) -> None:
    sim = start_sim(rate=3000, events_per_frame=5)

    async def scenario() -> list[Any]:
        ws = await login(sim.ws_url, "XT.*,XQ.*", 2)
        frames = await read_for(ws, 0.5)
        await ws.close()
        return frames

    frames = asyncio.run(scenario())
    assert frames and all(isinstance(f, list) and 1 <= len(f) <= 5 for f in frames)
    assert any(len({e["ev"] for e in f}) > 1 for f in frames)
    for e in data_events(frames):
        if e["ev"] == "XT":
            assert set(e) == {"ev", "pair", "p", "s", "t", "c", "i", "x", "r"}
        else:
            assert set(e) == {"ev", "pair", "bp", "bs", "ap", "as", "t", "x", "r"}
        assert abs(e["t"] - time.time() * 1000) < 5_000  # wall clock: latency is measurable


def test_unsubscribe_stops_events_once_acknowledged(start_sim: StartSim) -> None:
    sim = start_sim(rate=3000, events_per_frame=2)

    async def scenario() -> list[Any]:
        ws = await login(sim.ws_url, "XT.*,XQ.*", 2)
        await read_for(ws, 0.2)
        await ws.send('{"action":"unsubscribe","params":"XT.*"}')
        frames = await read_for(ws, 0.6)
        await ws.close()
        return frames

    frames = asyncio.run(scenario())
    ack = frames.index(status("success", "unsubscribed to: XT.*"))
    after = data_events(frames[ack + 1 :])
    assert after and {e["ev"] for e in after} == {"XQ"}


def test_a_new_connection_on_the_same_key_pushes_the_oldest_out(start_sim: StartSim) -> None:
    sim = start_sim(rate=1000)

    async def scenario() -> tuple[list[Any], int | None, list[Any]]:
        old = await login(sim.ws_url, "XT.*", 1)
        new = await login(sim.ws_url, "XT.*", 1)
        old_frames = await read_for(old, 1.0)
        new_frames = await read_for(new, 0.3)
        await new.close()
        return old_frames, old.close_code, new_frames

    old_frames, code, new_frames = asyncio.run(scenario())
    refusal = status("max_connections", "Maximum number of connections exceeded.")
    assert old_frames[-1] == refusal and code == 1008
    assert data_events(new_frames)
    assert sim.stats()["dropped"] == {"max_connections": 1}


def test_forced_disconnect_closes_and_the_truth_is_exactly_what_arrived(
    start_sim: StartSim,
) -> None:
    sim = start_sim(rate=3000, events_per_frame=3)

    async def scenario() -> tuple[list[Any], int | None]:
        ws = await login(sim.ws_url, "XT.*,XQ.*", 2)
        reading = asyncio.create_task(read_for(ws, 5.0))
        await asyncio.sleep(0.5)
        answer = await asyncio.to_thread(http, sim, "POST", "/_sim/disconnect")
        assert answer == {"disconnected": 1}
        return await reading, ws.close_code

    frames, code = asyncio.run(scenario())
    assert code == 1012
    assert frames[-1][0]["status"] == "force_disconnect"
    (connection,) = sim.truth().by_connection
    received = data_events(frames)
    assert len(received) > 100
    assert received == sim.sent_events(connection) == sim.sent_events()
    assert len(sim.sent_trades()) == sum(e["ev"] == "XT" for e in received)


def test_abort_mode_drops_tcp_without_a_close_frame(start_sim: StartSim) -> None:
    sim = start_sim(rate=500)

    async def scenario() -> int | None:
        ws = await login(sim.ws_url, "XT.*", 1)
        reading = asyncio.create_task(read_for(ws, 5.0))
        await asyncio.sleep(0.2)
        assert await asyncio.to_thread(sim.disconnect_all, "abort") == 1
        await reading
        return ws.close_code

    assert asyncio.run(scenario()) == 1006


def test_minute_bars_on_the_wire_match_the_trades_sent(start_sim: StartSim) -> None:
    class FastClock:  # one simulated minute every half second
        def __init__(self) -> None:
            self.started = time.monotonic()

        def now_ms(self) -> int:
            return T0 + int((time.monotonic() - self.started) * 120_000)

        def monotonic_s(self) -> float:
            return time.monotonic()

    simulator = Simulator(with_feed(SimulatorOptions(), rate=400), clock=FastClock()).start()
    try:

        async def scenario() -> list[Any]:
            ws = await login(simulator.ws_url, "XT.*,XA.*", 2)
            frames = await read_for(ws, 2.2)
            await ws.close()
            return frames

        events = data_events(asyncio.run(scenario()))
    finally:
        simulator.stop()
    trades: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["ev"] == "XT":
            trades[e["pair"], e["t"] - e["t"] % 60_000].append(e)
    first_minute = min(start for _, start in trades)
    bars = [e for e in events if e["ev"] == "XA" and e["s"] > first_minute]  # fully observed
    assert len(bars) >= 4
    for bar in bars:
        mine = trades[bar["pair"], bar["s"]]
        assert (bar["o"], bar["c"]) == (mine[0]["p"], mine[-1]["p"])
        assert (bar["h"], bar["l"]) == (max(t["p"] for t in mine), min(t["p"] for t in mine))
        assert bar["v"] == pytest.approx(sum(t["s"] for t in mine), abs=1e-8)
    rest = simulator.market.minute_bars("X:BTCUSD", bars[0]["s"], bars[-1]["e"])
    wire = [b for b in bars if b["pair"] == "BTC-USD"]
    assert [(b["t"], b["c"]) for b in rest] == [(b["s"], b["c"]) for b in wire]


def test_record_file_reads_back_to_the_same_truth(start_sim: StartSim, tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    sim = start_sim(SimulatorOptions(record_path=path), rate=2000)

    async def scenario() -> None:
        ws = await login(sim.ws_url, "XT.*,XQ.BTC-USD", 2)
        await read_for(ws, 0.4)
        await ws.close()

    asyncio.run(scenario())
    sim.recorder.flush()
    assert len(sim.sent_events()) > 50
    assert load_record(path).events() == sim.sent_events()
    assert http(sim, "GET", "/_sim/stats")["sent"]["XT"] == len(sim.sent_trades())


# -- load mode ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("total", "per_frame"), [(20_000, 1), (20_003, 10)])
def test_load_mode_delivers_exactly_the_budget(
    start_sim: StartSim, total: int, per_frame: int
) -> None:
    sim = start_sim(load=LoadOptions(total, per_frame, pool_frames=64))

    async def scenario() -> tuple[list[Any], int | None]:
        ws = await login(sim.ws_url, "XT.*,XQ.*", 2)
        frames = await read_for(ws, 20.0)
        return frames, ws.close_code

    frames, code = asyncio.run(scenario())
    events = data_events(frames)
    assert code == 1000 and len(events) == total
    assert all(len(f) == per_frame for f in frames[:-1])
    assert events == sim.sent_events()
    trades = sim.sent_trades()
    assert len({(t.exchange_id, t.trade_id) for t in trades}) == len(trades) > total // 3


# -- the official client -----------------------------------------------------------------------


def test_official_client_connects_and_receives_models(start_sim: StartSim) -> None:
    sim = start_sim(rate=1000)
    client = massive_client(sim, ["XT.BTC-USD", "XQ.*"])
    received: list[Any] = []

    async def handler(messages: list[Any]) -> None:
        received.extend(messages)

    async def scenario() -> None:
        task = asyncio.create_task(client.connect(handler))
        deadline = time.monotonic() + 5
        while len(received) < 50 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await client.close()
        task.cancel()

    asyncio.run(scenario())
    assert len(received) >= 50
    assert {type(m) for m in received} == {CryptoTrade, CryptoQuote}
    trade = next(m for m in received if isinstance(m, CryptoTrade))
    assert trade.pair == "BTC-USD" and trade.price > 0 and trade.exchange in (1, 2, 6, 23)


def test_official_client_reads_a_load_run_to_the_end(start_sim: StartSim) -> None:
    sim = start_sim(load=LoadOptions(5_000, 1, pool_frames=64))
    client = massive_client(sim, ["XT.*", "XQ.*"])
    count = 0

    async def handler(messages: list[Any]) -> None:
        nonlocal count
        count += len(messages)

    asyncio.run(asyncio.wait_for(client.connect(handler), 30))  # returns on the close (1000)
    assert count == 5_000 == len(sim.sent_events())


def test_a_client_that_stops_reading_is_dropped_as_a_slow_consumer(start_sim: StartSim) -> None:
    sim = start_sim(rate=30_000, events_per_frame=1, max_queued_frames=50)

    async def scenario() -> tuple[list[Any], int | None]:
        ws = await login(sim.ws_url, "XT.*,XQ.*", 2)
        deadline = time.monotonic() + 10
        while not sim.stats()["dropped"] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # not reading: the buffers fill, then the server's queue
        frames = await read_for(ws, 10.0)
        return frames, ws.close_code

    frames, code = asyncio.run(scenario())
    assert sim.stats()["dropped"] == {"slow_consumer": 1}
    assert frames[-1][0]["status"] == "slow_consumer" and code == 1011
    assert data_events(frames) == sim.sent_events()  # queued frames were dropped, not recorded
