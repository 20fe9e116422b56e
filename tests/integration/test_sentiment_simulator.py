"""The real client against the simulated Perplexity over HTTP on 127.0.0.1: both API flavours,
429 then success, 5xx, the HTML 401, a timeout, and faults set through the control route."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from rrr.config import Secret, Settings
from rrr.errors import RateLimited, VendorAuthError, VendorUnavailable
from rrr.sentiment.analyzer import SentimentAnalyzer
from rrr.sentiment.perplexity import PerplexityClient
from rrr.simulator.http import SimulatorHTTPServer
from rrr.simulator.perplexity import PerplexitySimOptions, perplexity_routes
from tests.support.waiting import wait_for

KEY = "pplx-integration-secret"


@pytest.fixture(scope="module")
def sim_server() -> Iterator[tuple[SimulatorHTTPServer, PerplexitySimOptions]]:
    options = PerplexitySimOptions(api_key=KEY)
    server = SimulatorHTTPServer(perplexity_routes(options)).start()
    yield server, options
    server.stop()


@pytest.fixture
def sim(
    sim_server: tuple[SimulatorHTTPServer, PerplexitySimOptions],
) -> tuple[SimulatorHTTPServer, PerplexitySimOptions]:
    sim_server[1].reset()
    return sim_server


def make_client(
    server: SimulatorHTTPServer, api: str, key: str = KEY, **kw: Any
) -> tuple[PerplexityClient, list[float]]:
    slept: list[float] = []
    client = PerplexityClient(server.base_url, key, api=api, sleep=slept.append, **kw)
    return client, slept


@pytest.mark.parametrize(
    ("api", "model", "served_model"),
    [
        ("agent", None, "perplexity/sonar"),
        ("sonar", None, "sonar"),
        ("sonar", "sonar-reasoning-pro", "sonar-reasoning-pro"),
    ],
)
def test_both_api_flavours_score_an_asset(
    sim: tuple[SimulatorHTTPServer, PerplexitySimOptions],
    api: str,
    model: str | None,
    served_model: str,
) -> None:
    server, _ = sim
    settings = Settings().with_overrides(
        perplexity_api_key=Secret(KEY),
        perplexity_base_url=server.base_url,
        perplexity_api=api,
        perplexity_model=model,
    )
    result = SentimentAnalyzer(settings).analyze_sentiment("BTC")
    assert result.source == "simulator"
    assert result.api == api and result.model == served_model
    assert result.sentiment_label in ("bullish", "neutral", "bearish")
    assert -1 <= result.sentiment_score <= 1 and 0 <= result.confidence <= 1
    assert [s["url"] for s in result.sources] == [
        f"https://news.simulator.invalid/btc/{i}" for i in (1, 2, 3)
    ]
    assert result.usage["input_tokens"] > 0 and result.usage["cost_usd"] > 0


@pytest.mark.parametrize("api", ["agent", "sonar"])
def test_429_twice_then_success_honours_retry_after(
    sim: tuple[SimulatorHTTPServer, PerplexitySimOptions], api: str
) -> None:
    server, options = sim
    # Set through the HTTP control route, as a test against `rrr simulate` would.
    control = requests.post(
        f"{server.base_url}/_sim/perplexity/fail",
        json={"status": 429, "count": 2, "retry_after_s": 0.25},
        timeout=5,
    )
    assert control.status_code == 200
    client, slept = make_client(server, api)
    assert client.ask("ETH").source == "simulator"
    assert slept == [0.25, 0.25]
    assert options.served == 3


def test_429_beyond_the_retries_is_rate_limited(
    sim: tuple[SimulatorHTTPServer, PerplexitySimOptions],
) -> None:
    server, options = sim
    options.fail_next(429, count=3)
    client, slept = make_client(server, "agent", jitter=lambda: 0.0)
    with pytest.raises(RateLimited):
        client.ask("BTC")
    assert slept == [0.25, 0.5]  # backoff without Retry-After, jitter at its low end


def test_500_is_unavailable_after_retries(
    sim: tuple[SimulatorHTTPServer, PerplexitySimOptions],
) -> None:
    server, options = sim
    options.fail_next(500, count=3)
    client, slept = make_client(server, "sonar")
    with pytest.raises(VendorUnavailable) as info:
        client.ask("BTC")
    assert info.value.status == 500 and len(slept) == 2


def test_wrong_key_is_the_html_401_and_the_key_stays_secret(
    sim: tuple[SimulatorHTTPServer, PerplexitySimOptions], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server, _ = sim
    wrong = "pplx-wrong-key-123456"
    client, slept = make_client(server, "agent", key=wrong)
    with pytest.raises(VendorAuthError, match="401 Authorization Required") as info:
        client.ask("BTC")
    assert slept == []
    assert wrong not in str(info.value) and wrong not in caplog.text


def test_a_slow_answer_times_out_as_unavailable(
    sim: tuple[SimulatorHTTPServer, PerplexitySimOptions],
) -> None:
    server, options = sim
    options.latency_s = 0.5
    client, slept = make_client(server, "agent", timeout_s=0.1, max_retries=1)
    with pytest.raises(VendorUnavailable, match=r"did not answer within 0\.1 s"):
        client.ask("BTC")
    assert len(slept) == 1
    # The server still answers both requests after their timeouts: let it finish here, or it
    # counts them in the next test's `served` (seen with the test order shuffled).
    wait_for(lambda: options.served == 2, 5, "the server to finish the timed-out requests")


def test_nothing_listening_is_unavailable() -> None:
    server = SimulatorHTTPServer(perplexity_routes()).start()
    url = server.base_url
    server.stop()  # the port is closed again
    client = PerplexityClient(url, KEY, max_retries=0)
    with pytest.raises(VendorUnavailable, match="cannot reach Perplexity"):
        client.ask("BTC")
