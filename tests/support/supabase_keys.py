"""Supabase's API keys as a local project has them: HS256 JWTs signed with the project's JWT
secret, whose ``role`` claim PostgREST switches to (anon, authenticated, service_role)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

import orjson


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_jwt_secret() -> str:
    """A project's JWT secret: PostgREST refuses one shorter than 32 characters."""
    return secrets.token_urlsafe(32)


def make_jwt(secret: str, role: str, **claims: Any) -> str:
    header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    payload = _b64(orjson.dumps({"iss": "supabase", "role": role, **claims}))
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{_b64(signature.digest())}"
