"""A TCP proxy on 127.0.0.1 that a test can cut, blackhole, slow down and restore.

The fault suite puts it between the pipeline and a real server (PostgreSQL at 127.0.0.1:5432),
so the server itself is never touched. One asyncio loop on one daemon thread carries every
connection; the test drives it from its own thread with plain calls:

- ``cut("refuse")``: every open connection is reset, and nothing listens on the port any more
  (the port stays bound to us, so no other process can take it): a connect is refused at once,
  as with a server that is down.
- ``cut("blackhole")``: every open connection is reset, and new ones are accepted and then
  never answered, as with a route that drops packets or a hung pooler: a client waits for its
  own connect timeout.
- ``restore()``: back to forwarding; connections held silent by a blackhole are closed.
- ``set_delay(s)``: every chunk of bytes, either way, is delivered ``s`` seconds after it was
  read (a latency, order kept; throughput is not limited). Bytes already read keep the delay
  they were read with.

Bounded: each direction holds at most ``MAX_CHUNKS_IN_FLIGHT`` chunks before it stops reading
(the sender then feels TCP back-pressure), and ``stop()`` closes every socket and joins the
thread within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

CHUNK_BYTES = 65_536
MAX_CHUNKS_IN_FLIGHT = 256
CONTROL_TIMEOUT_S = 10.0
MODES = ("open", "refuse", "blackhole")


@dataclass(eq=False)  # hashed by identity: links live in a set
class _Link:
    """A client connection and its upstream twin, pumped both ways."""

    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        """Reset both sockets (RST, not FIN: a dropped link, not a polite close)."""
        for task in self.tasks:
            task.cancel()
        for writer in self.writers:
            writer.transport.abort()


@dataclass
class ProxyStats:
    accepted: int = 0  # client connections taken while forwarding
    dropped: int = 0  # open connections reset by a cut
    blackholed: int = 0  # connections accepted and held silent during a blackhole
    upstream_failed: int = 0  # client connections closed because upstream refused


class TcpProxy:
    """``with TcpProxy(("127.0.0.1", 5432)) as proxy:`` forwards ``127.0.0.1:proxy.port`` to
    the upstream until cut; see the module doc for the faults."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        if upstream[0] != "127.0.0.1":
            raise ValueError(f"the proxy forwards to 127.0.0.1 only, not {upstream[0]}")
        self.upstream = upstream
        self.stats = ProxyStats()
        self.mode = "open"
        self._delay_s = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._sock = self._bound_socket(0)
        self.port: int = self._sock.getsockname()[1]
        self._accepting: asyncio.Task[None] | None = None
        self._links: set[_Link] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._silent: list[socket.socket] = []

    # -- control, from the test's thread --------------------------------------------------
    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self, how: str = "refuse") -> None:
        if how not in ("refuse", "blackhole"):
            raise ValueError(f"cut how={how!r}: 'refuse' or 'blackhole'")
        self._call(self._cut(how))

    def restore(self) -> None:
        self._call(self._restore())

    def set_delay(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a delay of {seconds} s")
        self._delay_s = float(seconds)  # read by the pumps on the loop's thread; a float is atomic

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=CONTROL_TIMEOUT_S)
        if not self._loop.is_running():
            self._loop.close()
        self._sock.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

    # -- the loop's side --------------------------------------------------------------------
    @staticmethod
    def _bound_socket(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.setblocking(False)
        return sock

    async def _listen(self) -> None:
        self._sock.listen(128)
        self._accepting = asyncio.get_running_loop().create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            client, _ = await loop.sock_accept(self._sock)
            if self.mode == "blackhole":
                self.stats.blackholed += 1
                self._silent.append(client)  # never read, never answered
                continue
            self.stats.accepted += 1
            connecting = loop.create_task(self._connect(client))
            self._connecting.add(connecting)  # a task nobody references may be collected
            connecting.add_done_callback(self._connecting.discard)

    async def _connect(self, client: socket.socket) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self.stats.upstream_failed += 1
            client.close()
            return
        reader, writer = await asyncio.open_connection(sock=client)
        link = _Link(writers=[writer, up_writer])
        if self.mode != "open":  # cut while we were connecting upstream: dropped like the rest
            self.stats.dropped += 1
            link.abort()
            return
        self._links.add(link)
        loop = asyncio.get_running_loop()
        link.tasks = [
            loop.create_task(self._pump(reader, up_writer, link)),
            loop.create_task(self._pump(up_reader, writer, link)),
        ]

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Read ``source`` into a bounded queue of (due time, bytes); a second task writes each
        chunk to ``sink`` when it is due. Either side's end closes the whole link."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(MAX_CHUNKS_IN_FLIGHT)

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait_s = due - loop.time()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                if not data:
                    return
                sink.write(data)
                await sink.drain()

        delivering = loop.create_task(deliver())
        try:
            while True:
                data = await source.read(CHUNK_BYTES)
                await queue.put((loop.time() + self._delay_s, data))
                if not data:  # end of stream, delivered after what came before it
                    break
            await delivering
        except (ConnectionError, OSError):
            pass
        finally:
            delivering.cancel()
            self._close_link(link)

    def _close_link(self, link: _Link) -> None:
        if link in self._links:
            self._links.discard(link)
            for task in link.tasks:
                if task is not asyncio.current_task():
                    task.cancel()
            for writer in link.writers:
                writer.close()

    def _drop_links(self) -> None:
        for link in list(self._links):
            self.stats.dropped += 1
            self._links.discard(link)
            link.abort()

    async def _cut(self, how: str) -> None:
        if self.mode != "open":
            raise RuntimeError(f"the proxy is already cut ({self.mode})")
        self.mode = how
        if how == "refuse":
            # Closing the listener resets what waits in its backlog; a fresh socket keeps the
            # port ours, bound but not listening, so a connect meets a refusal (RST).
            await self._stop_accepting()
            self._sock.close()
            self._sock = self._bound_socket(self.port)
        self._drop_links()

    async def _restore(self) -> None:
        if self.mode == "refuse":
            await self._listen()
        for sock in self._silent:
            sock.close()
        self._silent.clear()
        self.mode = "open"

    async def _stop_accepting(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None

    async def _shutdown(self) -> None:
        await self._stop_accepting()
        self._drop_links()
        for sock in self._silent:
            sock.close()
        self._silent.clear()
        self._sock.close()
