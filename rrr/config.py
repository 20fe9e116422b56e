"""Settings: one frozen object built once from the environment and a ``.env`` file.

Nothing else in rrr reads ``os.environ``. Every malformed value fails at start with a message
that names the variable and says what to do. Secrets are wrapped so that ``repr`` and logs
show ``'***'`` instead of the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from dotenv import dotenv_values

from rrr.errors import ConfigError
from rrr.symbols import SymbolError, validate_ticker

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_WS_URL = "wss://socket.massive.com/crypto"
DEFAULT_REST_URL = "https://api.massive.com"
DEFAULT_PERPLEXITY_URL = "https://api.perplexity.ai"
DEFAULT_TICKERS = ("X:BTCUSD", "X:ETHUSD")
DEFAULT_DATABASE_URL = "sqlite:///var/rrr.db"
# The key the local simulator (`rrr simulate`, `rrr run`) accepts by default, on its WebSocket
# and its REST endpoints alike (rrr.simulator.protocol.DEFAULT_SIM_KEY).
SIMULATOR_KEY = "sim-key"


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


@dataclass(frozen=True, repr=False)
class Settings:
    polygon_api_key: Secret | None = None
    polygon_ws_url: str = DEFAULT_WS_URL
    polygon_rest_url: str = DEFAULT_REST_URL
    polygon_rate_limit: Rate | None = Rate(5, 60.0)
    perplexity_api_key: Secret | None = None
    perplexity_api: str = "agent"
    perplexity_base_url: str = DEFAULT_PERPLEXITY_URL
    perplexity_model: str | None = None
    database_url: str | None = None  # unset: the SQLite default (or Supabase REST, if configured)
    supabase_url: str | None = None
    supabase_service_key: Secret | None = None
    redis_url: str | None = None
    tickers: tuple[str, ...] = DEFAULT_TICKERS
    sentiment_interval_s: int = 900
    sentiment_enabled: bool = True  # RRR_SENTIMENT_ENABLED=false (rrr run --no-sentiment)
    quality_interval_s: int = 300
    quality_auto_repair: bool = True
    flower_basic_auth: Secret | None = None
    log_level: str = "INFO"
    log_file: str = "data_pipeline.log"
    home: Path = PROJECT_ROOT
    batch_size: int = 1000
    batch_max_age_ms: int = 20  # measured: p99 exchange -> row 30 ms at 2,000 msg/s (50: 58)
    spool_max_mb: int = 512
    # The stream worker's journal (workers/journal.py): 'off' leaves writeback to the kernel
    # (a process death loses nothing, a power loss the last ~30 s not yet sent), 'batch' fsyncs
    # every item. journal_enabled=False (RRR_JOURNAL=off) is for benchmarks only.
    journal_fsync: str = "off"
    journal_enabled: bool = True
    # Longer than any task's hard time limit and retry countdown; also how long a batch a worker
    # held when Redis restarted waits before it is delivered again.
    visibility_timeout_s: int = 600
    # Task time limits are their own settings, never derived from the visibility timeout (a
    # short timeout in a test must not shrink the time a big batch may take). 300 s soft: a
    # 300,000-row batch takes ~3 s on a healthy database, so a task still running after five
    # minutes is stuck on its connection, and the soft limit makes it retry on a fresh one. The
    # hard limit leaves 30 s for that clean-up. Both stay under the visibility timeout (checked
    # at start): a task that outlived it would be delivered again while still running, and
    # each such delivery would count towards setting the message aside as poison.
    task_soft_time_limit_s: int = 300
    task_time_limit_s: int = 330
    # Worker processes for the `ingest` queue and for `backfill`+`default` (rrr run, Procfile):
    # ingest has capacity of its own, so repairs and backfill can never stall the live inserts.
    ingest_concurrency: int = 2
    backfill_concurrency: int = 1
    # Set by `rrr run` for its children when it started the local simulator: the feed is
    # simulated even though a (simulator) key and URL are configured.
    simulator: bool = False

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and "://" in value:
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def var_dir(self) -> Path:
        return self.home / "var"

    @property
    def simulated(self) -> bool:
        """No vendor key (or `rrr run` started the simulator): rows carry source='simulator'."""
        return self.simulator or self.polygon_api_key is None

    @property
    def polygon_rest_key(self) -> Secret | None:
        """The key REST requests carry: POLYGON_API_KEY; without one, the simulator's default
        key (it refuses other keys on REST as on the WebSocket, as the vendor does: 401
        ``Unknown API Key``, spec §2.4), as the stream does (workers.stream_process). Never a
        made-up key to the vendor's own URL, whose answer must stay "API Key was not provided"."""
        if self.polygon_api_key is not None:
            return self.polygon_api_key
        if self.polygon_rest_url.rstrip("/") == DEFAULT_REST_URL:
            return None
        return Secret(SIMULATOR_KEY)

    @property
    def resolved_database_url(self) -> str:
        """Relative SQLite paths resolve against RRR_HOME, never the working directory."""
        url = self.database_url or DEFAULT_DATABASE_URL
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return f"sqlite:///{self.home / url[len('sqlite:///') :]}"
        return url

    @property
    def log_path(self) -> Path:
        p = Path(self.log_file)
        return p if p.is_absolute() else self.home / p

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = None
    ) -> Settings:
        """Build from ``environ`` (default: the process environment) over a ``.env`` file.

        The process environment wins over ``.env``, as with every twelve-factor tool.
        """
        env = dict(os.environ if environ is None else environ)
        home = Path(env.get("RRR_HOME") or PROJECT_ROOT).resolve()
        dotenv_path = Path(env_file) if env_file else home / ".env"
        if dotenv_path.is_file():
            file_values = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}
            env = {**file_values, **env}
        return _build(env, home)


