"""``PerplexitySentimentAnalyzer``: the original system's name and call shapes over rrr's
``SentimentAnalyzer`` (rrr.sentiment.analyzer; rrr dropped the vendor from the name, since the
client speaks both of Perplexity's APIs).

    analyzer = PerplexitySentimentAnalyzer(supabase_client=SupabaseClient())
    sentiment = await analyzer.analyze_sentiment("BTC")
    sentiment.sentiment_label, sentiment.sentiment_score, sentiment.confidence, sentiment.reasoning

Each score is stored in ``market_sentiment`` as the original did (asset, source, label, score,
confidence, text = reasoning, metadata), with rrr's key: one row per asset, source and
SENTIMENT_INTERVAL slot, the one the scheduled task fills. A second call for an asset within
the same slot returns its fresh score but leaves the slot's row as it was (``stored`` says
which); the original inserted a row per call. Differences kept from rrr: a malformed or
out-of-range answer raises ``AnswerRejected`` (its raw text kept as a system event and a dead
letter) instead of turning into a neutral score, and a missing PERPLEXITY_API_KEY raises
ConfigError naming it.

The HTTP call runs in a thread (``asyncio.to_thread``): the event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rrr.clock import now_ms
from rrr.compat.repeating import Repeating
from rrr.compat.supabase_client import SupabaseClient, facade_settings, iso
from rrr.config import Secret, Settings
from rrr.errors import VendorError
from rrr.sentiment.analyzer import (
    SentimentAnalyzer,
    SentimentResult,
    assets_of,
    interval_start_ms,
    record_failure,
    to_asset,
)
from rrr.sentiment.prompts import AnswerRejected

log = logging.getLogger(__name__)

PAUSE_BETWEEN_ASSETS_S = 2.0  # the original's pause between calls of one round


@dataclass(frozen=True, slots=True)
class StoredSentiment:
    """An analysis with the original's fields (``sentiment_label``, ``sentiment_score``,
    ``confidence``, ``reasoning``, ``text``, ``metadata``, ``timestamp``), the full rrr
    ``result``, and whether this call stored a new row."""

    result: SentimentResult
    stored: bool

    @property
    def asset(self) -> str:
        return self.result.asset

    @property
    def sentiment_label(self) -> str:
        return self.result.sentiment_label

    @property
    def sentiment_score(self) -> float:
        return self.result.sentiment_score

    @property
    def confidence(self) -> float:
        return self.result.confidence

    @property
    def reasoning(self) -> str:
        return self.result.reasoning

    @property
    def text(self) -> str:
        """The stored ``text`` column: the reasoning (the original stored the raw answer)."""
        return self.result.reasoning

    @property
    def metadata(self) -> dict[str, Any]:
        return self.result.to_sentiment(0).metadata

    @property
    def timestamp(self) -> str:
        return iso(self.result.ts_ms)


class PerplexitySentimentAnalyzer(Repeating):
    def __init__(
        self,
        api_key: str | None = None,
        supabase_client: SupabaseClient | None = None,
        assets: Sequence[str] | None = None,
        model: str | None = None,
        update_interval: int | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        """``supabase_client`` None: scores are returned, not stored (as the original)."""
        super().__init__()
        changes: dict[str, Any] = {}
        if api_key:
            changes["perplexity_api_key"] = Secret(api_key)
        if model:
            changes["perplexity_model"] = model
        if update_interval:
            changes["sentiment_interval_s"] = int(update_interval)
        self.settings = facade_settings(settings, supabase_client).with_overrides(**changes)
        self.supabase_client = supabase_client
        self.assets = list(assets) if assets else assets_of(self.settings.tickers)
        self.update_interval = self.settings.sentiment_interval_s
        self._analyzer = SentimentAnalyzer(self.settings)  # ConfigError without a key
        self.model = self._analyzer.client.model
        self.analysis_count = 0
        self.error_count = 0

    async def analyze_sentiment(self, asset: str) -> StoredSentiment:
        try:
            scored = await asyncio.to_thread(self._analyze_and_store, asset)
        except Exception:
            self.error_count += 1
            raise
        self.analysis_count += 1
        return scored

    async def analyze_all_assets(self) -> list[StoredSentiment]:
        """Each asset in turn; a failure is logged and the round goes on (as the original)."""
        results = []
        for i, asset in enumerate(self.assets):
            if i:
                await asyncio.sleep(PAUSE_BETWEEN_ASSETS_S)
            try:
                results.append(await self.analyze_sentiment(asset))
            except Exception as exc:
                log.error("sentiment for %s failed: %s", asset, exc)
        return results

    async def run_scheduled(self) -> None:
        """A round every ``update_interval`` seconds until ``stop()``."""
        await self._repeat(self.update_interval, self.analyze_all_assets)

    def get_stats(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "assets": self.assets,
            "analysis_count": self.analysis_count,
            "error_count": self.error_count,
            "update_interval": self.update_interval,
        }

    # -- in the worker thread ------------------------------------------------------------------

    def _analyze_and_store(self, asset: str) -> StoredSentiment:
        store = self.supabase_client.store if self.supabase_client else None
        slot = interval_start_ms(now_ms(), self.update_interval)
        try:
            result = self._analyzer.analyze_sentiment(asset)
        except (AnswerRejected, VendorError) as exc:
            if store is not None:  # kept as the scheduled task keeps it (get_stats counts it)
                record_failure(store, to_asset(asset), exc, now_ms(), slot)
            raise
        stored = bool(store.add_sentiments([result.to_sentiment(slot)])) if store else False
        return StoredSentiment(result, stored)
