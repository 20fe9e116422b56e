"""Perplexity over the vendor's official SDK (``perplexityai``, import name ``perplexity``): one
call per asset, to the Agent API (default, ``POST /v1/responses``) or Sonar chat completions
(``POST /chat/completions``). The prompt lives in ``prompts``, the parsers in ``responses``.

Why the SDK, behind rrr's own ``PerplexityClient``: it is Perplexity's maintained client, so
the paths, the bearer header and the request fields (validated by its own request models before
anything is sent) follow the vendor instead of our reading of the docs. Nothing the pipeline
needs is lost, because rrr keeps these parts:
- retries: the SDK's own are off (``max_retries=0``); rrr retries here with capped backoff and
  honours ``Retry-After``/``retry-after-ms``, and gives up on a wait longer than ``max_wait_s``
  (left to the next scheduled run), which the SDK's loop cannot express;
- errors: the SDK's exception classes are mapped at this edge to rrr's tree, the one the tasks
  classify (spec 3.1, 5): 401/403 -> VendorAuthError (the 401 is often an HTML page, so no error
  body is assumed to be JSON); 429 -> RateLimited; 408/409/5xx, timeouts and connection failures
  -> VendorUnavailable; other 4xx -> VendorError (our request is wrong: retrying never helps);
- parsing: the body is read as raw JSON (``with_raw_response``) and parsed by rrr's strict
  parsers, not by the SDK's lax model construction (which, e.g., reads a search-results item
  without an ``id`` as a message); the raw response also shows the simulator's marker header;
- secrets: the key goes to the SDK only; it is blanked from every text that goes into an error,
  and neither this client's repr nor a log line carries it.
Perplexity calls take no shared Redis rate limiter (one call per asset per 15 minutes, made one
at a time, is far below any tier's limit: spec 3.2); the timeout is ours (``timeout_s``).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import perplexity

from rrr.config import Secret
from rrr.errors import RateLimited, VendorAuthError, VendorError, VendorUnavailable
from rrr.models import SOURCE_SIMULATOR
from rrr.sentiment.prompts import DEFAULT_MODELS, REQUEST_BODIES, AnswerRejected
from rrr.sentiment.responses import RESPONSE_PARSERS, Answer

log = logging.getLogger(__name__)

# The local simulator marks every response with this header; rows from such answers carry
# source='simulator'. The real API never sends it.
SIMULATOR_HEADER = "X-Rrr-Simulator"
SOURCE_PERPLEXITY = "perplexity"

# The path of each call, as the SDK posts it (perplexity/generated/api.py in 0.46.1): the
# Agent API's ``/v1/responses`` is spec 5's alias of ``/v1/agent``, which the SDK never calls.
SDK_PATHS = {"agent": "/v1/responses", "sonar": "/chat/completions"}

_TITLE_RE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def sdk_base_url(base_url: str) -> str:
    """The SDK appends ``/v1/responses`` itself: a base ending in ``/v1`` (the OpenAI-SDK
    style, spec 4) loses that suffix."""
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def retry_after_s(headers: Mapping[str, str], now_s: float) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - now_s)
    except (TypeError, ValueError):
        return None


def backoff_s(attempt: int, jitter: float, cap_s: float = 8.0) -> float:
    """0.5 s, 1 s, 2 s … capped, scaled by ``jitter`` in [0, 1) to between half and all of it."""
    return min(cap_s, 0.5 * 2.0**attempt) * (0.5 + 0.5 * jitter)


def error_summary(response: httpx.Response, secret: str, limit: int = 300) -> str:
    """``type: message`` of a JSON error envelope, else an HTML page's title, else the start of
    the text; the key blanked in any case."""
    text = response.text or ""
    summary = ""
    try:
        error = response.json().get("error")
        if isinstance(error, dict):
            summary = ": ".join(str(error[k]) for k in ("type", "message") if error.get(k))
        elif isinstance(error, str):
            summary = error
    except (ValueError, AttributeError):
        title = _TITLE_RE.search(text)
        summary = f"HTML page '{title.group(1).strip()}'" if title else " ".join(text.split())
    summary = summary or " ".join(text.split())
    return summary.replace(secret, "***")[:limit] if secret else summary[:limit]


def _call_agent(sdk: perplexity.Perplexity, body: dict[str, Any]) -> httpx.Response:
    return sdk.responses.with_raw_response.create(**body).http_response


def _call_sonar(sdk: perplexity.Perplexity, body: dict[str, Any]) -> httpx.Response:
    return sdk.chat.completions.with_raw_response.create(**body).http_response


SDK_CALLS: dict[str, Callable[[perplexity.Perplexity, dict[str, Any]], httpx.Response]] = {
    "agent": _call_agent,
    "sonar": _call_sonar,
}


class PerplexityClient:
    """``ask(asset)`` -> the vendor's Answer for one asset (text still unvalidated)."""

    def __init__(
        self,
        base_url: str,
        api_key: Secret | str,
        api: str = "agent",
        model: str | None = None,
        *,
        http_client: httpx.Client | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        max_wait_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if api not in REQUEST_BODIES:
            raise ValueError(f"api must be 'agent' or 'sonar', not {api!r}")
        self.base_url = sdk_base_url(base_url)
        self.api = api
        self.model = model or DEFAULT_MODELS[api]
        self.url = self.base_url + SDK_PATHS[api]
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_wait_s = max_wait_s
        self._sleep = sleep
        self._jitter = jitter
        # base_url and api_key are always given, so the SDK never reads PERPLEXITY_* itself.
        self._sdk = perplexity.Perplexity(
            api_key=self._key.reveal(),
            base_url=self.base_url,
            timeout=timeout_s,
            max_retries=0,  # rrr retries in ask(), honouring Retry-After and max_wait_s
            http_client=http_client,
        )

    def __repr__(self) -> str:
        return f"PerplexityClient(url={self.url!r}, api={self.api!r}, model={self.model!r})"

    def ask(self, asset: str) -> Answer:
        body = REQUEST_BODIES[self.api](asset, self.model)
        attempt = 0
        while True:
            try:
                return self._answer(self._post(body))
            except (RateLimited, VendorUnavailable) as exc:
                wait_s = getattr(exc, "retry_after_s", None)
                if wait_s is None:
                    wait_s = backoff_s(attempt, self._jitter())
                if attempt >= self.max_retries or wait_s > self.max_wait_s:
                    raise
                attempt += 1
                log.warning(
                    "perplexity %s for %s: %s; retry %d/%d in %.1f s",
                    self.api,
                    asset,
                    exc,
                    attempt,
                    self.max_retries,
                    wait_s,
                )
                self._sleep(wait_s)

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        try:
            return SDK_CALLS[self.api](self._sdk, body)
        except perplexity.APIError as exc:
            raise self.mapped_error(exc) from exc

    def mapped_error(self, exc: perplexity.APIError) -> VendorError:
        """The rrr error for an SDK exception (raised ``from`` it by the caller)."""
        if isinstance(exc, perplexity.APIStatusError):
            return self._error(exc.response)
        if isinstance(exc, perplexity.APITimeoutError):  # before its base, APIConnectionError
            return VendorUnavailable(
                f"Perplexity did not answer within {self.timeout_s:g} s ({self.url})"
            )
        if isinstance(exc, perplexity.APIConnectionError):
            cause = type(exc.__cause__ or exc).__name__
            return VendorUnavailable(f"cannot reach Perplexity at {self.url}: {cause}")
        # Any other SDK failure (a response the SDK could not read): a bug to look at, no retry.
        return VendorError(f"Perplexity {self.api} API: {type(exc).__name__}")

    def _answer(self, response: httpx.Response) -> Answer:
        source = SOURCE_SIMULATOR if SIMULATOR_HEADER in response.headers else SOURCE_PERPLEXITY
        try:
            body = response.json()
        except ValueError:
            raw = response.text.replace(self._key.reveal(), "***")
            raise AnswerRejected("the response body is not JSON", raw) from None
        try:
            answer = RESPONSE_PARSERS[self.api](body)
        except AnswerRejected as exc:
            exc.raw = exc.raw.replace(self._key.reveal(), "***")
            raise
        return replace(answer, source=source)

    def _error(self, response: httpx.Response) -> VendorError:
        status = response.status_code
        summary = error_summary(response, self._key.reveal())
        where = f"Perplexity {self.api} API (HTTP {status})"
        if status in (401, 403):
            return VendorAuthError(
                f"{where} refused the key: {summary}. Check PERPLEXITY_API_KEY", status=status
            )
        if status == 429:
            return RateLimited(
                f"{where} rate limited: {summary}",
                retry_after_s=retry_after_s(response.headers, time.time()),
            )
        if status in (408, 409) or status >= 500:
            return VendorUnavailable(f"{where} failed: {summary}", status=status)
        return VendorError(f"{where} rejected the request: {summary}", status=status)
