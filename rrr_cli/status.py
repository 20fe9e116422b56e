"""``rrr status``: what the broker, the stream worker and the database say, as a table.

``read_status`` gathers (and never raises for an unreachable part: it records why);
``status`` renders. Exits 1 when the broker or the database cannot be reached, for scripts
and monitors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rrr.config import Settings
from rrr.logs import configure_logging
from rrr_cli.console import fail, load_settings

if TYPE_CHECKING:
    from rrr.broker_persistence import Persistence

QUEUES = ("ingest", "backfill", "default")


@dataclass
class BrokerStatus:
    error: str | None = None  # why it could not be reached
    persistence: Persistence | None = None
    stats: dict[str, Any] = field(default_factory=dict)  # the stream worker's, from Redis
    queues: dict[str, int] = field(default_factory=dict)  # queue -> messages waiting


@dataclass
class DatabaseStatus:
    error: str | None = None  # why it could not be reached
    sqlite_missing: Path | None = None  # a SQLite file not created yet (status creates none)
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows
    missing_minutes: dict[str, str] = field(default_factory=dict)  # ticker -> last 24 h
    poison: int | None = None  # messages set aside after every delivery failed


@dataclass
class Status:
    broker: BrokerStatus
    database: DatabaseStatus

    @property
    def unreachable(self) -> list[str]:
        return [
            *(["broker (REDIS_URL)"] if self.broker.error is not None else []),
            *(["database (DATABASE_URL)"] if self.database.error is not None else []),
        ]


def read_broker_status(settings: Settings) -> BrokerStatus:
    import redis

    from rrr.broker import resolve_redis_url
    from rrr.broker_persistence import probe_persistence
    from rrr.clock import now_ms
    from rrr.errors import ConfigError
    from rrr.stats import get_stats

    try:
        broker_url = resolve_redis_url(settings)
        client = redis.Redis.from_url(broker_url, socket_timeout=2.0)
        stats = get_stats(client, now_ms())
        queues = {q: int(client.llen(q)) for q in QUEUES}
    except (ConfigError, redis.RedisError) as exc:
        return BrokerStatus(error=str(exc))
    return BrokerStatus(persistence=probe_persistence(broker_url), stats=stats, queues=queues)


def read_database_status(settings: Settings) -> DatabaseStatus:
    from rrr.errors import RrrError
    from rrr.quality.validator import DataQualityValidator
    from rrr.storage import open_store_from_settings
    from rrr.storage.base import POISON_KIND, TABLES

    database = settings.resolved_database_url
    if database.startswith("sqlite"):
        path = Path(database.removeprefix("sqlite:///"))
        if not path.exists():  # opening it would create an empty file
            return DatabaseStatus(sqlite_missing=path)
    found = DatabaseStatus()  # filled as it goes: a failure keeps what was read before it
    try:
        store = open_store_from_settings(settings)
        for name in TABLES:
            found.rows[name] = store.count_rows(name)
        quality = DataQualityValidator(store, settings)
        quality.validate_recent_data(lookback_hours=24)
        for ticker, minutes in quality.minute_counts.items():
            found.missing_minutes[ticker] = minutes.describe()
        found.poison = store.count_dead_letters(POISON_KIND)
        store.close()
    except RrrError as exc:
        found.error = str(exc)
    return found


def read_status(settings: Settings) -> Status:
    return Status(read_broker_status(settings), read_database_status(settings))


def add_broker_rows(table: Table, broker: BrokerStatus) -> None:
    if broker.error is not None:
        table.add_row("broker", f"[red]unreachable[/]: {escape(broker.error)} (REDIS_URL)")
    elif broker.persistence is not None:
        durability = broker.persistence
        colour = "green" if durability.ok else ("yellow" if not durability.checked else "red")
        table.add_row("broker", f"[{colour}]{escape(durability.summary())}[/]")
    s = broker.stats
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
    for name, length in broker.queues.items():
        table.add_row(f"queue {name}", f"{length:,}")


def add_database_rows(table: Table, database: DatabaseStatus) -> None:
    if database.sqlite_missing is not None:
        table.add_row(
            "database",
            f"[yellow]none yet[/] at {database.sqlite_missing}: `rrr db migrate` or `rrr run` "
            "creates it (DATABASE_URL)",
        )
        return
    for name, count in database.rows.items():
        table.add_row(f"rows {name}", f"{count:,}")
    for ticker, described in database.missing_minutes.items():
        table.add_row(f"missing minutes 24h {ticker}", described)
    if database.poison is not None:
        colour = "red" if database.poison else "green"
        table.add_row(
            "poison messages",
            f"[{colour}]{database.poison:,}[/] (set aside after every delivery failed)",
        )
    if database.error is not None:
        table.add_row("database", f"[red]unreachable[/]: {escape(database.error)} (DATABASE_URL)")


def status() -> None:
    """Stream worker stats, queue lengths and row counts, as a table."""
    settings = load_settings()
    configure_logging(settings, to_file=False)
    report = read_status(settings)
    table = Table(title="rrr status", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    add_broker_rows(table, report.broker)
    add_database_rows(table, report.database)
    Console().print(table)
    if report.unreachable:
        fail(f"unreachable: {', '.join(report.unreachable)}", code=1)
