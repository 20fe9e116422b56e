"""The sentiment use case: ``SentimentAnalyzer(settings).analyze_sentiment("BTC")`` as in the
original system, and ``score_assets`` — one scheduled round over the assets, calls made one at a
time, each result stored as a ``market_sentiment`` row and each failure as a ``system_event``.

A failing API never stops the round for the other assets (except a refused key, which would fail
for all of them), and nothing here retries: the client already retried transient errors, and
the caller (the Celery task) decides whether the assets left over are worth another try.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from rrr.clock import Clock, SystemClock
from rrr.config import Settings
from rrr.errors import ConfigError, StorageError, VendorAuthError, VendorError, is_transient
from rrr.models import Rejected, Sentiment, Severity, SystemEvent
from rrr.sentiment.perplexity import PerplexityClient
from rrr.sentiment.prompts import AnswerRejected, Label
from rrr.sentiment.responses import Answer, score_answer
from rrr.storage.base import Store
from rrr.symbols import SymbolError, ticker_to_asset

log = logging.getLogger(__name__)

COMPONENT = "sentiment"
NO_KEY_MESSAGE = (
    "PERPLEXITY_API_KEY is not set: sentiment scoring is skipped. Set it (a key from "
    "perplexity.ai/settings/api), or point PERPLEXITY_BASE_URL at the local simulator with "
    "any key (e.g. PERPLEXITY_API_KEY=sim-key), or run `rrr sentiment --simulator`"
)


def interval_start_ms(now_ms: int, interval_s: int) -> int:
    """The schedule slot ``now`` falls in: the key that makes a round idempotent."""
    step = interval_s * 1000
    return now_ms - now_ms % step


def to_asset(name: str) -> str:
    """``btc`` / ``BTC`` / ``X:BTCUSD`` -> ``BTC``."""
    name = name.strip()
    if name.upper().startswith("X:"):
        return ticker_to_asset(name.upper())
    if not name.isalnum() or not 1 <= len(name) <= 12:
        raise SymbolError(f"bad asset {name!r}: expected a symbol like BTC or a ticker X:BTCUSD")
    return name.upper()


def assets_of(tickers: Iterable[str]) -> list[str]:
    """One asset per base currency, in ticker order (X:BTCUSD and X:BTCEUR -> one BTC call)."""
    return list(dict.fromkeys(ticker_to_asset(t) for t in tickers))


@dataclass(frozen=True, slots=True)
class SentimentResult:
    """One scored asset; ``sentiment_label``/``sentiment_score`` as the original system named
    them."""

    asset: str
    sentiment_label: Label
    sentiment_score: float
    confidence: float
    reasoning: str
    sources: list[dict[str, Any]]
    key_drivers: list[str]
    model: str
    source: str  # "perplexity" or "simulator"
    api: str
    usage: dict[str, Any]
    response_id: str
    ts_ms: int

    def to_sentiment(self, interval_start_ms: int) -> Sentiment:
        return Sentiment(
            asset=self.asset,
            source=self.source,
            label=self.sentiment_label,
            score=self.sentiment_score,
            confidence=self.confidence,
            text=self.reasoning,
            ts_ms=self.ts_ms,
            interval_start_ms=interval_start_ms,
            metadata={
                "model": self.model,
                "api": self.api,
                "response_id": self.response_id,
                "sources": self.sources,
                "key_drivers": self.key_drivers,
                "usage": {k: v for k, v in self.usage.items() if k != "cost_usd"},
                "cost_usd": self.usage.get("cost_usd"),
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SentimentAnalyzer:
    """Scores one asset at a time through a ``PerplexityClient`` built from Settings."""

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx.Client | None = None,
        client: PerplexityClient | None = None,
        clock: Clock | None = None,
    ) -> None:
        if client is None:
            if settings.perplexity_api_key is None:
                raise ConfigError(NO_KEY_MESSAGE)
            client = PerplexityClient(
                settings.perplexity_base_url,
                settings.perplexity_api_key,
                api=settings.perplexity_api,
                model=settings.perplexity_model,
                http_client=http_client,
            )
        self.client = client
        self.clock = clock or SystemClock()

    def analyze_sentiment(self, asset: str) -> SentimentResult:
        """Raises AnswerRejected (bad answer, raw text kept), VendorAuthError, RateLimited,
        VendorUnavailable or VendorError."""
        asset = to_asset(asset)
        answer: Answer = self.client.ask(asset)
        try:
            verdict = score_answer(answer)
        except AnswerRejected as exc:
            exc.source = answer.source
            raise
        return SentimentResult(
            asset=asset,
            sentiment_label=verdict.label,
            sentiment_score=verdict.score,
            confidence=verdict.confidence,
            reasoning=verdict.reasoning,
            sources=answer.sources,
            key_drivers=verdict.key_drivers,
            model=answer.model or self.client.model,
            source=answer.source,
            api=self.client.api,
            usage=answer.usage,
            response_id=answer.response_id,
            ts_ms=self.clock.now_ms(),
        )


@dataclass(slots=True)
class RoundReport:
    interval_start_ms: int
    stored: list[str] = field(default_factory=list)  # new rows
    already: list[str] = field(default_factory=list)  # a row for this slot existed
    rejected: list[str] = field(default_factory=list)  # bad answers (system_event with raw)
    failed: dict[str, str] = field(default_factory=dict)  # asset -> error, not retryable
    transient: list[str] = field(default_factory=list)  # worth another try this interval

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def failure_event(
    asset: str, exc: Exception, now_ms: int, slot_ms: int, attempt: int = 0
) -> SystemEvent:
    """A system_event for one asset's failure; deduped per asset, kind, slot and attempt."""
    severity: Severity = "warning"
    if isinstance(exc, AnswerRejected):
        kind = "answer_rejected"
        details: dict[str, Any] = {"reason": exc.reason, "raw": exc.raw, "source": exc.source}
    else:
        kind = "auth_failed" if isinstance(exc, VendorAuthError) else "vendor_error"
        severity = "error" if isinstance(exc, VendorAuthError) else "warning"
        details = {"error": type(exc).__name__, "status": getattr(exc, "status", None)}
    details |= {"asset": asset, "interval_start_ms": slot_ms, "transient": is_transient(exc)}
    return SystemEvent(
        component=COMPONENT,
        event_type=kind,
        severity=severity,
        message=f"sentiment for {asset}: {exc}",
        ts_ms=now_ms,
        details=details,
        dedupe_key=f"sentiment:{kind}:{asset}:{slot_ms}:{attempt}",
    )


