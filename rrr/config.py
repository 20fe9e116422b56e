"""Settings: one frozen object built once from the environment and a ``.env`` file.

Nothing else in rrr reads ``os.environ``. Every malformed value fails at start with a message
that names the variable and says what to do. Secrets are wrapped so that ``repr`` and logs
show ``'***'`` instead of the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from rrr.config_env import (
    blank_to_none,
    env_bool,
    env_choice,
    env_int,
    env_secret,
    env_url,
)

# The value types live in rrr.config_values; they are named here too because ~35 modules
# import them with Settings from rrr.config.
from rrr.config_values import Rate as Rate
from rrr.config_values import Secret as Secret
from rrr.config_values import parse_rate as parse_rate
from rrr.config_values import parse_tickers as parse_tickers
from rrr.config_values import redact_url as redact_url
from rrr.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_WS_URL = "wss://socket.massive.com/crypto"
DEFAULT_REST_URL = "https://api.massive.com"
DEFAULT_PERPLEXITY_URL = "https://api.perplexity.ai"
DEFAULT_TICKERS = ("X:BTCUSD", "X:ETHUSD")
DEFAULT_DATABASE_URL = "sqlite:///var/rrr.db"
DEFAULT_RATE_LIMIT = Rate(5, 60.0)  # the free tier: 5 requests a minute
# The key the local simulator (`rrr simulate`, `rrr run`) accepts by default, on its WebSocket
# and its REST endpoints alike (rrr.simulator.protocol.DEFAULT_SIM_KEY).
SIMULATOR_KEY = "sim-key"


@dataclass(frozen=True, repr=False)
class Settings:
    polygon_api_key: Secret | None = None
    polygon_ws_url: str = DEFAULT_WS_URL
    polygon_rest_url: str = DEFAULT_REST_URL
    polygon_rate_limit: Rate | None = DEFAULT_RATE_LIMIT
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
    # The stream lease (workers.stream_lease): one `rrr stream` holds it and is connected to the
    # vendor (one connection per key); a standby connects once the holder stopped renewing it.
    stream_lease_s: int = 10
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
    # `rrr status` (rrr/status_level.py): a ticker whose newest trade or quote is older than
    # this is stale (exit 1); an ingest queue deeper than this is degraded (exit 1).
    stale_after_s: int = 60
    queue_depth_max: int = 10_000
    # Prometheus (rrr.metrics): the stream worker's /metrics port and the Celery workers' one
    # exporter per worker (0: off), on this address (loopback by default; a scraper on another
    # host needs 0.0.0.0 or the host's address). metrics_dir is prometheus-client's
    # PROMETHEUS_MULTIPROC_DIR: a prefork worker's processes share their counters through it.
    metrics_port: int = 0
    worker_metrics_port: int = 0
    metrics_address: str = "127.0.0.1"
    metrics_dir: Path | None = None

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


def _build(env: Mapping[str, str], home: Path) -> Settings:
    perplexity_api = (blank_to_none(env.get("PERPLEXITY_API")) or "agent").lower()
    if perplexity_api not in ("agent", "sonar"):
        raise ConfigError(f"PERPLEXITY_API={perplexity_api!r} must be 'agent' or 'sonar'")
    log_level = (blank_to_none(env.get("LOG_LEVEL")) or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(
            f"LOG_LEVEL={log_level!r} must be DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    redis_raw = blank_to_none(env.get("REDIS_URL"))
    supabase_raw = blank_to_none(env.get("SUPABASE_URL"))
    rate_raw = blank_to_none(env.get("POLYGON_RATE_LIMIT"))
    soft_s = env_int(env, "RRR_TASK_SOFT_TIME_LIMIT", 300)
    hard_s = env_int(env, "RRR_TASK_TIME_LIMIT", 330)
    visibility_s = env_int(env, "RRR_VISIBILITY_TIMEOUT", 600, minimum=5)
    if not soft_s < hard_s < visibility_s:
        raise ConfigError(
            f"RRR_TASK_SOFT_TIME_LIMIT={soft_s} < RRR_TASK_TIME_LIMIT={hard_s} <"
            f" RRR_VISIBILITY_TIMEOUT={visibility_s} must hold: the soft limit is a task's chance"
            " to give its message back before the hard kill, and a task still running when the"
            " broker hands its message out again would run twice and count as a failed delivery"
            " (tasks/delivery.py). Raise the visibility timeout or lower the limits."
        )
    return Settings(
        polygon_api_key=env_secret(env, "POLYGON_API_KEY", "MASSIVE_API_KEY"),
        polygon_ws_url=env_url(env, "POLYGON_WS_URL", DEFAULT_WS_URL, ("ws", "wss")),
        polygon_rest_url=env_url(env, "POLYGON_REST_URL", DEFAULT_REST_URL, ("http", "https")),
        polygon_rate_limit=parse_rate(rate_raw) if rate_raw else DEFAULT_RATE_LIMIT,
        perplexity_api_key=env_secret(env, "PERPLEXITY_API_KEY"),
        perplexity_api=perplexity_api,
        perplexity_base_url=env_url(
            env, "PERPLEXITY_BASE_URL", DEFAULT_PERPLEXITY_URL, ("http", "https")
        ),
        perplexity_model=blank_to_none(env.get("PERPLEXITY_MODEL")),
        database_url=(
            env_url(env, "DATABASE_URL", "", ("sqlite", "postgresql", "postgres"))
            if blank_to_none(env.get("DATABASE_URL"))
            else None
        ),
        supabase_url=(
            env_url(env, "SUPABASE_URL", "", ("http", "https")) if supabase_raw else None
        ),
        supabase_service_key=env_secret(env, "SUPABASE_SERVICE_KEY"),
        redis_url=env_url(env, "REDIS_URL", "", ("redis", "rediss", "unix")) if redis_raw else None,
        tickers=parse_tickers(env.get("RRR_TICKERS") or ",".join(DEFAULT_TICKERS)),
        sentiment_interval_s=env_int(env, "SENTIMENT_INTERVAL", 900),
        sentiment_enabled=env_bool(env, "RRR_SENTIMENT_ENABLED", True),
        quality_interval_s=env_int(env, "QUALITY_INTERVAL", 300),
        quality_auto_repair=env_bool(env, "QUALITY_AUTO_REPAIR", True),
        flower_basic_auth=env_secret(env, "FLOWER_BASIC_AUTH"),
        log_level=log_level,
        log_file=blank_to_none(env.get("LOG_FILE")) or "data_pipeline.log",
        home=home,
        batch_size=env_int(env, "RRR_BATCH_SIZE", 1000),
        batch_max_age_ms=env_int(env, "RRR_BATCH_MAX_AGE_MS", 20),
        spool_max_mb=env_int(env, "RRR_SPOOL_MAX_MB", 512),
        journal_fsync=env_choice(env, "RRR_JOURNAL_FSYNC", "off", ("off", "batch")),
        journal_enabled=env_bool(env, "RRR_JOURNAL", True),
        stream_lease_s=env_int(env, "RRR_STREAM_LEASE_S", 10, minimum=2),
        visibility_timeout_s=visibility_s,
        task_soft_time_limit_s=soft_s,
        task_time_limit_s=hard_s,
        ingest_concurrency=env_int(env, "RRR_INGEST_CONCURRENCY", 2),
        backfill_concurrency=env_int(env, "RRR_BACKFILL_CONCURRENCY", 1),
        simulator=env_bool(env, "RRR_SIMULATOR", False),
        stale_after_s=env_int(env, "RRR_STALE_AFTER_S", 60),
        queue_depth_max=env_int(env, "RRR_QUEUE_DEPTH_MAX", 10_000),
        # A TCP port, or 0 for off.
        metrics_port=env_int(env, "RRR_METRICS_PORT", 0, minimum=0, maximum=65535),
        worker_metrics_port=env_int(env, "RRR_WORKER_METRICS_PORT", 0, minimum=0, maximum=65535),
        metrics_address=blank_to_none(env.get("RRR_METRICS_ADDRESS")) or "127.0.0.1",
        metrics_dir=_metrics_dir(env, home),
    )


def _metrics_dir(env: Mapping[str, str], home: Path) -> Path | None:
    raw = blank_to_none(env.get("PROMETHEUS_MULTIPROC_DIR"))
    if raw is None:
        return None
    path = Path(raw)
    if not path.is_absolute():  # prometheus-client reads it from each process's cwd
        raise ConfigError(
            f"PROMETHEUS_MULTIPROC_DIR={raw!r} must be an absolute path, "
            f"e.g. {home / 'var' / 'metrics'}"
        )
    return path


SETTING_NAMES = tuple(f.name for f in fields(Settings))
