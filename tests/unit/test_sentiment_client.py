"""PerplexityClient (the official SDK inside) over a real ``httpx.Client`` whose transport
replays the recorded and constructed fixtures (httpx's MockTransport: no socket, no patching).
Every HTTP status of the fixtures and every SDK exception maps to the right rrr error; the key
never leaks."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import perplexity
import pytest

from rrr.config import Settings
from rrr.errors import (
    RateLimited,
    VendorAuthError,
    VendorError,
    VendorUnavailable,
    is_transient,
)
from rrr.sentiment.analyzer import SentimentAnalyzer
from rrr.sentiment.perplexity import (
    PerplexityClient,
    backoff_s,
    retry_after_s,
    sdk_base_url,
)
from rrr.sentiment.prompts import AnswerRejected

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "perplexity"
KEY = "pplx-unit-test-secret-key"
Reply = tuple[int, dict[str, str], bytes] | BaseException


def fixture_reply(name: str, **extra_headers: str) -> Reply:
    response = json.loads((FIXTURES / name).read_text())["response"]
    body = response.get("body_text")
    raw = body.encode() if body is not None else json.dumps(response["body"]).encode()
    return response["status"], {**response["headers"], **extra_headers}, raw


class Replay:
    """A transport handler answering each request with the next queued reply (the last
    repeats); an exception reply is raised, as httpx's transport would."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, BaseException):
            raise reply
        status, headers, body = reply
        return httpx.Response(status, headers=headers, content=body)


def client_for(
    *replies: Reply, api: str = "sonar", **options: Any
) -> tuple[PerplexityClient, Replay, list[float]]:
    replay = Replay(*replies)
    slept: list[float] = []
    client = PerplexityClient(
        "https://api.perplexity.ai",
        KEY,
        api=api,
        http_client=httpx.Client(transport=httpx.MockTransport(replay)),
        sleep=slept.append,
        jitter=lambda: 1.0,
        **options,
    )
    return client, replay, slept


def test_fixture_01_through_the_client_and_analyzer() -> None:
    client, adapter, _ = client_for(fixture_reply("01-sonar-json-schema-success.json"))
    scored = SentimentAnalyzer(Settings(), client=client).analyze_sentiment("btc")
    assert (scored.asset, scored.sentiment_label, scored.sentiment_score) == (
        "BTC",
        "bullish",
        0.42,
    )
    assert scored.confidence == 0.66
    assert scored.source == "perplexity"
    assert scored.model == "sonar"
    assert len(scored.sources) == 3
    assert scored.sources[0]["url"].startswith("https://www.coindesk.com/")
    (sent,) = adapter.sent
    assert str(sent.url) == "https://api.perplexity.ai/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(sent.content)["model"] == "sonar"


def test_fixture_02_reasoning_answer_through_the_client() -> None:
    client, _, _ = client_for(fixture_reply("02-sonar-reasoning-pro-think-prefix.json"))
    answer = client.ask("BTC")
    assert answer.model == "sonar-reasoning-pro"
    assert answer.text.startswith("<think>")


def test_fixture_03_html_401_is_an_auth_error_without_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client, adapter, slept = client_for(fixture_reply("03-401-invalid-key-html.json"))
    with pytest.raises(VendorAuthError) as info:
        client.ask("BTC")
    assert info.value.status == 401
    assert "HTML page '401 Authorization Required'" in str(info.value)
    assert "PERPLEXITY_API_KEY" in str(info.value)
    assert not is_transient(info.value)
    assert len(adapter.sent) == 1 and slept == []
    assert KEY not in caplog.text and KEY not in str(info.value)


def test_fixture_03_json_variant_is_an_auth_error_too() -> None:
    alt = json.loads((FIXTURES / "03-401-invalid-key-html.json").read_text())["_fixture"]
    body = json.dumps(alt["alternate_json_body"]).encode()
    client, _, _ = client_for((401, {"Content-Type": "application/json"}, body))
    with pytest.raises(VendorAuthError, match="invalid_api_key: Invalid API key provided"):
        client.ask("BTC")


