"""The embedded broker: AOF on, a restart loses nothing, and no process invents a broker."""

from pathlib import Path

import pytest
import redis

from rrr.broker import recorded_url_path, resolve_redis_url, start_embedded_redis
from rrr.config import Settings
from rrr.errors import ConfigError


def test_embedded_redis_keeps_data_across_a_restart(tmp_path: Path) -> None:
    proc, url = start_embedded_redis(tmp_path / "redis")
    try:
        client = redis.Redis.from_url(url)
        client.rpush("ingest", b"batch-1", b"batch-2")
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert list((tmp_path / "redis").rglob("*.aof"))
    proc, url = start_embedded_redis(tmp_path / "redis")
    try:
        assert redis.Redis.from_url(url).lrange("ingest", 0, -1) == [b"batch-1", b"batch-2"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_other_processes_use_the_recorded_url_while_it_is_up(tmp_path: Path) -> None:
    settings = Settings.from_env({"RRR_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"REDIS_URL.*rrr redis"):
        resolve_redis_url(settings)
    proc, url = start_embedded_redis(
        tmp_path / "var" / "redis", record_to=recorded_url_path(settings)
    )
    try:
        assert resolve_redis_url(settings) == url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    with pytest.raises(ConfigError):
        resolve_redis_url(settings)  # recorded, but down: never a silent private broker


def test_redis_url_wins(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"RRR_HOME": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:6379/3"}
    )
    assert resolve_redis_url(settings) == "redis://127.0.0.1:6379/3"
