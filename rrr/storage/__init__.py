"""Stores: SQLite (default), PostgreSQL (and Supabase's Postgres URL), Supabase REST."""

from rrr.storage.backends import open_store, open_store_from_settings
from rrr.storage.base import BatchResult, Store

__all__ = ["BatchResult", "Store", "open_store", "open_store_from_settings"]
