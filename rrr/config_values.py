"""The values settings hold and how one text becomes one (pure): ``Secret`` (a key that never
shows itself), ``Rate`` (``5/min``), a list of tickers, and URLs with their password hidden.
Every malformed text is a ``ConfigError`` naming the variable and the fix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from rrr.errors import ConfigError
from rrr.symbols import SymbolError, validate_ticker


def redact_url(url: str) -> str:
    """The URL with its password (in the user info or a ``password=`` parameter) as ***, for
    messages and logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user_info, _, host = netloc.rpartition("@")
        user = user_info.split(":", 1)[0]
        netloc = f"{user}:***@{host}"
    query = "&".join(
        f"{k}=***" if k.lower() == "password" else (f"{k}={v}" if v or "=" in pair else k)
        for pair in parts.query.split("&")
        if pair
        for k, _, v in [pair.partition("=")]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_password(url: str | None) -> str | None:
    """The password a URL carries (in its user info or a ``password=`` parameter), if any."""
    if not url:
        return None
    parts = urlsplit(url)
    found = [parts.password] + [
        v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() == "password"
    ]
    return next((p for p in found if p), None)


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Rate:
    """A request budget such as ``5/min``: ``count`` requests per ``per_s`` seconds."""

    count: int
    per_s: float

    @property
    def per_second(self) -> float:
        return self.count / self.per_s

    def __str__(self) -> str:
        return f"{self.count}/{self.per_s:g}s"


_RATE_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_RATE_UNITS |= {"h": 3600.0, "hour": 3600.0}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


def parse_rate(text: str, name: str = "POLYGON_RATE_LIMIT") -> Rate | None:
    """``5/min`` -> Rate(5, 60); ``100/s``; ``off`` (or ``0``) -> None, no limit."""
    if text.strip().lower() in ("off", "none", "0", "unlimited"):
        return None
    m = _RATE_RE.match(text.lower())
    unit = m and _RATE_UNITS.get(m.group(3))
    if not m or unit is None or int(m.group(1)) <= 0:
        raise ConfigError(
            f"{name}={text!r} is not a rate: write it like '5/min' (free tier), '100/s', "
            "'10/2s' or 'off'"
        )
    span = float(m.group(2)) if m.group(2) else 1.0
    if span <= 0:
        raise ConfigError(f"{name}={text!r}: the period must be longer than zero, e.g. '5/min'")
    return Rate(count=int(m.group(1)), per_s=span * unit)


def parse_tickers(
    raw: str | list[str] | tuple[str, ...], name: str = "RRR_TICKERS"
) -> tuple[str, ...]:
    """``X:BTCUSD,X:ETHUSD`` (or a list) -> the validated tickers, in order, once each."""
    items = raw.replace(",", " ").split() if isinstance(raw, str) else list(raw)
    if not items:
        raise ConfigError(f"{name} is empty: list tickers like 'X:BTCUSD,X:ETHUSD'")
    try:
        return tuple(dict.fromkeys(validate_ticker(t.strip()) for t in items))
    except SymbolError as exc:
        raise ConfigError(f"{name}: {exc}") from None
