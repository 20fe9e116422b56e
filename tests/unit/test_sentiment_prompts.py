"""Prompt, bodies and answer parsing, pure: every Perplexity fixture through the parsers with
exact values, and a table of answers that must be rejected (never clamped)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from rrr.errors import VendorUnavailable
from rrr.sentiment.analyzer import assets_of, interval_start_ms, no_key_event, to_asset
from rrr.sentiment.prompts import (
    SENTIMENT_SCHEMA,
    AnswerRejected,
    Verdict,
    agent_body,
    answer_json_text,
    parse_verdict,
    sonar_body,
)
from rrr.sentiment.responses import (
    parse_agent_response,
    parse_sonar_response,
    score_answer,
)
from rrr.simulator.perplexity import unknown_agent_field

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "perplexity"
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))
FIXTURE_SOURCES = [
    {
        "title": "Fixture: spot bitcoin ETFs log third straight day of net inflows",
        "url": "https://www.coindesk.com/fixture/btc-etf-inflows-day-three",
        "date": "2026-09-01",
    },
    {
        "title": "Fixture: regulator delays decision on exchange rules",
        "url": "https://www.reuters.com/fixture/crypto-exchange-rules-delay",
        "date": "2026-08-31",
    },
    {
        "title": "Fixture: BTC holds range as funding rates cool",
        "url": "https://www.theblock.co/fixture/btc-range-funding-cools",
        "date": "2026-09-01",
    },
]


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text()))


def test_all_five_fixtures_are_present() -> None:
    assert [p.name[:2] for p in FIXTURE_FILES] == ["01", "02", "03", "04", "05"]


def test_fixture_01_sonar_json_schema_success() -> None:
    answer = parse_sonar_response(fixture("01-sonar-json-schema-success.json")["response"]["body"])
    assert answer.model == "sonar"
    assert answer.response_id == "fd83b2d7-93ef-4700-8038-3aad114c382e"
    assert answer.truncated is False
    assert answer.sources == FIXTURE_SOURCES
    assert answer.usage == {
        "input_tokens": 212,
        "output_tokens": 96,
        "total_tokens": 308,
        "cost_usd": 0.005308,
        "cost": {
            "input_tokens_cost": 0.000212,
            "output_tokens_cost": 9.6e-05,
            "request_cost": 0.005,
            "total_cost": 0.005308,
        },
    }
    assert score_answer(answer) == Verdict(
        label="bullish",
        score=0.42,
        confidence=0.66,
        reasoning="Continued ETF inflows outweigh a delayed regulatory decision; derivatives "
        "positioning has cooled rather than reversed.",
        key_drivers=["spot ETF net inflows", "regulatory delay", "cooling funding rates"],
    )


def test_fixture_02_reasoning_model_think_prefix_is_stripped() -> None:
    body = fixture("02-sonar-reasoning-pro-think-prefix.json")["response"]["body"]
    answer = parse_sonar_response(body)
    assert answer.text.startswith("<think>\n")
    assert answer.model == "sonar-reasoning-pro"
    assert answer.usage["input_tokens"] == 230
    assert answer.usage["output_tokens"] == 410
    assert answer.usage["cost_usd"] == 0.00974
    assert answer.sources == FIXTURE_SOURCES
    assert score_answer(answer) == Verdict(
        label="neutral",
        score=0.12,
        confidence=0.55,
        reasoning="Positive ETF flow news is offset by regulatory uncertainty; price action is "
        "range-bound.",
        key_drivers=["ETF inflows", "regulatory delay", "range-bound price"],
    )


@pytest.mark.parametrize(
    "name",
    ["03-401-invalid-key-html.json", "04-429-rate-limited.json", "05-400-invalid-model.json"],
)
def test_error_fixtures_are_not_answers(name: str) -> None:
    """Error bodies (HTML text or JSON envelopes) never parse as an answer; their HTTP status
    is mapped by the client (tests/unit/test_sentiment_client.py)."""
    response = fixture(name)["response"]
    body = response.get("body", response.get("body_text"))
    with pytest.raises(AnswerRejected):
        parse_sonar_response(body)


def test_fixture_requests_match_our_sonar_body_shape() -> None:
    ours = sonar_body("BTC")
    for path in FIXTURE_FILES:
        theirs = json.loads(path.read_text())["request"]["body"]
        assert set(ours) == set(theirs)
        assert ours["search_recency_filter"] == theirs["search_recency_filter"]
        assert ours["search_domain_filter"] == theirs["search_domain_filter"]
        assert ours["web_search_options"] == theirs["web_search_options"]
        assert [m["role"] for m in ours["messages"]] == ["system", "user"]
        assert ours["messages"][1]["content"] == theirs["messages"][1]["content"]
    assert sonar_body("BTC", "sonar-reasoning-pro")["max_tokens"] == 2000


def test_citations_are_the_fallback_for_missing_search_results() -> None:
    body = fixture("01-sonar-json-schema-success.json")["response"]["body"]
    del body["search_results"]
    urls = [s["url"] for s in parse_sonar_response(body).sources]
    assert urls == body["citations"]


def test_sources_never_come_from_the_model_text() -> None:
    body = fixture("01-sonar-json-schema-success.json")["response"]["body"]
    body["search_results"], body["citations"] = [], None
    body["choices"][0]["message"]["content"] = json.dumps(
        {
            "label": "neutral",
            "score": 0.0,
            "confidence": 0.2,
            "reasoning": "See https://invented.example/news for details.",
        }
    )
    answer = parse_sonar_response(body)
    assert answer.sources == []
    assert score_answer(answer).reasoning == "See https://invented.example/news for details."


def test_agent_body_is_accepted_by_the_strict_agent_contract() -> None:
    body = agent_body("ETH")
    assert unknown_agent_field(body) is None
    assert body["model"] == "perplexity/sonar"
    assert body["response_format"]["json_schema"]["schema"] == SENTIMENT_SCHEMA
    assert body["tools"][0]["filters"]["search_recency_filter"] == "day"
    # Sonar-only fields would be a 400 on /v1/agent.
    for sonar_only in ("messages", "max_tokens", "web_search_options", "search_recency_filter"):
        assert sonar_only not in body
    assert "Ethereum (ETH)" in body["input"]


def agent_body_of(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "model": "perplexity/sonar",
        "output": [
            {
                "type": "search_results",
                "queries": ["q"],
                "results": [
                    {"id": 1, "url": "https://a.example/1", "title": "A", "date": "2026-11-01"},
                    {"id": 2, "url": "https://a.example/1", "title": "A again"},
                    {"id": 3, "title": "no url"},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            },
        ],
        "usage": {
            "input_tokens": 10,
            "output_tokens": 20,
            "total_tokens": 30,
            "cost": {"currency": "USD", "total_cost": 0.0051},
        },
        **extra,
    }


VALID = '{"sentiment_label":"bearish","sentiment_score":-0.3,"confidence":0.7,"reasoning":"r"}'


def test_agent_response_takes_sources_from_the_search_results_item() -> None:
    answer = parse_agent_response(agent_body_of(VALID))
    assert answer.sources == [{"title": "A", "url": "https://a.example/1", "date": "2026-11-01"}]
    assert answer.usage["total_tokens"] == 30
    assert answer.usage["cost_usd"] == 0.0051
    assert score_answer(answer) == Verdict("bearish", -0.3, 0.7, "r", [])


def test_agent_failed_run_with_http_200_is_a_vendor_failure() -> None:
    body = agent_body_of(VALID, status="failed", error={"type": "internal_error", "message": "x"})
    with pytest.raises(VendorUnavailable, match="internal_error"):
        parse_agent_response(body)


def test_agent_incomplete_run_is_rejected_as_cut_off() -> None:
    body = agent_body_of(VALID[:30], status="incomplete")
    body["incomplete_details"] = {"reason": "max_output_tokens"}
    answer = parse_agent_response(body)
    with pytest.raises(AnswerRejected, match="cut off by the token limit") as info:
        score_answer(answer)
    assert info.value.raw == VALID[:30]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('```json\n{"a": 1}\n```', '{"a": 1}'),
        ("<think>\nhmm {x}\n</think>\n\n```\n{}\n```", "{}"),
        ("<think>a</think><think>b</think> {} ", "{}"),
        ('  {"a": 1}  ', '{"a": 1}'),
    ],
)
def test_answer_json_text(text: str, expected: str) -> None:
    assert answer_json_text(text) == expected


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        (VALID, Verdict("bearish", -0.3, 0.7, "r")),
        ('Sure: {"label":"Neutral","score":0,"confidence":1,"reasoning":" x "} ok', None),
        ('{"label":"bullish","score":1,"confidence":0,"reasoning":"","key_drivers":["a",2]}', None),
    ],
)
def test_valid_answers(text: str, verdict: Verdict | None) -> None:
    parsed = parse_verdict(text)
    if verdict is not None:
        assert parsed == verdict
    assert parsed.label in ("bullish", "neutral", "bearish")
    assert parsed.key_drivers in ([], ["a"])


REJECTED = [
    ('{"label":"bullish","score":1.7,"confidence":0.5,"reasoning":"r"}', "outside [-1, 1]"),
    ('{"label":"bearish","score":-1.01,"confidence":0.5,"reasoning":"r"}', "outside [-1, 1]"),
    ('{"label":"neutral","score":0,"confidence":1.2,"reasoning":"r"}', "outside [0, 1]"),
    ('{"label":"neutral","score":0,"confidence":-0.1,"reasoning":"r"}', "outside [0, 1]"),
    ('{"label":"neutral","score":NaN,"confidence":0.5,"reasoning":"r"}', "outside"),
    ('{"label":"neutral","score":true,"confidence":0.5,"reasoning":"r"}', "not a number"),
    ('{"label":"neutral","score":"0.1","confidence":0.5,"reasoning":"r"}', "not a number"),
    ('{"label":"very bullish","score":0.9,"confidence":0.5,"reasoning":"r"}', "not one of"),
    ('{"score":0.9,"confidence":0.5,"reasoning":"r"}', "label None"),
    ('{"label":"neutral","score":0.1,"confidence":0.5}', "reasoning is not text"),
    ('{"label":"bullish","score":-0.4,"confidence":0.5,"reasoning":"r"}', "contradicts"),
    ('{"label":"bearish","score":0.4,"confidence":0.5,"reasoning":"r"}', "contradicts"),
    ("Sentiment is positive today.", "no JSON object"),
    ('{"label": "bullish", "score": 0.5', "no JSON object"),
    ('prefix {"label": bullish} suffix', "not valid JSON"),
    ("[1, 2]", "not an object"),
    ('<think>\nstill thinking {"label":', "never closed"),
]


@pytest.mark.parametrize(("text", "reason"), REJECTED)
def test_rejected_answers_keep_the_raw_text(text: str, reason: str) -> None:
    with pytest.raises(AnswerRejected) as info:
        parse_verdict(text)
    assert reason in info.value.reason
    assert info.value.raw == text


def test_envelope_without_content_is_rejected_with_the_body_kept() -> None:
    body = copy.deepcopy(fixture("01-sonar-json-schema-success.json")["response"]["body"])
    body["choices"] = []
    with pytest.raises(AnswerRejected, match="no choices") as info:
        parse_sonar_response(body)
    assert "fd83b2d7" in info.value.raw


def test_interval_start_floors_to_the_interval() -> None:
    assert interval_start_ms(1_700_000_123_456, 900) == 1_700_000_100_000
    assert interval_start_ms(1_700_000_100_000, 900) == 1_700_000_100_000
    assert interval_start_ms(1_700_000_099_999, 900) == 1_699_999_200_000
    assert interval_start_ms(5_999, 2) == 4_000


def test_assets_come_from_tickers_once_each() -> None:
    assert assets_of(["X:BTCUSD", "X:ETHUSD", "X:BTCEUR"]) == ["BTC", "ETH"]
    assert [to_asset(a) for a in ("btc", "X:ETHUSDT", " SOL ")] == ["BTC", "ETH", "SOL"]
    with pytest.raises(ValueError):
        to_asset("BTC-USD")


def test_no_key_event_is_one_per_interval() -> None:
    a, b = no_key_event(1_000, 0), no_key_event(1_500, 0)
    assert a.dedupe_key == b.dedupe_key == "sentiment:no_key:0"
    assert no_key_event(901_000, 900_000).dedupe_key != a.dedupe_key
    assert "PERPLEXITY_API_KEY" in a.message
