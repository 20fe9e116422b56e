"""The pure parts of rrr.compat: argument mapping, result shapes, no I/O."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from rrr.compat import PerplexitySentimentAnalyzer, PolygonWebSocketClient, StoredSentiment
from rrr.compat.supabase_client import iso, to_ms
from rrr.compat.validator import to_original
from rrr.compat.websocket_client import channels_of
from rrr.config import Secret, Settings
from rrr.errors import ConfigError
from rrr.quality.issues import QualityIssue
from rrr.sentiment.analyzer import SentimentResult

T0 = 1_700_000_040_000  # 2023-11-14T22:14:00Z


def test_enable_flags_choose_the_channels() -> None:
    assert channels_of(True, True, True) == ("XT", "XQ", "XA")
    assert channels_of(True, False, True) == ("XT", "XA")
    assert channels_of(False, True, False) == ("XQ",)
    with pytest.raises(ValueError, match="at least one"):
        channels_of(False, False, False)


def test_websocket_client_takes_the_original_arguments() -> None:
    client = PolygonWebSocketClient(
        api_key="k-123",
        pairs=["X:SOLUSD", "X:BTCUSD"],
        enable_quotes=False,
        reconnect_delay=5,
        max_reconnect_delay=60,
        settings=Settings(),
    )
    assert client.pairs == ["X:SOLUSD", "X:BTCUSD"]
    assert client.settings.tickers == ("X:SOLUSD", "X:BTCUSD")
    assert client.settings.polygon_api_key == Secret("k-123")
    assert client.channels == ("XT", "XA")
    assert (client.options.backoff_base_s, client.options.backoff_cap_s) == (5, 60)
    stats = client.get_stats()  # before run: zeros, the original's keys
    assert stats["message_count"] == 0 and stats["running"] is False and stats["mode"] is None
    assert stats["subscribed_pairs"] == ["X:SOLUSD", "X:BTCUSD"]


def test_websocket_client_defaults_to_the_settings_tickers_and_rejects_bad_pairs() -> None:
    assert PolygonWebSocketClient(settings=Settings()).pairs == ["X:BTCUSD", "X:ETHUSD"]
    with pytest.raises(ConfigError, match="pairs"):
        PolygonWebSocketClient(pairs=["BTCUSD"], settings=Settings())


def test_sentiment_analyzer_needs_a_key_and_takes_the_original_arguments() -> None:
    with pytest.raises(ConfigError, match="PERPLEXITY_API_KEY"):
        PerplexitySentimentAnalyzer(settings=Settings())
    analyzer = PerplexitySentimentAnalyzer(
        api_key="pplx-1", model="sonar-pro", update_interval=1800, settings=Settings()
    )
    assert analyzer.assets == ["BTC", "ETH"]  # from the settings' tickers
    assert analyzer.update_interval == 1800 and analyzer.model == "sonar-pro"
    assert analyzer.get_stats() == {
        "running": False, "assets": ["BTC", "ETH"], "analysis_count": 0, "error_count": 0,
        "update_interval": 1800,
    }  # fmt: skip


def test_a_stored_sentiment_has_the_original_fields() -> None:
    result = SentimentResult(
        asset="BTC", sentiment_label="bullish", sentiment_score=0.4, confidence=0.7,
        reasoning="ETF inflows", sources=[{"url": "https://x.invalid/1"}], key_drivers=["etf"],
        model="sonar", source="perplexity", api="sonar", usage={"cost_usd": 0.01},
        response_id="r1", ts_ms=T0,
    )  # fmt: skip
    scored = StoredSentiment(result, stored=True)
    assert (scored.sentiment_label, scored.sentiment_score, scored.confidence) == (
        "bullish", 0.4, 0.7,
    )  # fmt: skip
    assert scored.reasoning == scored.text == "ETF inflows"
    assert scored.metadata["model"] == "sonar" and scored.metadata["cost_usd"] == 0.01
    assert scored.timestamp == "2023-11-14T22:14:00+00:00"


def test_a_quality_issue_maps_to_the_original_fields() -> None:
    issue = QualityIssue(
        "crossed_quote",
        "error",
        "X:BTCUSD",
        T0,
        T0 + 60_000,
        "bid 100.05 >= ask 100.0",
        {"quotes": 1},
    )
    original = to_original(issue)
    assert original.issue_type == "crossed_quote" and original.severity == "error"
    assert original.message == "X:BTCUSD: bid 100.05 >= ask 100.0"
    assert original.table == "crypto_quotes" and original.ticker == "X:BTCUSD"
    assert original.metadata == {"window_start_ms": T0, "window_end_ms": T0 + 60_000, "quotes": 1}
    assert original.timestamp == "2023-11-14T22:14:00+00:00" and original.issue is issue
    assert original.to_dict()["component"] == "data_quality_validator"
    assert original.to_dict()["metadata"]["issue_type"] == "crossed_quote"
    gap = to_original(QualityIssue("gap", "warning", "X:ETHUSD", T0, T0 + 60_000, "missing"))
    assert gap.table == "crypto_aggregates"


def test_naive_datetimes_are_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    # A local zone other than UTC: on a UTC machine, reading a naive datetime as local time
    # would pass too.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert to_ms(datetime(2023, 11, 14, 22, 14)) == T0
        assert to_ms(datetime(2023, 11, 14, 22, 14, tzinfo=UTC)) == T0
        assert iso(T0) == "2023-11-14T22:14:00+00:00"
    finally:
        monkeypatch.undo()
        time.tzset()