def test_fixture_04_429_retries_with_backoff_then_gives_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client, adapter, slept = client_for(fixture_reply("04-429-rate-limited.json"))
    with pytest.raises(RateLimited, match="request_rate_limit_exceeded") as info:
        client.ask("BTC")
    assert is_transient(info.value)
    assert len(adapter.sent) == 3  # one try and max_retries=2
    assert slept == [0.5, 1.0]  # backoff 0.5 s, 1 s (jitter 1.0: the full step)
    assert KEY not in caplog.text


def test_fixture_04_429_honours_retry_after_then_succeeds() -> None:
    client, adapter, slept = client_for(
        fixture_reply("04-429-rate-limited.json", **{"Retry-After": "2"}),
        fixture_reply("01-sonar-json-schema-success.json"),
    )
    assert client.ask("BTC").model == "sonar"
    assert slept == [2.0]
    assert len(adapter.sent) == 2


def test_a_retry_after_longer_than_the_wait_cap_is_left_to_the_next_run() -> None:
    client, adapter, slept = client_for(
        fixture_reply("04-429-rate-limited.json", **{"Retry-After": "120"}), max_wait_s=30
    )
    with pytest.raises(RateLimited) as info:
        client.ask("BTC")
    assert info.value.retry_after_s == 120
    assert len(adapter.sent) == 1 and slept == []


def test_fixture_05_invalid_model_is_a_permanent_request_error() -> None:
    client, adapter, slept = client_for(fixture_reply("05-400-invalid-model.json"))
    with pytest.raises(VendorError, match="invalid_model: Invalid model 'sonar-reasoning'") as info:
        client.ask("BTC")
    assert type(info.value) is VendorError and info.value.status == 400
    assert not is_transient(info.value)
    assert len(adapter.sent) == 1 and slept == []


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_transient_and_retried(status: int) -> None:
    html = b"<html><head><title>502 Bad Gateway</title></head></html>"
    client, adapter, _ = client_for((status, {"Content-Type": "text/html"}, html))
    with pytest.raises(VendorUnavailable) as info:
        client.ask("BTC")
    assert info.value.status == status
    assert len(adapter.sent) == 3


# What httpx raises under the SDK; it wraps each in APITimeoutError or APIConnectionError.
FOREIGN_ERRORS: list[Callable[[], BaseException]] = [
    lambda: httpx.ConnectTimeout("connect timed out"),
    lambda: httpx.ReadTimeout("read timed out"),
    lambda: httpx.PoolTimeout("no connection free"),
    lambda: httpx.ConnectError("refused"),
    lambda: httpx.ReadError("reset"),
    lambda: httpx.RemoteProtocolError("broken"),
    lambda: httpx.DecodingError("gzip"),
]


@pytest.mark.parametrize("make", FOREIGN_ERRORS)
def test_every_transport_error_maps_to_vendor_unavailable(
    make: Callable[[], BaseException],
) -> None:
    client, adapter, _ = client_for(make(), max_retries=1)
    with pytest.raises(VendorUnavailable) as info:
        client.ask("BTC")
    assert isinstance(info.value.__cause__, perplexity.APIConnectionError)
    assert len(adapter.sent) == 2


def sdk_exception_classes() -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(perplexity, inspect.isclass)
        if issubclass(cls, perplexity.PerplexityError)
    ]


