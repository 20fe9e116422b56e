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


# A full-length scenario runs for minutes (backfill-pressure: 3 min of feed beside a 6-month
# backfill); the suite's 180 s per test is for the default sizes.
LONG_TIMEOUT_S = 1_200


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if LONG:
        for item in items:
            if item.path.parent.name == "faults":
                item.add_marker(pytest.mark.timeout(LONG_TIMEOUT_S))
