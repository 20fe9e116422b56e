"""Integration fixtures for the Supabase REST store, and ``store_factory`` over every store.

``postgrest``: a local Supabase REST API over this test's PostgreSQL schema, as a user gets it:
Supabase's roles and grants, supabase/schema.sql applied, the real PostgREST (the pinned
binary ``make test`` installs) behind a gateway giving it Supabase's ``/rest/v1``
(tests/support/supabase_local.py). One PostgREST per test: it starts in ~0.15 s, and a test
owns its server's schema cache and faults. Without the binary the test skips saying how to
install it; with CI=true it fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rrr.config import Secret
from rrr.storage import Store, open_store
from rrr.storage.postgres import PostgresStore
from rrr.storage.supabase import SupabaseStore
from tests.support.missing import missing
from tests.support.postgrest_binary import find_binary
from tests.support.supabase_local import LocalSupabase

STORE_KINDS = ("sqlite", "postgres", "supabase")


def need_postgrest() -> None:
    """Skip (fail in CI) when the pinned PostgREST binary is not installed."""
    binary, why = find_binary()
    if binary is None:
        missing(why, "the Supabase tests must run")


@pytest.fixture
def local_supabase(pg_url: str) -> Iterator[Callable[..., LocalSupabase]]:
    """``start(install=True, max_rows=1000, channel="pgrst")`` -> a started LocalSupabase on
    this test's schema (``install=False``: the schema left empty), stopped after the test."""
    need_postgrest()
    started: list[LocalSupabase] = []

    def start(**options: Any) -> LocalSupabase:
        started.append(LocalSupabase(pg_url, **options).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def postgrest(local_supabase: Callable[..., LocalSupabase]) -> LocalSupabase:
    return local_supabase()


def open_rest_store(server: LocalSupabase, key: str | None = None, **options: Any) -> SupabaseStore:
    """A SupabaseStore on ``server`` as SUPABASE_URL and SUPABASE_SERVICE_KEY would open it; the
    schema is the test's own (a real project's is ``public``, the store's default)."""
    options.setdefault("schema", server.schema)
    return SupabaseStore(server.url, Secret(key or server.service_key), **options)


@pytest.fixture
def supabase_store_factory(postgrest: LocalSupabase) -> Iterator[Callable[..., SupabaseStore]]:
    """``open(**options)`` -> a new SupabaseStore on the local PostgREST, service_role key."""
    stores: list[SupabaseStore] = []

    def open_store_here(**options: Any) -> SupabaseStore:
        stores.append(open_rest_store(postgrest, **options))
        return stores[-1]

    yield open_store_here
    for store in stores:
        store.close()


@pytest.fixture(params=STORE_KINDS)
def store_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[], Store]]:
    """``open()`` -> a new store of one kind on this test's database; a test using it runs
    once per kind. For tests that need two stores at once (concurrent writers)."""
    if request.param == "supabase":
        yield request.getfixturevalue("supabase_store_factory")
        return
    url = str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))
    stores: list[Store] = []

    def open_sql_store() -> Store:
        stores.append(open_store(url))
        return stores[-1]

    yield open_sql_store
    for store in stores:
        store.close()


@pytest.fixture
def postgres_store(pg_url: str) -> Iterator[PostgresStore]:
    """A migrated PostgresStore on this test's schema, for tests of PostgreSQL's own ways."""
    store = PostgresStore(pg_url)
    store.migrate()
    yield store
    store.close()
