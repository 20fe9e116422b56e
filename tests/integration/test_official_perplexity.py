"""The vendor's official Python SDK (``perplexityai`` 0.46.1, import name ``perplexity``) against
the simulated Perplexity on 127.0.0.1: every answer must parse STRICTLY as the SDK's own
response models (``_strict_response_validation=True`` plus no field the model does not know,
at any depth), and every fault must raise the SDK's own exception class.

The one place spec and SDK disagree is said where it is tested: spec 5 gives a cut-off Agent run
``status: incomplete`` and ``incomplete_details``; the SDK's ``StatusOutput`` has no
``incomplete`` and its response model no ``incomplete_details``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import perplexity
import pytest
from perplexity.generated import api as sdk_api
from pydantic import BaseModel

from rrr.sentiment.prompts import agent_body, parse_verdict, sonar_body
from rrr.simulator.http import SimulatorHTTPServer
from rrr.simulator.perplexity import PerplexitySimOptions, perplexity_routes

KEY = "pplx-official-sdk-secret"
Sim = tuple[SimulatorHTTPServer, PerplexitySimOptions]


@pytest.fixture(scope="module")
def sim_server() -> Iterator[Sim]:
    options = PerplexitySimOptions(api_key=KEY)
    server = SimulatorHTTPServer(perplexity_routes(options)).start()
    yield server, options
    server.stop()


@pytest.fixture
def sim(sim_server: Sim) -> Sim:
    sim_server[1].reset()
    sim_server[1].auth_json = False
    return sim_server


def official(server: SimulatorHTTPServer, *, strict: bool = True, key: str = KEY) -> Any:
    """The SDK as a user builds it; strict: it validates each body against its models."""
    return perplexity.Perplexity(
        api_key=key,
        base_url=server.base_url,
        max_retries=0,
        timeout=10,
        _strict_response_validation=strict,
    )


def unknown_fields(value: Any, path: str = "") -> list[str]:
    """Every field, at any depth, that the SDK's models hold only as an untyped extra."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{path}.{k}".lstrip(".") for k in value.model_extra or {}]
        for name in type(value).model_fields:
            found += unknown_fields(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += unknown_fields(item, f"{path}[{i}]")
    return found


def test_chat_completions_with_a_json_schema_parse_strictly(sim: Sim) -> None:
    server, options = sim
    body = sonar_body("BTC")
    completion = official(server).chat.completions.create(**body)
    assert type(completion) is sdk_api.CompletionResponseOutput
    assert unknown_fields(completion) == []
    (choice,) = completion.choices
    assert type(choice) is sdk_api.ChoiceOutput and choice.finish_reason == "stop"
    content, results, usage = choice.message.content, completion.search_results, completion.usage
    assert isinstance(content, str) and choice.delta.content == ""
    assert results and all(type(r) is sdk_api.ApiPublicSearchResultOutput for r in results)
    assert completion.citations == [r.url for r in results]
    assert usage is not None and type(usage.cost) is sdk_api.CostOutput
    assert parse_verdict(content).label in ("bullish", "neutral", "bearish")
    # What the SDK put on the wire is what rrr asked for, json_schema included.
    (sent,) = options.requests
    assert sent["response_format"] == body["response_format"]


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "as-shipped"])
def test_responses_with_web_search_give_a_search_item_then_a_message(
    sim: Sim, strict: bool
) -> None:
    """Issue 19 point 3: without the results' integer ``id`` the SDK as shipped (lax) read
    the search item as a message, and the strict SDK refused the whole body."""
    server, options = sim
    response = official(server, strict=strict).responses.create(**agent_body("ETH"))
    assert type(response) is sdk_api.ResponsesResponseOutput
    search, message = response.output
    assert type(search) is sdk_api.SearchResultsOutputItemOutput
    assert type(message) is sdk_api.MessageOutputItemOutput
    assert [r.id for r in search.results] == [1, 2, 3]
    assert all(type(r) is sdk_api.SearchResultOutput for r in search.results)
    assert response.status == "completed" and message.status == "completed"
    usage = response.usage
    assert usage is not None and type(usage.cost) is sdk_api.ResponsesCostOutput
    assert usage.cost.currency == "USD"
    assert parse_verdict(response.output_text).reasoning.startswith("Simulated reading for Eth")
    if strict:
        assert unknown_fields(response) == []
    assert options.served == 1


def test_responses_accept_every_field_the_sdk_can_send(sim: Sim) -> None:
    """Issue 19 point 4: these fields of the SDK's request model were 400 'unknown field'."""
    server, _ = sim
    body = agent_body("BTC")
    tool = {**body["tools"][0], "max_tokens": 2000, "max_tokens_per_page": 500}
    response = official(server).responses.create(
        **{**body, "tools": [{**tool, "search_type": "fast"}]},
        effort="low",
        profile={"id": "prof_sim", "type": "custom"},
        prompt_cache_key="rrr-sentiment",
        service_tier="auto",
        skills=[{"name": "office", "type": "builtin"}],
        step_budget_reminder=True,
    )
    assert response.status == "completed"


