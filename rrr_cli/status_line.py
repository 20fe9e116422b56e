"""`rrr run`'s status line every 10 s, made from two samples (pure): rows/s per table from
the difference of their counts, and the stream worker's and broker's figures as they are.

    status | trades 512/s quotes 530/s bars 0.1/s sentiment +0 | lag p99 35 ms | reconnects 0
    gaps 0 | queues ingest 0 backfill 0 default 0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Table -> its short name on the line.
TABLES = {
    "crypto_trades": "trades",
    "crypto_quotes": "quotes",
    "crypto_aggregates": "bars",
    "market_sentiment": "sentiment",
}


@dataclass(frozen=True)
class Sample:
    at_s: float  # monotonic time of the sample
    rows: dict[str, int]  # table -> rows stored
    stream: dict[str, Any] | None = None  # rrr.stats.get_stats; None: the broker did not answer
    queues: dict[str, int] = field(default_factory=dict)  # queue -> messages waiting
    broker_error: str | None = None


def _rate(rows: int, seconds: float) -> str:
    per_s = rows / seconds if seconds > 0 else 0.0
    return f"{per_s:,.0f}/s" if per_s >= 10 or per_s == 0 else f"{per_s:.1f}/s"


def status_line(previous: Sample, current: Sample) -> str:
    elapsed_s = current.at_s - previous.at_s
    parts = []
    for table, short in TABLES.items():
        added = current.rows.get(table, 0) - previous.rows.get(table, 0)
        shown = f"+{added:,}" if short == "sentiment" else _rate(added, elapsed_s)
        parts.append(f"{short} {shown}")
    line = ["status | " + " ".join(parts)]
    stats = current.stream
    if current.broker_error is not None:
        line.append(f"broker unreachable: {current.broker_error}")
    elif stats is not None:
        ws = stats.get("websocket", {})
        if not stats.get("alive"):
            line.append("stream worker NOT RUNNING")
        elif not ws.get("connected"):
            line.append("stream NOT CONNECTED")
        line.append(f"lag p99 {stats.get('lag_ms', {}).get('p99', 0):,.0f} ms")
        line.append(f"reconnects {ws.get('reconnects', 0)} gaps {ws.get('gaps', 0)}")
    if current.queues:
        line.append("queues " + " ".join(f"{q} {n:,}" for q, n in current.queues.items()))
    return " | ".join(line)
