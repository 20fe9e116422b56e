"""The simulated Polygon/Massive crypto WebSocket (``ws://127.0.0.1:PORT/crypto``).

Protocol as in the spec (../shared/specs/polygon-massive.md section 1):
- on open: ``[{"ev":"status","status":"connected","message":"Connected Successfully"}]``;
- ``{"action":"auth","params":KEY}`` -> ``auth_success``/``authenticated``, or
  ``auth_failed``/``authentication failed`` then close 1008; no auth within
  ``auth_timeout_s`` -> ``auth_timeout`` then close 1008;
- client messages are handled strictly in order, so pipelined auth + subscribe work;
  a subscribe before any auth gets ``auth_required`` (assumed: the spec lists the status only);
- subscribe/unsubscribe: comma-separated topics, spaces trimmed, one ``success`` status per
  topic (``subscribed to: XT.BTC-USD`` / ``unsubscribed to: ...``); ``XT.*`` is every pair;
  ``XT.X:BTC-USD`` is treated as ``XT.BTC-USD``; ``XT.X:BTCUSD`` is acknowledged and never
  delivers (the vendor's ticker-format trap);
- bad JSON -> ``error``/``Invalid JSON``; an unknown action -> ``error``;
- more than ``max_connections_per_key`` authenticated connections on one key: the OLDEST gets
  ``max_connections``/``Maximum number of connections exceeded.`` and close 1008, and the new one
  is served (the vendor's documented behaviour: a new connection pushes the current one out);
- a connection whose unsent queue passes ``max_queued_frames`` gets ``slow_consumer`` and 1011;
- ``disconnect_all()`` sends ``force_disconnect`` and closes 1012 (mode ``close``: the client
  reads every recorded frame first) or drops the TCP connection without a close frame (``abort``).

Data frames are JSON arrays of up to ``events_per_frame`` events from one market stream (XT, XQ
and, when windows close, XA/XAS mixed), at ``rate`` events/s, each connection getting the events
its topics match. What counts as sent is in ``rrr.simulator.truth``. With ``load`` options the
server instead runs ``rrr.simulator.load`` on each subscribed connection.

``inject_frame(payload)`` puts raw bytes (malformed JSON, binary garbage, events of any shape) on
every subscribed connection, in order with the market's frames. They are not market data, so the
ground truth never holds them; ``stats()["injected"]`` counts the ones written.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from rrr.clock import Clock, SystemClock
from rrr.simulator.feed import Frame, FrameProducer
from rrr.simulator.load import LoadBudget, LoadOptions, pool_for, stream_load
from rrr.simulator.market import Market, trade_id_base
from rrr.simulator.protocol import (
    CLUSTER_PATH,
    DEFAULT_SIM_KEY,
    FeedOptions,
    key_accepted,
    normalize_topic,
    only_cluster_path,
    status_frame,
)
from rrr.simulator.truth import GroundTruth, Recorder
from rrr.simulator.ws_connection import Client, close_connection, injected_frame, write_frames

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_SIM_KEY", "DisconnectMode", "FeedOptions", "FeedServer"]

DisconnectMode = Literal["close", "abort"]


class FeedServer:
    """The WebSocket server; run it inside an event loop (``rrr.simulator.server`` does)."""

    def __init__(
        self,
        market: Market,
        options: FeedOptions | None = None,
        recorder: Recorder | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.market = market
        self.options = options or FeedOptions()
        self.recorder = recorder or Recorder()
        self.clock = clock or SystemClock()
        self.load_budget = LoadBudget(self.options.load.total_events) if self.options.load else None
        self._clients: dict[int, Client] = {}
        self._ids = itertools.count(1)
        self._auth_order = itertools.count(1)
        self._server: Server | None = None
        self._producer: FrameProducer | None = None
        self.dropped: Counter[str] = Counter()  # connections closed by us, by reason
        self.injected = 0  # raw frames written by inject_frame, over all connections
        self._background: set[asyncio.Task[None]] = set()
        self._actions: dict[str, Callable[[Client, str], Awaitable[None]]] = {
            "auth": self._auth,
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
        }

    async def start(self) -> FeedServer:
        self._server = await serve(
            self._serve,
            self.options.host,
            self.options.port,
            process_request=only_cluster_path,
            compression=None,  # the vendor's feed is plain JSON text; deflate costs CPU
            close_timeout=1,
            write_limit=2**18,
            max_size=2**16,  # client messages are small
        )
        if self.options.load is None:
            self._producer = FrameProducer(
                self.market, self.clock, self.options.rate, self.options.events_per_frame
            )
            self._producer.start(self._broadcast, self.options.max_events)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://{self.options.host}:{self.port}{CLUSTER_PATH}"

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.recorder.flush()

    # -- ground truth and control ------------------------------------------------------------

    def truth(self) -> GroundTruth:
        """What was sent so far (``.trades()``, ``.events(connection)`` ...)."""
        return self.recorder.snapshot()

    def stats(self) -> dict[str, Any]:
        clients = list(self._clients.values())
        return {
            "connections": len(clients),
            "authenticated": sum(c.key is not None for c in clients),
            "connection_ids": [c.id for c in clients],
            "sent": dict(self.recorder.counts),
            "produced": self._producer.produced if self._producer else 0,
            "dropped": dict(self.dropped),
            "injected": self.injected,
            "load_events_handed_out": self.load_budget.handed_out if self.load_budget else None,
            "recording_truncated": self.recorder.truncated,
        }

    def end_feed_after(self, more_events: int) -> int:
        """The market stream ends after ``more_events`` more (``FrameProducer.end_after``)."""
        assert self._producer is not None, "no market stream in load mode"
        return self._producer.end_after(more_events)

    async def disconnect_all(self, mode: DisconnectMode = "close") -> int:
        """Force every connection off (``force_disconnect``); returns how many there were."""
        clients = [c for c in self._clients.values() if not c.closing]
        message = "Connection closed by the simulator (forced disconnect)."
        await asyncio.gather(
            *(
                self._drop(c, "force_disconnect", message, 1012, abort=mode == "abort")
                for c in clients
            )
        )
        return len(clients)

    def inject_frame(self, payload: bytes, binary: bool = False) -> int:
        """Queue ``payload`` as one text (or binary) frame on every subscribed connection,
        behind the market frames already queued; returns how many connections will get it."""
        frame = injected_frame(payload, binary)
        clients = [c for c in self._clients.values() if c.topics and not c.closing]
        for client in clients:
            client.queue.append(frame)
            client.wake.set()
        return len(clients)

    # -- one connection ------------------------------------------------------------------------

    async def _serve(self, ws: ServerConnection) -> None:
        client = Client(next(self._ids), ws)
        self._clients[client.id] = client
        client.tasks.append(asyncio.create_task(self._auth_deadline(client)))
        client.tasks.append(
            asyncio.create_task(write_frames(client, self.recorder, self._count_injected))
        )
        try:
            await ws.send(status_frame("connected", "Connected Successfully"), text=True)
            async for message in ws:
                await self._on_message(client, message)
        except ConnectionClosed:
            pass
        finally:
            client.closing = True
            client.wake.set()
            for task in client.tasks:
                task.cancel()
            self._clients.pop(client.id, None)

    async def _on_message(self, client: Client, message: str | bytes) -> None:
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError:
            await self._send_status(client, "error", "Invalid JSON")
            return
        if not isinstance(request, dict):
            await self._send_status(client, "error", 'expected an object like {"action": ...}')
            return
        action, params = request.get("action"), request.get("params")
        handler = self._actions.get(action) if isinstance(action, str) else None
        if handler is None:
            await self._send_status(client, "error", f"unknown action: {action}")
        elif not isinstance(params, str):
            await self._send_status(client, "error", "params must be a string")
        else:
            await handler(client, params)

    async def _auth(self, client: Client, key: str) -> None:
        if client.key is not None:
            await self._send_status(client, "auth_success", "authenticated")
            return
        opts = self.options
        if not key_accepted(key, opts.accepted_keys, opts.accept_any_key):
            await self._drop(client, "auth_failed", "authentication failed", 1008)
            return
        client.key, client.auth_order = key, next(self._auth_order)
        await self._send_status(client, "auth_success", "authenticated")
        limit = opts.max_connections_per_key
        same_key = sorted(
            (c for c in self._clients.values() if c.key == key and not c.closing),
            key=lambda c: c.auth_order,
        )
        if limit > 0 and len(same_key) > limit:
            for old in same_key[: len(same_key) - limit]:  # in the background: the new
                message = "Maximum number of connections exceeded."  # one is served meanwhile
                self._drop_soon(old, "max_connections", message, 1008)

    async def _subscribe(self, client: Client, params: str) -> None:
        if client.key is None:
            await self._send_status(client, "auth_required", "authentication required")
            return
        for topic in (t.strip() for t in params.split(",")):
            if topic:
                client.topics.add(normalize_topic(topic))
                await self._send_status(client, "success", f"subscribed to: {topic}")
        if self.options.load is not None and not client.load_started:
            client.load_started = True
            client.tasks.append(asyncio.create_task(self._run_load(client, self.options.load)))

    async def _unsubscribe(self, client: Client, params: str) -> None:
        for topic in (t.strip() for t in params.split(",")):
            if topic:
                client.topics.discard(normalize_topic(topic))
                await self._send_status(client, "success", f"unsubscribed to: {topic}")

    async def _auth_deadline(self, client: Client) -> None:
        await asyncio.sleep(self.options.auth_timeout_s)
        if client.key is None:
            await self._drop(client, "auth_timeout", "No authentication request received.", 1008)

    async def _send_status(self, client: Client, status: str, message: str) -> None:
        await client.ws.send(status_frame(status, message), text=True)

    async def _drop(
        self, client: Client, status: str, message: str, code: int, abort: bool = False
    ) -> None:
        if self._begin_drop(client, status):
            await close_connection(client.ws, status, message, code, abort)

    def _drop_soon(self, client: Client, status: str, message: str, code: int) -> None:
        """``_drop`` without waiting for it; marked closing at once (nothing more is queued)."""
        if self._begin_drop(client, status):
            task = asyncio.create_task(close_connection(client.ws, status, message, code, False))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _begin_drop(self, client: Client, status: str) -> bool:
        """Mark the connection as going; queued, unsent frames are discarded (never recorded)."""
        if client.closing:
            return False
        client.closing = True
        client.queue.clear()
        client.wake.set()
        self.dropped[status] += 1
        return True

    # -- sending -------------------------------------------------------------------------------

    def _count_injected(self, frames: int) -> None:
        self.injected += frames

    def _broadcast(self, frame: Frame) -> None:
        for client in self._clients.values():
            if client.topics and not client.closing:
                client.queue.append(frame)
                client.wake.set()
                if len(client.queue) > self.options.max_queued_frames:
                    message = "Connection closed: the client is reading too slowly."
                    self._drop_soon(client, "slow_consumer", message, 1011)

    async def _run_load(self, client: Client, options: LoadOptions) -> None:
        assert self.load_budget is not None
        await asyncio.sleep(options.start_delay_s)
        pool = pool_for(self.market, client.wants, options, self.clock.now_ms())
        if pool is None:
            log.info("load: connection %d subscribed to nothing the market sends", client.id)
            return
        await stream_load(
            client.ws,
            connection=client.id,
            pool=pool,
            pool_id=client.id,
            budget=self.load_budget,
            id_base=trade_id_base(self.market.id_epoch_s),
            recorder=self.recorder,
            clock=self.clock,
            options=options,
            is_open=lambda: not client.closing,
        )