@pytest.mark.parametrize("field", ["metadata", "truncation", "stream_options"])
def test_a_field_the_sdk_does_not_know_is_a_bad_request(sim: Sim, field: str) -> None:
    server, _ = sim
    with pytest.raises(perplexity.BadRequestError) as info:
        official(server).responses.create(**agent_body("BTC"), extra_body={field: {}})
    assert info.value.status_code == 400
    assert info.value.body == {
        "error": {
            "message": f'invalid request body: json: unknown field "{field}"',
            "type": "invalid_request",
            "code": 400,
            "param": field,
        }
    }


@pytest.mark.parametrize("api", ["agent", "sonar"])
def test_429_is_the_sdk_rate_limit_error_with_retry_after(sim: Sim, api: str) -> None:
    server, options = sim
    options.fail_next(429, retry_after_s=2)
    client = official(server)
    with pytest.raises(perplexity.RateLimitError) as info:
        if api == "agent":
            client.responses.create(**agent_body("BTC"))
        else:
            client.chat.completions.create(**sonar_body("BTC"))
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "2"
    assert isinstance(info.value.body, dict)
    assert info.value.body["error"]["type"] == "request_rate_limit_exceeded"


def test_the_sdk_retries_a_429_itself_when_its_retries_are_on(sim: Sim) -> None:
    server, options = sim
    options.fail_next(429, retry_after_s=0.1)
    client = perplexity.Perplexity(api_key=KEY, base_url=server.base_url, max_retries=1)
    assert client.responses.create(**agent_body("BTC")).status == "completed"
    assert options.served == 2


def test_a_wrong_key_is_the_sdk_authentication_error_with_the_html_page(sim: Sim) -> None:
    server, _ = sim
    with pytest.raises(perplexity.AuthenticationError) as info:
        official(server, key="pplx-wrong").chat.completions.create(**sonar_body("BTC"))
    assert info.value.status_code == 401
    assert info.value.response.headers["content-type"] == "text/html"
    assert "<title>401 Authorization Required</title>" in str(info.value.body)


def test_the_json_401_variant_is_an_authentication_error_too(sim: Sim) -> None:
    server, options = sim
    options.auth_json = True
    with pytest.raises(perplexity.AuthenticationError) as info:
        official(server, key="pplx-wrong").responses.create(**agent_body("BTC"))
    assert (
        isinstance(info.value.body, dict) and info.value.body["error"]["type"] == "invalid_api_key"
    )


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, perplexity.InternalServerError), (503, perplexity.InternalServerError)],
)
def test_server_errors_are_the_sdk_internal_server_error(
    sim: Sim, status: int, error: type[Exception]
) -> None:
    server, options = sim
    options.fail_next(status)
    with pytest.raises(error) as info:
        official(server).responses.create(**agent_body("BTC"))
    assert info.value.status_code == status  # type: ignore[attr-defined]


def test_a_truncated_chat_completion_finishes_with_length(sim: Sim) -> None:
    server, options = sim
    options.answer_next("truncated")
    completion = official(server).chat.completions.create(**sonar_body("BTC"))
    assert unknown_fields(completion) == []
    assert completion.choices[0].finish_reason == "length"
    with pytest.raises(ValueError):
        json.loads(completion.choices[0].message.content)


def test_a_truncated_agent_run_is_incomplete_as_spec_5_says(sim: Sim) -> None:
    """Spec 5: ``status: incomplete`` with ``incomplete_details.reason: max_output_tokens``.
    The SDK as shipped (lax) hands both through; its strict models know neither, and that is
    the only thing they refuse in the body."""
    server, options = sim
    options.answer_next("truncated", count=2)
    response = official(server, strict=False).responses.create(**agent_body("BTC"))
    assert response.status == "incomplete"
    assert response.model_extra == {"incomplete_details": {"reason": "max_output_tokens"}}
    assert type(response.output[-1]) is sdk_api.MessageOutputItemOutput
    with pytest.raises(perplexity.APIResponseValidationError) as info:
        official(server).responses.create(**agent_body("BTC"))
    body = info.value.body
    assert isinstance(body, dict)
    body = {k: v for k, v in body.items() if k != "incomplete_details"} | {"status": "completed"}
    body["output"] = [
        {**item, "status": "completed"} if "status" in item else item for item in body["output"]
    ]
    assert unknown_fields(sdk_api.ResponsesResponseOutput.model_validate(body)) == []
