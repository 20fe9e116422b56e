"""A sentiment round (``score_assets``) from the simulated Perplexity into each real store:
rows with their metadata, idempotent per asset, source and interval; bad answers and failures
become system_events (with the raw text) and never rows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rrr.clock import FrozenClock
from rrr.config import Secret, Settings
from rrr.sentiment.analyzer import SentimentAnalyzer, interval_start_ms, score_assets
from rrr.simulator.http import SimulatorHTTPServer
from rrr.simulator.perplexity import PerplexitySimOptions, perplexity_routes
from rrr.storage import Store, open_store

T0 = 1_764_000_000_000  # a slot boundary for 900 s
INTERVAL_S = 900


@pytest.fixture(scope="module")
def sim_server() -> Iterator[tuple[SimulatorHTTPServer, PerplexitySimOptions]]:
    options = PerplexitySimOptions(api_key="sim-key")
    server = SimulatorHTTPServer(perplexity_routes(options)).start()
    yield server, options
    server.stop()


@pytest.fixture
def sim(
    sim_server: tuple[SimulatorHTTPServer, PerplexitySimOptions],
) -> tuple[SimulatorHTTPServer, PerplexitySimOptions]:
    sim_server[1].reset()
    return sim_server


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = open_store(database_url)
    s.migrate()
    yield s
    s.close()


def analyzer_for(
    server: SimulatorHTTPServer, clock: FrozenClock, **changes: object
) -> SentimentAnalyzer:
    base = {"perplexity_api_key": Secret("sim-key"), "perplexity_base_url": server.base_url}
    settings = Settings().with_overrides(**{**base, **changes})
    analyzer = SentimentAnalyzer(settings, clock=clock)
    analyzer.client._sleep = lambda _s: None  # retries in these tests need no real waiting
    return analyzer


def test_a_round_stores_one_row_per_asset_with_metadata(
    sim: tuple[SimulatorHTTPServer, PerplexitySimOptions], store: Store
) -> None:
    clock = FrozenClock(T0 + 5_000)
    analyzer = analyzer_for(sim[0], clock)
    slot = interval_start_ms(clock.now_ms(), INTERVAL_S)
    report = score_assets(analyzer, store, ["BTC", "ETH"], slot)
    assert (report.stored, report.rejected, report.failed, report.transient) == (
        ["BTC", "ETH"],
        [],
        {},
        [],
    )
    rows = store.read_sentiments()
    assert list(rows["asset"]) == ["BTC", "ETH"]
    assert set(rows["source"]) == {"simulator"}
    assert set(rows["interval_start_ms"]) == {T0}
    assert set(rows["ts_ms"]) == {T0 + 5_000}
    btc = rows.iloc[0]
    assert btc["text"].startswith("Simulated reading for Bitcoin")
    meta = btc["metadata"]
    assert meta["model"] == "perplexity/sonar" and meta["api"] == "agent"
    assert [s["url"] for s in meta["sources"]] == [
        f"https://news.simulator.invalid/btc/{i}" for i in (1, 2, 3)
    ]
    assert meta["usage"]["input_tokens"] > 0 and meta["usage"]["total_tokens"] > 0
    assert meta["cost_usd"] == meta["usage"]["cost"]["total_cost"] > 0
    assert meta["response_id"].startswith("resp_")


def test_idempotent_per_asset_source_and_interval(
    sim: tuple[SimulatorHTTPServer, PerplexitySimOptions], store: Store
) -> None:
    clock = FrozenClock(T0)
    analyzer = analyzer_for(sim[0], clock, perplexity_api="sonar")
    first = score_assets(analyzer, store, ["BTC"], T0)
    clock.advance(60_000)  # later in the same interval: same slot
    again = score_assets(analyzer, store, ["BTC"], interval_start_ms(clock.now_ms(), INTERVAL_S))
    assert (first.stored, again.stored, again.already) == (["BTC"], [], ["BTC"])
    assert len(sim[1].requests) == 1, "an asset stored for the slot must not be paid for again"
    assert store.count_rows("market_sentiment") == 1
    clock.advance(INTERVAL_S * 1000)
    nxt = score_assets(analyzer, store, ["BTC"], interval_start_ms(clock.now_ms(), INTERVAL_S))
    assert nxt.stored == ["BTC"]
    assert list(store.read_sentiments("BTC")["interval_start_ms"]) == [T0, T0 + INTERVAL_S * 1000]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("malformed", "holds no JSON object"),
        ("out_of_range", "score 1.7 is outside [-1, 1]"),
        ("bad_label", "label 'very bullish' is not one of"),
    ],
)
def test_bad_answers_are_system_events_with_raw_text_and_no_row(
    sim: tuple[SimulatorHTTPServer, PerplexitySimOptions], store: Store, mode: str, reason: str
) -> None:
    server, options = sim
    options.answer_next(mode)
    report = score_assets(analyzer_for(server, FrozenClock(T0)), store, ["BTC", "ETH"], T0)
    assert report.rejected == ["BTC"] and report.stored == ["ETH"]
    assert list(store.read_sentiments()["asset"]) == ["ETH"]
    events = store.read_events("sentiment")
    assert len(events) == 1
    event = events.iloc[0]
    assert event["event_type"] == "answer_rejected" and event["severity"] == "warning"
    assert reason in event["message"] and reason in event["details"]["reason"]
    assert event["details"]["source"] == "simulator"
    assert event["details"]["asset"] == "BTC"
    assert store.count_rows("dead_letters") == 1
    raw = event["details"]["raw"]
    if mode == "malformed":
        assert raw == "Sentiment looks broadly positive today, with ETF inflows continuing."
    else:
        assert raw.startswith("{") and ("1.7" in raw or "very bullish" in raw)


def test_refused_key_stops_the_round_with_one_event(
    sim: tuple[SimulatorHTTPServer, PerplexitySimOptions], store: Store
) -> None:
    server, _ = sim
    analyzer = analyzer_for(server, FrozenClock(T0), perplexity_api_key=Secret("not-the-key"))
    report = score_assets(analyzer, store, ["BTC", "ETH", "SOL"], T0)
    assert list(report.failed) == ["BTC", "ETH", "SOL"]
    assert sim[1].served == 1  # no call for ETH and SOL
    events = store.read_events("sentiment")
    assert list(events["event_type"]) == ["auth_failed"]
    assert events.iloc[0]["severity"] == "error"
    assert "not-the-key" not in events.iloc[0]["message"]
    assert store.count_rows("market_sentiment") == 0


def test_transient_failures_are_reported_for_a_retry_and_recorded_once(
    sim: tuple[SimulatorHTTPServer, PerplexitySimOptions], store: Store
) -> None:
    server, options = sim
    options.fail_next(503, count=3)  # all of BTC's tries
    analyzer = analyzer_for(server, FrozenClock(T0))
    report = score_assets(analyzer, store, ["BTC", "ETH"], T0)
    assert (report.transient, report.stored) == (["BTC"], ["ETH"])
    # A redelivery of the same attempt records nothing new; the retry (attempt 1) succeeds.
    options.fail_next(503, count=3)
    score_assets(analyzer, store, ["BTC"], T0)
    retried = score_assets(analyzer, store, ["BTC"], T0, attempt=1)
    assert retried.stored == ["BTC"]
    events = store.read_events("sentiment")
    assert list(events["event_type"]) == ["vendor_error"]
    assert events.iloc[0]["details"]["transient"] is True
