"""`rrr run`: the whole pipeline as child processes with prefixed logs.

Order: broker (embedded Redis when REDIS_URL is unset) -> schema migration -> simulator (when
POLYGON_API_KEY is unset) -> Celery worker, beat, stream worker, Flower. Ctrl-C or SIGTERM
stops them in reverse order (SIGTERM, then SIGKILL after a grace period) and leaves none
behind; children also get SIGTERM if this process dies (Linux parent-death signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rrr.broker import ensure_broker, free_port
from rrr.config import PROJECT_ROOT, Settings
from rrr.errors import ConfigError
from rrr.storage import Store, open_store_from_settings

log = logging.getLogger(__name__)

STATUS_TABLES = ("crypto_trades", "crypto_quotes", "crypto_aggregates", "market_sentiment")
SIMULATOR_KEY = "sim-key"  # the key the local simulator accepts by default
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class RunOptions:
    with_sentiment: bool = True
    flower: bool = True
    flower_port: int = 5555
    worker_concurrency: int = max(2, os.cpu_count() or 2)
    max_seconds: float | None = None
    status_every_s: float = 10.0


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    reader: threading.Thread | None = None


@dataclass
class Supervisor:
    """Starts children, prefixes their output, and stops every one of them."""

    emit: Callable[[str], None]
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        proc = subprocess.Popen(
            argv,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        child = Child(name, proc)
        child.reader = threading.Thread(target=self._pump, args=(child,), daemon=True)
        child.reader.start()
        self.children.append(child)
        return child

    def adopt(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        self.children.append(Child(name, proc))

    def _pump(self, child: Child) -> None:
        assert child.proc.stdout is not None
        for raw in child.proc.stdout:
            self.emit(f"{child.name:>9} | {raw.decode(errors='replace').rstrip()}")

    def exited(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def stop_all(self, grace_s: float = 20.0) -> None:
        for child in reversed(self.children):
            stop_process(child.proc, grace_s)


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 20.0) -> None:
    """SIGTERM the process's group (it was started in a session of its own), wait up to
    ``grace_s`` for a clean exit, then SIGKILL whatever is left of the group."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:  # not a group leader after all: the process alone
            proc.terminate()
    deadline = time.monotonic() + grace_s
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything the process left behind
    if proc.poll() is None:
        proc.wait(timeout=5)


def wait_for_port(port: int, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def flower_command(settings: Settings, address: str, port: int) -> tuple[list[str], dict[str, str]]:
    """Flower's argv and environment. Basic auth travels in the environment (FLOWER_BASIC_AUTH,
    which Flower reads itself), never in argv where `ps` shows it; an address other than
    loopback without it would hand anyone the power to revoke tasks and stop workers."""
    if address not in LOOPBACK and settings.flower_basic_auth is None:
        raise ConfigError(
            f"Flower on {address} needs FLOWER_BASIC_AUTH=user:password (or bind 127.0.0.1)"
        )
    env = dict(os.environ)
    if settings.flower_basic_auth is not None:
        env["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth.reveal()
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "flower",
        f"--address={address}",
        f"--port={port}",
        "--max_tasks=5000",
    ]
    return argv, env


def child_env(settings: Settings, redis_url: str, options: RunOptions) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RRR_HOME=str(settings.home),
        REDIS_URL=redis_url,
        RRR_TICKERS=",".join(settings.tickers),
        SENTIMENT_INTERVAL=str(settings.sentiment_interval_s),
        QUALITY_INTERVAL=str(settings.quality_interval_s),
        RRR_SENTIMENT_ENABLED="true" if options.with_sentiment else "false",
        PYTHONUNBUFFERED="1",
    )
    return env


