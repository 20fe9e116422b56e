"""Reading one variable of the environment into a setting (pure over the mapping given): a URL
of allowed schemes, a whole number with a minimum, a boolean, one of some choices, a secret.
A blank value is an unset one; a malformed one is a ``ConfigError`` naming the variable."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from rrr.config_values import Secret, redact_url
from rrr.errors import ConfigError


def blank_to_none(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def env_url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = blank_to_none(env.get(name)) or default
    parts = urlsplit(value)
    hostless = parts.scheme in ("sqlite", "unix")  # a file path, not a host
    if parts.scheme not in schemes or (not parts.netloc and not hostless):
        raise ConfigError(
            f"{name}={redact_url(value)!r} is not a valid URL: it must start with "
            f"{' or '.join(s + '://' for s in schemes)} and name a host"
        )
    return value


def env_int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 1, maximum: int | None = None
) -> int:
    raw = blank_to_none(env.get(name))
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be a whole number, e.g. {name}={default}") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum} (default {default})")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} must be at most {maximum} (default {default})")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = blank_to_none(env.get(name))
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} must be true or false")


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (blank_to_none(env.get(name)) or default).lower()
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of: {', '.join(choices)}")
    return value


def env_secret(env: Mapping[str, str], *names: str) -> Secret | None:
    """The first of ``names`` that is set, as a ``Secret``."""
    for name in names:
        value = blank_to_none(env.get(name))
        if value is not None:
            return Secret(value)
    return None
