"""What adoption brings each of the original system's tables to (pure data): the columns rrr's
migration 0001 expects beside the original's ``id`` and ``created_at``, and how each is filled
on the rows already there. Columns not named here (a user's own ``notes``) are never touched.

Fills, per column missing or holding NULLs:
- ``constant``: one value for every existing row, added as a column DEFAULT (no table rewrite)
  and dropped again when rrr's own column has no default (``source = 'polygon'``: the original
  system wrote Polygon's stream only).
- ``expression``: an SQL expression over the row (``trade_id`` NULL -> the row's ``id`` as
  text, so a trade without a vendor id keeps a key of its own and is not lost).
- timeframe (crypto_aggregates only): from the spacing of bars; see ``timeframe_statement``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rrr.storage.tables import BARS, EVENTS, QUOTES, SENTIMENTS, TRADES

# The bar spacings adoption recognises (Polygon's usual aggregates), label -> interval.
TIMEFRAMES: dict[str, str] = {
    "1s": "1 second",
    "1m": "1 minute",
    "5m": "5 minutes",
    "15m": "15 minutes",
    "30m": "30 minutes",
    "1h": "1 hour",
    "4h": "4 hours",
    "1d": "1 day",
}
# A ticker whose bars say nothing (one bar, irregular gaps): the original stream's bars.
DEFAULT_TIMEFRAME = "1m"


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    type: str  # PostgreSQL type as format_type() spells it
    not_null: bool = True
    default: str | None = None  # rrr's column DEFAULT (kept after adoption)
    constant: str | None = None  # fill: one SQL literal for every existing row
    expression: str | None = None  # fill: an SQL expression over the existing row
    # rrr's CHECK on the column (as in migration 0001), added NOT VALID: enforced on rows
    # written from now on, while rows already there are kept whatever they hold.
    check: str | None = None


@dataclass(frozen=True, slots=True)
class TableTarget:
    table: str
    columns: tuple[Target, ...]
    key: tuple[str, ...]  # rrr's natural key: UNIQUE constraint <table>_natural_key


ID = Target("id", "uuid", default="gen_random_uuid()")
CREATED_AT = Target("created_at", "timestamp with time zone", default="now()")
TS = "timestamp with time zone"


def _ticks(*columns: Target) -> tuple[Target, ...]:
    return (
        *columns,
        Target("event_time", TS),
        Target("received_time", TS, not_null=False),
        Target("source", "text", constant="'polygon'"),
        ID,
        CREATED_AT,
    )


def sentiment_slot(interval_s: int) -> str:
    """event_time floored to the sentiment schedule's slot (rrr.sentiment.analyzer)."""
    return (
        f"to_timestamp(floor(extract(epoch FROM event_time) / {int(interval_s)})"
        f" * {int(interval_s)})"
    )


