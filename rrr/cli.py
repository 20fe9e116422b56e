"""The ``rrr`` command: flags -> Settings -> components. No business logic lives here."""

from __future__ import annotations

import logging
import signal
import sys

import typer
from rich.console import Console

from rrr.config import Settings
from rrr.errors import ConfigError, RrrError
from rrr.logs import configure_logging

app = typer.Typer(
    name="rrr",
    help="Real-time crypto market data: Polygon/Massive -> Celery + Redis -> SQLite/PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console(stderr=True)
log = logging.getLogger("rrr.cli")


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with CLI flags on top; a bad value exits with its fix."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        fail(str(exc))
    changes = {k: v for k, v in overrides.items() if v is not None}
    return settings.with_overrides(**changes) if changes else settings


def fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@db_app.command("migrate")
def db_migrate() -> None:
    """Create or upgrade the schema of DATABASE_URL (re-running it is a no-op)."""
    from rrr.storage import open_store_from_settings

    settings = load_settings()
    configure_logging(settings, to_file=False)
    try:
        store = open_store_from_settings(settings)
        applied = store.migrate()
        store.close()
    except RrrError as exc:
        fail(f"{exc}. Check DATABASE_URL (or SUPABASE_URL and SUPABASE_SERVICE_KEY).")
    if applied:
        console.print(f"applied migrations: {', '.join(applied)}")
    else:
        console.print("schema is up to date")


@db_app.command("schema")
def db_schema(
    dialect: str = typer.Option("postgres", "--dialect", help="SQL dialect (postgres only)."),
) -> None:
    """Print the full schema SQL (all migrations; row-level security on Supabase) to stdout,
    e.g. to paste into the Supabase SQL editor. The same as supabase/schema.sql."""
    from rrr.storage.full_schema import full_schema_sql

    try:
        sys.stdout.write(full_schema_sql(dialect))
    except ValueError as exc:
        fail(str(exc))


@app.command("redis")
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


@app.command("sentiment")
def sentiment(
    assets: list[str] = typer.Argument(None, help="Assets like BTC ETH (default: RRR_TICKERS)."),  # noqa: B008
    simulator: bool = typer.Option(
        False, "--simulator", help="Ask a simulated Perplexity started in-process (no key needed)."
    ),
    api: str | None = typer.Option(None, "--api", help="agent (default) or sonar."),
    model: str | None = typer.Option(None, "--model", help="Overrides PERPLEXITY_MODEL."),
) -> None:
    """Score news sentiment now (in-process, no Celery) and print it; nothing is stored."""
    from rich.table import Table

    from rrr.config import Secret
    from rrr.sentiment.analyzer import NO_KEY_MESSAGE, SentimentAnalyzer, assets_of
    from rrr.simulator.http import SimulatorHTTPServer
    from rrr.simulator.perplexity import perplexity_routes
    from rrr.symbols import SymbolError

    if api not in (None, "agent", "sonar"):
        fail(f"--api {api!r} must be 'agent' or 'sonar'")
    settings = load_settings(perplexity_api=api, perplexity_model=model)
    configure_logging(settings, to_file=False)
    server = None
    if simulator:  # the same client path, against the local double on 127.0.0.1
        server = SimulatorHTTPServer(perplexity_routes()).start()
        settings = settings.with_overrides(
            perplexity_base_url=server.base_url, perplexity_api_key=Secret("sim-key")
        )
    elif settings.perplexity_api_key is None:
        fail(NO_KEY_MESSAGE.replace("is skipped", "needs it"))
    table = Table(title=f"Perplexity sentiment ({settings.perplexity_api} API)", show_lines=True)
    for column in ("asset", "label", "score", "confidence", "sources", "reasoning"):
        table.add_column(column, overflow="fold")
    failures, footer = 0, ""
    try:
        analyzer = SentimentAnalyzer(settings)
        for name in assets or assets_of(settings.tickers):
            try:
                r = analyzer.analyze_sentiment(name)
            except (RrrError, SymbolError) as exc:
                failures += 1
                table.add_row(name, "[red]failed[/]", "", "", "", str(exc))
                continue
            urls = "\n".join(str(s["url"]) for s in r.sources[:5]) or "(none returned)"
            score, conf = f"{r.sentiment_score:+.2f}", f"{r.confidence:.2f}"
            table.add_row(r.asset, r.sentiment_label, score, conf, urls, r.reasoning)
            cost = r.usage.get("cost_usd")
            footer = f"model {r.model}, source {r.source}" + (f", ${cost:.4f}/call" if cost else "")
    finally:
        if server is not None:
            server.stop()
    Console().print(table)
    if footer:
        Console().print(footer)
    if failures:
        raise typer.Exit(1)


@app.command("quality", context_settings={"allow_extra_args": True})
def quality(
    ctx: typer.Context,
    lookback_hours: float = typer.Option(24.0, "--lookback-hours", min=0.1, help="Hours back."),
    tickers: list[str] = typer.Option(None, "--tickers", help="Default: RRR_TICKERS."),  # noqa: B008
    record: bool = typer.Option(
        True, "--record/--no-record", help="Store new findings in system_events (deduped)."
    ),
) -> None:
    """Check recent data now, in-process (no broker), and print the issues by severity.

    Exits 1 when any issue is critical (for cron or CI). Gap repairs are requested by the beat
    task only; this command records findings and notes repaired gaps.
    """
    from datetime import UTC, datetime

    from rich.table import Table

    from rrr.config import parse_tickers
    from rrr.quality.validator import DataQualityValidator
    from rrr.storage import open_store_from_settings

    settings = load_settings()
    configure_logging(settings, to_file=False)
    logging.getLogger("rrr.quality").setLevel(logging.ERROR)  # the table already says it
    named = [*(tickers or []), *ctx.args]  # `--tickers A B` leaves B as an extra argument
    chosen = parse_tickers(" ".join(named), "--tickers") if named else settings.tickers
    try:
        store = open_store_from_settings(settings)
        store.migrate()
        validator = DataQualityValidator(store, settings, tickers=chosen)
        if record:
            issues = validator.run(lookback_hours).issues
        else:
            issues = validator.validate_recent_data(lookback_hours)
        store.close()
    except RrrError as exc:
        fail(f"{exc}. Check DATABASE_URL (or SUPABASE_URL and SUPABASE_SERVICE_KEY).")

    def utc(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")

    colours = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "dim"}
    table = Table(title=f"Data quality, last {lookback_hours:g} h: {', '.join(chosen)}")
    for column in ("severity", "check", "ticker", "window (UTC)"):
        table.add_column(column, no_wrap=True)
    table.add_column("message", overflow="fold")
    for i in issues:  # already most severe first
        start, end = utc(i.window_start_ms), utc(i.window_end_ms)
        window = f"{start} - {end[11:] if end[:10] == start[:10] else end}"
        severity = f"[{colours[i.severity]}]{i.severity}[/]"
        table.add_row(severity, i.check, i.ticker, window, i.message)
    out = Console()
    out.print(table if issues else "no issues found")
    for ticker, minutes in validator.minute_counts.items():
        out.print(f"missing minutes {ticker}: {minutes.describe()}")
    counts = {s: sum(i.severity == s for i in issues) for s in colours}
    out.print(", ".join(f"{n} {s}" for s, n in counts.items() if n) or "all checks passed")
    if counts["critical"]:
        raise typer.Exit(1)


@app.command("simulate", context_settings={"allow_extra_args": True})
def simulate(
    ctx: typer.Context,
    port: int = typer.Option(8765, "--port", help="WebSocket port (0 = any free port)."),
    http_port: int = typer.Option(8766, "--http-port", help="REST + control port."),
    rate: float = typer.Option(1000.0, "--rate", min=0, help="Events per second."),
    tickers: list[str] = typer.Option(None, "--tickers", help="Default: RRR_TICKERS."),  # noqa: B008
    events_per_frame: int = typer.Option(5, "--events-per-frame", min=1),
    seed: int = typer.Option(1, "--seed"),
    record: str | None = typer.Option(None, "--record", help="Write ground truth as JSONL."),
    max_seconds: float | None = typer.Option(None, "--max-seconds", help="Stop after N s."),
    key: list[str] = typer.Option(["sim-key"], "--key", help="Accepted API key(s)."),  # noqa: B008
    any_key: bool = typer.Option(False, "--any-key", help="Accept any non-empty key."),
    max_connections: int = typer.Option(1, "--max-connections", help="Per key; 0 = no limit."),
    second_bars: bool = typer.Option(False, "--second-bars", help="Also send XAS bars."),
    load_events: int = typer.Option(0, "--load-events", help="Load mode: total events."),
    load_rate: float = typer.Option(0.0, "--load-rate", help="Load mode events/s (0 = max)."),
    no_trades_plan: bool = typer.Option(
        False,
        "--no-trades-plan",
        help="Answer /v3/trades 403 NOT_AUTHORIZED (a plan without trades).",
    ),
) -> None:
    """Run the local Polygon/Massive simulator (WebSocket + REST + Perplexity) on 127.0.0.1."""
    from pathlib import Path

    from rrr.config import parse_tickers
    from rrr.simulator.server import simulate_command

    settings = load_settings()
    configure_logging(settings, to_file=False)
    named = [*(tickers or []), *ctx.args]  # `--tickers A B` leaves B as an extra argument
    chosen = parse_tickers(" ".join(named), "--tickers") if named else settings.tickers
    simulate_command(
        port=port,
        http_port=http_port,
        rate=rate,
        tickers=chosen,
        events_per_frame=events_per_frame,
        seed=seed,
        record=Path(record) if record else None,
        max_seconds=max_seconds,
        keys=tuple(key),
        any_key=any_key,
        max_connections=max_connections,
        second_bars=second_bars,
        load_events=load_events,
        load_rate=load_rate,
        trades_authorized=not no_trades_plan,
        say=lambda line: print(line, flush=True),  # stdout, unwrapped: scripts read the URLs
    )


@app.command("backfill", context_settings={"allow_extra_args": True})
def backfill(
    ctx: typer.Context,
    tickers: list[str] = typer.Option(None, "--tickers", help="Default: RRR_TICKERS."),  # noqa: B008
    months: int | None = typer.Option(None, "--months", help="The last N months (default 6)."),
    start: str | None = typer.Option(None, "--start", help="First day, e.g. 2026-05-01 (UTC)."),
    end: str | None = typer.Option(None, "--end", help="Day after the last, e.g. 2026-11-01."),
    timespan: str = typer.Option("minute", "--timespan", help="minute, hour, day, second ..."),
    multiplier: int = typer.Option(1, "--multiplier", help="Bar size in timespans, e.g. 5."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Show progress until done."),
) -> None:
    """Load historical bars from REST: plan chunks, enqueue them on the backfill queue, show
    progress. Re-running the same command continues it; Ctrl-C stops watching, not the work."""
    import importlib

    import redis

    from rrr.backfill import plan as planning
    from rrr.backfill.watch import clock_text, watch_plan
    from rrr.broker import reachable_redis_url
    from rrr.clock import now_ms
    from rrr.errors import StorageError
    from rrr.ratelimit import requests_granted
    from rrr.storage import open_store_from_settings

    settings = load_settings()
    configure_logging(settings, to_file=False)
    named = [*(tickers or []), *ctx.args]  # `--tickers A B` leaves B as an extra argument
    try:
        request = planning.request_from_flags(
            named or settings.tickers,
            months=months,
            start=start,
            end=end,
            multiplier=multiplier,
            timespan=timespan,
            now_ms=now_ms(),
        )
        plan = planning.plan_backfill(request)
    except planning.PlanError as exc:
        fail(str(exc))
    try:
        # The broker first: with none, nothing is written (no schema, no plan, no chunks).
        broker = reachable_redis_url(settings)
        store = open_store_from_settings(settings)
        store.migrate()
        # rrr.cli composes (STYLE.md): the task module is imported by name, so the layering
        # test, which walks every import under rrr/, keeps guarding the library proper.
        enqueued = importlib.import_module("tasks.backfill").enqueue_plan(store, plan)
    except StorageError as exc:
        fail(f"{exc}. Check DATABASE_URL (or SUPABASE_URL and SUPABASE_SERVICE_KEY).")
    except RrrError as exc:
        fail(str(exc))
    rate = settings.polygon_rate_limit
    eta_s = planning.estimate_duration_s(len(enqueued), rate)
    console.print(
        f"plan {plan.plan_id}: {', '.join(request.tickers)} {request.multiplier} "
        f"{request.timespan} bars [{planning.iso(request.start_ms)}, "
        f"{planning.iso(request.end_ms)}): {len(plan.chunks)} chunks, {len(enqueued)} to "
        f"fetch; rate limit {rate or 'off'}; ETA >= {clock_text(eta_s)}"
        + (
            f" [yellow](no POLYGON_API_KEY: simulated data from {settings.polygon_rest_url})[/]"
            if settings.simulated
            else ""
        )
    )
    if not enqueued:
        done = store.chunk_progress(plan.plan_id)
        console.print(
            f"nothing to do: {done.done}/{done.total} chunks done, {done.bars_stored:,} bars"
        )
        return
    if not wait:
        console.print(
            "enqueued; watch with `rrr status`, Flower (queue 'backfill'), or this command "
            "again with --wait (it continues the same plan)"
        )
        return
    client = redis.Redis.from_url(broker)
    try:
        final = watch_plan(
            store,
            plan,
            requests_granted=lambda: requests_granted(client),
            rate=rate,
            console=console,
        )
    except KeyboardInterrupt:
        console.print("stopped watching; the workers carry on (re-run to watch again)")
        return
    console.print(f"{final.done}/{final.total} chunks done, {final.bars_stored:,} bars stored")
    if final.failed:
        fail(f"{final.failed} chunks failed; last error: {final.last_error}", code=1)


@app.command("run", context_settings={"allow_extra_args": True})
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
) -> None:
    """The whole pipeline: embedded Redis (no REDIS_URL), simulator (no POLYGON_API_KEY),
    Celery worker, beat, stream worker and Flower. Ctrl-C stops them all."""
    from rrr.config import parse_tickers
    from rrr.runner import RunOptions, run_pipeline

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
    configure_logging(settings)
    options = RunOptions(
        with_sentiment=not no_sentiment,
        flower=not no_flower,
        flower_port=flower_port,
        max_seconds=max_seconds,
    )
    try:
        code = run_pipeline(settings, options, emit=lambda line: print(line, flush=True))
    except RrrError as exc:
        fail(str(exc))
    raise typer.Exit(code)


@app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    role: str = typer.Argument(..., help="ingest or backfill (backfill also takes default)."),
) -> None:
    """A Celery worker for one role (Procfile `ingest:` and `backfill:`): its queues and its
    processes from RRR_INGEST_CONCURRENCY / RRR_BACKFILL_CONCURRENCY. Further options go to
    `celery worker` as they are."""
    import os

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
    os.execv(argv[0], argv)  # the same pid: honcho's and Heroku's signals reach Celery itself


