"""Shared parts of the stream worker's integration tests: the real simulator in-process, the
real ``rrr stream`` as a subprocess, reading back what the store holds."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from rrr.broker import die_with_parent, free_port, is_up, server_binary
from rrr.models import SOURCE_SIMULATOR, Bar, Quote, Trade
from rrr.simulator.server import Simulator, SimulatorOptions, with_feed
from rrr.storage import open_store
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
TICKERS = ("X:BTCUSD", "X:ETHUSD")
FAR_FUTURE_MS = 10**13


wait_until = wait_for  # the stream tests' name for the one bounded wait


def simulator(rate: float, max_events: int | None, **feed: Any) -> Simulator:
    """The real simulator (WebSocket feed on its own thread), ground truth in memory."""
    options = with_feed(
        SimulatorOptions(tickers=TICKERS, seed=7),
        rate=rate,
        events_per_frame=feed.pop("events_per_frame", 3),
        max_events=max_events,
        **feed,
    )
    return Simulator(options).start()


def sent_records(sim: Simulator) -> Counter[tuple[Any, ...]]:
    """What the simulator sent, as the rows the pipeline must store (a multiset)."""
    return Counter(_normal(r) for r in sim.truth().records())


MINUTE = 60_000


def market_truth(sim: Simulator) -> Counter[tuple[Any, ...]]:
    """Trades and bars of the whole run as the pipeline must store them: every trade the market
    made (those the WebSocket sent carry their receive time; those it never sent, because the
    client was away, come from REST without one) and every minute bar it closed, sent or not.

    What was sent is read before the market: a bar closes in the market before it is sent, so
    every bar sent by then is among the market's closed bars (read the other way round, a bar
    closing in between was sent but not yet in the market's list)."""
    sent_bars = [_normal(b) for b in sim.truth().bars() if b.timeframe == "1m"]
    sent = {(t.ticker, t.exchange_id, t.trade_id) for t in sim.sent_trades()}
    rows: list[Trade | Bar] = []
    for ticker in TICKERS:
        tape = sim.market.trade_tape(ticker)
        assert tape is not None
        for t in tape.between(0, FAR_FUTURE_MS):
            trade_id = str(t.trade_id)
            received = t.t_ms if (ticker, t.exchange, trade_id) in sent else None
            rows.append(
                Trade(ticker, t.exchange, trade_id, t.price, t.size, (t.side,), t.t_ms,
                      received, SOURCE_SIMULATOR)
            )  # fmt: skip
        first_minute = tape.between(0, FAR_FUTURE_MS)[0].t_ms // MINUTE * MINUTE
        for b in sim.market.minute_bars(ticker, first_minute, FAR_FUTURE_MS):
            rows.append(
                Bar(ticker, "1m", b["o"], b["h"], b["l"], b["c"], b["v"], b["vw"], b["n"],
                    b["t"], b["t"] + MINUTE, SOURCE_SIMULATOR)
            )  # fmt: skip
    assert set(sent_bars) <= {_normal(r) for r in rows}  # the live bars are the ones it sent
    return Counter(_normal(r) for r in rows)


def stored_count(database_url: str) -> int:
    """How many trades, quotes and bars the store holds: a cheap figure of progress."""
    store = open_store(database_url)
    try:
        return sum(
            store.count_rows(t) for t in ("crypto_trades", "crypto_quotes", "crypto_aggregates")
        )
    finally:
        store.close()


def stored_records(database_url: str) -> Counter[tuple[Any, ...]]:
    store = open_store(database_url)
    try:
        out: Counter[tuple[Any, ...]] = Counter()
        for ticker in TICKERS:
            for r in store.read_trades(ticker, 0, FAR_FUTURE_MS).itertuples(index=False):
                out[_normal(Trade(*r[:9]))] += 1
            for r in store.read_quotes(ticker, 0, FAR_FUTURE_MS).itertuples(index=False):
                out[_normal(Quote(*r[:9]))] += 1
            for timeframe in ("1m", "1s"):
                bars = store.read_bars(ticker, 0, FAR_FUTURE_MS, timeframe)
                for r in bars.itertuples(index=False):
                    out[_normal(Bar(*r[:12]))] += 1
        return out
    finally:
        store.close()


