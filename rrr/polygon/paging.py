"""What every page of a REST answer shares (pure): the body as a JSON object, its ``next_url``
(followed as a path against our own base URL), ``request_id`` and ``resultsCount``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from rrr.errors import ParseError
from rrr.polygon.http_errors import error_text


class Paged:
    """``next_path`` for a page dataclass that has a ``next_url`` field."""

    __slots__ = ()
    next_url: str | None

    @property
    def next_path(self) -> str | None:
        return next_path(self.next_url) if self.next_url else None


def next_path(next_url: str) -> str:
    """Path + query of a ``next_url``. Like the official client, we call it against our own
    configured base URL, so a vendor (or a proxy) naming another host cannot redirect us."""
    parts = urlsplit(next_url)
    if not parts.path.startswith("/"):
        raise ParseError(f"next_url has no absolute path: {next_url[:200]!r}")
    return parts.path + (f"?{parts.query}" if parts.query else "")


def page_links(payload: Mapping[str, Any], sent: int) -> tuple[str | None, str | None, int]:
    """(next_url, request_id, results_count) of a page; ``sent``: the results it holds, the
    count when the vendor does not say one."""
    next_url = payload.get("next_url")
    request_id = payload.get("request_id")
    count = payload.get("resultsCount")
    return (
        next_url if isinstance(next_url, str) and next_url else None,
        request_id if isinstance(request_id, str) else None,
        count if isinstance(count, int) else sent,
    )


def load_object(body: bytes | bytearray, what: str = "aggregates") -> dict[str, Any]:
    """A page's body as a JSON object; anything else is a ``ParseError`` naming ``what``."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"{what} answer is not JSON: {error_text(bytes(body))!r}") from exc
    if not isinstance(payload, dict):
        raise ParseError(f"{what} answer is not a JSON object: {type(payload).__name__}")
    return payload
