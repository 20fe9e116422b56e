"""Integration fixtures for the Supabase REST store, and ``store_factory`` over every store.

``postgrest``: the schema script users paste into Supabase (``rrr db schema``) applied to this
test's PostgreSQL schema, and a PostgREST stand-in (tests/support/postgrest.py) serving it on
127.0.0.1, so supabase-py's requests really land in PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from rrr.config import Secret
from rrr.storage import Store, open_store
from rrr.storage.full_schema import full_schema_sql
from rrr.storage.supabase import SupabaseStore
from tests.support.postgrest import PostgrestServer

STORE_KINDS = ("sqlite", "postgres", "supabase")


@pytest.fixture
def postgrest(pg_url: str) -> Iterator[PostgrestServer]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(full_schema_sql("postgres").encode())
    server = PostgrestServer(pg_url).start()
    yield server
    server.stop()


@pytest.fixture
def supabase_store_factory(postgrest: PostgrestServer) -> Iterator[Callable[..., SupabaseStore]]:
    """``open(**options)`` -> a new SupabaseStore on the stand-in, with the service_role key."""
    stores: list[SupabaseStore] = []

    def open_rest_store(**options: object) -> SupabaseStore:
        store = SupabaseStore(postgrest.url, Secret(postgrest.service_key), **options)  # type: ignore[arg-type]
        stores.append(store)
        return store

    yield open_rest_store
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
