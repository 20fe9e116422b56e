"""Bodies the Perplexity simulator answers with: schema-valid sentiment JSON (or a deliberately
broken variant), in the Sonar chat-completions shape (fixture 01/02) or the Agent API shape
(spec 5). Invented sources live under the reserved ``.invalid`` domain, so they can never be
mistaken for real articles."""

from __future__ import annotations

import json
import random
import re
import uuid
from typing import Any

from rrr.sentiment.prompts import ASSET_NAMES, is_reasoning_model

# What a simulated answer looks like; "valid" is schema-valid, the rest exercise the client.
ANSWER_MODES = (
    "valid",
    "fenced",  # JSON inside a Markdown code fence
    "prose",  # JSON with a sentence before and after
    "malformed",  # not JSON at all
    "out_of_range",  # sentiment_score 1.7
    "bad_label",  # sentiment_label "very bullish"
    "truncated",  # JSON cut off; finish_reason length / status incomplete
    "citations_only",  # Sonar: no search_results, only the older citations list
    "no_sources",  # no search results at all
)

# $ per 1M tokens in / out, and the per-request fee at low search context (spec 1.3).
SONAR_PRICES = {
    "sonar": (1.0, 1.0, 0.005),
    "sonar-pro": (3.0, 15.0, 0.006),
    "sonar-reasoning-pro": (2.0, 8.0, 0.006),
    "sonar-deep-research": (2.0, 8.0, 0.0),
}
AGENT_SEARCH_FEE = 0.005  # per web_search invocation (spec 5)

_ASSET_RE = re.compile(r"\(([A-Z0-9]{1,12})\)")
_TOPICS = (
    ("ETF flows steady", "spot ETF flows were roughly balanced over the day."),
    ("exchange volumes climb", "spot exchange volumes rose while funding rates stayed flat."),
    ("regulator comment period opens", "a regulator opened a comment period on custody rules."),
)


def asset_in(prompt: str) -> str:
    """The ticker our prompt names in parentheses, e.g. '... Bitcoin (BTC) ...' -> BTC."""
    m = _ASSET_RE.search(prompt)
    return m.group(1) if m else "CRYPTO"


def simulated_verdict(asset: str, rng: random.Random) -> dict[str, Any]:
    score = round(rng.uniform(-0.8, 0.8), 2)
    label = "bullish" if score >= 0.15 else "bearish" if score <= -0.15 else "neutral"
    name = ASSET_NAMES.get(asset, asset)
    return {
        "sentiment_label": label,
        "sentiment_score": score,
        "confidence": round(rng.uniform(0.4, 0.85), 2),
        "reasoning": f"Simulated reading for {name}: news flow is {label} in this offline demo.",
        "key_drivers": ["simulated ETF flows", "simulated exchange volumes"],
    }


