"""Perplexity over HTTP: one POST per asset, to the Agent API (default) or Sonar chat
completions. Moves bytes and maps errors; the prompt lives in ``prompts``, the
parsers in ``responses``.

Errors (spec 3.1, 5): 401/403 -> VendorAuthError (the 401 is often an HTML page, so no error
body is assumed to be JSON); 429 -> RateLimited; 408/409/5xx, timeouts and connection failures ->
VendorUnavailable; other 4xx -> VendorError (our request is wrong: retrying never helps).
Transient errors are retried here a few times with capped backoff, honouring ``Retry-After``;
a longer wait is left to the next scheduled run. The API key is only ever in the request
header, and is blanked from any text that goes into an error.
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

import requests

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

_TITLE_RE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def endpoint_url(base_url: str, api: str) -> str:
    """``https://api.perplexity.ai`` -> ``…/v1/agent`` or ``…/chat/completions``; a base that
    already ends in ``/v1`` (the OpenAI-SDK style) is accepted too."""
    base = base_url.rstrip("/")
    if api == "agent":
        return f"{base}/agent" if base.endswith("/v1") else f"{base}/v1/agent"
    return f"{base}/chat/completions"


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


def error_summary(response: requests.Response, secret: str, limit: int = 300) -> str:
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


class PerplexityClient:
    """``ask(asset)`` -> the vendor's Answer for one asset (text still unvalidated)."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        api_key: Secret | str,
        api: str = "agent",
        model: str | None = None,
        *,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        max_wait_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if api not in REQUEST_BODIES:
            raise ValueError(f"api must be 'agent' or 'sonar', not {api!r}")
        self.session = session
        self.base_url = base_url
        self.api = api
        self.model = model or DEFAULT_MODELS[api]
        self.url = endpoint_url(base_url, api)
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_wait_s = max_wait_s
        self._sleep = sleep
        self._jitter = jitter

    def __repr__(self) -> str:
        return f"PerplexityClient(url={self.url!r}, api={self.api!r}, model={self.model!r})"

    def ask(self, asset: str) -> Answer:
        body = REQUEST_BODIES[self.api](asset, self.model)
        attempt = 0
        while True:
            try:
                return self._post(body)
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

    def _post(self, body: dict[str, Any]) -> Answer:
        headers = {
            "Authorization": f"Bearer {self._key.reveal()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            response = self.session.post(
                self.url, json=body, headers=headers, timeout=self.timeout_s
            )
        except requests.Timeout as exc:
            raise VendorUnavailable(
                f"Perplexity did not answer within {self.timeout_s:g} s ({self.url})"
            ) from exc
        except requests.RequestException as exc:
            raise VendorUnavailable(
                f"cannot reach Perplexity at {self.url}: {type(exc).__name__}"
            ) from exc
        if response.status_code == 200:
            return self._answer(response)
        raise self._error(response)

    def _answer(self, response: requests.Response) -> Answer:
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

    def _error(self, response: requests.Response) -> VendorError:
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
