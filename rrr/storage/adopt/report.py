"""What adoption did, or would do (``--dry-run``), as lines for the console (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rrr.storage.adopt.run import TableResult


def describe(results: list[TableResult], *, dry_run: bool) -> list[str]:
    if not results:
        return ["no original tables to adopt"]
    lines = ["adoption plan (dry run: nothing changed)" if dry_run else "adopted original tables"]
    for r in results:
        p = r.plan
        duplicates = r.set_aside.get("duplicate", 0)
        incomplete = r.set_aside.get("incomplete", 0)
        lines.append(f"{p.table}:")
        if dry_run:
            lines.append(f"  columns to add: {', '.join(p.columns_added) or 'none'}")
            lines.append(f"  type changes: {', '.join(p.type_changes) or 'none'}")
            lines.append(f"  NULLs to fill in: {', '.join(p.filled) or 'none'}")
            lines.append(f"  duplicates found: {duplicates} (would move to adopted_duplicates)")
            if incomplete:
                lines.append(f"  rows missing a required value: {incomplete} (would move too)")
            key = f"{p.table}_natural_key ({', '.join(p.key_added)})" if p.key_added else "none"
            lines.append(f"  key to add: {key}")
            checks = "; ".join(p.checks_added) or "none"
            lines.append(f"  checks to add (on rows written from now on): {checks}")
            lines.append(f"  rows that would stay: {r.rows_kept}")
        else:
            lines.append(
                f"  rows kept: {r.rows_kept}; duplicates set aside: {duplicates};"
                f" incomplete rows set aside: {incomplete};"
                f" columns added: {', '.join(p.columns_added) or 'none'}"
            )
    return lines
