"""Logging: console and ``data_pipeline.log`` (as the original system had), a logger per
module, and a filter that blanks every configured secret from every record.

The console is stdout, as the original system documented, for the processes of the pipeline
(``rrr run``, ``rrr stream``, Celery workers and beat); commands that print a result on stdout
(``rrr status --json``, ``rrr db schema``) log to stderr, the default. The
file (``LOG_FILE``, default ``RRR_HOME/data_pipeline.log``) gets every record at ``LOG_LEVEL``;
the console may be quieter (``console_level``: ``rrr run`` shows warnings and its own lines)."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Iterable
from typing import Literal

from rrr.config import Settings
from rrr.config_values import url_password

FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret (of 4 characters or more) replaced by ***."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class RedactSecrets(logging.Filter):
    """Replace any secret's text in a record with ***, whatever code logged it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        redacted = redact(message, self._secrets)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def secrets_of(settings: Settings) -> list[str]:
    found = []
    for value in (
        settings.polygon_api_key,
        settings.perplexity_api_key,
        settings.supabase_service_key,
        settings.flower_basic_auth,
    ):
        if value is not None:
            found.append(value.reveal())
    for url in (settings.database_url, settings.redis_url, settings.supabase_url):
        password = url_password(url)
        if password:
            found.append(password)
    return found


def configure_logging(
    settings: Settings,
    *,
    to_file: bool = True,
    console: Literal["stdout", "stderr"] | None = "stderr",
    console_level: int | None = None,
) -> None:
    """Handlers on the root logger (replacing ours from an earlier call): the log file at
    ``LOG_LEVEL`` unless ``to_file`` is False, and ``console`` (None: no console) at
    ``console_level`` (None: ``LOG_LEVEL``), both redacting every configured secret."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_rrr", False):
            root.removeHandler(handler)
    redact = RedactSecrets(secrets_of(settings))
    handlers: list[logging.Handler] = []
    if console is not None:
        stream = logging.StreamHandler(sys.stdout if console == "stdout" else sys.stderr)
        if console_level is not None:  # below LOG_LEVEL changes nothing: the root filters first
            stream.setLevel(console_level)
        handlers.append(stream)
    if to_file:
        settings.log_path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.WatchedFileHandler(settings.log_path, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(redact)
        handler._rrr = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    for noisy in ("websockets", "urllib3", "httpx", "httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
