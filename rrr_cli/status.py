"""``rrr status``: is the data fresh? One snapshot of the broker, the stream worker, the Celery
workers and the database, judged by rrr.status_level, as a table, as JSON (``--json``, its keys
documented in the README and kept stable: ``schema`` changes when one changes meaning) or live
(``--watch``). Exit code: 0 fresh, 1 stale or degraded, 2 down.

``read_snapshot`` gathers and never raises for a part that does not answer: it records why.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table

from rrr.config import Settings, redact_url
from rrr.logs import configure_logging, redact, secrets_of
from rrr.status_level import Thresholds, Verdict, judge
from rrr.task_names import QUEUE_BACKFILL, QUEUE_DEFAULT, QUEUE_INGEST
from rrr_cli.console import load_settings

if TYPE_CHECKING:
    from rrr.storage import Store

SCHEMA = 1
QUEUES = (QUEUE_INGEST, QUEUE_BACKFILL, QUEUE_DEFAULT)
INSPECT_TIMEOUT_S = 1.0  # how long live Celery workers have to answer a ping
QUALITY_WINDOW_MS = 24 * 3_600_000  # findings of the last day count as open


def read_snapshot(settings: Settings, now_ms: int | None = None) -> dict[str, Any]:
    from rrr.clock import now_ms as clock_now_ms

    now_ms = clock_now_ms() if now_ms is None else now_ms
    snapshot: dict[str, Any] = {"schema": SCHEMA, "generated_ms": now_ms}
    snapshot |= _read_broker(settings, now_ms)
    snapshot |= _read_database(settings, now_ms)
    thresholds = Thresholds(settings.stale_after_s, settings.queue_depth_max)
    # What a part said when it failed may quote its URL: no password or key leaves here.
    for part in (snapshot["broker"], snapshot["database"]):
        if part["error"] is not None:
            part["error"] = redact(part["error"], secrets_of(settings))
    verdict = judge(snapshot, thresholds)
    snapshot |= {
        "level": verdict.level,
        "exit_code": verdict.exit_code,
        "reasons": list(verdict.reasons),
        "warnings": _warnings(snapshot),
        "thresholds": {
            "stale_after_s": thresholds.stale_after_s,
            "queue_depth_max": thresholds.queue_depth_max,
        },
    }
    return snapshot


def _stream_section(stats: dict[str, Any], now_ms: int) -> dict[str, Any]:
    ws, worker = stats.get("websocket", {}), stats.get("worker", {})
    beat_ms, started_ms = worker.get("heartbeat_ms"), worker.get("started_ms")
    up_s = (beat_ms - started_ms) / 1000 if beat_ms and started_ms else 0.0
    messages = int(ws.get("message_count", 0))
    spool, batches = stats.get("spool", {}), stats.get("batches", {})
    return {
        "alive": bool(stats.get("alive")),
        "connected": bool(ws.get("connected")),
        "url": ws.get("url"),
        "heartbeat_age_s": round((now_ms - beat_ms) / 1000, 3) if beat_ms else None,
        "messages": messages,
        "messages_per_s": round(messages / up_s, 1) if up_s > 0 else 0.0,  # since it started
        "records": int(ws.get("record_count", 0)),
        "rejected": int(ws.get("rejected_count", 0)),
        "reconnects": int(ws.get("reconnects", 0)),
        "gaps": int(ws.get("gaps", 0)),
        "lag_ms": {
            "p50": stats.get("lag_ms", {}).get("p50", 0.0),
            "p99": stats.get("lag_ms", {}).get("p99", 0.0),
        },
        "journal": {
            "bytes": int(spool.get("bytes", 0)),
            "max_bytes": int(spool.get("max_bytes", 0)),
        },
        # The batch limits in force (0: a stream worker from before they were reported).
        "batches": {
            "size_limit": int(batches.get("size_limit", 0)),
            "max_age_ms": int(batches.get("max_age_ms", 0)),
            "growth": int(batches.get("growth", 1)),
        },
        "lease": stats.get("lease"),  # a standby's lease, when the stream worker has one
        "stats": stats,  # rrr.stats.get_stats as it is
    }


def _read_broker(settings: Settings, now_ms: int) -> dict[str, Any]:
    import redis

    from rrr.broker import resolve_redis_url
    from rrr.broker_persistence import probe_persistence
    from rrr.errors import ConfigError
    from rrr.stats import get_stats

    broker: dict[str, Any] = {"reachable": False, "url": None, "error": None, "persistence": None}
    empty = {"broker": broker, "queues": {}, "workers": None, "stream": _stream_section({}, now_ms)}
    try:
        url = resolve_redis_url(settings)
        broker["url"] = redact_url(url)
        client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        try:
            stats = get_stats(client, now_ms)
            queues = {q: int(client.llen(q)) for q in QUEUES}
        finally:
            client.close()
    except (ConfigError, redis.RedisError, ValueError) as exc:  # ValueError: a malformed URL
        broker["error"] = f"{type(exc).__name__}: {exc}"
        return empty
    durability = probe_persistence(url)
    broker |= {
        "reachable": True,
        "persistence": {
            "checked": durability.checked,
            "ok": durability.ok,
            "summary": durability.summary(),
        },
    }
    stream = _stream_section(stats, now_ms)
    return {"broker": broker, "queues": queues, "workers": _live_workers(url), "stream": stream}


def _live_workers(url: str) -> dict[str, list[str]] | None:
    """{queue: [worker names]} of the Celery workers that answer within INSPECT_TIMEOUT_S;
    None when they could not be asked."""
    from celery import Celery

    app = Celery("rrr-status", broker=url)
    try:
        replies = app.control.inspect(timeout=INSPECT_TIMEOUT_S).active_queues() or {}
    except Exception:  # Celery wraps the transport's errors in many types
        logging.getLogger(__name__).warning("could not ask the Celery workers", exc_info=True)
        return None
    finally:
        app.close()
    found: dict[str, list[str]] = {q: [] for q in QUEUES}
    for worker, queues in sorted(replies.items()):
        for queue in queues or []:
            found.setdefault(str(queue["name"]), []).append(worker)
    return found


def _read_database(settings: Settings, now_ms: int) -> dict[str, Any]:
    from rrr.errors import RrrError
    from rrr.storage import open_store_from_settings
    from rrr.storage.base import POISON_KIND, TABLES
    from rrr.storage.status_reads import (
        backfill_progress,
        latest_sentiments,
        quality_findings,
        ticker_activity,
    )

    database: dict[str, Any] = {"reachable": False, "error": None, "rows": {}, "poison": None}
    found: dict[str, Any] = {
        "missing_minutes": {},
        "database": database,
        "tickers": {},
        "backfill": None,
        "quality": None,
        "sentiment": {},
    }
    url = settings.resolved_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        database["error"] = (
            f"no database yet at {url.removeprefix('sqlite:///')}: `rrr db migrate` or `rrr run`"
            " creates it (DATABASE_URL)"
        )
        return found  # opening it would create an empty file
    try:
        store = open_store_from_settings(settings)
        try:
            activity = ticker_activity(store, settings.tickers, now_ms)
            found["tickers"] = {
                ticker: {kind: a.to_dict(now_ms) for kind, a in kinds.items()}
                for ticker, kinds in activity.items()
            }
            found["backfill"] = backfill_progress(store)
            found["quality"] = quality_findings(store, now_ms - QUALITY_WINDOW_MS)
            found["sentiment"] = latest_sentiments(store)
            database["rows"] = {name: store.count_rows(name) for name in TABLES}
            database["poison"] = store.count_dead_letters(POISON_KIND)
            found["missing_minutes"] = _missing_minutes(store, settings)
            database["reachable"] = True
        finally:
            store.close()
    except RrrError as exc:
        database["error"] = f"{type(exc).__name__}: {exc}"
    return found


def _missing_minutes(store: Store, settings: Settings) -> dict[str, dict[str, Any]]:
    """Each ticker's missing minutes of the last 24 h by what is known of them (confirmed
    quiet, repaired, open), as the quality validator counts them; nothing is recorded."""
    from rrr.quality.validator import DataQualityValidator

    counts = DataQualityValidator(store, settings).count_missing_minutes(lookback_hours=24)
    return {
        ticker: {**minutes.to_dict(), "described": minutes.describe()}
        for ticker, minutes in counts.items()
    }


def _warnings(snapshot: dict[str, Any]) -> list[str]:
    """What changes no level but someone should fix."""
    found = []
    persistence = snapshot["broker"]["persistence"]
    if persistence is not None and not persistence["ok"]:
        found.append(f"broker {persistence['summary']}")
    if snapshot["database"]["poison"]:
        found.append(f"{snapshot['database']['poison']:,} poison messages set aside (dead_letters)")
    quality = snapshot["quality"] or {}
    for severity in ("critical", "error"):
        if quality.get("by_severity", {}).get(severity):
            n = quality["by_severity"][severity]
            found.append(f"{n} {severity} data-quality findings in the last 24 h")
    return found


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


LEVEL_COLOURS = {"fresh": "green", "degraded": "yellow", "stale": "yellow", "down": "red"}


def render(snapshot: dict[str, Any]) -> Group:
    """The snapshot as tables: the verdict, the processes, then the data per ticker."""
    colour = LEVEL_COLOURS[snapshot["level"]]
    head = Table(title="rrr status", show_header=False)
    head.add_column("what", style="bold")
    head.add_column("value")
    head.add_row(
        "verdict",
        f"[bold {colour}]{snapshot['level'].upper()}[/] "
        f"(exit {snapshot['exit_code']}) at {_when(snapshot['generated_ms'])} UTC",
    )
    for reason in snapshot["reasons"]:
        head.add_row("", f"[{colour}]{escape(reason)}[/]")
    for warning in snapshot["warnings"]:
        head.add_row("warning", f"[yellow]{escape(warning)}[/]")
    _process_rows(head, snapshot)
    _data_rows(head, snapshot)
    tickers = Table(title="per ticker", show_lines=False)
    for column in ("ticker", "kind", "newest (UTC)", "lag", "rows 5 min", "rows 1 h"):
        tickers.add_column(column, justify="left" if column in ("ticker", "kind") else "right")
    for ticker, kinds in snapshot["tickers"].items():
        for kind, a in kinds.items():
            lag = "-" if a["lag_s"] is None else f"{a['lag_s']:,.1f} s"
            tickers.add_row(
                ticker, kind, _when(a["last_ms"]), lag, _count(a["rows_5m"]), _count(a["rows_1h"])
            )
    return Group(head, tickers) if snapshot["tickers"] else Group(head)


def _process_rows(table: Table, snapshot: dict[str, Any]) -> None:
    broker, stream = snapshot["broker"], snapshot["stream"]
    if not broker["reachable"]:
        table.add_row("broker", f"[red]unreachable[/]: {escape(str(broker['error']))} (REDIS_URL)")
        return
    persistence = broker["persistence"]
    table.add_row("broker", f"{broker['url']}: {escape(persistence['summary'])}")
    if not stream["alive"]:
        table.add_row("stream worker", "[red]not running[/]")
    else:
        state = "[green]connected[/]" if stream["connected"] else "[red]not connected[/]"
        table.add_row(
            "stream worker",
            f"{state} to {stream['url']}, heartbeat {stream['heartbeat_age_s']:.0f} s ago",
        )
        table.add_row(
            "messages",
            f"{stream['messages']:,} ({stream['messages_per_s']:,.0f}/s "
            f"since start), rejected {stream['rejected']:,}",
        )
        table.add_row("reconnects / gaps", f"{stream['reconnects']} / {stream['gaps']}")
        table.add_row(
            "lag p50 / p99",
            f"{stream['lag_ms']['p50']:.0f} / "
            f"{stream['lag_ms']['p99']:.0f} ms (exchange time -> enqueue)",
        )
        journal = stream["journal"]
        table.add_row(
            "journal", f"{journal['bytes'] / 1e6:.1f} of {journal['max_bytes'] / 1e6:.0f} MB"
        )
        limits = stream["batches"]
        if limits["size_limit"]:
            grown = limits["growth"]
            table.add_row(
                "batches close at",
                f"{limits['size_limit']:,} rows or {limits['max_age_ms']:,} ms"
                + (f" ([yellow]x{grown}[/]: the store is behind)" if grown > 1 else ""),
            )
    if stream["lease"]:  # a standby pair's lease: whatever it records (holder, takeovers ...)
        lease = stream["lease"]
        shown = (
            ", ".join(f"{k} {v}" for k, v in lease.items()) if isinstance(lease, dict) else lease
        )
        table.add_row("stream lease", escape(str(shown)))
    table.add_row("queues", ", ".join(f"{q} {n:,}" for q, n in snapshot["queues"].items()))
    workers = snapshot["workers"]
    if workers is None:
        table.add_row("celery workers", "[yellow]could not be asked[/]")
    else:
        for queue, names in workers.items():
            shown_names = ", ".join(names) if names else "[red]none live[/]"
            table.add_row(f"workers on {queue}", shown_names)


def _data_rows(table: Table, snapshot: dict[str, Any]) -> None:
    database = snapshot["database"]
    if not database["reachable"]:
        table.add_row(
            "database",
            f"[red]unreachable[/]: {escape(str(database['error']))}"
            " (DATABASE_URL, or SUPABASE_URL for Supabase)",
        )
        return
    rows = database["rows"]
    table.add_row("rows", ", ".join(f"{t} {n:,}" for t, n in rows.items() if n) or "none")
    for ticker, minutes in snapshot["missing_minutes"].items():
        table.add_row(f"missing minutes 24h {ticker}", minutes["described"])
    colour = "red" if database["poison"] else "green"
    table.add_row(
        "poison messages",
        f"[{colour}]{database['poison']:,}[/] (set aside after every delivery failed)",
    )
    backfill = snapshot["backfill"]
    if backfill is not None and backfill["chunks"]:
        chunks = ", ".join(f"{s} {n}" for s, n in sorted(backfill["chunks"].items()))
        table.add_row("backfill", f"chunks {chunks}; {backfill['bars_stored']:,} bars stored")
    quality = snapshot["quality"] or {}
    severities = ", ".join(f"{s} {n}" for s, n in quality.get("by_severity", {}).items()) or "none"
    table.add_row(
        "quality (24 h)",
        f"last event {_when(quality.get('last_event_ms'))} UTC; findings: {severities}",
    )
    for asset, s in snapshot["sentiment"].items():
        table.add_row(
            f"sentiment {asset}",
            f"{s['label']} {s['score']:+.2f} (confidence "
            f"{s['confidence']:.2f}, {s['source']}) at {_when(s['ts_ms'])} UTC",
        )


def status(
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout (keys: README)."),
    watch: bool = typer.Option(False, "--watch", help="Refresh until Ctrl-C."),
    interval: float = typer.Option(2.0, "--interval", min=0.5, help="Seconds between refreshes."),
) -> None:
    """Is the data fresh? Broker, stream worker, Celery workers, queues and per-ticker freshness.
    Exit code 0 fresh, 1 stale or degraded, 2 down (thresholds: RRR_STALE_AFTER_S,
    RRR_QUEUE_DEPTH_MAX)."""
    settings = load_settings()
    # stdout carries the result; warnings go to stderr, everything to LOG_FILE.
    configure_logging(settings, console="stderr", console_level=logging.WARNING)
    if watch:
        raise typer.Exit(_watch(settings, interval, as_json))
    snapshot = read_snapshot(settings)
    if as_json:
        print(json.dumps(snapshot, default=str))
    else:
        Console().print(render(snapshot))
    raise typer.Exit(snapshot["exit_code"])


def _watch(settings: Settings, interval_s: float, as_json: bool) -> int:
    """Refresh until Ctrl-C; the exit code is the last snapshot's. ``--json``: one line each."""
    from rich.live import Live

    code = Verdict("down", ()).exit_code
    try:
        if as_json:
            while True:
                snapshot = read_snapshot(settings)
                print(json.dumps(snapshot, default=str), flush=True)
                code = snapshot["exit_code"]
                time.sleep(interval_s)
        with Live(render(snapshot := read_snapshot(settings)), auto_refresh=False) as live:
            code = snapshot["exit_code"]
            while True:
                time.sleep(interval_s)
                snapshot = read_snapshot(settings)
                code = snapshot["exit_code"]
                live.update(render(snapshot), refresh=True)
    except KeyboardInterrupt:
        return code
