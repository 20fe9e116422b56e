"""Pure sentiment logic: the prompt, the JSON schema, request bodies for both Perplexity APIs,
and the parsers that turn a response into a validated ``Verdict``. No I/O, no clock.

Wire facts (../shared/specs/perplexity.md):
- Sonar chat completions (``POST /chat/completions``, announced to end 2026-09-27): text in
  ``choices[0].message.content``, sources in top-level ``search_results`` (falling back to the
  older ``citations`` URL list), usage in ``prompt_tokens``/``completion_tokens``/``cost``.
- Agent API (the default; ``POST /v1/responses``, the SDK's path and spec 5's alias of
  ``/v1/agent``): the body is STRICT (an unknown field is a 400), so only the fields below
  are ever sent. Text in ``output[type=message].content[type=output_text]``,
  sources in the ``output[type=search_results].results`` item; failed runs come back as HTTP 200
  with ``status: failed``.
- Envelopes (``choices``/``output``, sources, usage) are parsed in ``rrr.sentiment.responses``.
- Reasoning models prefix the JSON with ``<think>…</think>``; some models wrap it in a Markdown
  code fence. Bounds in the schema are hints to the model, not enforced by the vendor, so every
  answer is validated here and an out-of-range one is REJECTED (never clamped).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from rrr.errors import ParseError

Label = Literal["bullish", "neutral", "bearish"]
LABELS: tuple[Label, ...] = ("bullish", "neutral", "bearish")
DEFAULT_MODELS = {"agent": "perplexity/sonar", "sonar": "sonar"}
# Reasoning models spend tokens on <think> before the JSON: give them room or the JSON is cut.
MAX_TOKENS = 600
MAX_TOKENS_REASONING = 2000
RAW_KEEP_CHARS = 8000  # raw text kept with a rejected answer

NEWS_DOMAINS = ["coindesk.com", "cointelegraph.com", "theblock.co", "decrypt.co", "reuters.com"]
ASSET_NAMES = {
    "BTC": "Bitcoin",
    "ETH": "Ethereum",
    "SOL": "Solana",
    "XRP": "XRP",
    "DOGE": "Dogecoin",
    "ADA": "Cardano",
    "LTC": "Litecoin",
    "DOT": "Polkadot",
    "AVAX": "Avalanche",
    "LINK": "Chainlink",
}

# Kept constant (no timestamps) so the vendor's 10-30 s first-use schema warm-up happens once.
SENTIMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sentiment_label": {"type": "string", "enum": list(LABELS)},
        "sentiment_score": {"type": "number", "minimum": -1, "maximum": 1},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "reasoning": {"type": "string"},
        "key_drivers": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["sentiment_label", "sentiment_score", "confidence", "reasoning"],
    "additionalProperties": False,
}
SCHEMA_NAME = "crypto_sentiment"

# The search step ignores the system prompt, so the question itself goes in the user message;
# no few-shot examples (they trigger searches for the example) and no URLs asked for.
SYSTEM_PROMPT = (
    "You are a crypto market news analyst. Reply only with a JSON object with the keys "
    "sentiment_label (bullish|neutral|bearish), sentiment_score (-1..1, negative is bearish), "
    "confidence (0..1), reasoning (max 2 sentences) and key_drivers (list of short strings). "
    "Do not include URLs. If recent news is scarce, say so in reasoning and use a low confidence."
)


def user_prompt(asset: str) -> str:
    name = ASSET_NAMES.get(asset, asset)
    return (
        f"What is the current news sentiment for {name} ({asset}) over the last 24 hours, "
        "considering ETF flows, regulation, macro news and exchange events?"
    )


def is_reasoning_model(model: str) -> bool:
    return "reasoning" in model or "deep-research" in model


def sonar_body(asset: str, model: str = DEFAULT_MODELS["sonar"]) -> dict[str, Any]:
    """Chat-completions body. ``json_schema.name`` is left out: requests without it are the
    ones seen to succeed (spec 1.4)."""
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_prompt(asset)},
        ],
        "max_tokens": MAX_TOKENS_REASONING if is_reasoning_model(model) else MAX_TOKENS,
        "search_recency_filter": "day",
        "search_domain_filter": list(NEWS_DOMAINS),
        "web_search_options": {"search_context_size": "low"},
        "response_format": {"type": "json_schema", "json_schema": {"schema": SENTIMENT_SCHEMA}},
        "stream": False,
    }


def agent_body(asset: str, model: str = DEFAULT_MODELS["agent"]) -> dict[str, Any]:
    """Agent API body: only documented fields (strict endpoint). Search is not automatic there,
    so the web_search tool is offered and forced; the filters sit inside the tool."""
    return {
        "model": model,
        "instructions": SYSTEM_PROMPT,
        "input": user_prompt(asset),
        "tools": [
            {
                "type": "web_search",
                "filters": {
                    "search_recency_filter": "day",
                    "search_domain_filter": list(NEWS_DOMAINS),
                },
            }
        ],
        "tool_choice": {"type": "web_search"},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": SCHEMA_NAME, "schema": SENTIMENT_SCHEMA},
        },
        "max_output_tokens": MAX_TOKENS_REASONING if is_reasoning_model(model) else MAX_TOKENS,
    }


REQUEST_BODIES = {"agent": agent_body, "sonar": sonar_body}


class AnswerRejected(ParseError):
    """A response or answer that cannot become a Sentiment; ``raw`` keeps what was received."""

    def __init__(self, reason: str, raw: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw[:RAW_KEEP_CHARS]
        self.source = ""  # "perplexity" or "simulator", once known


@dataclass(frozen=True, slots=True)
class Verdict:
    label: Label
    score: float
    confidence: float
    reasoning: str
    key_drivers: list[str] = field(default_factory=list)


_FENCE_RE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?\s*```$", re.DOTALL)


def answer_json_text(content: str) -> str:
    """The JSON part of the model's text: after the last ``</think>``, without a code fence."""
    text = content
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    elif "<think>" in text:
        raise AnswerRejected("the <think> block never closed (answer cut off?)", content)
    text = text.strip()
    fenced = _FENCE_RE.match(text)
    return fenced.group(1).strip() if fenced else text


