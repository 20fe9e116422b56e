"""`rrr run`: the whole pipeline as child processes with prefixed logs.

Order: broker (embedded Redis when REDIS_URL is unset; its persistence checked) -> schema
migration -> simulator (when POLYGON_API_KEY is unset) -> the ingest worker and the
backfill/default worker (rrr.worker_roles), beat, stream worker, Flower. Ctrl-C or SIGTERM
stops them in three waves (rrr_cli.supervisor) and leaves none behind.

The console: one line per process started, the children's warnings and errors
(rrr_cli.child_output), and a status line every 10 s (rrr_cli.status_line); every process
writes its INFO lines (one per task) to LOG_FILE. ``RunOptions.verbose`` shows them all.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from rrr.broker import ensure_broker, free_port
from rrr.broker_persistence import probe_persistence
from rrr.config import SIMULATOR_KEY, Settings, redact_url
from rrr.errors import ConfigError, RrrError
from rrr.logs import redact, secrets_of
from rrr.stats import get_stats
from rrr.storage import Store, open_store_from_settings
from rrr.task_names import QUEUE_BACKFILL, QUEUE_DEFAULT, QUEUE_INGEST
from rrr.worker_roles import worker_argv
from rrr_cli.status_line import TABLES, Sample, status_line
from rrr_cli.supervisor import STOP_AFTER_STREAM, STOP_LAST, Supervisor, wait_for_port

log = logging.getLogger(__name__)

QUEUES = (QUEUE_INGEST, QUEUE_BACKFILL, QUEUE_DEFAULT)


@dataclass
class RunOptions:
    with_sentiment: bool = True
    flower: bool = True
    flower_port: int = 5555
    max_seconds: float | None = None
    status_every_s: float = 10.0
    verbose: bool = False  # every child's every line on the console (--verbose, LOG_LEVEL=DEBUG)


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


WORKER_READY = " ready."  # Celery's "<node name> ready." once it consumes
READY_TIMEOUT_S = 60.0


def worker(settings: Settings, role: str) -> list[str]:
    """A worker of ``role`` for `rrr run`: all start together on one machine, so there are no
    neighbours to sync with at start (mingle) nor to gossip with; both only slow the start."""
    extra = ["--without-mingle", "--without-gossip"]
    return worker_argv(settings, role, f"{role}-{os.getpid()}@%h", extra)


def simulator_env(settings: Settings, ws_port: int, http_port: int) -> dict[str, str]:
    """What every child needs to use the local simulator in place of the vendors."""
    env = {
        "RRR_SIMULATOR": "true",
        "POLYGON_API_KEY": SIMULATOR_KEY,
        "POLYGON_WS_URL": f"ws://127.0.0.1:{ws_port}/crypto",
        "POLYGON_REST_URL": f"http://127.0.0.1:{http_port}",
        "POLYGON_RATE_LIMIT": "off",
    }
    if settings.perplexity_api_key is None:
        env["PERPLEXITY_API_KEY"] = SIMULATOR_KEY
        env["PERPLEXITY_BASE_URL"] = f"http://127.0.0.1:{http_port}"
    return env


def flower_line(settings: Settings, port: int) -> str:
    """Where Flower is and where its login comes from (never the login itself)."""
    if settings.flower_basic_auth is not None:
        login = "basic auth: user and password from FLOWER_BASIC_AUTH"
    else:
        login = "no login: it listens on 127.0.0.1 only; FLOWER_BASIC_AUTH=user:password adds one"
    return f"Flower: http://127.0.0.1:{port} ({login})"


def run_pipeline(settings: Settings, options: RunOptions, show: Callable[[str], None]) -> int:
    """Run until Ctrl-C, SIGTERM, --max-seconds or a child's exit; returns the exit code.
    ``show`` prints one console line (the children's through the supervisor's filter)."""
    secrets = secrets_of(settings)

    def emit(line: str) -> None:  # a child's traceback or an error may quote a key or URL
        show(redact(line, secrets))

    supervisor = Supervisor(emit, verbose=options.verbose)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    code = 0
    store: Store | None = None
    try:
        broker_proc, redis_url = ensure_broker(settings)
        if broker_proc is not None:
            supervisor.adopt("redis", broker_proc, STOP_LAST)
            emit(f"embedded Redis at {redis_url} (AOF on, data in {settings.var_dir / 'redis'})")
        emit(f"broker {redact_url(redis_url)}: {probe_persistence(redis_url).summary()}")
        store = open_store_from_settings(settings)
        store.migrate()
        env = child_env(settings, redis_url, options)
        python = sys.executable
        sim_ports = (free_port(), free_port()) if settings.polygon_api_key is None else None
        if sim_ports is not None:
            env.update(simulator_env(settings, *sim_ports))
        # The path of live ticks first (ingest worker, simulator, stream), while the machine is
        # otherwise idle: on two cores, five Pythons importing Celery at once would delay the
        # first stored row by seconds. The rest starts once the ingest worker is ready.
        ingest_argv = worker(settings, "ingest")
        ingest = supervisor.start("ingest", ingest_argv, env, WORKER_READY, STOP_AFTER_STREAM)
        if sim_ports is not None:
            ws_port, http_port = sim_ports
            simulate = ["-m", "rrr_cli", "simulate", "--port", str(ws_port)]
            simulate += ["--http-port", str(http_port), "--tickers", *settings.tickers]
            supervisor.start("simulator", [python, *simulate], env, stop_wave=STOP_AFTER_STREAM)
            # The simulator opens its HTTP port after its WebSocket server is up; probing the
            # WebSocket port with a bare TCP connect would log a failed handshake.
            if not wait_for_port(http_port):
                raise RuntimeError("the simulator did not start; see its log lines above")
            emit("=" * 78)
            emit("NO POLYGON_API_KEY: streaming SIMULATED market data from the local simulator.")
            emit("Rows carry source='simulator'. Set POLYGON_API_KEY to stream the real market.")
            emit("=" * 78)
        supervisor.start("stream", [python, "-m", "rrr_cli", "stream"], env)
        ready = supervisor.wait_ready(ingest, stop, READY_TIMEOUT_S)
        if ready or not (stop.is_set() or supervisor.exited()):  # else: the watch says why
            if not ready:
                emit(f"the ingest worker is not ready after {READY_TIMEOUT_S:g} s; going on")
            _start_the_rest(supervisor, settings, options, env, emit)
        code = _watch(supervisor, store, redis_url, options, stop, emit)
    except KeyboardInterrupt:
        emit("stopping (Ctrl-C) ...")
    finally:
        signal.signal(signal.SIGTERM, previous)
        supervisor.stop_all()
        if store is not None:
            store.close()
        emit("all processes stopped")
    return code


def _start_the_rest(
    supervisor: Supervisor,
    settings: Settings,
    options: RunOptions,
    env: dict[str, str],
    emit: Callable[[str], None],
) -> None:
    """The backfill/default worker, beat and Flower: nothing live waits for them."""
    supervisor.start("backfill", worker(settings, "backfill"), env)
    beat = [sys.executable, "-m", "celery", "-A", "tasks", "beat"]
    supervisor.start("beat", [*beat, "--loglevel", settings.log_level], env)
    if options.flower:
        argv, flower_env = flower_command(settings, "127.0.0.1", options.flower_port)
        supervisor.start("flower", argv, {**flower_env, **env})
        emit(flower_line(settings, options.flower_port))
    if not options.verbose:
        emit(
            f"log file: {settings.log_path} (every process's INFO lines, one per task); here: "
            f"warnings, errors, a status line every {options.status_every_s:g} s (--verbose: all)"
        )


def sample(store: Store, client: redis.Redis, at_s: float) -> Sample:
    """Rows stored per table, the stream worker's heartbeat and the queue depths, now."""
    rows = {table: store.count_rows(table) for table in TABLES}
    try:
        stats = get_stats(client)
        queues = {q: int(client.llen(q)) for q in QUEUES}
    except redis.RedisError as exc:
        return Sample(at_s, rows, broker_error=f"{type(exc).__name__}: {exc}")
    return Sample(at_s, rows, stats, queues)


def _watch(
    supervisor: Supervisor,
    store: Store,
    redis_url: str,
    options: RunOptions,
    stop: threading.Event,
    emit: Callable[[str], None],
) -> int:
    client = redis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    started = time.monotonic()
    next_status = started + options.status_every_s
    try:
        try:
            last = sample(store, client, started)
        except RrrError:
            last = Sample(started, {})
        while not stop.is_set():
            dead = supervisor.exited()
            if dead is not None:
                supervisor.report_exit(dead)
                emit(f"{dead.name} exited with code {dead.proc.returncode}; stopping the pipeline")
                return dead.proc.returncode or 1
            now = time.monotonic()
            if options.max_seconds is not None and now - started >= options.max_seconds:
                emit(f"--max-seconds {options.max_seconds:g} reached; stopping")
                return 0
            if now >= next_status:
                next_status = now + options.status_every_s
                try:
                    current = sample(store, client, now)
                except RrrError as exc:  # the database: say so, keep watching
                    emit(f"status | database unreachable: {exc}")
                else:
                    emit(status_line(last, current))
                    last = current
            stop.wait(0.2)
    finally:
        client.close()
    emit("stopping (SIGTERM) ...")
    return 0
