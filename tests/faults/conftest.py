"""The fault suite's stores. (Its figures' summary and grouping: tests/conftest.py.)"""

from __future__ import annotations

import pytest

from tests.faults.harness import LONG


# The scenarios that run on either store: PostgreSQL by default, SQLite too under
# RRR_FAULTS_LONG=1 (make test's budget: each scenario costs tens of seconds).
@pytest.fixture(params=["postgres", "sqlite"] if LONG else ["postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    name = "pg_url" if request.param == "postgres" else "sqlite_url"
    return str(request.getfixturevalue(name))
