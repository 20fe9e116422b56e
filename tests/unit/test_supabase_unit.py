"""The Supabase REST store's pure parts: error mapping, wire shapes, time conversion, which
store the settings choose, and the schema file being exactly what `rrr db schema` prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rrr.config import Settings
from rrr.errors import ConfigError, PermanentStorageError, TransientStorageError, is_transient
from rrr.models import Batch, Rejected, Trade
from rrr.storage import Store, open_store_from_settings
from rrr.storage.full_schema import full_schema_sql
from rrr.storage.sqlite import SqliteStore
from rrr.storage.supabase import SupabaseStore
from rrr.storage.supabase_errors import RestConflict, SchemaCacheMiss, rest_error
from rrr.storage.supabase_wire import batch_payloads, iso_from_ms, ms_from_iso, plan_progress
from rrr_cli.main import app

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "supabase" / "schema.sql"
T0 = 1_706_649_600_000


@pytest.mark.parametrize(
    ("status", "code", "error", "says"),
    [
        (401, "PGRST301", PermanentStorageError, "SUPABASE_SERVICE_KEY"),
        (401, None, PermanentStorageError, "SUPABASE_SERVICE_KEY"),  # gateway: Invalid API key
        (403, "42501", PermanentStorageError, "SUPABASE_SERVICE_KEY"),
        (409, "23505", RestConflict, "retrying is safe"),
        (429, "429", TransientStorageError, "retry later"),
        (500, "40001", TransientStorageError, "retry later"),
        (502, "502", TransientStorageError, "retry later"),
        (503, "PGRST000", TransientStorageError, "retry later"),
        (504, "PGRST003", TransientStorageError, "retry later"),
        (404, "PGRST205", SchemaCacheMiss, "supabase/schema.sql"),  # a PermanentStorageError
        (404, "PGRST202", SchemaCacheMiss, "supabase/schema.sql"),  # the store waits first
        (404, "42P01", PermanentStorageError, "supabase/schema.sql"),  # PostgREST 12.0: table
        (404, "42883", PermanentStorageError, "supabase/schema.sql"),  # function's arguments
        (406, "PGRST106", PermanentStorageError, "Exposed schemas"),
        (404, "404", PermanentStorageError, "supabase/schema.sql"),  # not "40..." by class
        (400, "23514", PermanentStorageError, "23514"),
        (400, "23502", PermanentStorageError, "23502"),
        (400, "400", PermanentStorageError, "HTTP 400"),
    ],
)
def test_rest_errors_map_to_the_storage_tree(
    status: int, code: str | None, error: type, says: str
) -> None:
    exc = rest_error(status, code, "message", "apply batch b")
    assert type(exc) is error
    assert says in str(exc)
    assert is_transient(exc) == issubclass(error, TransientStorageError)


def test_times_convert_exactly_both_ways() -> None:
    for ms in (T0, T0 + 1, 0, -1, -86_400_001, 4_102_444_800_123):
        assert ms_from_iso(iso_from_ms(ms)) == ms
    assert iso_from_ms(T0 + 45) == "2024-01-30T21:20:00.045Z"
    assert ms_from_iso("2024-01-30T22:20:00.045+01:00") == T0 + 45
    assert ms_from_iso("2024-01-30T21:20:00.0455+00:00") == T0 + 46  # rounds like PostgreSQL
    assert ms_from_iso(None) is None


def test_a_batch_is_one_payload_or_deterministic_parts() -> None:
    rows = [Trade("X:BTCUSD", 1, str(i), 1.5, 2.0, (2,), T0 + i, None, "p") for i in range(5)]
    bad = [Rejected("[]", "price is null", "trades", "p")]
    batch = Batch("b", "trades", [*rows, ("bad",)])
    (one,) = batch_payloads(batch, rows, bad, max_rows=5)
    assert (one["id"], one["row_count"], one["rows"], len(one["dead_letters"])) == ("b", 6, rows, 1)
    parts = batch_payloads(batch, rows, bad, max_rows=2)
    assert parts == batch_payloads(batch, rows, bad, max_rows=2)
    assert [p["id"] for p in parts] == ["b#1/3", "b#2/3", "b#3/3"]
    assert [len(p["rows"]) for p in parts] == [2, 2, 1]
    assert [len(p["dead_letters"]) for p in parts] == [1, 0, 0]
    assert sum(p["row_count"] for p in parts) == 6


def test_plan_progress_sums_like_the_sql_group_by() -> None:
    rows = [
        {"status": "done", "bars_stored": 10, "started_at": "2024-01-30T21:20:00.002+00:00",
         "last_error": "old", "updated_at": "2024-01-30T21:20:01+00:00"},
        {"status": "failed", "bars_stored": 0, "started_at": "2024-01-30T21:20:00.001+00:00",
         "last_error": "older", "updated_at": "2024-01-30T21:20:02+00:00"},
        {"status": "pending", "bars_stored": 3, "started_at": None,
         "last_error": "newest", "updated_at": "2024-01-30T21:20:03+00:00"},
    ]  # fmt: skip
    progress = plan_progress("p", rows)
    assert progress.counts == {"done": 1, "failed": 1, "pending": 1}
    assert (progress.bars_stored, progress.first_started_ms) == (13, T0 + 1)
    assert progress.last_error == "newest"


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"RRR_HOME": str(tmp_path), **env}, env_file=tmp_path / "none.env")


def test_settings_choose_the_store(tmp_path: Path) -> None:
    supabase = {"SUPABASE_URL": "https://abc.supabase.co", "SUPABASE_SERVICE_KEY": "sk-1234"}
    store = open_store_from_settings(_settings(tmp_path, **supabase))
    assert isinstance(store, SupabaseStore) and "sk-1234" not in repr(store)
    assert isinstance(store, Store)  # every method of the protocol, backfill chunks included
    store.close()
    url = f"sqlite:///{tmp_path / 'own.db'}"
    store = open_store_from_settings(_settings(tmp_path, DATABASE_URL=url, **supabase))
    assert isinstance(store, SqliteStore)  # DATABASE_URL wins: the faster way in
    store.close()
    store = open_store_from_settings(_settings(tmp_path))
    assert isinstance(store, SqliteStore) and store.path == tmp_path / "var" / "rrr.db"
    store.close()
    with pytest.raises(ConfigError, match="SUPABASE_SERVICE_KEY is not"):
        open_store_from_settings(_settings(tmp_path, SUPABASE_URL="https://abc.supabase.co"))
    with pytest.raises(ConfigError, match="SUPABASE_URL is not"):
        open_store_from_settings(_settings(tmp_path, SUPABASE_SERVICE_KEY="sk-1234"))


def test_the_schema_file_is_what_rrr_db_schema_prints() -> None:
    result = CliRunner().invoke(app, ["db", "schema", "--dialect", "postgres"])
    assert result.exit_code == 0, result.output
    assert result.stdout == SCHEMA_FILE.read_text() == full_schema_sql("postgres"), (
        "supabase/schema.sql is stale: rrr db schema --dialect postgres > supabase/schema.sql"
    )
    assert CliRunner().invoke(app, ["db", "schema", "--dialect", "sqlite"]).exit_code == 2
