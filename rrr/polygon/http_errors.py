"""An error answer of the Polygon/Massive REST API -> the rrr error it means (pure): the human
part of its body, its ``Retry-After``, and the error class for its HTTP status. Messages never
carry the API key."""

from __future__ import annotations

import email.utils
import re
from datetime import UTC

import orjson

from rrr.errors import RateLimited, VendorAuthError, VendorError, VendorUnavailable

_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


def error_text(body: bytes, limit: int = 200) -> str:
    """The human part of an error body: ``error`` (ERROR bodies) or ``message``
    (NOT_AUTHORIZED bodies, spec §2.4), else the text itself (an nginx HTML page), shortened."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict):
        for key in ("error", "message", "status"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value[:limit]
    text = _SPACES.sub(" ", _TAGS.sub(" ", body.decode("utf-8", errors="replace"))).strip()
    return (text or "empty body")[:limit]


def retry_after_s(value: str | None, now_ms: int) -> float | None:
    """``Retry-After`` as seconds (it may be a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_ms / 1000)


def error_for_status(
    status: int, body: bytes, retry_after: str | None, now_ms: int
) -> VendorError | None:
    """The rrr error an HTTP answer means, or None for a 2xx. Messages never carry the key."""
    if 200 <= status < 300:
        return None
    text = error_text(body)
    if status == 401:
        return VendorAuthError(
            f"Polygon/Massive refused the API key (HTTP 401: {text}). Set POLYGON_API_KEY "
            "(or MASSIVE_API_KEY) to a valid key; without one, point POLYGON_REST_URL at the "
            "simulator",
            status=status,
        )
    if status == 403:
        return VendorAuthError(
            f"Polygon/Massive: the plan of POLYGON_API_KEY does not cover this request "
            f"(HTTP 403: {text}). Backfill a shorter or older range, or upgrade the plan",
            status=status,
        )
    if status == 429:
        wait = retry_after_s(retry_after, now_ms)
        return RateLimited(
            f"Polygon/Massive rate limit (HTTP 429: {text}); lower POLYGON_RATE_LIMIT to stay "
            "under the plan's budget",
            retry_after_s=wait,
        )
    if status >= 500 or status in (408, 499):
        return VendorUnavailable(
            f"Polygon/Massive unavailable (HTTP {status}: {text})", status=status
        )
    return VendorError(
        f"Polygon/Massive rejected the request (HTTP {status}: {text})", status=status
    )
