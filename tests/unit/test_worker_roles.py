"""The two workers of the Procfile and `rrr run`: queues and processes from the settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rrr.config import Settings
from rrr.errors import ConfigError
from rrr.worker_roles import ROLES, worker_argv


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_ingest_has_processes_of_its_own_and_backfill_takes_default(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"RRR_HOME": str(tmp_path), "RRR_INGEST_CONCURRENCY": "3", "LOG_LEVEL": "warning"}
    )
    ingest = worker_argv(settings, "ingest", "ingest-1@%h")
    backfill = worker_argv(settings, "backfill", "backfill-1@%h", ["--without-gossip"])
    assert ingest[:6] == [sys.executable, "-m", "celery", "-A", "tasks", "worker"]
    assert option(ingest, "-Q") == "ingest"
    assert option(ingest, "-c") == "3"
    assert option(ingest, "-n") == "ingest-1@%h"
    assert option(ingest, "--loglevel") == "WARNING"
    assert option(backfill, "-Q") == "backfill,default"
    assert option(backfill, "-c") == "1"  # the default of RRR_BACKFILL_CONCURRENCY
    assert backfill[-1] == "--without-gossip"
    every_queue = [q for role in ROLES.values() for q in role.queues]
    assert sorted(every_queue) == ["backfill", "default", "ingest"]  # each consumed, once


def test_defaults_are_two_ingest_processes_and_one_backfill(tmp_path: Path) -> None:
    settings = Settings.from_env({"RRR_HOME": str(tmp_path)})
    assert option(worker_argv(settings, "ingest", "n"), "-c") == "2"
    assert option(worker_argv(settings, "backfill", "n"), "-c") == "1"


def test_an_unknown_role_names_the_roles(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ingest or backfill"):
        worker_argv(Settings.from_env({"RRR_HOME": str(tmp_path)}), "ingets", "n")


def test_a_malformed_concurrency_names_its_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RRR_BACKFILL_CONCURRENCY"):
        Settings.from_env({"RRR_HOME": str(tmp_path), "RRR_BACKFILL_CONCURRENCY": "two"})
