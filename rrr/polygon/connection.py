"""One WebSocket connection to the feed: open (TCP, TLS), upgrade, authenticate, subscribe,
then the read loop that hands text frames to the listener. I/O only; ``PolygonStream`` decides
when to connect again.

websockets performs and validates the opening handshake and builds every frame we send
(masked); incoming frames are cut by ``rrr.polygon.frames`` (see there why). The auth frame
carries the key and is never logged: the handshake's protocol object gets a logger that is
never at DEBUG, where websockets would print frames.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from rrr.config import Secret
from rrr.errors import VendorAuthError, VendorUnavailable
from rrr.polygon.frames import (
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    TEXT_FINAL,
    FrameError,
    FrameReader,
    check_head,
)
from rrr.polygon.messages import is_auth_success, parse_statuses

if TYPE_CHECKING:
    from rrr.polygon.stream import StreamListener, StreamOptions

_wire_log = logging.getLogger("rrr.polygon.wire")
_wire_log.setLevel(logging.INFO)  # websockets logs frame contents at DEBUG: the auth key


class Closed(Exception):
    """The connection ended; the message says why."""


def _frame(opcode: Opcode, payload: bytes) -> bytes:
    """A masked client frame, built by websockets."""
    return Frame(opcode, payload).serialize(mask=True)


@dataclass
class KeepaliveCounts:
    """Pings we sent and pongs that came back, over every connection of one stream."""

    pings_sent: int = 0
    pongs_received: int = 0


class Connection:
    def __init__(
        self,
        url: str,
        options: StreamOptions,
        stopping: Callable[[], bool],
        ssl_context: ssl.SSLContext | None = None,
        keepalive: KeepaliveCounts | None = None,
    ) -> None:
        self.url = url
        self.uri = parse_uri(url)
        self.options = options
        self._stopping = stopping
        self._ssl_context = ssl_context
        self._reader = FrameReader(options.max_frame_bytes)
        self._early: list[tuple[int, bytes]] = []  # frames that came with auth_success
        self._ping_sent_at: float | None = None  # an unanswered keepalive ping
        self._fragments: list[bytes] | None = None  # a fragmented message being joined
        self._close_sent = False
        self.keepalive = keepalive or KeepaliveCounts()
        self.sock = self._open_socket()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """A close frame (unless one was sent already), then the socket goes."""
        if not self._close_sent:
            self._send_close(code, reason)
        self.sock.close()

    def open_session(self, api_key: Secret, params: str) -> None:
        """Upgrade, authenticate, subscribe to ``params``; raises if any step fails."""
        self._early = self._authenticate(api_key)
        subscribe = orjson.dumps({"action": "subscribe", "params": params})
        self.sock.sendall(_frame(Opcode.TEXT, subscribe))

    def _open_socket(self) -> socket.socket:
        opts = self.options
        raw = socket.create_connection((self.uri.host, self.uri.port), opts.connect_timeout_s)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.uri.secure:
            return raw
        context = self._ssl_context or ssl.create_default_context()
        try:
            return context.wrap_socket(raw, server_hostname=self.uri.host)
        except BaseException:
            raw.close()
            raise

    def _authenticate(self, api_key: Secret) -> list[tuple[int, bytes]]:
        """Upgrade, wait for ``connected``, send auth, wait for ``auth_success``.

        Returns the frames that came after ``auth_success`` in the same read, for the listener.
        """
        opts = self.options
        deadline = time.monotonic() + opts.connect_timeout_s + opts.auth_timeout_s
        sock = self.sock
        rest = self._upgrade(deadline)
        frames = self._reader.feed(rest)
        auth_sent = False
        while True:
            for n, (head, payload) in enumerate(frames):
                if head == OP_PING | 0x80:
                    sock.sendall(_frame(Opcode.PONG, payload))
                    continue
                if head == OP_CLOSE | 0x80:
                    raise Closed(f"closed by the feed during auth: {_close_text(payload)}")
                if head != TEXT_FINAL:
                    continue
                for status in parse_statuses(payload):
                    if status.status == "connected" and not auth_sent:
                        # The key goes out in this one frame, never logged (see module doc).
                        auth = {"action": "auth", "params": api_key.reveal()}
                        sock.sendall(_frame(Opcode.TEXT, orjson.dumps(auth)))
                        auth_sent = True
                    elif is_auth_success(status):  # also the legacy variant (spec §1.1)
                        return frames[n + 1 :]
                    elif status.status == "auth_failed":
                        raise VendorAuthError(
                            f"the feed at {self.url} refused the API key ({status.message!r}). "
                            "Check POLYGON_API_KEY (or MASSIVE_API_KEY) and that your plan "
                            "includes real-time crypto WebSocket access; not retrying."
                        )
                    elif status.status not in ("connected", "success"):
                        raise Closed(f"{status.status}: {status.message}")
            frames = self._reader.feed(self._recv(deadline))

    def _upgrade(self, deadline: float) -> bytes:
        """The HTTP upgrade, validated by websockets; returns the bytes after the response."""
        proto = ClientProtocol(self.uri, logger=_wire_log)  # no extensions offered
        proto.send_request(proto.connect())
        for chunk in proto.data_to_send():
            self.sock.sendall(chunk)
        received = b""
        while b"\r\n\r\n" not in received:
            received += self._recv(deadline)
        end = received.index(b"\r\n\r\n") + 4
        proto.receive_data(received[:end])
        if proto.state is not State.OPEN and proto.handshake_exc is None:
            proto.receive_data(received[end:])  # an error response may carry a body
            proto.receive_eof()
        exc = proto.handshake_exc
        if exc is not None:
            status = exc.response.status_code if isinstance(exc, InvalidStatus) else 0
            if status in (401, 403):
                raise VendorAuthError(f"{self.url} refused the connection: {exc}")
            raise VendorUnavailable(f"WebSocket handshake with {self.url} failed: {exc}") from exc
        if proto.state is not State.OPEN:
            raise VendorUnavailable(f"WebSocket handshake with {self.url} did not complete")
        return received[end:]

    def _recv(self, deadline: float) -> bytes:
        """The next bytes during connect/auth, waiting at most until ``deadline``."""
        while True:
            if self._stopping():
                raise Closed("stopped")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Closed("timed out waiting for the feed during connect/auth")
            self.sock.settimeout(min(remaining, 0.25))
            try:
                data = self.sock.recv(self.options.recv_bytes)
            except TimeoutError:
                continue
            if not data:
                raise Closed("the feed closed the connection during connect/auth")
            return data

    def read(self, listener: StreamListener) -> None:
        """The hot loop: socket -> frames -> ``listener.on_frame``, until stopping; then the
        closing handshake, still delivering what arrives (``_drain``)."""
        opts, sock, stopping = self.options, self.sock, self._stopping
        on_frame, on_idle = listener.on_frame, listener.on_idle
        recv, feed, recv_bytes = sock.recv, self._reader.feed, opts.recv_bytes
        sock.settimeout(opts.idle_s)
        next_ping = time.monotonic() + opts.ping_interval_s
        frames, self._early = self._early, []
        while True:
            # Every frame read is delivered before stopping is looked at: a frame in hand when
            # stop() came would otherwise be lost, though the feed counts it as sent.
            for head, payload in frames:
                if head == TEXT_FINAL:
                    on_frame(payload)
                else:
                    self._control(sock, head, payload, listener)
            if stopping():
                break
            try:
                data = recv(recv_bytes)
            except TimeoutError:
                on_idle()
                frames = []
            else:
                if not data:
                    raise Closed("the feed dropped the connection without a close frame")
                frames = feed(data)
            now = time.monotonic()
            if now >= next_ping:
                if self._ping_sent_at is not None:
                    if now - self._ping_sent_at > opts.ping_timeout_s:
                        raise Closed(f"no pong within {opts.ping_timeout_s:g} s (keepalive)")
                else:
                    sock.sendall(_frame(Opcode.PING, os.urandom(4)))
                    self._ping_sent_at = now
                    self.keepalive.pings_sent += 1
                next_ping = now + min(opts.ping_interval_s, opts.ping_timeout_s)
        self._drain(listener)

    def _drain(self, listener: StreamListener) -> None:
        """stop(): the closing handshake (RFC 6455 5.5.1). Our close frame goes out; the feed
        sends nothing after it has read that frame, and answers with its own close, so every
        frame before that answer was sent before the feed knew we were going: delivered too.
        Bounded by ``close_timeout_s``; a dropped connection ends it early."""
        self._send_close(1000, "client stopping")
        deadline = time.monotonic() + self.options.close_timeout_s
        sock = self.sock
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(min(left, 0.25))
            try:
                data = sock.recv(self.options.recv_bytes)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            for head, payload in self._reader.feed(data):
                if head == TEXT_FINAL:
                    listener.on_frame(payload)
                elif head & 0x0F == OP_CLOSE:
                    return  # the feed's answer: the handshake is complete
                elif head & 0x0F in (OP_PING, OP_PONG):
                    continue  # nothing more may be sent after our close frame
                else:
                    try:
                        self._control(sock, head, payload, listener)
                    except (Closed, FrameError):
                        return
        _wire_log.warning(
            "the feed did not answer our close frame within %g s", self.options.close_timeout_s
        )

    def _control(
        self, sock: socket.socket, head: int, payload: bytes, listener: StreamListener
    ) -> None:
        """Everything but a whole text frame: fragments, binary, ping, pong, close."""
        opcode, fin = check_head(head)
        if opcode >= OP_CLOSE and len(payload) > 125:
            raise FrameError("control frame over 125 bytes")
        if opcode == OP_PING:
            sock.sendall(_frame(Opcode.PONG, payload))
        elif opcode == OP_PONG:
            self._ping_sent_at = None
            self.keepalive.pongs_received += 1
        elif opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self._send_close(code if code not in (1005, 1006) else 1000, "")  # echo, as 5.5.1
            raise Closed(f"closed by the feed: {_close_text(payload)}")
        elif opcode == OP_CONT:
            if self._fragments is None:
                raise FrameError("continuation frame without a start")
            self._fragments.append(payload)
            if fin:
                whole, self._fragments = b"".join(self._fragments), None
                listener.on_frame(whole)
        else:  # a text frame's first fragment, or binary (JSON all the same)
            if self._fragments is not None:
                raise FrameError("new message before the last one ended")
            if fin:
                listener.on_frame(payload)
            else:
                self._fragments = [payload]

    def _send_close(self, code: int, reason: str) -> None:
        """Best effort: the connection is going either way."""
        self._close_sent = True
        try:
            self.sock.sendall(_frame(Opcode.CLOSE, Close(code, reason[:100]).serialize()))
        except Exception:  # a dead socket, or a close code websockets refuses to send
            pass


def _close_text(payload: bytes) -> str:
    if len(payload) < 2:
        return "no status code"
    code = int.from_bytes(payload[:2], "big")
    return f"{code} {payload[2:].decode('utf-8', 'replace')}".strip()
