"""``DataQualityValidator(supabase_client=...)``: the original system's call shapes over rrr's
validator (rrr.quality.validator, which takes a store and Settings).

    validator = DataQualityValidator(supabase_client=SupabaseClient())
    issues = await validator.validate_recent_data(lookback_hours=24)
    for issue in issues:
        print(f"[{issue.severity}] {issue.message}")

Each call validates and records what it found in ``system_events`` (component
``data_quality_validator``, as the original logged its issues), each finding once however
often it is found again. Gap repairs are left to the scheduled task (``run_quality_checks``),
which can send them to the backfill workers. The reads and checks run in a thread
(``asyncio.to_thread``): the event loop is never blocked.

rrr's checks are a superset of the original's (gaps told from quiet minutes, OHLC consistency,
crossed quotes, a stale feed, duplicates); severities are info, warning, error and critical.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rrr.compat.repeating import Repeating
from rrr.compat.supabase_client import SupabaseClient, iso
from rrr.config import parse_tickers
from rrr.quality.issues import QualityIssue
from rrr.quality.validator import DataQualityValidator as StoreValidator

# The table each check reads (the original named it on every issue).
CHECK_TABLES = {"crossed_quote": "crypto_quotes", "locked_quote": "crypto_quotes"}


@dataclass(frozen=True, slots=True)
class DataQualityIssue:
    """The original's issue fields, from one rrr ``QualityIssue`` (kept as ``issue``)."""

    issue_type: str
    severity: str
    message: str
    table: str
    ticker: str
    metadata: dict[str, Any] = field(default_factory=dict)
    timestamp: str = ""  # the start of the window the finding is about, ISO 8601 UTC
    issue: QualityIssue | None = None

    def to_dict(self) -> dict[str, Any]:
        """As the original stored it in system_events."""
        return {
            "event_type": "data_quality_issue",
            "severity": self.severity,
            "message": self.message,
            "component": "data_quality_validator",
            "metadata": {"issue_type": self.issue_type, "table": self.table,
                         "ticker": self.ticker, **self.metadata},
        }  # fmt: skip


def to_original(issue: QualityIssue) -> DataQualityIssue:
    window = {"window_start_ms": issue.window_start_ms, "window_end_ms": issue.window_end_ms}
    return DataQualityIssue(
        issue_type=issue.check,
        severity=issue.severity,
        message=f"{issue.ticker}: {issue.message}",
        table=CHECK_TABLES.get(issue.check, "crypto_aggregates"),
        ticker=issue.ticker,
        metadata={**window, **issue.details},
        timestamp=iso(issue.window_start_ms),
        issue=issue,
    )


class DataQualityValidator(Repeating):
    def __init__(
        self,
        supabase_client: SupabaseClient,
        tickers: Sequence[str] | None = None,
        check_interval: int | None = None,
    ) -> None:
        if supabase_client is None:
            raise ValueError("SupabaseClient is required: DataQualityValidator(SupabaseClient())")
        super().__init__()
        self.supabase_client = supabase_client
        settings = supabase_client.settings
        chosen = parse_tickers(list(tickers), "tickers") if tickers else settings.tickers
        self.tickers = list(chosen)
        self.check_interval = check_interval or settings.quality_interval_s
        self._validator = StoreValidator(supabase_client.store, settings, tickers=self.tickers)
        self.issues_found = 0
        self.checks_performed = 0

    async def validate_recent_data(self, lookback_hours: float = 24) -> list[DataQualityIssue]:
        """Every finding over the last ``lookback_hours``, most severe first; new ones are
        recorded as system events."""
        run = await asyncio.to_thread(self._validator.run, lookback_hours)
        self.issues_found += len(run.issues)
        self.checks_performed += len(self.tickers)
        return [to_original(i) for i in run.issues]

    async def run_monitoring(self) -> None:
        """A validation every ``check_interval`` seconds until ``stop()``."""
        await self._repeat(self.check_interval, self.validate_recent_data)

    def get_stats(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "checks_performed": self.checks_performed,
            "issues_found": self.issues_found,
            "check_interval": self.check_interval,
            "monitored_tickers": self.tickers,
        }
