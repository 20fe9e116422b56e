"""Adoption of the original system's tables (issue 14): the tables the system rrr replaces
left in a database ("already set up in Supabase": ``id UUID``, ``created_at``, TIMESTAMP
without time zone, no natural keys) brought in place to the shape rrr's migrations expect,
losing no row. targets.py says what each table becomes, plan.py plans it from the catalog
(pure), run.py executes it, report.py says what was (or would be) done."""

from rrr.storage.adopt.report import describe
from rrr.storage.adopt.run import AdoptionStopped, TableResult, adopt

__all__ = ["AdoptionStopped", "TableResult", "adopt", "describe"]
