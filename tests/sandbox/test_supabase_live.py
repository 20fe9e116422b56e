"""The store contract and the REST store's own checks, against a real Supabase project.

Runs only when named (tests/sandbox is outside the default run) and only when SUPABASE_URL and
SUPABASE_SERVICE_KEY are set; skipped otherwise. Use a throwaway project with supabase/schema.sql
applied in its SQL editor: each test starts from empty rrr tables, so the suite DELETES every
row of them. It refuses to run on a project whose rrr tables hold rows unless
RRR_SANDBOX_WIPE=yes.

    SUPABASE_URL=https://<ref>.supabase.co SUPABASE_SERVICE_KEY=<service_role key> \\
        .venv/bin/pytest tests/sandbox/test_supabase_live.py -v
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rrr.config import Secret
from rrr.storage.base import TABLES
from rrr.storage.supabase import SupabaseStore
from tests.integration import test_store_contract as contract
from tests.integration import test_supabase_store as rest_suite

URL = os.environ.get("SUPABASE_URL", "").strip()
KEY = os.environ.get("SUPABASE_SERVICE_KEY", "").strip()
pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(
        not (URL and KEY),
        reason="set SUPABASE_URL and SUPABASE_SERVICE_KEY to run against a real project",
    ),
]
WIPE_ALLOWED = os.environ.get("RRR_SANDBOX_WIPE", "").lower() == "yes"
# A column that is never NULL per table: `<column> IS NOT NULL` selects every row to delete.
ROW_KEYS = {
    "crypto_trades": "ticker",
    "crypto_quotes": "ticker",
    "crypto_aggregates": "ticker",
    "market_sentiment": "id",
    "system_events": "id",
    "backfill_chunks": "chunk_id",
    "ingest_batches": "batch_id",
    "dead_letters": "id",
}
# The tests that need nothing but a store (or a way to open more): the contract's, and the
# REST suite's that do not reach into the local PostgREST's gateway or PostgreSQL.
FIXTURES_HERE = {"store", "supabase_store_factory"}


def _tests_of(module: Any) -> dict[str, Callable[..., None]]:
    return {
        name: test
        for name, test in vars(module).items()
        if name.startswith("test_")
        and callable(test)
        and set(inspect.signature(test).parameters) <= FIXTURES_HERE
    }


globals().update({**_tests_of(contract), **_tests_of(rest_suite)})


def _open() -> SupabaseStore:
    return SupabaseStore(URL, Secret(KEY))


def _wipe(store: SupabaseStore) -> None:
    rest = store._rest  # the sandbox's own cleanup, not a store operation
    for table, column in ROW_KEYS.items():
        store._execute(f"wipe {table}", rest.from_(table).delete().not_.is_(column, "null"))


@pytest.fixture(scope="session")
def live_project() -> Iterator[None]:
    store = _open()
    try:
        store.migrate()  # fails with how to install the schema when it is missing
        held = {t: n for t in TABLES if (n := store.count_rows(t))}
        if held and not WIPE_ALLOWED:
            pytest.skip(
                f"the project's rrr tables hold rows ({held}); the suite deletes them: use a "
                "throwaway project, or set RRR_SANDBOX_WIPE=yes"
            )
        yield
        _wipe(store)
    finally:
        store.close()


@pytest.fixture
def supabase_store_factory(live_project: None) -> Iterator[Callable[..., SupabaseStore]]:
    stores: list[SupabaseStore] = []

    def open_live(**options: Any) -> SupabaseStore:
        stores.append(SupabaseStore(URL, Secret(KEY), **options))
        return stores[-1]

    yield open_live
    for store in stores:
        store.close()


@pytest.fixture
def store(supabase_store_factory: Callable[..., SupabaseStore]) -> SupabaseStore:
    s = supabase_store_factory()
    _wipe(s)
    s.migrate()
    return s
