"""Pure parsing of Perplexity 200 bodies into an ``Answer``: the model's text, the sources the
API returned (never URLs from the model's text, which the generator invents), token usage and
cost. The text is validated by ``rrr.sentiment.prompts.parse_verdict``.

- Sonar chat completions: ``choices[0].message.content``; sources in ``search_results`` (title,
  url, date), else the older ``citations`` URL list; usage ``prompt_tokens``,
  ``completion_tokens``, ``cost.total_cost``; ``finish_reason: length`` means cut off.
- Agent API: text in ``output[type=message].content[type=output_text]``; sources in the
  ``output[type=search_results].results`` item (no top-level lists); usage ``input_tokens``,
  ``output_tokens``, ``cost.total_cost``; failed/cancelled runs are HTTP 200 with ``status`` set.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rrr.errors import VendorUnavailable
from rrr.sentiment.prompts import RAW_KEEP_CHARS, AnswerRejected, Verdict, parse_verdict


@dataclass(frozen=True, slots=True)
class Answer:
    """A response envelope reduced to what we keep: the model's text plus vendor data."""

    text: str
    model: str
    sources: list[dict[str, Any]]
    usage: dict[str, Any]  # input_tokens, output_tokens, total_tokens, cost_usd, cost
    response_id: str
    truncated: bool = False  # finish_reason "length" / incomplete max_output_tokens
    source: str = "perplexity"  # "simulator" when the local test double answered


def score_answer(answer: Answer) -> Verdict:
    """``parse_verdict`` on the answer's text, saying so when the token limit cut it off."""
    try:
        return parse_verdict(answer.text)
    except AnswerRejected as exc:
        if answer.truncated:
            raise AnswerRejected(
                f"answer cut off by the token limit: {exc.reason}", exc.raw
            ) from None
        raise


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def body_text(body: Any) -> str:
    return json.dumps(body, default=str)[:RAW_KEEP_CHARS]


def _source_item(item: Any) -> dict[str, Any] | None:
    if not isinstance(item, dict) or not isinstance(item.get("url"), str) or not item["url"]:
        return None
    return {"title": item.get("title"), "url": item["url"], "date": item.get("date")}


def _unique_by_url(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item["url"] not in seen:
            seen.add(item["url"])
            out.append(item)
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def sonar_sources(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``search_results`` (title, url, date), else the older ``citations`` URL list. Never URLs
    from the model's text: the generator cannot see real URLs and invents them."""
    found = [s for s in map(_source_item, _list(body.get("search_results"))) if s]
    if not found:
        found = [
            {"title": None, "url": u, "date": None}
            for u in _list(body.get("citations"))
            if isinstance(u, str) and u
        ]
    return _unique_by_url(found)


def _usage(tokens_in: Any, tokens_out: Any, total: Any, cost: Any) -> dict[str, Any]:
    cost = cost if isinstance(cost, dict) else {}
    return {
        "input_tokens": tokens_in if isinstance(tokens_in, int) else None,
        "output_tokens": tokens_out if isinstance(tokens_out, int) else None,
        "total_tokens": total if isinstance(total, int) else None,
        "cost_usd": _number(cost.get("total_cost")),
        "cost": cost,
    }


def parse_sonar_response(body: Any) -> Answer:
    """A chat-completions 200 body -> Answer; a body without a text answer is rejected."""
    if not isinstance(body, dict):
        raise AnswerRejected("the response is not a JSON object", body_text(body))
    choices = _list(body.get("choices"))
    first = _dict(choices[0]) if choices else {}
    message = _dict(first.get("message"))
    content = message.get("content")
    if isinstance(content, list):  # rare: an array of content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise AnswerRejected("the response has no choices[0].message.content", body_text(body))
    usage = _dict(body.get("usage"))
    return Answer(
        text=content,
        model=str(body.get("model") or ""),
        sources=sonar_sources(body),
        usage=_usage(
            usage.get("prompt_tokens"),
            usage.get("completion_tokens"),
            usage.get("total_tokens"),
            usage.get("cost"),
        ),
        response_id=str(body.get("id") or ""),
        truncated=first.get("finish_reason") == "length",
    )


def agent_sources(output: list[Any]) -> list[dict[str, Any]]:
    """The ``search_results`` output items; else ``url_citation`` annotations (often empty)."""
    found: list[dict[str, Any]] = []
    for item in output:
        if isinstance(item, dict) and item.get("type") == "search_results":
            found += [s for s in map(_source_item, _list(item.get("results"))) if s]
    if not found:
        for part in _agent_parts(output):
            for note in _list(part.get("annotations")):
                if isinstance(note, dict) and note.get("type") == "url_citation":
                    found += [s for s in [_source_item(note)] if s]
    return _unique_by_url(found)


def _agent_parts(output: list[Any]) -> list[dict[str, Any]]:
    return [
        part
        for item in output
        if isinstance(item, dict) and item.get("type") == "message"
        for part in _list(item.get("content"))
        if isinstance(part, dict) and part.get("type") == "output_text"
    ]


def parse_agent_response(body: Any) -> Answer:
    """An Agent API 200 body -> Answer. Failed and cancelled runs arrive as HTTP 200 with
    ``status`` and ``error`` set: they are vendor failures (transient), not answers."""
    if not isinstance(body, dict):
        raise AnswerRejected("the response is not a JSON object", body_text(body))
    status = body.get("status")
    if status in ("failed", "cancelled", "queued", "in_progress"):
        error = _dict(body.get("error"))
        detail = f"{error.get('type', '')}: {error.get('message', '')}".strip(": ")
        raise VendorUnavailable(f"Perplexity run {status}" + (f" ({detail})" if detail else ""))
    output = _list(body.get("output"))
    parts = _agent_parts(output)
    if not parts:
        raise AnswerRejected("the response has no output_text message", body_text(body))
    usage = _dict(body.get("usage"))
    details = body.get("incomplete_details")
    return Answer(
        text="".join(str(p.get("text", "")) for p in parts),
        model=str(body.get("model") or ""),
        sources=agent_sources(output),
        usage=_usage(
            usage.get("input_tokens"),
            usage.get("output_tokens"),
            usage.get("total_tokens"),
            usage.get("cost"),
        ),
        response_id=str(body.get("id") or ""),
        truncated=status == "incomplete"
        or (isinstance(details, dict) and details.get("reason") == "max_output_tokens"),
    )


RESPONSE_PARSERS: dict[str, Callable[[Any], Answer]] = {
    "agent": parse_agent_response,
    "sonar": parse_sonar_response,
}
