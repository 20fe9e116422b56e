"""A local Perplexity: both contracts on 127.0.0.1, so the offline demo and the tests exercise
the real client path.

- Sonar chat completions: ``POST /chat/completions`` (also ``/v1/sonar``, ``/v1/chat/completions``)
  with the validation order of spec 7 (model -> roles -> response_format), fixture-shaped bodies
  and ``<think>`` prefixes for reasoning models.
- Agent API: ``POST /v1/responses`` (the path the official SDK posts to; spec 5 names it the
  alias of ``/v1/agent``, served too) with a STRICT body: any unknown field, top-level or
  nested, is a 400 ``invalid_request`` naming it, as the real endpoint does. Chat completions
  has no such allowlist: spec 1.2 calls the obsolete ``return_citations`` "harmless if sent"
  and strictness is documented for the Agent API only (spec 5).
- Auth: a missing key (or, with ``api_key`` set, a different one) is a 401 HTML page as recorded
  in fixture 03 (``auth_json=True``: the JSON variant).
- Faults on demand: ``options.fail_next(429, count=2, retry_after_s=1)``, or over HTTP
  ``POST /_sim/perplexity/fail`` with ``{"status": 429, "count": 2, "retry_after_s": 1}``;
  odd answers with ``answer_next("malformed")`` / ``POST /_sim/perplexity/answer``
  ``{"mode": "malformed", "count": 1}``; ``GET /_sim/perplexity/stats`` counts requests.

Every response carries ``X-Rrr-Simulator: perplexity``: the client stores rows made from these
answers with source='simulator'.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rrr.simulator.http import Handler, Request, Response, Routes
from rrr.simulator.perplexity_answers import ANSWER_MODES, agent_response, sonar_response

SIMULATOR_HEADER = {"X-Rrr-Simulator": "perplexity"}
SONAR_MODELS = ("sonar", "sonar-pro", "sonar-reasoning-pro", "sonar-deep-research")
AGENT_PROVIDERS = ("openai/", "anthropic/", "google/", "xai/")
AGENT_MODELS = ("perplexity/sonar",)
# Fixture 03, the recorded 401 body (Cloudflare script trimmed).
HTML_401 = (
    "<html>\n<head><title>401 Authorization Required</title></head>\n<body>\n"
    "<center><h1>401 Authorization Required</h1></center>\n<hr><center>openresty/1.27.4</center>\n"
    "</body>\n</html>\n"
)
ERROR_TYPES = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "forbidden",
    429: "request_rate_limit_exceeded",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

# The Agent API's accepted request fields, per container. The real endpoint is strict (spec 5):
# anything else is a 400 naming it. Source: the official SDK's request model, perplexityai
# 0.46.1 ``perplexity/generated/api.py`` (the classes named below; ``responses.create`` validates
# its body with ``ResponsesRequestInput`` and posts it to ``/v1/responses``). The older TypedDict
# ``perplexity/types/response_create_params.py`` is not what ``create`` uses and lacks half of
# these. tests/unit/test_sentiment_simulator.py compares every table with the SDK's model.
# fmt: off
AGENT_FIELDS: dict[str, frozenset[str]] = {
    "": frozenset(  # ResponsesRequestInput
        {
            "background", "effort", "input", "instructions", "language_preference",
            "max_output_tokens", "max_steps", "model", "models", "preset",
            "previous_response_id", "profile", "prompt_cache_key", "reasoning",
            "response_format", "service_tier", "skills", "step_budget_reminder", "store",
            "stream", "temperature", "tool_choice", "tools", "top_p",
        }
    ),
    "tools.web_search": frozenset(  # WebSearchToolInput, plus max_results from spec 5
        {
            "type", "filters", "max_tokens", "max_tokens_per_page", "search_context_size",
            "search_type", "user_location", "max_results",
        }
    ),
    "tools.function": frozenset(  # FunctionToolInput
        {"type", "name", "description", "parameters", "strict"}
    ),
    "filters": frozenset(  # WebSearchFiltersInput
        {
            "search_domain_filter", "search_recency_filter", "search_after_date_filter",
            "search_before_date_filter", "last_updated_after_filter", "last_updated_before_filter",
        }
    ),
    "user_location": frozenset(  # ToolUserLocationInput
        {"city", "country", "latitude", "longitude", "region"}
    ),
    "response_format": frozenset({"type", "json_schema"}),  # ResponseFormatInput
    "json_schema": frozenset({"name", "schema", "strict", "description"}),  # JSONSchemaFormatInput
    "reasoning": frozenset({"effort"}),  # ReasoningConfigInput
    "input.message": frozenset({"type", "role", "content"}),  # InputMessageInput
}
# fmt: on
# Fields spec 5 documents that the SDK's model lacks (a caller sends them with extra_body).
AGENT_SPEC_ONLY_FIELDS = {"tools.web_search": frozenset({"max_results"})}


@dataclass
class PerplexitySimOptions:
    """Knobs of the simulated Perplexity; tests may change them while the server runs."""

    api_key: str | None = None  # None: any non-empty bearer key is accepted
    auth_json: bool = False  # 401 as JSON instead of fixture 03's HTML page
    answer_mode: str = "valid"  # default answer, one of ANSWER_MODES
    latency_s: float = 0.0
    seed: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)  # bodies received (last 100)
    _failures: list[tuple[int, float | None]] = field(default_factory=list)
    _answers: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _served: int = 0

    @property
    def served(self) -> int:
        return self._served

    def reset(self) -> None:
        """Back to valid, instant answers with nothing queued (between tests)."""
        with self._lock:
            self._failures.clear()
            self._answers.clear()
            self.requests.clear()
            self.answer_mode, self.latency_s, self._served = "valid", 0.0, 0

    def fail_next(self, status: int, count: int = 1, retry_after_s: float | None = None) -> None:
        with self._lock:
            self._failures += [(status, retry_after_s)] * count

    def answer_next(self, mode: str, count: int = 1) -> None:
        if mode not in ANSWER_MODES:
            raise ValueError(f"answer mode {mode!r} is not one of {', '.join(ANSWER_MODES)}")
        with self._lock:
            self._answers += [mode] * count

    def _next(self, body: Any) -> tuple[tuple[int, float | None] | None, str, str]:
        with self._lock:
            self.requests = [*self.requests[-99:], body if isinstance(body, dict) else {}]
            failure = self._failures.pop(0) if self._failures else None
            mode = self._answers.pop(0) if self._answers and not failure else self.answer_mode
            self._served += 1
            return failure, mode, f"{self.seed}:{self._served}"


def error(status: int, message: str, kind: str | None = None, **extra: Any) -> Response:
    detail: dict[str, Any] = {"message": message, "type": kind or ERROR_TYPES.get(status, "error")}
    payload = {"error": {**detail, "code": status, **extra}}
    return Response.json(status, payload, SIMULATOR_HEADER)


def unauthorized(options: PerplexitySimOptions) -> Response:
    if options.auth_json:
        return error(401, "Invalid API key provided. Ensure your API key is correct and active.")
    headers = {"Content-Type": "text/html", "Server": "cloudflare", **SIMULATOR_HEADER}
    return Response(401, HTML_401.encode(), headers)


def injected(status: int, retry_after_s: float | None, options: PerplexitySimOptions) -> Response:
    if status == 401:
        return unauthorized(options)
    response = error(status, f"Simulated HTTP {status}.")
    if status == 429 and retry_after_s is not None:
        response.headers["Retry-After"] = f"{retry_after_s:g}"
    return response


def key_refused(request: Request, options: PerplexitySimOptions) -> bool:
    auth = request.headers.get("authorization", "")
    key = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else ""
    return not key or (options.api_key is not None and key != options.api_key)


def sonar_problem(body: dict[str, Any]) -> Response | None:
    model = body.get("model")
    if model not in SONAR_MODELS:
        return error(
            400,
            f"Invalid model '{model}'. Permitted models can be found in the documentation at"
            " https://docs.perplexity.ai/guides/model-cards.",
            "invalid_model",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return error(400, "messages must be a non-empty list", "bad_request")
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    turns = roles[next((i for i, r in enumerate(roles) if r != "system"), len(roles)) :]
    if any(r != ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(turns)):
        return error(
            400,
            "After the (optional) system message(s), user and assistant roles should be"
            " alternating.",
            "invalid_message",
        )
    if not turns or turns[-1] != "user":
        return error(400, "Last message must have role `user`.", "invalid_message")
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in ("text", "json_schema"):
        return error(400, '["response_format.type must be text or json_schema"]', "bad_request")
    if body.get("stream"):
        return error(400, "the simulator does not stream", "invalid_parameter")
    return None


# (container, field) -> the container the field's object must match.
AGENT_NESTED = {
    ("", "response_format"): "response_format",
    ("response_format", "json_schema"): "json_schema",
    ("", "reasoning"): "reasoning",
    ("tools.web_search", "filters"): "filters",
    ("tools.web_search", "user_location"): "user_location",
}


def nested_container(container: str, key: str, item: Any) -> str | None:
    """The AGENT_FIELDS container a nested object must match; None when it is not checked
    (tool types and input items not tabled: mcp, sandbox, function-call outputs…)."""
    if not isinstance(item, dict):
        return None
    if (container, key) == ("", "tools"):  # a tool's fields depend on its type
        name = f"tools.{item.get('type')}"
    elif (container, key) == ("", "input"):  # a message item may omit its type
        name = "input.message" if item.get("type", "message") == "message" else ""
    else:
        name = AGENT_NESTED.get((container, key), "")
    return name if name in AGENT_FIELDS else None


def unknown_agent_field(value: dict[str, Any], container: str = "", path: str = "") -> str | None:
    """The first field the strict Agent API would refuse, as a dotted path; None if none."""
    for key, child in value.items():
        here = f"{path}.{key}" if path else key
        if key not in AGENT_FIELDS[container]:
            return here
        for item in child if isinstance(child, list) else [child]:
            nested = nested_container(container, key, item)
            found = nested and unknown_agent_field(item, nested, here)
            if found:
                return found
    return None


def agent_problem(body: dict[str, Any]) -> Response | None:
    unknown = unknown_agent_field(body)
    if unknown:
        name = unknown.rsplit(".", 1)[-1]
        return error(400, f'invalid request body: json: unknown field "{name}"', param=unknown)
    model = body.get("model")
    if model is None and not body.get("preset") and not body.get("models"):
        return error(400, "one of model, models or preset is required", "invalid_request")
    if (
        model is not None
        and model not in AGENT_MODELS
        and not str(model).startswith(AGENT_PROVIDERS)
    ):
        return error(400, f"Invalid model '{model}'. See GET /v1/models.", "invalid_model")
    if str(model).startswith("anthropic/") and "max_output_tokens" not in body:
        return error(
            400, "max_output_tokens is required when using Anthropic models", "invalid_request"
        )
    if not isinstance(body.get("input"), str | list):
        return error(400, "input must be a string or a list of messages", "invalid_request")
    if body.get("stream"):
        return error(400, "the simulator does not stream", "invalid_parameter")
    return None


Validator = Callable[[dict[str, Any]], Response | None]
Builder = Callable[[dict[str, Any], str, str, int, str], dict[str, Any]]


def _endpoint(options: PerplexitySimOptions, validate: Validator, build: Builder) -> Handler:
    def handle(request: Request) -> Response:
        if options.latency_s:
            time.sleep(options.latency_s)
        try:
            body = request.json()
        except ValueError:
            body = None
        failure, mode, seed = options._next(body)
        if failure:
            return injected(failure[0], failure[1], options)
        if key_refused(request, options):
            return unauthorized(options)
        if not isinstance(body, dict):
            return error(400, "the request body must be a JSON object", "bad_request")
        problem = validate(body)
        if problem:
            return problem
        now = datetime.now(UTC)
        payload = build(body, mode, seed, int(now.timestamp()), now.date().isoformat())
        return Response.json(200, payload, SIMULATOR_HEADER)

    return handle


def _control(options: PerplexitySimOptions) -> tuple[Handler, Handler, Handler]:
    def fail(request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("status"), int):
            return Response.json(400, {"error": 'send {"status": 429, "count": 2}'})
        options.fail_next(body["status"], int(body.get("count", 1)), body.get("retry_after_s"))
        return Response.json(200, {"queued": body})

    def answer(request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            return Response.json(400, {"error": 'send {"mode": "malformed", "count": 1}'})
        try:
            options.answer_next(str(body.get("mode")), int(body.get("count", 1)))
        except ValueError as exc:
            return Response.json(400, {"error": str(exc)})
        return Response.json(200, {"queued": body})

    def stats(_: Request) -> Response:
        return Response.json(
            200, {"served": options.served, "pending_failures": len(options._failures)}
        )

    return fail, answer, stats


def perplexity_routes(options: PerplexitySimOptions | None = None) -> Routes:
    """Route table for ``SimulatorHTTPServer``; mount next to the Polygon routes."""
    options = options or PerplexitySimOptions()
    sonar = _endpoint(options, sonar_problem, sonar_response)
    agent = _endpoint(options, agent_problem, agent_response)
    fail, answer, stats = _control(options)
    return {
        ("POST", "/chat/completions"): sonar,
        ("POST", "/v1/sonar"): sonar,
        ("POST", "/v1/chat/completions"): sonar,
        ("POST", "/v1/agent"): agent,
        ("POST", "/v1/responses"): agent,
        ("POST", "/_sim/perplexity/fail"): fail,
        ("POST", "/_sim/perplexity/answer"): answer,
        ("GET", "/_sim/perplexity/stats"): stats,
    }
