"""The simulated Perplexity's handlers as plain functions (Request -> Response, no socket):
both contracts, strict Agent bodies, fixture-exact errors, faults and answer modes on demand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from rrr.sentiment.prompts import AnswerRejected, agent_body, sonar_body
from rrr.sentiment.responses import parse_agent_response, parse_sonar_response, score_answer
from rrr.simulator.http import Request, Response, match_route
from rrr.simulator.perplexity import PerplexitySimOptions, perplexity_routes
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
