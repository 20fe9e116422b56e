"""The PostgREST stand-in's keys and errors: HS256 JWTs (as Supabase's anon and service_role
keys are) and PostgREST's documented error format and SQLSTATE -> HTTP status table."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import orjson
import psycopg


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_jwt(secret: str, role: str, **claims: Any) -> str:
    header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    payload = _b64(orjson.dumps({"iss": "supabase", "role": role, **claims}))
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{_b64(signature.digest())}"


def verify_jwt(secret: str, token: str) -> dict[str, Any] | None:
    """The claims when the signature is good and the token unexpired, else None."""
    try:
        header, payload, signature = token.split(".")
        expected = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
        if not hmac.compare_digest(_unb64(signature), expected.digest()):
            return None
        claims: dict[str, Any] = orjson.loads(_unb64(payload))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if "exp" in claims and claims["exp"] < time.time():
        return None
    return claims


class PgrstError(Exception):
    """An error response: HTTP status and PostgREST's ``{code, details, hint, message}``."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        details: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"code": code, "details": details, "hint": hint, "message": message}


def status_for_sqlstate(sqlstate: str, anonymous: bool) -> int:
    """PostgREST's documented SQLSTATE -> HTTP status table (docs: references/errors)."""
    exact = {"23503": 409, "23505": 409, "25006": 405, "53400": 500, "P0001": 400}
    exact |= {"42883": 404, "42P01": 404, "42P17": 500}
    if sqlstate == "42501":
        return 401 if anonymous else 403
    if sqlstate in exact:
        return exact[sqlstate]
    by_class = {"08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500}
    by_class |= {"38": 500, "39": 500, "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500}
    by_class |= {"57": 500, "58": 500, "F0": 500, "HV": 500, "P0": 500, "XX": 500}
    return by_class.get(sqlstate[:2], 400)


def pg_error(exc: psycopg.Error, role: str) -> PgrstError:
    diag = exc.diag
    sqlstate = diag.sqlstate or "XX000"
    return PgrstError(
        status_for_sqlstate(sqlstate, anonymous=role == "anon"),
        sqlstate,
        diag.message_primary or str(exc),
        diag.message_detail,
        diag.message_hint,
    )


def permission_denied(role: str, what: str) -> PgrstError:
    return PgrstError(
        status_for_sqlstate("42501", anonymous=role == "anon"),
        "42501",
        f"permission denied for {what}",
    )
