"""``DataPipelineOrchestrator``: the original system's one-process pipeline (WebSocket stream,
sentiment every 15 minutes, quality checks every 5) over the other façades of rrr.compat.

    orchestrator = DataPipelineOrchestrator(supabase_client=SupabaseClient(), tickers=[...])
    task = asyncio.create_task(orchestrator.start())
    ...
    stats = orchestrator.get_stats()
    stats["websocket"]["message_count"], stats["sentiment"]["analysis_count"],
    stats["quality"]["issues_found"]
    await orchestrator.stop()

Its stats are its components' own counters in this process, as the original's were. For the
whole pipeline as rrr runs it (`rrr run`: Celery workers, beat, the stream worker), with counts
that hold across processes and restarts, use ``rrr.stats.get_stats(redis, store=store)`` or
``rrr status``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rrr.compat.sentiment_analyzer import PerplexitySentimentAnalyzer
from rrr.compat.supabase_client import SupabaseClient
from rrr.compat.validator import DataQualityValidator
from rrr.compat.websocket_client import PolygonWebSocketClient
from rrr.sentiment.analyzer import assets_of

log = logging.getLogger(__name__)

COMPONENT = "orchestrator"


class DataPipelineOrchestrator:
    def __init__(
        self,
        supabase_client: SupabaseClient,
        tickers: Sequence[str] | None = None,
        enable_websocket: bool = True,
        enable_sentiment: bool = True,
        enable_quality: bool = True,
        sentiment_interval: int = 900,
        quality_interval: int = 300,
    ) -> None:
        self.supabase_client = supabase_client
        self.websocket_client = (
            PolygonWebSocketClient(supabase_client=supabase_client, pairs=tickers)
            if enable_websocket
            else None
        )
        self.tickers = list(tickers or supabase_client.settings.tickers)
        self.sentiment_analyzer = (
            PerplexitySentimentAnalyzer(
                supabase_client=supabase_client,
                assets=assets_of(self.tickers),
                update_interval=sentiment_interval,
            )
            if enable_sentiment
            else None
        )
        self.quality_validator = (
            DataQualityValidator(supabase_client, self.tickers, quality_interval)
            if enable_quality
            else None
        )
        self.running = False
        self.start_time: datetime | None = None
        self.tasks: list[tuple[str, asyncio.Task[None]]] = []

    def _components(self) -> list[tuple[str, Any]]:
        named = [
            ("websocket", self.websocket_client),
            ("sentiment", self.sentiment_analyzer),
            ("quality", self.quality_validator),
        ]
        return [(name, c) for name, c in named if c is not None]

    async def start(self) -> None:
        """Run every enabled component until ``stop()``; a component that fails stops all."""
        self.running, self.start_time = True, datetime.now(UTC)
        await asyncio.to_thread(self._event, "pipeline_start", "Data pipeline started")
        runs = {
            "websocket": lambda c: c.run(),
            "sentiment": lambda c: c.run_scheduled(),
            "quality": lambda c: c.run_monitoring(),
        }
        self.tasks = [
            (name, asyncio.create_task(runs[name](c), name=name)) for name, c in self._components()
        ]
        try:
            await asyncio.gather(*(task for _, task in self.tasks))
        except Exception:
            log.exception("a pipeline component failed; stopping the others")
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every component (the stream drains: what was read is stored), then log it."""
        if not self.running:
            return
        self.running = False
        for _, component in self._components():
            await component.stop()
        for name, task in self.tasks:
            try:
                await asyncio.wait_for(asyncio.shield(task), 60)
            except Exception as exc:  # its failure was logged where it happened
                log.info("%s ended with %r", name, exc)
        await asyncio.to_thread(self._event, "pipeline_stop", "Data pipeline stopped")

    def get_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "running": self.running,
            "start_time": self.start_time.isoformat() if self.start_time else None,
        }
        for name, component in self._components():
            stats[name] = component.get_stats()
        return stats

    def _event(self, event_type: str, message: str) -> None:
        self.supabase_client.log_system_event(
            event_type=event_type,
            severity="info",
            message=message,
            component=COMPONENT,
            metadata={"components": [n for n, _ in self._components()], "tickers": self.tickers},
        )
