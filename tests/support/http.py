"""HTTP status probes for tests: what an operator's browser would get."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request


def http_status(url: str, basic_auth: str | None = None) -> int:
    """The status of a GET of ``url`` (``basic_auth``: "user:password"); 0 when nothing
    answers (not listening yet, or unreachable)."""
    request = urllib.request.Request(url)
    if basic_auth:
        token = base64.b64encode(basic_auth.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0
