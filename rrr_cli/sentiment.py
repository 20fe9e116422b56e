"""``rrr sentiment``: score news sentiment now, in-process, and print it; nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from rrr.config import SIMULATOR_KEY, Secret, Settings
from rrr.errors import RrrError
from rrr.logs import configure_logging
from rrr.symbols import SymbolError
from rrr_cli.console import fail, load_settings

if TYPE_CHECKING:
    from rrr.sentiment.analyzer import SentimentResult


@dataclass(frozen=True)
class Scored:
    """One asset's answer, or why there is none."""

    asset: str
    result: SentimentResult | None = None
    error: str = ""


def score_assets(settings: Settings, assets: list[str]) -> Iterator[Scored]:
    """Each asset scored in turn; a failure is reported for its asset and the rest go on."""
    from rrr.sentiment.analyzer import SentimentAnalyzer, assets_of

    analyzer = SentimentAnalyzer(settings)
    for name in assets or assets_of(settings.tickers):
        try:
            yield Scored(name, analyzer.analyze_sentiment(name))
        except (RrrError, SymbolError) as exc:
            yield Scored(name, error=str(exc))


def sentiment(
    assets: list[str] = typer.Argument(None, help="Assets like BTC ETH (default: RRR_TICKERS)."),  # noqa: B008
    simulator: bool = typer.Option(
        False, "--simulator", help="Ask a simulated Perplexity started in-process (no key needed)."
    ),
    api: str | None = typer.Option(None, "--api", help="agent (default) or sonar."),
    model: str | None = typer.Option(None, "--model", help="Overrides PERPLEXITY_MODEL."),
) -> None:
    """Score news sentiment now (in-process, no Celery) and print it; nothing is stored."""
    from rrr.sentiment.analyzer import NO_KEY_MESSAGE
    from rrr.simulator.http import SimulatorHTTPServer
    from rrr.simulator.perplexity import perplexity_routes

    if api not in (None, "agent", "sonar"):
        fail(f"--api {api!r} must be 'agent' or 'sonar'")
    settings = load_settings(perplexity_api=api, perplexity_model=model)
    configure_logging(settings)  # the log file too; the console is stderr
    server = None
    if simulator:  # the same client path, against the local double on 127.0.0.1
        server = SimulatorHTTPServer(perplexity_routes()).start()
        settings = settings.with_overrides(
            perplexity_base_url=server.base_url, perplexity_api_key=Secret(SIMULATOR_KEY)
        )
    elif settings.perplexity_api_key is None:
        fail(NO_KEY_MESSAGE.replace("is skipped", "needs it"))
    table = Table(title=f"Perplexity sentiment ({settings.perplexity_api} API)", show_lines=True)
    for column in ("asset", "label", "score", "confidence", "sources", "reasoning"):
        table.add_column(column, overflow="fold")
    failures, footer = 0, ""
    try:
        for scored in score_assets(settings, assets):
            r = scored.result
            if r is None:
                failures += 1
                table.add_row(scored.asset, "[red]failed[/]", "", "", "", scored.error)
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