@app.command("stream")
def stream(
    max_messages: int = typer.Option(None, "--max-messages", min=1, help="Stop after N events."),
    max_seconds: float = typer.Option(None, "--max-seconds", min=0.1, help="Stop after S s."),
) -> None:
    """Run the stream worker: WebSocket -> parse -> batch -> journal (var/journal) -> insert_batch
    tasks. An item leaves the journal once stored or set aside, so a broker outage or a kill
    loses nothing. SIGTERM flushes the open batch and exits 0."""
    import importlib

    from rrr.broker import resolve_redis_url
    from rrr.broker_persistence import check_broker_persistence
    from rrr.errors import VendorAuthError

    settings = load_settings()
    configure_logging(settings)
    try:
        check_broker_persistence(resolve_redis_url(settings), "stream worker")
    except ConfigError:
        pass  # no broker at all: run_stream below says so, with the fix
    try:
        # rrr.cli composes (STYLE.md): imported by name, so the layering test over rrr/ holds.
        importlib.import_module("workers.stream_process").run_stream(
            settings, max_messages=max_messages, max_seconds=max_seconds
        )
    except VendorAuthError as exc:
        fail(str(exc), code=3)  # a refused key: exit at once, no reconnect storm
    except RrrError as exc:
        fail(str(exc))