def run_pipeline(settings: Settings, options: RunOptions, emit: Callable[[str], None]) -> int:
    """Run until Ctrl-C, SIGTERM, --max-seconds or a child's exit; returns the exit code."""
    supervisor = Supervisor(emit)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    code = 0
    store: Store | None = None
    try:
        broker_proc, redis_url = ensure_broker(settings)
        if broker_proc is not None:
            supervisor.adopt("redis", broker_proc)
            emit(f"embedded Redis at {redis_url} (AOF on, data in {settings.var_dir / 'redis'})")
        store = open_store_from_settings(settings)
        store.migrate()
        env = child_env(settings, redis_url, options)
        python = sys.executable
        if settings.polygon_api_key is None:
            ws_port, http_port = free_port(), free_port()
            supervisor.start(
                "simulator",
                [
                    python,
                    "-m",
                    "rrr.cli",
                    "simulate",
                    "--port",
                    str(ws_port),
                    "--http-port",
                    str(http_port),
                    "--tickers",
                    *settings.tickers,
                ],
                env,
            )
            # The simulator opens its HTTP port after its WebSocket server is up; probing the
            # WebSocket port with a bare TCP connect would log a failed handshake.
            if not wait_for_port(http_port):
                raise RuntimeError("the simulator did not start; see its log lines above")
            env.update(
                RRR_SIMULATOR="true",
                POLYGON_API_KEY=SIMULATOR_KEY,
                POLYGON_WS_URL=f"ws://127.0.0.1:{ws_port}/crypto",
                POLYGON_REST_URL=f"http://127.0.0.1:{http_port}",
                POLYGON_RATE_LIMIT="off",
            )
            if settings.perplexity_api_key is None:
                env.update(
                    PERPLEXITY_API_KEY=SIMULATOR_KEY,
                    PERPLEXITY_BASE_URL=f"http://127.0.0.1:{http_port}",
                )
            emit("=" * 78)
            emit("NO POLYGON_API_KEY: streaming SIMULATED market data from the local simulator.")
            emit("Rows carry source='simulator'. Set POLYGON_API_KEY to stream the real market.")
            emit("=" * 78)
        celery = [python, "-m", "celery", "-A", "tasks"]
        supervisor.start(
            "worker",
            [
                *celery,
                "worker",
                "-Q",
                "ingest,backfill,default",
                "-c",
                str(options.worker_concurrency),
                "--loglevel",
                settings.log_level,
                "-n",
                f"rrr-{os.getpid()}@%h",
            ],
            env,
        )
        supervisor.start("beat", [*celery, "beat", "--loglevel", settings.log_level], env)
        supervisor.start("stream", [python, "-m", "rrr.cli", "stream"], env)
        if options.flower:
            argv, flower_env = flower_command(settings, "127.0.0.1", options.flower_port)
            supervisor.start("flower", argv, {**flower_env, **env})
            emit(f"Flower: http://127.0.0.1:{options.flower_port}")
        code = _watch(supervisor, store, options, stop, emit)
    except KeyboardInterrupt:
        emit("stopping (Ctrl-C) ...")
    finally:
        signal.signal(signal.SIGTERM, previous)
        supervisor.stop_all()
        if store is not None:
            store.close()
        emit("all processes stopped")
    return code


def _watch(
    supervisor: Supervisor,
    store: Store,
    options: RunOptions,
    stop: threading.Event,
    emit: Callable[[str], None],
) -> int:
    started = time.monotonic()
    next_status = started + options.status_every_s
    while not stop.is_set():
        dead = supervisor.exited()
        if dead is not None:
            emit(f"{dead.name} exited with code {dead.proc.returncode}; stopping the pipeline")
            return dead.proc.returncode or 1
        now = time.monotonic()
        if options.max_seconds is not None and now - started >= options.max_seconds:
            emit(f"--max-seconds {options.max_seconds:g} reached; stopping")
            return 0
        if now >= next_status:
            next_status = now + options.status_every_s
            counts = {t: store.count_rows(t) for t in STATUS_TABLES}
            emit("rows stored: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
        stop.wait(0.2)
    emit("stopping (SIGTERM) ...")
    return 0