def _normal(r: Trade | Quote | Bar) -> tuple[Any, ...]:
    """One comparable form whatever the store returned (numpy scalars, lists, NaN)."""
    if isinstance(r, Trade):
        received = (
            None if r.received_ms is None or r.received_ms != r.received_ms else r.received_ms
        )
        return (
            "trade", r.ticker, int(r.exchange_id), str(r.trade_id), float(r.price),
            float(r.size), tuple(int(c) for c in r.conditions), int(r.ts_ms),
            None if received is None else int(received), r.source,
        )  # fmt: skip
    if isinstance(r, Quote):
        return ("quote", r.ticker, int(r.exchange_id), *map(float, r[2:6]), int(r.ts_ms), r.source)
    vwap = None if r.vwap is None or r.vwap != r.vwap else float(r.vwap)
    return (
        "bar", r.ticker, r.timeframe, *map(float, r[2:7]), vwap, int(r.start_ms), int(r.end_ms),
        r.source,
    )  # fmt: skip


def count_rows(database_url: str, table: str) -> int:
    store = open_store(database_url)
    try:
        return store.count_rows(table)
    finally:
        store.close()


def migrate(database_url: str) -> None:
    store = open_store(database_url)
    store.migrate()
    store.close()


class LoggedProcess:
    """A program run by the test, its output in ``log_path``; in a session of its own, so a
    kill of its process group takes its children too."""

    def __init__(
        self, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = ROOT
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # never outlives a killed test run
        )

    def log(self, tail: int | None = None) -> str:
        text = self.log_path.read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_logged(self, text: str, timeout_s: float = 60) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.log_path.name} exited early:\n{self.log(5000)}")
            return text.encode() in self.log_path.read_bytes()

        wait_until(seen, timeout_s, f"{text!r} in {self.log_path.name}")

    def terminate(self, timeout_s: float = 60, sig: int = signal.SIGTERM) -> int:
        """``sig`` (SIGTERM: the program flushes and exits by itself), then the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self.kill()

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


class StreamProcess(LoggedProcess):
    """``python -m rrr_cli stream`` as a subprocess, stopped with SIGTERM like in production."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        super().__init__([sys.executable, "-m", "rrr_cli", "stream", *args], env, log_path)


def queued_tasks(redis_client: Any, queue: str) -> list[dict[str, Any]]:
    """The Celery messages waiting on a Redis-transport queue: task name and kwargs/args."""
    out = []
    for raw in redis_client.lrange(queue, 0, -1):
        message = orjson.loads(raw)
        body = orjson.loads(base64.b64decode(message["body"]))
        out.append({"task": message["headers"]["task"], "args": body[0], "kwargs": body[1]})
    return out


class RedisServer:
    """A Redis server of the test's own (valkey, the binary the project ships: CI never skips),
    AOF on, ``noeviction``, in ``directory`` (its log there too), so a test can stop, pause,
    kill and restart its broker. ``appendfsync``: "always", or "everysec" as rrr runs its
    embedded one; ``None``: no persistence at all (a volatile broker). ``bind``/``port``: where
    it listens (a free port of 127.0.0.1 unless told); ``launch``: the command it runs under,
    say a test host's ``ip netns exec`` (tests/hosts/netns.py ``Host.command``), which execs
    the server so its pid is the server's."""

    def __init__(
        self,
        directory: Path,
        appendfsync: str | None = "always",
        *,
        bind: str = "127.0.0.1",
        port: int | None = None,
        launch: Callable[[list[str]], list[str]] = list,  # list: the command as it is
    ) -> None:
        self.directory = directory
        self.appendfsync = appendfsync
        self.bind = bind
        self.port = port or free_port()
        self.launch = launch
        self.url = f"redis://{bind}:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            *(str(server_binary()), "--bind", self.bind, "--port", str(self.port)),
            *("--save", "", "--dir", str(self.directory), "--maxmemory-policy", "noeviction"),
            # Without a password, protected mode refuses every client not on loopback, --bind
            # or not: a test host's broker serves the other hosts (on the test's own subnet).
            *("--protected-mode", "no"),
            *(
                ("--appendonly", "yes", "--appendfsync", self.appendfsync)
                if self.appendfsync
                else ("--appendonly", "no")
            ),
        ]
        with open(self.directory / "redis.log", "ab") as log:  # the server holds its own copy
            self.proc = subprocess.Popen(
                self.launch(argv),
                env={"PATH": os.environ["PATH"]},
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        wait_until(lambda: is_up(self.url, 0.2), 30, "redis-server to start")

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a broker that hangs)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: what the server had not yet written to its AOF is gone."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self.proc.terminate()  # SIGTERM: redis flushes the AOF and exits
            self.proc.wait(10)


def journal_items(journal_dir: Path) -> list[tuple[str, Any]]:
    """The items a (dead) stream worker left unconfirmed in its journal, oldest first; the
    journal is left as it was."""
    from rrr.wire import decode_item
    from workers.journal import Journal

    journal = Journal(journal_dir, 10**12)
    try:
        return [decode_item(record) for record in journal.unconfirmed()]
    finally:
        journal.close()