@pytest.mark.parametrize("cls", sdk_exception_classes(), ids=lambda c: c.__name__)
def test_every_sdk_exception_class_is_mapped_to_an_rrr_error(cls: type[Any]) -> None:
    """httpx's habit: every foreign error is mapped at the edge. Status errors are made with
    the status the SDK gives their class (500 for the base class and InternalServerError)."""
    request = httpx.Request("POST", "https://api.perplexity.ai/v1/responses")
    status = getattr(cls, "status_code", 500)
    response = httpx.Response(status if isinstance(status, int) else 500, request=request)
    exc: perplexity.APIError
    if issubclass(cls, perplexity.APIStatusError):
        exc = cls("x", response=response, body=None)
    elif issubclass(cls, perplexity.APIConnectionError):
        exc = cls(request=request)
    elif cls is perplexity.APIResponseValidationError:
        exc = cls(response, None)
    else:  # PerplexityError, APIError
        exc = perplexity.APIError("x", request, body=None)
    client, _, _ = client_for((200, {}, b"{}"))
    mapped = client.mapped_error(exc)
    if isinstance(exc, perplexity.APIStatusError):
        code = exc.status_code
        want = {401: VendorAuthError, 403: VendorAuthError, 429: RateLimited}.get(
            code, VendorUnavailable if code in (408, 409) or code >= 500 else VendorError
        )
        assert type(mapped) is want and mapped.status == code
    elif isinstance(exc, perplexity.APIConnectionError):
        assert type(mapped) is VendorUnavailable and is_transient(mapped)
    else:
        assert type(mapped) is VendorError and not is_transient(mapped)


def test_timeout_then_success() -> None:
    client, _, slept = client_for(
        httpx.ReadTimeout("slow"), fixture_reply("01-sonar-json-schema-success.json")
    )
    assert client.ask("BTC").response_id == "fd83b2d7-93ef-4700-8038-3aad114c382e"
    assert slept == [0.5]


def test_a_200_that_is_not_json_is_a_rejected_answer_with_the_raw_text() -> None:
    client, _, _ = client_for((200, {"Content-Type": "text/html"}, b"<html>maintenance</html>"))
    with pytest.raises(AnswerRejected, match="not JSON") as info:
        client.ask("BTC")
    assert info.value.raw == "<html>maintenance</html>"


def test_an_error_body_echoing_the_key_is_redacted() -> None:
    body = json.dumps({"error": {"type": "invalid_request", "message": f"bad key {KEY}"}})
    client, _, _ = client_for((400, {"Content-Type": "application/json"}, body.encode()))
    with pytest.raises(VendorError) as info:
        client.ask("BTC")
    assert KEY not in str(info.value) and "***" in str(info.value)
    assert KEY not in repr(client)


def test_agent_api_goes_where_the_sdk_posts() -> None:
    client, adapter, _ = client_for(fixture_reply("04-429-rate-limited.json"), api="agent")
    with pytest.raises(RateLimited):
        client.ask("ETH")
    sent = adapter.sent[0]
    assert str(sent.url) == "https://api.perplexity.ai/v1/responses"
    assert json.loads(sent.content)["model"] == "perplexity/sonar"
    assert len(adapter.sent) == 3  # rrr's retries only: the SDK's own are off


@pytest.mark.parametrize(
    ("base", "api", "url"),
    [
        ("https://api.perplexity.ai", "agent", "https://api.perplexity.ai/v1/responses"),
        ("https://api.perplexity.ai/v1/", "agent", "https://api.perplexity.ai/v1/responses"),
        ("https://api.perplexity.ai/", "sonar", "https://api.perplexity.ai/chat/completions"),
        ("http://127.0.0.1:8123", "sonar", "http://127.0.0.1:8123/chat/completions"),
    ],
)
def test_the_url_each_api_is_sent_to(base: str, api: str, url: str) -> None:
    replay = Replay(fixture_reply("05-400-invalid-model.json"))
    client = PerplexityClient(
        base, KEY, api=api, http_client=httpx.Client(transport=httpx.MockTransport(replay))
    )
    assert client.url == url
    with pytest.raises(VendorError):
        client.ask("BTC")
    assert str(replay.sent[0].url) == url
    assert sdk_base_url(base) + ("/v1/responses" if api == "agent" else "/chat/completions") == url


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after": "3"}, 0) == 3.0
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}, 0) == 1.5
    assert retry_after_s({"retry-after": "Thu, 01 Jan 1970 00:00:10 GMT"}, 4.0) == 6.0
    assert retry_after_s({"retry-after": "soon"}, 0) is None
    assert retry_after_s({}, 0) is None


def test_backoff_is_capped_and_jittered() -> None:
    assert [backoff_s(n, 1.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff_s(3, 0.0) == 2.0
