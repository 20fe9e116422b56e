"""The fault suite's TCP proxy does what the scenarios rely on, against a real echo server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.faults.tcp_proxy import TcpProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A server on 127.0.0.1 that sends back every byte it gets."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65_536):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    for conn in conns:
        conn.close()
    listener.close()


def roundtrip(port: int, payload: bytes = b"ping", timeout_s: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        conn.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = conn.recv(65_536)
            if not chunk:
                break
            got += chunk
        return got


def test_forwards_both_ways(echo_port: int) -> None:
    with TcpProxy(("127.0.0.1", echo_port)) as proxy:
        payload = bytes(range(256)) * 800  # 200 KB: several chunks, in order
        assert roundtrip(proxy.port, payload) == payload
        assert proxy.stats.accepted == 1


def test_refuse_resets_open_connections_and_refuses_new_ones_until_restored(
    echo_port: int,
) -> None:
    with TcpProxy(("127.0.0.1", echo_port)) as proxy:
        conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        conn.sendall(b"a")
        assert conn.recv(1) == b"a"
        proxy.cut("refuse")
        with pytest.raises((ConnectionError, OSError)):
            conn.sendall(b"b")
            if not conn.recv(1):  # an orderly end would be just as much a drop
                raise ConnectionResetError("closed")
        conn.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        proxy.restore()
        assert roundtrip(proxy.port) == b"ping"
        assert proxy.stats.dropped == 1


def test_blackhole_accepts_and_never_answers(echo_port: int) -> None:
    with TcpProxy(("127.0.0.1", echo_port)) as proxy:
        proxy.cut("blackhole")
        with pytest.raises(TimeoutError):
            roundtrip(proxy.port, timeout_s=0.5)
        assert proxy.stats.blackholed == 1
        proxy.restore()
        assert roundtrip(proxy.port) == b"ping"


def test_delay_holds_each_direction(echo_port: int) -> None:
    with TcpProxy(("127.0.0.1", echo_port)) as proxy:
        proxy.set_delay(0.3)
        t0 = time.monotonic()
        assert roundtrip(proxy.port) == b"ping"
        assert time.monotonic() - t0 >= 0.6  # there and back
        proxy.set_delay(0)
        t0 = time.monotonic()
        assert roundtrip(proxy.port) == b"ping"
        assert time.monotonic() - t0 < 0.3


def test_stop_leaves_no_thread_and_frees_the_port(echo_port: int) -> None:
    proxy = TcpProxy(("127.0.0.1", echo_port)).start()
    conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    proxy.stop()
    assert not proxy._thread.is_alive()
    conn.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
