"""rrr: a real-time crypto market-data pipeline (Polygon/Massive -> Celery + Redis -> SQL)."""

__version__ = "0.1.0"
