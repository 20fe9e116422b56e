"""A wrong API key: a clear message, a non-zero exit, one attempt (no reconnect storm), and the
key itself never printed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import pipeline_env
from tests.integration.stream_support import StreamProcess, simulator

pytestmark = [pytest.mark.redis]


def test_wrong_api_key_exits_non_zero_once(tmp_path: Path, clean_redis: str) -> None:
    sim = simulator(100.0, max_events=None)
    try:
        env = pipeline_env(
            tmp_path,
            clean_redis,
            f"sqlite:///{tmp_path / 'rrr.db'}",
            POLYGON_WS_URL=sim.ws_url,
            POLYGON_API_KEY="wrong-key-12345",
        )
        started = time.monotonic()
        stream = StreamProcess(env, tmp_path / "stream.log")
        code = stream.wait(timeout_s=30)
        elapsed = time.monotonic() - started
        time.sleep(0.5)  # a retry, if any, would show up here
        stats = sim.stats()
    finally:
        sim.stop()
    log = stream.log()
    assert code == 3, log
    assert "refused the API key" in log and "POLYGON_API_KEY" in log
    assert "wrong-key-12345" not in log
    assert stats["dropped"] == {"auth_failed": 1}  # exactly one attempt
    assert elapsed < 20
