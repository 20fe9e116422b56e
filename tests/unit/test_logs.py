import logging
from pathlib import Path

import pytest

from rrr.config import Settings
from rrr.logs import configure_logging


def test_secrets_never_reach_the_log_file_or_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings.from_env(
        {
            "RRR_HOME": str(tmp_path),
            "POLYGON_API_KEY": "pk_secret_polygon_key",
            "PERPLEXITY_API_KEY": "pplx-secret-key",
            "SUPABASE_SERVICE_KEY": "eyJ.service.role",
            "DATABASE_URL": "postgresql://app:db-pass-123@127.0.0.1/market",
        }
    )
    configure_logging(settings)
    log = logging.getLogger("rrr.test")
    log.warning("sending auth frame %s", {"action": "auth", "params": "pk_secret_polygon_key"})
    log.error("request failed with Authorization: Bearer pplx-secret-key")
    try:
        raise RuntimeError("supabase said no to eyJ.service.role")
    except RuntimeError:
        log.exception("store failed")
    log.error("cannot connect to postgresql://app:db-pass-123@127.0.0.1/market")
    for handler in logging.getLogger().handlers:
        handler.flush()
    written = (tmp_path / "data_pipeline.log").read_text() + capsys.readouterr().err
    assert "sending auth frame" in written and "store failed" in written
    for secret in ("pk_secret_polygon_key", "pplx-secret-key", "eyJ.service.role", "db-pass-123"):
        assert secret not in written
    assert written.count("***") >= 4
