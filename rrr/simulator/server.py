"""The whole simulator in one object: the market, the WebSocket feed (own thread + event loop)
and the HTTP server (Polygon REST aggregates, Perplexity, and the control routes below).

    with Simulator(SimulatorOptions(tickers=("X:BTCUSD",), seed=1)) as sim:
        sim.ws_url        # ws://127.0.0.1:PORT/crypto   (POLYGON_WS_URL)
        sim.rest_url      # http://127.0.0.1:PORT        (POLYGON_REST_URL, PERPLEXITY_BASE_URL)
        sim.disconnect_all()
        sim.inject_frame(b'[{"ev":"XT"}]')  # raw bytes on every subscribed connection
        sim.sent_trades() # ground truth (rrr.models.Trade, source='simulator')

Control routes: ``POST /_sim/disconnect`` (``?mode=abort`` drops TCP without a close frame)
force-disconnects every WebSocket client; ``GET /_sim/stats`` returns counts sent, connections
and drops. ``simulate_command`` is ``rrr simulate``.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from rrr.clock import Clock, SystemClock
from rrr.config import DEFAULT_TICKERS
from rrr.errors import ConfigError
from rrr.simulator.http import Request, Response, Routes, SimulatorHTTPServer
from rrr.simulator.load import LoadOptions
from rrr.simulator.market import Market
from rrr.simulator.rest import RestSimOptions, rest_routes
from rrr.simulator.truth import GroundTruth, Recorder
from rrr.simulator.ws import DEFAULT_SIM_KEY, DisconnectMode, FeedOptions, FeedServer

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
CONTROL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SimulatorOptions:
    tickers: tuple[str, ...] = DEFAULT_TICKERS
    seed: int = 1
    http_port: int = 0  # 0 = any free port
    feed: FeedOptions = field(default_factory=FeedOptions)  # ws port, keys, rate, load ...
    second_bars: bool = False  # also send XAS
    quiet_ratio: float = 0.0  # share of historical minutes without a bar
    id_epoch_s: int | None = None  # trade-id namespace; default: the start time
    record_path: Path | None = None  # JSONL ground truth
    record_in_memory: bool = True
    # RestSimOptions for rrr.simulator.rest.rest_routes; its keys and clock are the feed's.
    rest: RestSimOptions | None = None
    perplexity: Any = None  # passed to rrr.simulator.perplexity.perplexity_routes(perplexity)


def rest_options_for(options: SimulatorOptions, clock: Clock) -> RestSimOptions:
    """``options.rest`` made to agree with the feed: REST accepts exactly the keys the
    WebSocket accepts (the vendor refuses a wrong key on both: WS ``auth_failed`` spec §1.4,
    REST 401 ``Unknown API Key`` spec §2.4), and its bars stop at the minute in progress of
    the clock the market stamps events with (unless the caller gave REST a clock of its own).
    The request log is shared with ``options.rest``, so a caller reading it sees every request."""
    rest = options.rest or RestSimOptions()
    return replace(
        rest,
        accepted_keys=options.feed.accepted_keys,
        accept_any_key=options.feed.accept_any_key,
        now_ms=rest.now_ms or clock.now_ms,
    )


class Simulator:
    def __init__(self, options: SimulatorOptions | None = None, clock: Clock | None = None):
        self.options = options = options or SimulatorOptions()
        self.clock = clock or SystemClock()
        epoch_s = options.id_epoch_s
        self.market = Market(
            options.seed,
            options.tickers,
            second_bars=options.second_bars,
            quiet_ratio=options.quiet_ratio,
            id_epoch_s=self.clock.now_ms() // 1000 if epoch_s is None else epoch_s,
        )
        self.recorder = Recorder(options.record_path, options.record_in_memory)
        self.rest_options = rest_options_for(options, self.clock)
        self.feed = FeedServer(self.market, options.feed, self.recorder, self.clock)
        # One address for both servers (FeedOptions.host): on another machine than its clients
        # the simulator listens on that machine's address, and its URLs name it.
        self.http = SimulatorHTTPServer(
            self._routes(), port=options.http_port, host=options.feed.host
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._http_started = False

    def _routes(self) -> Routes:
        routes: Routes = {
            ("POST", "/_sim/disconnect"): self._disconnect_route,
            ("GET", "/_sim/stats"): self._stats_route,
        }
        routes = {**rest_routes(self.market, self.rest_options), **routes}
        # Written in parallel by other engineers: mounted when present.
        for module, factory, arg in (
            ("rrr.simulator.perplexity", "perplexity_routes", (self.options.perplexity,)),
        ):
            if importlib.util.find_spec(module) is not None:
                make = cast(
                    Callable[..., Routes], getattr(importlib.import_module(module), factory)
                )
                routes = {**make(*arg), **routes}
            else:
                log.warning("simulator: %s not present; its routes are not served", module)
        return routes

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Simulator:
        self.http.start()
        self._http_started = True
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            try:
                await self.feed.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            await self._stopped.wait()
            await self.feed.stop()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="sim-ws")
        self._thread.daemon = True
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S) or failure:
            self.stop()
            raise failure[0] if failure else RuntimeError("simulator WebSocket did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)
        if self._http_started:
            self._http_started = False
            self.http.stop()
        self.recorder.close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def ws_url(self) -> str:
        return self.feed.url

    @property
    def rest_url(self) -> str:
        return self.http.base_url

    # -- control and ground truth (callable from any thread) -----------------------------------

    def _on_loop(self, make: Callable[[], Any]) -> Any:
        """Run ``make()`` (a coroutine factory or plain function) on the feed's event loop."""
        assert self._loop is not None, "start() first"

        async def call() -> Any:
            result = make()
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(CONTROL_TIMEOUT_S)

    def disconnect_all(self, mode: DisconnectMode = "close") -> int:
        return int(self._on_loop(lambda: self.feed.disconnect_all(mode)))

    def end_feed_after(self, more_events: int) -> int:
        """The market stream stops after ``more_events`` more events; returns the new total."""
        return int(self._on_loop(lambda: self.feed.end_feed_after(more_events)))

    def stats(self) -> dict[str, Any]:
        return dict(self._on_loop(self.feed.stats))

    def inject_frame(self, payload: bytes, binary: bool = False) -> int:
        """Raw bytes as one frame on every subscribed connection (``FeedServer.inject_frame``)."""
        return int(self._on_loop(lambda: self.feed.inject_frame(payload, binary)))

    def truth(self) -> GroundTruth:
        return self.recorder.snapshot()

    def sent_events(self, connection: int | None = None) -> list[dict[str, Any]]:
        return self.truth().events(connection)

    def sent_trades(self, connection: int | None = None) -> list[Any]:
        return self.truth().trades(connection)

    def sent_quotes(self, connection: int | None = None) -> list[Any]:
        return self.truth().quotes(connection)

    def sent_bars(self, connection: int | None = None) -> list[Any]:
        return self.truth().bars(connection)

    def _disconnect_route(self, request: Request) -> Response:
        mode = (request.query.get("mode") or ["close"])[0]
        if mode not in ("close", "abort"):
            return Response.json(400, {"status": "ERROR", "error": "mode must be close or abort"})
        return Response.json(200, {"disconnected": self.disconnect_all(cast(DisconnectMode, mode))})

    def _stats_route(self, request: Request) -> Response:
        return Response.json(
            200, {**self.stats(), "ws_url": self.ws_url, "rest_url": self.rest_url}
        )