def _load_object(content: str) -> dict[str, Any]:
    text = answer_json_text(content)
    try:
        value = json.loads(text)
    except ValueError:
        # Prose around the JSON: take the outermost {...} span (Perplexity's own helper does).
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            raise AnswerRejected("the answer holds no JSON object", content) from None
        try:
            value = json.loads(text[start : end + 1])
        except ValueError as exc:
            raise AnswerRejected(f"the answer is not valid JSON: {exc}", content) from None
    if not isinstance(value, dict):
        raise AnswerRejected(f"the answer is JSON {type(value).__name__}, not an object", content)
    return value


def _first(obj: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in obj:
            return obj[key]
    return None


def _bounded(name: str, value: Any, low: float, high: float, content: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnswerRejected(f"{name} is not a number: {value!r}", content)
    if not math.isfinite(value) or not low <= value <= high:
        raise AnswerRejected(f"{name} {value!r} is outside [{low:g}, {high:g}]", content)
    return float(value)


def parse_verdict(content: str) -> Verdict:
    """Validate the model's answer. Field names from our schema (``sentiment_label``,
    ``sentiment_score``) or the spec's shorter ones (``label``, ``score``) are both read."""
    obj = _load_object(content)
    label = _first(obj, "sentiment_label", "label")
    if not isinstance(label, str) or label.strip().lower() not in LABELS:
        raise AnswerRejected(f"label {label!r} is not one of {', '.join(LABELS)}", content)
    label = cast(Label, label.strip().lower())
    score = _bounded("score", _first(obj, "sentiment_score", "score"), -1.0, 1.0, content)
    confidence = _bounded("confidence", obj.get("confidence"), 0.0, 1.0, content)
    reasoning = obj.get("reasoning")
    if not isinstance(reasoning, str):
        raise AnswerRejected(f"reasoning is not text: {reasoning!r}", content)
    # Own rule (spec 6.1.7): a label and a score of opposite signs contradict each other.
    if (label == "bullish" and score < 0) or (label == "bearish" and score > 0):
        raise AnswerRejected(f"label {label} contradicts score {score:g}", content)
    drivers = obj.get("key_drivers")
    key_drivers = [d for d in drivers if isinstance(d, str)] if isinstance(drivers, list) else []
    return Verdict(label, score, confidence, reasoning.strip(), key_drivers)
