"""Every PostgreSQL connection gets a connect timeout, TCP keepalives and a statement timeout,
unless DATABASE_URL sets its own."""

from __future__ import annotations

import pytest

from rrr.storage.postgres_connect import (
    DEFAULT_STATEMENT_TIMEOUT_MS,
    connect_options,
    statement_timeout_ms,
)

BASE = "postgresql://rrr:secret@db.example.com:5432/rrr"
DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "60000",
    "options": "-c statement_timeout=270000",
}


def test_a_plain_url_gets_every_default() -> None:
    assert connect_options(BASE) == DEFAULTS
    assert DEFAULT_STATEMENT_TIMEOUT_MS == 270_000  # a bit under the 300 s task soft limit


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        (f"{BASE}?connect_timeout=3", "connect_timeout"),
        (f"{BASE}?keepalives_idle=5", "keepalives_idle"),
        (f"{BASE}?keepalives=0", "keepalives"),
        (f"{BASE}?tcp_user_timeout=0", "tcp_user_timeout"),
        ("host=127.0.0.1 dbname=test connect_timeout=2", "connect_timeout"),
    ],
)
def test_what_the_url_sets_wins(url: str, kept: str) -> None:
    options = connect_options(url)
    assert kept not in options
    assert {k: v for k, v in DEFAULTS.items() if k != kept} == options


def test_the_statement_timeout_joins_options_the_url_has() -> None:
    url = f"{BASE}?options=-csearch_path%3Drrr"
    assert connect_options(url)["options"] == "-csearch_path=rrr -c statement_timeout=270000"


def test_a_statement_timeout_in_the_url_wins() -> None:
    url = f"{BASE}?options=-c%20statement_timeout%3D0"
    assert "options" not in connect_options(url)


def test_the_statement_timeout_follows_the_task_soft_time_limit() -> None:
    assert statement_timeout_ms(300) == 270_000
    assert statement_timeout_ms(60) == 54_000
    assert connect_options(BASE, statement_timeout_ms(60))["options"] == (
        "-c statement_timeout=54000"
    )