def _blank_to_none(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def _url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = _blank_to_none(env.get(name)) or default
    parts = urlsplit(value)
    hostless = parts.scheme in ("sqlite", "unix")  # a file path, not a host
    if parts.scheme not in schemes or (not parts.netloc and not hostless):
        raise ConfigError(
            f"{name}={redact_url(value)!r} is not a valid URL: it must start with "
            f"{' or '.join(s + '://' for s in schemes)} and name a host"
        )
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = _blank_to_none(env.get(name))
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be a whole number, e.g. {name}={default}") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum} (default {default})")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _blank_to_none(env.get(name))
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} must be true or false")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (_blank_to_none(env.get(name)) or default).lower()
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of: {', '.join(choices)}")
    return value


def _secret(env: Mapping[str, str], *names: str) -> Secret | None:
    for name in names:
        value = _blank_to_none(env.get(name))
        if value is not None:
            return Secret(value)
    return None


def parse_tickers(
    raw: str | list[str] | tuple[str, ...], name: str = "RRR_TICKERS"
) -> tuple[str, ...]:
    items = raw.replace(",", " ").split() if isinstance(raw, str) else list(raw)
    if not items:
        raise ConfigError(f"{name} is empty: list tickers like 'X:BTCUSD,X:ETHUSD'")
    try:
        return tuple(dict.fromkeys(validate_ticker(t.strip()) for t in items))
    except SymbolError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _build(env: Mapping[str, str], home: Path) -> Settings:
    perplexity_api = (_blank_to_none(env.get("PERPLEXITY_API")) or "agent").lower()
    if perplexity_api not in ("agent", "sonar"):
        raise ConfigError(f"PERPLEXITY_API={perplexity_api!r} must be 'agent' or 'sonar'")
    log_level = (_blank_to_none(env.get("LOG_LEVEL")) or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(
            f"LOG_LEVEL={log_level!r} must be DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    redis_raw = _blank_to_none(env.get("REDIS_URL"))
    supabase_raw = _blank_to_none(env.get("SUPABASE_URL"))
    rate_raw = _blank_to_none(env.get("POLYGON_RATE_LIMIT"))
    soft_s = _int(env, "RRR_TASK_SOFT_TIME_LIMIT", 300)
    hard_s = _int(env, "RRR_TASK_TIME_LIMIT", 330)
    visibility_s = _int(env, "RRR_VISIBILITY_TIMEOUT", 600, minimum=5)
    if not soft_s < hard_s < visibility_s:
        raise ConfigError(
            f"RRR_TASK_SOFT_TIME_LIMIT={soft_s} < RRR_TASK_TIME_LIMIT={hard_s} <"
            f" RRR_VISIBILITY_TIMEOUT={visibility_s} must hold: the soft limit is a task's chance"
            " to give its message back before the hard kill, and a task still running when the"
            " broker hands its message out again would run twice and count as a failed delivery"
            " (tasks/delivery.py). Raise the visibility timeout or lower the limits."
        )
    return Settings(
        polygon_api_key=_secret(env, "POLYGON_API_KEY", "MASSIVE_API_KEY"),
        polygon_ws_url=_url(env, "POLYGON_WS_URL", DEFAULT_WS_URL, ("ws", "wss")),
        polygon_rest_url=_url(env, "POLYGON_REST_URL", DEFAULT_REST_URL, ("http", "https")),
        polygon_rate_limit=parse_rate(rate_raw) if rate_raw else Rate(5, 60.0),
        perplexity_api_key=_secret(env, "PERPLEXITY_API_KEY"),
        perplexity_api=perplexity_api,
        perplexity_base_url=_url(
            env, "PERPLEXITY_BASE_URL", DEFAULT_PERPLEXITY_URL, ("http", "https")
        ),
        perplexity_model=_blank_to_none(env.get("PERPLEXITY_MODEL")),
        database_url=(
            _url(env, "DATABASE_URL", "", ("sqlite", "postgresql", "postgres"))
            if _blank_to_none(env.get("DATABASE_URL"))
            else None
        ),
        supabase_url=(_url(env, "SUPABASE_URL", "", ("http", "https")) if supabase_raw else None),
        supabase_service_key=_secret(env, "SUPABASE_SERVICE_KEY"),
        redis_url=_url(env, "REDIS_URL", "", ("redis", "rediss", "unix")) if redis_raw else None,
        tickers=parse_tickers(env.get("RRR_TICKERS") or ",".join(DEFAULT_TICKERS)),
        sentiment_interval_s=_int(env, "SENTIMENT_INTERVAL", 900),
        sentiment_enabled=_bool(env, "RRR_SENTIMENT_ENABLED", True),
        quality_interval_s=_int(env, "QUALITY_INTERVAL", 300),
        quality_auto_repair=_bool(env, "QUALITY_AUTO_REPAIR", True),
        flower_basic_auth=_secret(env, "FLOWER_BASIC_AUTH"),
        log_level=log_level,
        log_file=_blank_to_none(env.get("LOG_FILE")) or "data_pipeline.log",
        home=home,
        batch_size=_int(env, "RRR_BATCH_SIZE", 1000),
        batch_max_age_ms=_int(env, "RRR_BATCH_MAX_AGE_MS", 20),
        spool_max_mb=_int(env, "RRR_SPOOL_MAX_MB", 512),
        journal_fsync=_choice(env, "RRR_JOURNAL_FSYNC", "off", ("off", "batch")),
        journal_enabled=_bool(env, "RRR_JOURNAL", True),
        visibility_timeout_s=visibility_s,
        task_soft_time_limit_s=soft_s,
        task_time_limit_s=hard_s,
        ingest_concurrency=_int(env, "RRR_INGEST_CONCURRENCY", 2),
        backfill_concurrency=_int(env, "RRR_BACKFILL_CONCURRENCY", 1),
        simulator=_bool(env, "RRR_SIMULATOR", False),
    )


SETTING_NAMES = tuple(f.name for f in fields(Settings))