def simulate_command(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    http_port: int = 8766,
    rate: float = 1000.0,
    tickers: tuple[str, ...] = DEFAULT_TICKERS,
    events_per_frame: int = 5,
    seed: int = 1,
    record: Path | None = None,
    max_seconds: float | None = None,
    keys: tuple[str, ...] = (DEFAULT_SIM_KEY,),
    any_key: bool = False,
    max_connections: int = 1,
    second_bars: bool = False,
    load_events: int = 0,
    load_rate: float = 0.0,
    trades_authorized: bool = True,
    say: Callable[[str], None] = print,
) -> None:
    """``rrr simulate``: run until Ctrl-C, SIGTERM or ``max_seconds``. ``trades_authorized``
    False: ``/v3/trades`` answers 403 NOT_AUTHORIZED, as a plan without trades does."""
    load = LoadOptions(load_events, events_per_frame, load_rate) if load_events else None
    feed = FeedOptions(
        host=host,
        port=port,
        accepted_keys=frozenset(keys),
        accept_any_key=any_key,
        max_connections_per_key=max_connections,
        rate=rate,
        events_per_frame=events_per_frame,
        load=load,
    )
    options = SimulatorOptions(
        tickers=tickers,
        seed=seed,
        http_port=http_port,
        feed=feed,
        second_bars=second_bars,
        record_path=record,
        record_in_memory=False,  # a long demo must not grow; --record keeps the truth
        rest=RestSimOptions(trades_authorized=trades_authorized),
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        sim = Simulator(options).start()
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host} ports {port}/{http_port} ({exc}); choose others with"
            " --port and --http-port (0 = any free port), or an address of this machine with --host"
        ) from exc
    try:
        accepted = "any non-empty key" if any_key else ", ".join(sorted(keys))
        mode = f"LOAD MODE: {load_events} events" if load else f"{rate:g} events/s"
        say("=" * 72)
        say("SIMULATED Polygon/Massive market data (rows are source='simulator')")
        say(f"  WebSocket  POLYGON_WS_URL={sim.ws_url}")
        say(f"  REST       POLYGON_REST_URL={sim.rest_url}")
        if any(m == "POST" and path.startswith("/v1/") for m, path in sim.http.routes):
            say(f"  Perplexity PERPLEXITY_BASE_URL={sim.rest_url}")
        say(f"  API keys   {accepted} (WebSocket and REST)   tickers {' '.join(tickers)}   {mode}")
        if not trades_authorized:
            say("  plan       without trades: /v3/trades answers 403 NOT_AUTHORIZED")
        say(f"  control    POST {sim.rest_url}/_sim/disconnect   GET {sim.rest_url}/_sim/stats")
        if record:
            say(f"  recording  {record}")
        say("=" * 72)
        deadline = time.monotonic() + max_seconds if max_seconds else None
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            stop.wait(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        stats = sim.stats()
        sim.stop()
        signal.signal(signal.SIGTERM, previous)
        say(f"simulator stopped; sent {stats['sent']}")


def with_feed(options: SimulatorOptions, **changes: Any) -> SimulatorOptions:
    """``options`` with some ``FeedOptions`` fields changed (tests and benchmarks)."""
    return replace(options, feed=replace(options.feed, **changes))
