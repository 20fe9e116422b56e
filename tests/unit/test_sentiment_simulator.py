"""The simulated Perplexity's handlers as plain functions (Request -> Response, no socket):
both contracts, strict Agent bodies, fixture-exact errors, faults and answer modes on demand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from perplexity.generated import api as sdk_api
from pydantic import BaseModel

from rrr.sentiment.prompts import AnswerRejected, agent_body, sonar_body
from rrr.sentiment.responses import parse_agent_response, parse_sonar_response, score_answer
from rrr.simulator.http import Request, Response, match_route
from rrr.simulator.perplexity import (
    AGENT_FIELDS,
    AGENT_SPEC_ONLY_FIELDS,
    PerplexitySimOptions,
    perplexity_routes,
)
from rrr.simulator.perplexity_answers import ANSWER_MODES

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "perplexity"
AUTH = {"authorization": "Bearer sim-key"}


def call(
    options: PerplexitySimOptions, path: str, body: Any, headers: dict[str, str] | None = None
) -> Response:
    routes = perplexity_routes(options)
    method = "GET" if body is None else "POST"
    handler = match_route(routes, method, path)
    assert handler is not None, path
    raw = b"" if body is None else orjson.dumps(body)
    return handler(Request(method, path, {}, AUTH if headers is None else headers, raw))


def payload(response: Response) -> Any:
    return orjson.loads(response.body)


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/sonar", "/v1/chat/completions"])
def test_sonar_paths_answer_schema_valid_json(path: str) -> None:
    response = call(PerplexitySimOptions(), path, sonar_body("BTC"))
    assert response.status == 200
    assert response.headers["X-Rrr-Simulator"] == "perplexity"
    body = payload(response)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert body["citations"] == [r["url"] for r in body["search_results"]]
    answer = parse_sonar_response(body)
    verdict = score_answer(answer)
    assert -1 <= verdict.score <= 1 and 0 <= verdict.confidence <= 1
    assert len(answer.sources) == 3 and answer.usage["cost_usd"] > 0.005


@pytest.mark.parametrize("path", ["/v1/agent", "/v1/responses"])
def test_agent_paths_answer_schema_valid_json(path: str) -> None:
    body = payload(call(PerplexitySimOptions(), path, agent_body("ETH")))
    assert body["object"] == "response" and body["status"] == "completed"
    assert [item["type"] for item in body["output"]] == ["search_results", "message"]
    answer = parse_agent_response(body)
    assert score_answer(answer).reasoning.startswith("Simulated reading for Ethereum")
    assert all(s["url"].startswith("https://news.simulator.invalid/eth/") for s in answer.sources)


def test_reasoning_models_prefix_a_think_block() -> None:
    body = payload(
        call(PerplexitySimOptions(), "/chat/completions", sonar_body("BTC", "sonar-reasoning-pro"))
    )
    content = body["choices"][0]["message"]["content"]
    assert content.startswith("<think>\n") and "</think>\n\n{" in content
    assert score_answer(parse_sonar_response(body)).label in ("bullish", "neutral", "bearish")


def test_agent_without_web_search_tool_returns_no_sources() -> None:
    request = agent_body("BTC")
    del request["tools"], request["tool_choice"]
    assert (
        parse_agent_response(payload(call(PerplexitySimOptions(), "/v1/agent", request))).sources
        == []
    )


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"messages": []}, "messages"),
        ({"max_tokens": 600}, "max_tokens"),
        ({"web_search_options": {"search_context_size": "low"}}, "web_search_options"),
        (
            {"tools": [{"type": "web_search", "filters": {"web_search_options": 1}}]},
            "tools.filters.web_search_options",
        ),
        ({"tools": [{"type": "web_search", "recency": "day"}]}, "tools.recency"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}, "x": 1}}},
            "response_format.json_schema.x",
        ),
        ({"input": [{"role": "user", "content": "hi", "name": "me"}]}, "input.name"),
    ],
)
def test_agent_body_is_strict(change: dict[str, Any], param: str) -> None:
    response = call(PerplexitySimOptions(), "/v1/agent", {**agent_body("BTC"), **change})
    assert response.status == 400
    error = payload(response)["error"]
    assert error["type"] == "invalid_request" and error["param"] == param
    assert (
        error["message"]
        == f'invalid request body: json: unknown field "{param.rsplit(".", 1)[-1]}"'
    )


def test_agent_rejects_an_unknown_model_and_anthropic_without_max_tokens() -> None:
    options = PerplexitySimOptions()
    bad = call(options, "/v1/agent", {**agent_body("BTC"), "model": "perplexity/sonar-pro"})
    assert (bad.status, payload(bad)["error"]["type"]) == (400, "invalid_model")
    body = {
        k: v for k, v in agent_body("BTC", "anthropic/claude").items() if k != "max_output_tokens"
    }
    assert call(options, "/v1/agent", body).status == 400


def test_sonar_invalid_model_matches_fixture_05() -> None:
    recorded = json.loads((FIXTURES / "05-400-invalid-model.json").read_text())
    response = call(PerplexitySimOptions(), "/chat/completions", recorded["request"]["body"])
    assert response.status == 400
    assert payload(response) == recorded["response"]["body"]


def test_sonar_role_order_errors_match_fixture_05_alternates() -> None:
    recorded = json.loads((FIXTURES / "05-400-invalid-model.json").read_text())["_fixture"]
    alternating, last_user = recorded["alternate_bodies"]
    body = sonar_body("BTC")
    twice = {**body, "messages": [*body["messages"], {"role": "user", "content": "again"}]}
    assert payload(call(PerplexitySimOptions(), "/chat/completions", twice)) == alternating
    ends = {**body, "messages": [*body["messages"], {"role": "assistant", "content": "ok"}]}
    assert payload(call(PerplexitySimOptions(), "/chat/completions", ends)) == last_user
    json_object = {**body, "response_format": {"type": "json_object"}}
    response = call(PerplexitySimOptions(), "/chat/completions", json_object)
    assert payload(response)["error"]["type"] == "bad_request"


def test_missing_key_is_fixture_03_html_401() -> None:
    recorded = json.loads((FIXTURES / "03-401-invalid-key-html.json").read_text())["response"]
    response = call(PerplexitySimOptions(), "/chat/completions", sonar_body("BTC"), headers={})
    assert response.status == 401
    assert response.headers["Content-Type"] == "text/html"
    assert response.body.decode() == recorded["body_text"]


def test_a_configured_key_refuses_others_and_json_401_on_demand() -> None:
    options = PerplexitySimOptions(api_key="right", auth_json=True)
    wrong = call(options, "/v1/agent", agent_body("BTC"))
    assert wrong.status == 401 and payload(wrong)["error"]["type"] == "invalid_api_key"
    right = call(options, "/v1/agent", agent_body("BTC"), headers={"authorization": "Bearer right"})
    assert right.status == 200


def test_failures_on_demand_then_back_to_normal() -> None:
    options = PerplexitySimOptions()
    assert (
        call(
            options, "/_sim/perplexity/fail", {"status": 429, "count": 2, "retry_after_s": 1}
        ).status
        == 200
    )
    statuses = [call(options, "/v1/agent", agent_body("BTC")) for _ in range(3)]
    assert [r.status for r in statuses] == [429, 429, 200]
    assert statuses[0].headers["Retry-After"] == "1"
    assert payload(statuses[0])["error"]["type"] == "request_rate_limit_exceeded"
    options.fail_next(500)
    options.fail_next(401)
    assert call(options, "/chat/completions", sonar_body("BTC")).status == 500
    assert call(options, "/chat/completions", sonar_body("BTC")).status == 401
    assert payload(call(options, "/_sim/perplexity/stats", None))["served"] == 5


@pytest.mark.parametrize("mode", [m for m in ANSWER_MODES if m != "valid"])
@pytest.mark.parametrize("api", ["sonar", "agent"])
def test_answer_modes(mode: str, api: str) -> None:
    options = PerplexitySimOptions()
    assert call(options, "/_sim/perplexity/answer", {"mode": mode}).status == 200
    path, body, parse = (
        ("/chat/completions", sonar_body("BTC"), parse_sonar_response)
        if api == "sonar"
        else ("/v1/agent", agent_body("BTC"), parse_agent_response)
    )
    answer = parse(payload(call(options, path, body)))
    if mode in ("malformed", "out_of_range", "bad_label", "truncated"):
        with pytest.raises(AnswerRejected):
            score_answer(answer)
    else:
        score_answer(answer)
    if mode == "no_sources" or (mode == "citations_only" and api == "agent"):
        assert len(answer.sources) == (0 if mode == "no_sources" else 3)
    elif mode == "citations_only":
        assert [s["title"] for s in answer.sources] == [None, None, None]
    # The next request is back to a valid answer.
    score_answer(parse(payload(call(options, path, body))))


def test_control_routes_refuse_bad_input() -> None:
    options = PerplexitySimOptions()
    assert call(options, "/_sim/perplexity/fail", {"count": 2}).status == 400
    assert call(options, "/_sim/perplexity/answer", {"mode": "nonsense"}).status == 400


# Each allowlist of the simulated Agent API against the official SDK's request model it cites
# (perplexityai 0.46.1, perplexity/generated/api.py): an SDK upgrade that adds or drops a field
# fails here instead of as a 400 from the simulator.
SDK_REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "": sdk_api.ResponsesRequestInput,
    "tools.web_search": sdk_api.WebSearchToolInput,
    "tools.function": sdk_api.FunctionToolInput,
    "filters": sdk_api.WebSearchFiltersInput,
    "user_location": sdk_api.ToolUserLocationInput,
    "response_format": sdk_api.ResponseFormatInput,
    "json_schema": sdk_api.JSONSchemaFormatInput,
    "reasoning": sdk_api.ReasoningConfigInput,
    "input.message": sdk_api.InputMessageInput,
}


@pytest.mark.parametrize("container", sorted(AGENT_FIELDS))
def test_agent_allowlists_are_the_sdk_request_models(container: str) -> None:
    model = SDK_REQUEST_MODELS[container]
    wire_names = {f.alias or name for name, f in model.model_fields.items()}
    spec_only = AGENT_SPEC_ONLY_FIELDS.get(container, frozenset())
    assert AGENT_FIELDS[container] == wire_names | spec_only


# Issue 19 point 4: fields the SDK sends that the simulator refused, at every level.
SDK_FIELDS_ONCE_REFUSED: list[dict[str, Any]] = [
    {"effort": "low"},
    {"profile": {"id": "prof_1", "type": "custom"}},
    {"prompt_cache_key": "sentiment"},
    {"service_tier": "auto"},
    {"skills": [{"name": "office", "type": "builtin"}]},
    {"step_budget_reminder": True},
    {"tools": [{"type": "web_search", "max_tokens": 2000, "max_tokens_per_page": 500}]},
    {"tools": [{"type": "web_search", "search_type": "fast", "user_location": {"country": "US"}}]},
]


@pytest.mark.parametrize("change", SDK_FIELDS_ONCE_REFUSED)
def test_agent_accepts_the_fields_the_sdk_sends(change: dict[str, Any]) -> None:
    body = {**agent_body("BTC"), **change}
    sdk_api.ResponsesRequestInput.model_validate(body)  # the SDK would send this body
    response = call(PerplexitySimOptions(), "/v1/responses", body)
    assert response.status == 200, payload(response)


@pytest.mark.parametrize(
    "field", ["stream_options", "truncation", "parallel_tool_calls", "max_tool_calls", "metadata"]
)
def test_agent_refuses_fields_neither_the_spec_nor_the_sdk_knows(field: str) -> None:
    assert field not in sdk_api.ResponsesRequestInput.model_fields
    response = call(PerplexitySimOptions(), "/v1/responses", {**agent_body("BTC"), field: 1})
    assert (response.status, payload(response)["error"]["param"]) == (400, field)


def test_agent_search_results_carry_integer_ids_and_sonar_ones_do_not() -> None:
    agent = payload(call(PerplexitySimOptions(), "/v1/responses", agent_body("BTC")))
    (search,) = [item for item in agent["output"] if item["type"] == "search_results"]
    assert [r["id"] for r in search["results"]] == [1, 2, 3]
    sonar = payload(call(PerplexitySimOptions(), "/chat/completions", sonar_body("BTC")))
    assert all("id" not in r for r in sonar["search_results"])


def test_chat_completions_accepts_fields_rrr_never_sends() -> None:
    """No allowlist on chat completions: spec 1.2 calls the obsolete return_citations
    "harmless if sent", and strictness is documented for the Agent API only (spec 5)."""
    body = {**sonar_body("BTC"), "return_citations": True, "search_mode": "web", "top_k": 3}
    assert call(PerplexitySimOptions(), "/chat/completions", body).status == 200
