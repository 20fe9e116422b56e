"""The domain vocabulary. Wire formats (Polygon's `ev`, `p`, `s` ...) never leak past the parsers.

Market-data records are NamedTuples: one is created per tick on the hot path, they cost a third
of a dataclass to build, and a tuple serialises as a plain array (msgpack/JSON) with no mapping
step. Prices and sizes are the floats the vendor's JSON decoded to; ``repr(float)`` is the
shortest text that round-trips, so the decimal the vendor wrote is what the stores write (see
``rrr.storage.rows``), with no arithmetic in between to add artefacts.

Times are Unix epoch milliseconds in UTC (``*_ms``), as the vendor sends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import orjson

Kind = Literal["trades", "quotes", "bars"]
KINDS: tuple[Kind, ...] = ("trades", "quotes", "bars")

SOURCE_POLYGON = "polygon"
SOURCE_SIMULATOR = "simulator"


class Trade(NamedTuple):
    ticker: str  # REST form, X:BTCUSD
    exchange_id: int
    trade_id: str  # the vendor sends an int or a UUID string; stored as text
    price: float
    size: float
    conditions: tuple[int, ...]  # 1 = sell side, 2 = buy side, empty = none
    ts_ms: int  # exchange timestamp
    received_ms: int | None  # when the vendor received it
    source: str


class Quote(NamedTuple):
    ticker: str
    exchange_id: int
    bid_price: float
    bid_size: float
    ask_price: float
    ask_size: float
    ts_ms: int
    received_ms: int | None
    source: str


class Bar(NamedTuple):
    ticker: str
    timeframe: str  # "1m", "1s", "5m", "1h", "1d" ...
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float | None
    trade_count: int | None
    start_ms: int  # window start (the natural key's time)
    end_ms: int  # window end, exclusive
    source: str


ROW_TYPES: dict[str, type[Trade] | type[Quote] | type[Bar]] = {
    "trades": Trade,
    "quotes": Quote,
    "bars": Bar,
}


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows of one kind that are applied to a store in one transaction, exactly once by `id`."""

    id: str
    kind: Kind
    rows: list[Any]
    # Bars only: when the batch's bars were received from the vendor, their version (see
    # rrr/storage/base.py, "Bar versions"). None: the time of the write stands in.
    version_ms: int | None = None

    def to_message(self) -> dict[str, Any]:
        """Plain data for a task argument: ids and lists, never live objects."""
        message: dict[str, Any] = {"id": self.id, "kind": self.kind, "rows": self.rows}
        if self.version_ms is not None:
            message["version_ms"] = self.version_ms
        return message

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Batch:
        """Rows stay the plain arrays they travelled as: stores read them by position, and a
        malformed row is rejected on its own by ``rrr.storage.rows``, not with its batch."""
        kind = message["kind"]
        if kind not in ROW_TYPES:
            raise ValueError(f"unknown batch kind {kind!r}; expected one of {', '.join(KINDS)}")
        rows = message["rows"]
        if not isinstance(rows, list):
            raise ValueError(f"batch rows must be a list, got {type(rows).__name__}")
        version = message.get("version_ms")
        if version is not None and type(version) is not int:
            raise ValueError(f"batch version_ms must be Unix ms or absent, got {version!r}")
        return cls(id=str(message["id"]), kind=kind, rows=rows, version_ms=version)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Input that could not become a record, kept with the reason (a dead letter)."""

    raw: str
    reason: str
    kind: str = ""
    source: str = ""


# orjson decodes 1,024 levels of nesting but encodes only 254; a rejected event nested deeper
# is kept down to this depth, with a marker below it, rather than failing its whole frame.
_RAW_DEPTH = 200
_INT64 = (-(2**63), 2**64 - 1)  # what orjson encodes as an integer


def raw_text(value: Any) -> str:
    """The JSON text of input set aside (a dead letter's ``raw``), for any value: never raises,
    and never holds a literal NUL (JSON escapes it), so every store can keep it."""
    try:
        return orjson.dumps(value, default=repr).decode()
    except TypeError:  # orjson.JSONEncodeError: nested too deep, an int past 64 bits ...
        return orjson.dumps(_encodable(value, _RAW_DEPTH)).decode()


def _encodable(value: Any, depth: int) -> Any:
    if isinstance(value, dict | list | tuple):
        if depth == 0:
            return f"<nested deeper than {_RAW_DEPTH} levels>"
        if isinstance(value, dict):
            return {str(k): _encodable(v, depth - 1) for k, v in value.items()}
        return [_encodable(v, depth - 1) for v in value]
    if value is None or type(value) in (str, float, bool):
        return value
    if type(value) is int and _INT64[0] <= value <= _INT64[1]:
        return value
    try:
        return repr(value)
    except Exception:  # a foreign object whose repr fails: its type still says something
        return f"<{type(value).__name__}>"


def shown(value: Any, limit: int = 100) -> str:
    """``repr(value)`` for a reason text, cut at ``limit`` characters; never raises (the
    repr of a deeply nested list does)."""
    try:
        text = repr(value)
    except RecursionError:
        text = raw_text(value)
    return text if len(text) <= limit else text[:limit] + "..."


Severity = Literal["info", "warning", "error", "critical"]


@dataclass(frozen=True, slots=True)
class SystemEvent:
    component: str
    event_type: str
    severity: Severity
    message: str
    ts_ms: int
    details: dict[str, Any] = field(default_factory=dict)
    # Same dedupe_key -> stored once (a re-run over an overlapping window adds nothing).
    dedupe_key: str | None = None


@dataclass(frozen=True, slots=True)
class Sentiment:
    asset: str  # BTC
    source: str  # "perplexity" or "simulator"
    label: Literal["bullish", "neutral", "bearish"]
    score: float  # [-1, 1]
    confidence: float  # [0, 1]
    text: str  # the model's reasoning
    ts_ms: int  # when it was scored
    interval_start_ms: int  # the schedule slot; (asset, source, interval_start_ms) is the key
    metadata: dict[str, Any] = field(default_factory=dict)