def table_targets(sentiment_interval_s: int) -> tuple[TableTarget, ...]:
    numeric = [
        Target(n, "numeric", check=f"{n} {'>=' if n == 'volume' else '>'} 0")
        for n in ("open", "high", "low", "close", "volume")
    ]
    end_time = "event_time + CASE timeframe {} END".format(
        " ".join(f"WHEN '{label}' THEN interval '{gap}'" for label, gap in TIMEFRAMES.items())
    )
    return (
        TableTarget(
            "crypto_trades",
            _ticks(
                Target("ticker", "text"),
                Target("exchange_id", "integer"),
                Target("trade_id", "text", expression="id::text"),
                Target("price", "numeric", check="price > 0"),
                Target("size", "numeric", check="size >= 0"),
                Target("conditions", "integer[]", default="'{}'", constant="'{}'"),
            ),
            TRADES.key,
        ),
        TableTarget(
            "crypto_quotes",
            _ticks(
                Target("ticker", "text"),
                Target("exchange_id", "integer"),
                *(
                    Target(n, "numeric", check=f"{n} {'>' if n.endswith('price') else '>='} 0")
                    for n in ("bid_price", "bid_size", "ask_price", "ask_size")
                ),
            ),
            QUOTES.key,
        ),
        TableTarget(
            "crypto_aggregates",
            (
                Target("ticker", "text"),
                Target("timeframe", "text"),  # filled by timeframe_statement
                Target("event_time", TS),
                Target("end_time", TS, expression=end_time),
                *numeric,
                Target("vwap", "numeric", not_null=False),
                Target("trade_count", "integer", not_null=False),
                Target("source", "text", constant="'polygon'"),
                Target("updated_at", TS, default="now()", expression="created_at"),
                ID,
                CREATED_AT,
            ),
            BARS.key,
        ),
        TableTarget(
            "market_sentiment",
            (
                Target("asset", "text"),
                Target("source", "text", constant="'perplexity'"),
                Target(
                    "sentiment_label",
                    "text",
                    check="sentiment_label IN ('bullish', 'neutral', 'bearish')",
                ),
                Target("sentiment_score", "numeric", check="sentiment_score BETWEEN -1 AND 1"),
                Target("confidence", "numeric", check="confidence BETWEEN 0 AND 1"),
                Target("text", "text", default="''", constant="''"),
                Target("metadata", "jsonb", default="'{}'", constant="'{}'"),
                Target("event_time", TS),
                Target("interval_start", TS, expression=sentiment_slot(sentiment_interval_s)),
                ID,
                CREATED_AT,
            ),
            SENTIMENTS.key,
        ),
        TableTarget(
            "system_events",
            (
                Target("event_time", TS),
                Target("component", "text"),
                Target("event_type", "text", constant="'unknown'"),
                Target(
                    "severity",
                    "text",
                    constant="'info'",
                    check="severity IN ('info', 'warning', 'error', 'critical')",
                ),
                Target("message", "text", constant="''"),
                Target("details", "jsonb", default="'{}'", constant="'{}'"),
                Target("dedupe_key", "text", not_null=False),
                ID,
                CREATED_AT,
            ),
            EVENTS.key,
        ),
    )


def timeframe_statement(table: str) -> str:
    """Each bar's timeframe from the spacing of its ticker's bars: the gap from the bar's start
    to the next distinct start of the same ticker (the ticker's last bar: the gap from the one
    before), when that gap is one of TIMEFRAMES; otherwise the ticker's most common recognised
    gap; otherwise DEFAULT_TIMEFRAME. The gap to the NEXT bar decides so that a ticker that
    changed from 1- to 5-minute bars gets each run right, the bar at the switch included.
    Bars of two timeframes interleaved for one ticker (a 5-minute bar at 10:05 beside the
    1-minute bar at 10:05) cannot be told apart by spacing: both read as the smaller gap, and
    the later-written copy of each shared start is set aside as a duplicate (adopted_duplicates
    keeps it whole)."""
    gaps = " ".join(f"WHEN interval '{gap}' THEN '{label}'" for label, gap in TIMEFRAMES.items())
    return f"""
WITH starts AS (SELECT DISTINCT ticker, event_time FROM {table}),
gaps AS (
    SELECT ticker, event_time,
           CASE coalesce(lead(event_time) OVER w - event_time,
                         event_time - lag(event_time) OVER w) {gaps} END AS timeframe
    FROM starts WINDOW w AS (PARTITION BY ticker ORDER BY event_time)),
usual AS (
    SELECT ticker, mode() WITHIN GROUP (ORDER BY timeframe) AS timeframe
    FROM gaps WHERE timeframe IS NOT NULL GROUP BY ticker)
UPDATE {table} AS t
SET timeframe = coalesce(g.timeframe, u.timeframe, '{DEFAULT_TIMEFRAME}')
FROM gaps AS g LEFT JOIN usual AS u ON u.ticker = g.ticker
WHERE t.timeframe IS NULL AND t.ticker = g.ticker AND t.event_time = g.event_time"""
