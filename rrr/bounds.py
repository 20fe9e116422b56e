"""What every stored value must be, however it arrived (WebSocket frame, REST page, a task's
arguments). The parsers and the last guard before a write (``rrr.storage.rows``) share these
bounds, so a row a database would refuse is set aside alone with its reason, and the rows
stored beside it are not taken down with it.

- Times are Unix ms, not before ``EARLIEST_MS`` and not more than ``MAX_AHEAD_MS`` after the
  clock of whoever received them. PostgreSQL's ``timestamptz`` ends in the year 294276, so
  ``t = 10**16`` fails its whole COPY with "timestamp out of range"; SQLite takes 64-bit
  integers only, so ``2**64 - 1`` raises OverflowError; both were seen to poison whole batches.
- Text cannot hold NUL (``\\x00``): PostgreSQL refuses it in ``text`` columns.
- Whole numbers fit their columns: ``INTEGER`` exchange ids and trade counts, ``SMALLINT``
  conditions.
"""

from __future__ import annotations

from typing import Any

# 2009-01-03T00:00:00Z, the day of Bitcoin's first block: no crypto market data is older. An
# earlier value is seconds sent as ms, zero, or garbage.
EARLIEST_MS = 1_230_940_800_000
EARLIEST_TEXT = "2009-01-03T00:00:00Z"
# A day absorbs any clock skew between the vendor and us and a bar's window end; a timestamp
# further ahead is a wrong unit (microseconds or nanoseconds sent as ms land centuries ahead).
MAX_AHEAD_MS = 86_400_000
# 9999-12-31T23:59:59.999Z, the last instant Python's datetime, SQLite's date functions and
# PostgreSQL all hold. The ceiling when the caller has no clock to offer (see ``latest_ms``),
# and for a bar's window end, which for a month or year bar still open is legitimately ahead.
LATEST_STORABLE_MS = 253_402_300_799_999

INT32_MAX = 2**31 - 1  # PostgreSQL INTEGER: exchange_id, trade_count
SMALLINT_MAX = 2**15 - 1  # PostgreSQL SMALLINT: each trade condition
NUL = "\x00"


def latest_ms(now_ms: int | None) -> int:
    """The latest timestamp a row received at ``now_ms`` may carry. ``None`` (a caller with no
    clock) leaves only what a database can hold."""
    if now_ms is None:
        return LATEST_STORABLE_MS
    return min(now_ms + MAX_AHEAD_MS, LATEST_STORABLE_MS)


def time_range_problem(name: str, value: int, now_ms: int | None) -> str | None:
    """Why the integer ``value`` is no storable time for a row received at ``now_ms``."""
    if value < EARLIEST_MS:
        return f"{name} {value} is before {EARLIEST_TEXT} (Unix ms expected)"
    if value > latest_ms(now_ms):
        if now_ms is None:
            return f"{name} {value} is past the year 9999 (Unix ms expected)"
        return (
            f"{name} {value} is more than a day ahead of the receiving clock ({now_ms})"
            " (Unix ms expected)"
        )
    return None


def nul_problem(name: str, value: Any) -> str | None:
    """A NUL inside text: PostgreSQL would refuse the row and, with it, its batch."""
    if type(value) is str and NUL in value:
        return f"{name} contains a NUL character"
    return None
