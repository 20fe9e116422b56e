"""The long-running commands, one process each: ``rrr run`` (all of them), ``rrr worker``,
``rrr stream``, ``rrr flower`` and ``rrr redis``."""

from __future__ import annotations

import logging
import os
import signal

import typer

from rrr.config import parse_tickers
from rrr.errors import ConfigError, RrrError, VendorAuthError
from rrr.logs import configure_logging
from rrr_cli.console import console, fail, load_settings


def run(
    ctx: typer.Context,
    tickers: list[str] = typer.Option(  # noqa: B008
        None, "--tickers", help="Pairs to stream, e.g. --tickers X:BTCUSD X:ETHUSD."
    ),
    no_sentiment: bool = typer.Option(False, "--no-sentiment", help="Do not schedule sentiment."),
    sentiment_interval: int = typer.Option(None, "--sentiment-interval", min=1, help="Seconds."),
    quality_interval: int = typer.Option(None, "--quality-interval", min=1, help="Seconds."),
    no_flower: bool = typer.Option(False, "--no-flower", help="Do not start Flower."),
    flower_port: int = typer.Option(5555, "--flower-port", min=1, max=65535),
    max_seconds: float = typer.Option(None, "--max-seconds", min=1, help="Stop after N seconds."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Every line of every process (LOG_LEVEL=DEBUG does too)."
    ),
) -> None:
    """The whole pipeline: embedded Redis (no REDIS_URL), simulator (no POLYGON_API_KEY),
    Celery worker, beat, stream worker and Flower. Ctrl-C stops them all. The console shows
    each process's start, warnings, errors and a status line every 10 s; LOG_FILE has the rest."""
    from rrr_cli.runner import RunOptions, run_pipeline

    extra = list(ctx.args)  # `--tickers A B` leaves B as an extra argument
    if any(arg.startswith("-") for arg in extra):
        fail(f"unknown option {next(a for a in extra if a.startswith('-'))}; see `rrr run --help`")
    try:
        chosen = parse_tickers([*(tickers or []), *extra], "--tickers") if tickers else None
    except ConfigError as exc:
        fail(str(exc))
    settings = load_settings(
        tickers=chosen,
        sentiment_interval_s=sentiment_interval,
        quality_interval_s=quality_interval,
    )
    # This process's own INFO records go to the file; its console lines are the ones it emits.
    configure_logging(settings, console="stdout", console_level=logging.WARNING)
    options = RunOptions(
        with_sentiment=not no_sentiment,
        flower=not no_flower,
        flower_port=flower_port,
        max_seconds=max_seconds,
        verbose=verbose or settings.log_level == "DEBUG",
    )
    try:
        code = run_pipeline(settings, options, show=lambda line: print(line, flush=True))
    except RrrError as exc:
        fail(str(exc))
    raise typer.Exit(code)


def worker(
    ctx: typer.Context,
    role: str = typer.Argument(..., help="ingest or backfill (backfill also takes default)."),
) -> None:
    """A Celery worker for one role (Procfile `ingest:` and `backfill:`): its queues and its
    processes from RRR_INGEST_CONCURRENCY / RRR_BACKFILL_CONCURRENCY. Further options go to
    `celery worker` as they are."""
    from rrr.broker import reachable_redis_url
    from rrr.worker_roles import worker_argv

    settings = load_settings()
    try:
        # No broker, or one that does not answer: say so and how to fix it, rather than
        # Celery's traceback or its first connection retried for half an hour.
        reachable_redis_url(settings)
        argv = worker_argv(settings, role, f"{role}-{os.getpid()}@%h", ctx.args)
    except ConfigError as exc:
        fail(str(exc))
    env = dict(os.environ)
    if settings.worker_metrics_port:
        # prometheus-client must find it at import: the worker's processes share their
        # counters through it (rrr.metrics.multiproc).
        from rrr.metrics.multiproc import worker_metrics_dir

        env["PROMETHEUS_MULTIPROC_DIR"] = str(worker_metrics_dir(settings))
    # The same pid: honcho's and Heroku's signals reach Celery itself.
    os.execve(argv[0], argv, env)


def stream(
    max_messages: int = typer.Option(None, "--max-messages", min=1, help="Stop after N events."),
    max_seconds: float = typer.Option(None, "--max-seconds", min=0.1, help="Stop after S s."),
) -> None:
    """Run the stream worker: WebSocket -> parse -> batch -> journal (var/journal) -> insert_batch
    tasks. An item leaves the journal once stored or set aside, so a broker outage or a kill
    loses nothing. SIGTERM flushes the open batch and exits 0."""
    from rrr.broker import resolve_redis_url
    from rrr.broker_persistence import check_broker_persistence
    from workers.stream_process import run_stream

    settings = load_settings()
    configure_logging(settings, console="stdout")
    try:
        check_broker_persistence(resolve_redis_url(settings), "stream worker")
    except ConfigError:
        pass  # no broker at all: run_stream below says so, with the fix
    try:
        run_stream(settings, max_messages=max_messages, max_seconds=max_seconds)
    except VendorAuthError as exc:
        fail(str(exc), code=3)  # a refused key: exit at once, no reconnect storm
    except RrrError as exc:
        fail(str(exc))


def flower(
    address: str = typer.Option("127.0.0.1", "--address", help="Bind address."),
    port: int = typer.Option(5555, "--port", min=1, max=65535),
) -> None:
    """Flower, the Celery dashboard, on the pipeline's broker. Basic auth comes from
    FLOWER_BASIC_AUTH and is required on any address but loopback (Procfile `web:`)."""
    from rrr.broker import resolve_redis_url
    from rrr_cli.runner import flower_command

    settings = load_settings()
    try:
        redis_url = resolve_redis_url(settings)
        argv, env = flower_command(settings, address, port)
    except ConfigError as exc:
        fail(str(exc))
    os.execvpe(argv[0], argv, {**env, "REDIS_URL": redis_url})


def redis_server() -> None:
    """Run the embedded Redis (AOF on, data under var/redis) in the foreground."""
    from rrr.broker import ensure_broker

    settings = load_settings()
    configure_logging(settings, to_file=False)
    proc, url = ensure_broker(settings)
    if proc is None:
        console.print(f"a broker is already up at {url}; nothing to start")
        return
    console.print(f"embedded Redis at {url} (Ctrl-C stops it)")
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=10)
