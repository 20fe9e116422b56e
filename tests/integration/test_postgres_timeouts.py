"""PostgreSQL waits are bounded: a server that never answers fails within the connect timeout,
a statement stuck on a lock is cancelled by the server, and every connection's socket carries
TCP keepalives and a user timeout. Each ends in a transient error, so a task retries."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from rrr.errors import TransientStorageError, is_transient
from rrr.models import Batch, Trade
from rrr.storage import open_store
from rrr.storage.postgres import PostgresStore
from rrr.storage.postgres_connect import (
    CONNECT_TIMEOUT_S,
    KEEPALIVES_COUNT,
    KEEPALIVES_IDLE_S,
    KEEPALIVES_INTERVAL_S,
    TCP_USER_TIMEOUT_MS,
)

pytestmark = pytest.mark.postgres

T0 = 1_706_649_600_000


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never says a word: what a client
    sees of a blackholed database, a hung pooler or a half-dead load balancer."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)  # kept open, never read from, never written to

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    listener.close()


def fail_to_open(url: str) -> tuple[TransientStorageError, float]:
    started = time.monotonic()
    with pytest.raises(TransientStorageError) as info:
        open_store(url)
    return info.value, time.monotonic() - started


def test_a_server_that_never_answers_fails_within_the_connect_timeout(silent_server: int) -> None:
    error, elapsed = fail_to_open(f"postgresql://postgres:s3cret@127.0.0.1:{silent_server}/test")
    assert is_transient(error)
    assert CONNECT_TIMEOUT_S - 1 <= elapsed < CONNECT_TIMEOUT_S + 5, elapsed
    assert f"127.0.0.1:{silent_server}" in str(error) and "s3cret" not in str(error)


def test_a_connect_timeout_in_the_url_wins(silent_server: int) -> None:
    _, elapsed = fail_to_open(
        f"postgresql://postgres@127.0.0.1:{silent_server}/test?connect_timeout=2"
    )
    assert 1.5 <= elapsed < 5, elapsed


def trade(trade_id: str) -> Trade:
    return Trade("X:BTCUSD", 1, trade_id, 43575.6, 0.5, (2,), T0, None, "polygon")


def test_a_statement_stuck_on_a_lock_is_cancelled_as_transient(pg_url: str) -> None:
    url = pg_url.replace("options=", "options=-c%20statement_timeout%3D500%20")
    store = PostgresStore(url)
    try:
        store.migrate()
        with psycopg.connect(pg_url) as other:
            other.execute("LOCK TABLE crypto_trades IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(TransientStorageError, match="statement timeout"):
                store.apply_batch(Batch("b", "trades", [trade("1")]))
            elapsed = time.monotonic() - started
        assert 0.4 <= elapsed < 5, elapsed
        # The lock is gone and the same store goes on: the retry stores the batch once.
        assert store.apply_batch(Batch("b", "trades", [trade("1")])).stored == 1
    finally:
        store.close()


def test_the_statement_timeout_follows_the_task_soft_time_limit(pg_url: str) -> None:
    for limit_s, shown in ((None, "270s"), (100, "90s")):
        store = open_store(pg_url, task_soft_time_limit_s=limit_s)
        try:
            assert store._query("SHOW statement_timeout") == [(shown,)]  # type: ignore[attr-defined]
            # The URL's own options are kept beside it.
            assert store._query("SHOW search_path")[0][0].startswith("rrr_test_")  # type: ignore[attr-defined]
        finally:
            store.close()


def test_every_connection_socket_has_keepalives_and_a_user_timeout(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        fd = store._connect().pgconn.socket  # the live connection's own socket
        sock = socket.socket(fileno=os.dup(fd))
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVES_IDLE_S
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == (
                KEEPALIVES_INTERVAL_S
            )
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVES_COUNT
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == (
                TCP_USER_TIMEOUT_MS
            )
        finally:
            sock.close()
    finally:
        store.close()
