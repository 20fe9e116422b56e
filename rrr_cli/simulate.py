"""``rrr simulate``: the local Polygon/Massive simulator (WebSocket + REST + Perplexity)."""

from __future__ import annotations

from pathlib import Path

import typer

from rrr.config import SIMULATOR_KEY
from rrr.logs import configure_logging
from rrr_cli.console import load_settings, tickers_named


def simulate(
    ctx: typer.Context,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (another machine's clients: its own)."
    ),
    port: int = typer.Option(8765, "--port", help="WebSocket port (0 = any free port)."),
    http_port: int = typer.Option(8766, "--http-port", help="REST + control port."),
    rate: float = typer.Option(1000.0, "--rate", min=0, help="Events per second."),
    tickers: list[str] = typer.Option(None, "--tickers", help="Default: RRR_TICKERS."),  # noqa: B008
    events_per_frame: int = typer.Option(5, "--events-per-frame", min=1),
    seed: int = typer.Option(1, "--seed"),
    record: str | None = typer.Option(None, "--record", help="Write ground truth as JSONL."),
    max_seconds: float | None = typer.Option(None, "--max-seconds", help="Stop after N s."),
    key: list[str] = typer.Option([SIMULATOR_KEY], "--key", help="Accepted API key(s)."),  # noqa: B008
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
    """Run the local Polygon/Massive simulator (WebSocket + REST + Perplexity), on 127.0.0.1
    unless --host names another address."""
    from rrr.simulator.server import simulate_command

    settings = load_settings()
    configure_logging(settings, to_file=False)
    simulate_command(
        host=host,
        port=port,
        http_port=http_port,
        rate=rate,
        tickers=tickers_named(tickers, ctx.args, settings),
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
