"""The Polygon/Massive crypto WebSocket: connect, authenticate, subscribe, read, keep alive,
reconnect. Transport only: it hands raw frames to a listener and never builds a Trade.

Why a blocking socket read in the caller's thread (``rrr.polygon.connection``): measured on
the 2-core box against a pre-encoded sender (1 event per frame, frames/s read and
``orjson.loads``-ed), websockets' asyncio client ~290,000, its sync client ~260,000, its
Sans-I/O protocol on a plain socket ~420,000, the official ``massive`` client ~66,000. Even so
websockets' per-frame parser was the largest cost of the stream worker, so incoming frames are
cut by ``rrr.polygon.frames``; websockets still performs and validates the opening handshake
and builds every frame we send.

The read loop never waits on downstream work: ``on_frame`` must return at once (the stream
worker parses and hands batches to a publisher thread). The official SDK awaits the user's
handler inside its receive loop; a slow handler stops reading and the vendor drops the
connection as a slow consumer (1011, spec 3.2 and 4).

Reconnects: forever, capped exponential backoff with jitter, reset after a healthy connection,
resubscribing every time. ``auth_failed`` is final (``VendorAuthError``): retrying a bad key only
hammers the vendor. The auth frame carries the key and is never logged.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from websockets.exceptions import InvalidHandshake
from websockets.uri import parse_uri

from rrr.config import Secret
from rrr.errors import VendorAuthError, VendorUnavailable
from rrr.polygon.connection import Closed, Connection, KeepaliveCounts
from rrr.polygon.frames import FrameError
from rrr.symbols import ticker_to_pair

log = logging.getLogger(__name__)

CHANNELS = ("XT", "XQ", "XA")  # trades, quotes, minute bars
FrameData = bytes | bytearray | memoryview


class StreamListener(Protocol):
    def on_connected(self) -> None:
        """Authenticated and subscribed; frames follow."""

    def on_frame(self, frame: FrameData) -> None:
        """One raw text frame; must return quickly."""

    def on_idle(self) -> None:
        """No frame for ``idle_s``: a chance to flush time-based work."""

    def on_disconnected(self, reason: str) -> None:
        """A connection that reached ``on_connected`` ended (also after ``stop()``)."""


@dataclass(frozen=True, slots=True)
class StreamOptions:
    connect_timeout_s: float = 10.0
    auth_timeout_s: float = 10.0
    ping_interval_s: float = 20.0  # websockets' defaults, which the vendor's clients use
    ping_timeout_s: float = 20.0
    idle_s: float = 0.02  # socket read timeout: how often on_idle runs in a quiet market
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    healthy_after_s: float = 10.0  # a connection up this long resets the backoff
    close_timeout_s: float = 5.0  # stop(): how long to wait for the feed's close frame
    recv_bytes: int = 1 << 18
    max_frame_bytes: int = 1 << 24  # the vendor batches events when a reader lags


def subscription_params(tickers: Sequence[str], channels: Sequence[str] = CHANNELS) -> str:
    """``X:BTCUSD`` -> ``XT.BTC-USD,XQ.BTC-USD,XA.BTC-USD``: the pair form, since the REST form
    is acknowledged and never delivers (massive-com/client-python#87)."""
    return ",".join(f"{ch}.{ticker_to_pair(t)}" for t in tickers for ch in channels)


def backoff_delay_s(attempt: int, jitter: float, base_s: float, cap_s: float) -> float:
    """Delay before reconnect ``attempt`` (0 = first after a healthy connection).

    Exponential, capped, and jittered into [half, full] of the step: never ~0 (no hot loop when
    the vendor drops us at once), and many clients restarted together spread out.
    """
    step = min(cap_s, base_s * 2 ** min(attempt, 32))
    return step * (0.5 + 0.5 * jitter)


class PolygonStream:
    def __init__(
        self,
        url: str,
        api_key: Secret,
        tickers: Sequence[str],
        options: StreamOptions | None = None,
        *,
        channels: Sequence[str] = CHANNELS,
        rng: random.Random | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.uri = parse_uri(url)
        self.url = url
        self._api_key = api_key
        self.params = subscription_params(tickers, channels)
        self.options = options or StreamOptions()
        self._rng = rng or random.Random()
        self._ssl_context = ssl_context
        self._stopping = False
        self.connected = False
        self._connected_at: float | None = None
        self.reconnects = 0  # connections lost after on_connected
        self.keepalive = KeepaliveCounts()
        self._connection: Connection | None = None  # the open one, for abort()

    def stop(self) -> None:
        """Ask ``run`` to close and return; safe from a signal handler or another thread."""
        self._stopping = True

    def abort(self) -> None:
        """``stop()``, and the open connection is cut now from the calling thread (TCP FIN, no
        close handshake), even while the reading thread is held up elsewhere (a full publish
        queue): frames not yet read are lost to this client. For a stream lease holder that
        must be off the vendor's key by a deadline (workers.leased_stream)."""
        self._stopping = True
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    def run(self, listener: StreamListener) -> None:
        """Connect and read until ``stop()``; reconnect on any failure but a refused key."""
        attempt = 0
        while not self._stopping:
            self._connected_at = None
            try:
                self._session(listener)
                reason = "stopped"
            except VendorAuthError:
                raise
            except (OSError, InvalidHandshake, FrameError, VendorUnavailable, Closed) as exc:
                reason = str(exc) or type(exc).__name__
            if self.connected:
                self.connected = False
                if not self._stopping:
                    self.reconnects += 1
                listener.on_disconnected(reason)
            if self._stopping:
                break
            up_s = time.monotonic() - self._connected_at if self._connected_at else 0.0
            attempt = 0 if up_s >= self.options.healthy_after_s else attempt + 1
            opts = self.options
            jitter = self._rng.random()
            delay = backoff_delay_s(attempt, jitter, opts.backoff_base_s, opts.backoff_cap_s)
            log.warning("stream to %s lost (%s); reconnecting in %.1f s", self.url, reason, delay)
            self._sleep(delay)

    # -- one connection ------------------------------------------------------------------------

    def _session(self, listener: StreamListener) -> None:
        connection = Connection(
            self.url, self.options, lambda: self._stopping, self._ssl_context, self.keepalive
        )
        code, reason = 1000, "client stopping"
        self._connection = connection
        try:
            connection.open_session(self._api_key, self.params)
            self._connected_at = time.monotonic()
            self.connected = True
            log.info("stream connected to %s, subscribed to %s", self.url, self.params)
            listener.on_connected()
            connection.read(listener)
        except FrameError as exc:
            code, reason = exc.close_code, str(exc)
            raise
        finally:
            self._connection = None
            connection.close(code, reason)

    def _sleep(self, delay_s: float) -> None:
        end = time.monotonic() + delay_s
        while not self._stopping and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