def record_failure(
    store: Store,
    asset: str,
    exc: AnswerRejected | VendorError,
    now_ms: int,
    slot_ms: int,
    attempt: int = 0,
) -> None:
    """A failed scoring, kept: its system event, and a rejected answer's raw text as a dead
    letter (the scheduled round and the original API's analyzer alike)."""
    store.add_events([failure_event(asset, exc, now_ms, slot_ms, attempt)])
    if isinstance(exc, AnswerRejected):
        store.add_dead_letters(
            [Rejected(raw=exc.raw, reason=exc.reason, kind="sentiment", source=exc.source)]
        )


def no_key_event(now_ms: int, slot_ms: int) -> SystemEvent:
    """One per interval, however often the round runs in it."""
    return SystemEvent(
        component=COMPONENT,
        event_type="skipped_no_key",
        severity="warning",
        message=NO_KEY_MESSAGE,
        ts_ms=now_ms,
        details={"interval_start_ms": slot_ms},
        dedupe_key=f"sentiment:no_key:{slot_ms}",
    )


def _scored_in_slot(store: Store, asset: str, slot_ms: int) -> bool:
    rows = store.read_sentiments(asset)
    return bool(len(rows)) and bool((rows["interval_start_ms"] == slot_ms).any())


def score_assets(
    analyzer: SentimentAnalyzer,
    store: Store,
    assets: Iterable[str],
    slot_ms: int,
    *,
    attempt: int = 0,
) -> RoundReport:
    """Score each asset in turn and store it at once (a later failure keeps earlier rows).

    An asset that already has a row for this slot is not asked again: a redelivered or retried
    round must not pay for the same call twice. A transient storage error marks only its asset
    for the retry."""
    report = RoundReport(interval_start_ms=slot_ms)
    todo = list(assets)
    for i, asset in enumerate(todo):
        if _scored_in_slot(store, asset, slot_ms):
            report.already.append(asset)
            continue
        try:
            result = analyzer.analyze_sentiment(asset)
        except (AnswerRejected, VendorError) as exc:
            record_failure(store, asset, exc, analyzer.clock.now_ms(), slot_ms, attempt)
            log.warning("sentiment for %s failed: %s", asset, exc)
            if isinstance(exc, AnswerRejected):
                report.rejected.append(asset)
            elif is_transient(exc):
                report.transient.append(asset)
            else:
                report.failed[asset] = str(exc)
            if isinstance(exc, VendorAuthError):  # the same key fails for every asset
                report.failed |= {a: "skipped: the API key was refused" for a in todo[i + 1 :]}
                break
            continue
        try:
            new = store.add_sentiments([result.to_sentiment(slot_ms)])
        except StorageError as exc:
            if not is_transient(exc):
                raise
            log.warning("sentiment for %s not stored yet: %s", asset, exc)
            report.transient.append(asset)
            continue
        (report.stored if new else report.already).append(asset)
        log.info(
            "sentiment %s: %s %.2f (confidence %.2f, %d sources, %s)",
            asset,
            result.sentiment_label,
            result.sentiment_score,
            result.confidence,
            len(result.sources),
            result.source,
        )
    return report
