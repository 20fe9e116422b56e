"""How the simulated vendor answers (no I/O): a JSON 200 with its ``request_id`` (gzipped when
asked), its JSON error bodies, and the failures tests inject (429 JSON with an optional
Retry-After, 5xx as nginx's HTML page)."""

from __future__ import annotations

import gzip
import uuid

from rrr.simulator.http import Request, Response

RATE_LIMIT_TEXT = (
    "You've exceeded the maximum requests per minute, please wait or upgrade your subscription "
    "to continue. https://polygon.io/pricing"
)
# What nginx in front of the API answers when the service behind it fails: HTML, not JSON.
NGINX_5XX = (
    "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center><hr>"
    "<center>nginx</center></body></html>"
)
STATUS_TEXT = {
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}


def ok_json(payload: bytes, request_id: str, gzipped: bool) -> Response:
    """A 200 of ``payload`` (a JSON body that carries ``request_id``, also sent as
    ``X-Request-Id``), gzip-compressed when ``gzipped``: when the client asked, as the vendor
    does."""
    headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
    if gzipped:
        payload = gzip.compress(payload, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return Response(200, payload, headers)


def wants_gzip(request: Request) -> bool:
    """The client sent ``Accept-Encoding: gzip``."""
    return "gzip" in request.headers.get("accept-encoding", "")


def error_response(status: int, text: str, key: str = "error") -> Response:
    """The vendor's error body: ``NOT_AUTHORIZED`` for a 403, else ``ERROR``; ``text`` under
    ``key`` (``error``, or ``message`` as the vendor words a plan's refusal)."""
    status_word = "NOT_AUTHORIZED" if status == 403 else "ERROR"
    request_id = uuid.uuid4().hex
    body = {"status": status_word, "request_id": request_id, key: text}
    return Response.json(status, body, {"X-Request-Id": request_id})


def injected_failure(status: int, retry_after_s: float | None) -> Response:
    if status == 429:
        response = error_response(429, RATE_LIMIT_TEXT)
        if retry_after_s is not None:
            response.headers["Retry-After"] = f"{retry_after_s:g}"
        return response
    if status >= 500:
        text = STATUS_TEXT.get(status, f"{status} Server Error")
        return Response(status, NGINX_5XX.format(text).encode(), {"Content-Type": "text/html"})
    return error_response(status, f"injected failure {status}")