def answer_text(verdict: dict[str, Any], mode: str, think: bool) -> str:
    """The model's text for ``mode``; reasoning models prefix a <think> block."""
    if mode == "out_of_range":
        verdict = {**verdict, "sentiment_score": 1.7}
    elif mode == "bad_label":
        verdict = {**verdict, "sentiment_label": "very bullish"}
    text = json.dumps(verdict, separators=(",", ":"))
    if mode == "fenced":
        text = f"```json\n{text}\n```"
    elif mode == "prose":
        text = f"Here is the sentiment you asked for: {text} Let me know if you need more."
    elif mode == "malformed":
        text = "Sentiment looks broadly positive today, with ETF inflows continuing."
    elif mode == "truncated":
        text = text[: len(text) // 2]
    if think:
        text = (
            "<think>\nSimulated reasoning: weigh the three sources, then answer.\n</think>\n\n"
            + (text)
        )
    return text


def search_results(asset: str, day: str) -> list[dict[str, Any]]:
    name = ASSET_NAMES.get(asset, asset)
    return [
        {
            "title": f"Simulated: {name} {title}",
            "url": f"https://news.simulator.invalid/{asset.lower()}/{i + 1}",
            "date": day,
            "last_updated": day,
            "snippet": f"Simulator snippet: {snippet}",
            "source": "web",
        }
        for i, (title, snippet) in enumerate(_TOPICS)
    ]


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def sonar_response(
    body: dict[str, Any], mode: str, seed: str, now_s: int, day: str
) -> dict[str, Any]:
    model = str(body["model"])
    prompt = " ".join(str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict))
    asset = asset_in(prompt)
    rng = random.Random(f"{seed}:{asset}")
    text = answer_text(simulated_verdict(asset, rng), mode, is_reasoning_model(model))
    results = [] if mode == "no_sources" else search_results(asset, day)
    tokens_in, tokens_out = _tokens(prompt), _tokens(text)
    price_in, price_out, fee = SONAR_PRICES.get(model, SONAR_PRICES["sonar"])
    cost_in, cost_out = tokens_in * price_in / 1e6, tokens_out * price_out / 1e6
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "model": model,
        "created": now_s,
        "usage": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "search_context_size": "low",
            "cost": {
                "input_tokens_cost": round(cost_in, 6),
                "output_tokens_cost": round(cost_out, 6),
                "request_cost": fee,
                "total_cost": round(cost_in + cost_out + fee, 6),
            },
        },
        "citations": [r["url"] for r in results],
        "search_results": [] if mode == "citations_only" else results,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "length" if mode == "truncated" else "stop",
                "message": {"role": "assistant", "content": text},
                "delta": {"role": "assistant", "content": ""},
            }
        ],
    }


def agent_prompt(body: dict[str, Any]) -> str:
    raw = body.get("input")
    if isinstance(raw, str):
        return raw
    return " ".join(str(item.get("content", "")) for item in raw or [] if isinstance(item, dict))


def agent_response(
    body: dict[str, Any], mode: str, seed: str, now_s: int, day: str
) -> dict[str, Any]:
    model = str(body.get("model") or "perplexity/sonar")
    prompt = agent_prompt(body)
    asset = asset_in(prompt)
    rng = random.Random(f"{seed}:{asset}")
    # The Agent API has no <think> in its output: reasoning never appears as output items.
    text = answer_text(simulated_verdict(asset, rng), mode, think=False)
    searched = any(
        isinstance(t, dict) and t.get("type") == "web_search" for t in body.get("tools") or []
    )
    output: list[dict[str, Any]] = []
    if searched and mode != "no_sources":
        # Agent search results carry an integer ``id`` (spec 5; ``SearchResultOutput.id: int``
        # in the SDK's perplexity/generated/api.py): without it the SDK's lax parse falls back
        # to its first output type and reads the item as a message. Sonar's have none.
        results = [{"id": i, **r} for i, r in enumerate(search_results(asset, day), 1)]
        output.append({"type": "search_results", "queries": [prompt], "results": results})
    output.append(
        {
            "type": "message",
            "id": f"msg_{rng.getrandbits(64):016x}",
            "status": "incomplete" if mode == "truncated" else "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
    )
    tokens_in, tokens_out = _tokens(prompt), _tokens(text)
    search_fee = AGENT_SEARCH_FEE if searched else 0.0
    cost_in, cost_out = tokens_in / 1e6, tokens_out / 1e6
    response: dict[str, Any] = {
        "id": f"resp_{rng.getrandbits(96):024x}",
        "object": "response",
        "created_at": now_s,
        "status": "incomplete" if mode == "truncated" else "completed",
        "model": model,
        "output": output,
        "usage": {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "tool_calls_details": {"search_web": {"invocation": 1 if searched else 0}},
            "cost": {
                "currency": "USD",
                "input_cost": round(cost_in, 6),
                "output_cost": round(cost_out, 6),
                "tool_calls_cost": search_fee,
                "total_cost": round(cost_in + cost_out + search_fee, 6),
            },
        },
    }
    if mode == "truncated":
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    return response
