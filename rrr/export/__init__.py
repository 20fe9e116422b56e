"""``rrr export``: market data to a Hive-partitioned Parquet or CSV dataset, a day per
partition, streamed in chunks, resumable (rrr/export/plan.py says how)."""

from rrr.export.plan import FORMATS, KINDS
from rrr.export.run import ExportPlan, ExportProgress, export

__all__ = ["FORMATS", "KINDS", "ExportPlan", "ExportProgress", "export"]