@app.command("status")
def status() -> None:
    """Stream worker stats, queue lengths and row counts, as a table."""
    from datetime import UTC, datetime
    from pathlib import Path

    import redis
    from rich.markup import escape
    from rich.table import Table

    from rrr.broker import resolve_redis_url
    from rrr.broker_persistence import probe_persistence
    from rrr.clock import now_ms
    from rrr.quality.validator import DataQualityValidator
    from rrr.stats import get_stats
    from rrr.storage import open_store_from_settings
    from rrr.storage.base import POISON_KIND, TABLES

    settings = load_settings()
    configure_logging(settings, to_file=False)
    table = Table(title="rrr status", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    unreachable: list[str] = []  # non-empty: the command exits 1, for scripts and monitors
    try:
        broker_url = resolve_redis_url(settings)
        client = redis.Redis.from_url(broker_url, socket_timeout=2.0)
        s = get_stats(client, now_ms())
        queues = {q: int(client.llen(q)) for q in ("ingest", "backfill", "default")}
    except (ConfigError, redis.RedisError) as exc:
        s, queues = {}, {}
        table.add_row("broker", f"[red]unreachable[/]: {escape(str(exc))} (REDIS_URL)")
        unreachable.append("broker (REDIS_URL)")
    else:
        durability = probe_persistence(broker_url)
        colour = "green" if durability.ok else ("yellow" if not durability.checked else "red")
        table.add_row("broker", f"[{colour}]{escape(durability.summary())}[/]")
    if s:
        ws, batches, spool = s["websocket"], s.get("batches", {}), s.get("spool", {})
        state = "[green]connected[/]" if ws.get("connected") else "[red]not connected[/]"
        table.add_row("stream worker", state if s["alive"] else "[red]not running[/]")
        if s["alive"]:
            last = ws.get("last_message_ms") or 0
            when = datetime.fromtimestamp(last / 1000, UTC).strftime("%H:%M:%S") if last else "-"
            kinds = ", ".join(f"{k} {v:,}" for k, v in ws.get("messages_by_kind", {}).items())
            table.add_row("feed", str(ws.get("url", "")))
            table.add_row("records", f"{ws.get('record_count', 0):,} ({kinds}); last {when} UTC")
            table.add_row(
                "rejected / reconnects / gaps",
                f"{ws.get('rejected_count', 0)} / {ws.get('reconnects', 0)} / {ws.get('gaps', 0)}",
            )
            table.add_row(
                "lag p50 / p99",
                f"{s.get('lag_ms', {}).get('p50', 0):.0f} / "
                f"{s.get('lag_ms', {}).get('p99', 0):.0f} ms (exchange time -> enqueue)",
            )
            table.add_row(
                "batches published / journaled",
                f"{batches.get('published', 0):,} / {batches.get('spooled', 0):,}",
            )
            table.add_row(
                "journal",
                f"{spool.get('bytes', 0) / 1e6:.1f} of {spool.get('max_bytes', 0) / 1e6:.0f} MB",
            )
    for name, length in queues.items():
        table.add_row(f"queue {name}", f"{length:,}")
    database = settings.resolved_database_url
    sqlite_path = (
        Path(database.removeprefix("sqlite:///")) if database.startswith("sqlite") else None
    )
    if sqlite_path is not None and not sqlite_path.exists():
        # Opening it would create an empty file: a status leaves no trace behind.
        table.add_row(
            "database",
            f"[yellow]none yet[/] at {sqlite_path}: `rrr db migrate` or `rrr run` creates it"
            " (DATABASE_URL)",
        )
    else:
        try:
            store = open_store_from_settings(settings)
            for name in TABLES:
                table.add_row(f"rows {name}", f"{store.count_rows(name):,}")
            quality = DataQualityValidator(store, settings)
            quality.validate_recent_data(lookback_hours=24)
            for ticker, minutes in quality.minute_counts.items():
                table.add_row(f"missing minutes 24h {ticker}", minutes.describe())
            poison = store.count_dead_letters(POISON_KIND)
            colour = "red" if poison else "green"
            table.add_row(
                "poison messages",
                f"[{colour}]{poison:,}[/] (set aside after every delivery failed)",
            )
            store.close()
        except RrrError as exc:
            table.add_row("database", f"[red]unreachable[/]: {escape(str(exc))} (DATABASE_URL)")
            unreachable.append("database (DATABASE_URL)")
    Console().print(table)
    if unreachable:
        fail(f"unreachable: {', '.join(unreachable)}", code=1)


@app.command("flower")
def flower(
    address: str = typer.Option("127.0.0.1", "--address", help="Bind address."),
    port: int = typer.Option(5555, "--port", min=1, max=65535),
) -> None:
    """Flower, the Celery dashboard, on the pipeline's broker. Basic auth comes from
    FLOWER_BASIC_AUTH and is required on any address but loopback (Procfile `web:`)."""
    import os

    from rrr.broker import resolve_redis_url
    from rrr.runner import flower_command

    settings = load_settings()
    try:
        redis_url = resolve_redis_url(settings)
        argv, env = flower_command(settings, address, port)
    except ConfigError as exc:
        fail(str(exc))
    os.execvpe(argv[0], argv, {**env, "REDIS_URL": redis_url})


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
