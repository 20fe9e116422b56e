"""Fuzzed feed frames for the ``fuzz`` scenario: hypothesis draws what is wrong, ``build``
turns a draw into the bytes the simulator injects and what the pipeline must make of them.

Every bad item carries a marker (``FZ000123Q``) that survives into its dead letter's ``raw``
(inside the event, or inside the frame text of a frame that is not JSON at all), so each dead
letter is matched to the one bad item it came from, with the reason that item must be given.
Good events get trade ids and times of their own, so each is one key in the store.

A frame is either a JSON array mixing good and bad events (the parser sets each bad event aside
alone) or something that is not a JSON array at all (one dead letter for the whole frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rrr.bounds import EARLIEST_MS, INT32_MAX, SMALLINT_MAX
from rrr.models import Quote, Trade
from rrr.polygon.messages import EVENT_PARSERS
from rrr.simulator.truth import event_to_record
from rrr.symbols import SymbolError, pair_to_ticker

PAIRS = ("BTC-USD", "ETH-USD")  # the harness's tickers
DAY_MS = 86_400_000
HUGE = "@@huge@@"  # stands for an integer literal past 64 bits, spliced into the JSON text
TRADE_FIELDS = ("pair", "p", "s", "t", "x", "i")  # required (c and r are optional)
QUOTE_FIELDS = ("pair", "bp", "bs", "ap", "as", "t", "x")
KIND = {"XT": "trades", "XQ": "quotes"}


def marker(n: int) -> str:
    return f"FZ{n:06d}Q"


def _not_a_pair(value: Any) -> bool:
    if type(value) is not str:
        return True
    try:
        pair_to_ticker(value)
    except SymbolError:
        return True
    return False


# -- what hypothesis draws: plain tuples --------------------------------------------------------

_int64 = st.integers(-(2**63), 2**63 - 1)  # what orjson encodes; wider ones come as HUGE

_scalars = st.one_of(
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.lists(st.integers(-5, 5), max_size=2),
    st.dictionaries(st.text(max_size=3), _int64, max_size=2),
)
_not_a_number = _scalars  # none of these is an int or a float
_not_an_integer = st.one_of(_scalars, st.floats(allow_nan=False, allow_infinity=False))
_huge = st.integers(2**64, 10**40).map(lambda n: (HUGE, str(n)))  # decoded as a float
_times = st.one_of(
    _not_an_integer.filter(lambda v: v is not None),
    _huge,
    st.integers(-(2**63), EARLIEST_MS - 1),
    st.integers(3 * DAY_MS, 2**62).map(lambda ahead: ("ahead", ahead)),  # from now, > a day
)
_ids = st.one_of(
    _not_an_integer, _huge, st.integers(-(2**63), -1), st.integers(INT32_MAX + 1, 2**63 - 1)
)


def _bad_values(field: str) -> st.SearchStrategy[Any]:
    """Values ``field`` must refuse, with the field named in the reason."""
    if field == "pair":
        return st.one_of(_scalars, st.text(max_size=10)).filter(_not_a_pair)
    if field in ("p", "bp", "ap"):  # positive prices
        return st.one_of(_not_a_number, st.floats(max_value=0.0, allow_nan=False), _huge_neg())
    if field in ("s", "bs", "as"):  # sizes, zero allowed
        return st.one_of(_not_a_number, st.floats(max_value=-1e-9, allow_nan=False))
    if field in ("t", "r"):
        return _times
    if field == "x":
        return _ids
    if field == "i":
        nul_text = st.tuples(st.text(max_size=4), st.text(max_size=4)).map(
            lambda ab: f"{ab[0]}\x00{ab[1]}"
        )
        return st.one_of(
            st.just(""), st.none(), st.booleans(), st.floats(allow_nan=False), nul_text
        )
    if field == "c":
        bad_condition = st.one_of(
            st.integers(-(2**63), -1), st.integers(SMALLINT_MAX + 1, 2**63 - 1), st.booleans(),
            st.floats(allow_nan=False), st.text(max_size=3),
        )  # fmt: skip
        return st.one_of(
            st.text(max_size=4),
            _int64,
            st.lists(bad_condition, min_size=1, max_size=3).flatmap(
                lambda bad: st.permutations([*bad, 1])
            ),
        )
    raise ValueError(field)


def _huge_neg() -> st.SearchStrategy[Any]:
    return st.integers(2**64, 10**30).map(lambda n: (HUGE, f"-{n}"))


_good = st.tuples(
    st.just("good"),
    st.sampled_from(("XT", "XQ")),
    st.sampled_from(PAIRS),
    st.integers(1, 10**8).map(lambda n: n / 100),  # a price with two decimals
    st.integers(0, 10**9).map(lambda n: n / 10**6),  # a size, six decimals
)
_field_error = st.sampled_from(
    [("XT", f) for f in (*TRADE_FIELDS, "c", "r")] + [("XQ", f) for f in (*QUOTE_FIELDS, "r")]
).flatmap(
    lambda kf: st.tuples(st.just("field"), st.just(kf[0]), st.just(kf[1]), _bad_values(kf[1]))
)
_missing = st.one_of(
    st.tuples(st.just("missing"), st.just("XT"), st.sampled_from(TRADE_FIELDS)),
    st.tuples(st.just("missing"), st.just("XQ"), st.sampled_from(QUOTE_FIELDS)),
)
_unknown = st.tuples(
    st.just("unknown"),
    st.one_of(
        st.text(max_size=6).filter(lambda ev: ev not in EVENT_PARSERS),
        _int64,
        st.booleans(),
        st.lists(_int64, max_size=2),
    ),
)
_odd = st.sampled_from(["no_ev", "not_object_list", "not_object_text", "status_without_text"])
_bad_event = st.one_of(_field_error, _missing, _unknown, _odd.map(lambda kind: (kind,)))
_events_frame = st.tuples(
    st.just("events"),
    st.tuples(st.lists(_good, max_size=3), st.lists(_bad_event, min_size=1, max_size=3)).flatmap(
        lambda gb: st.permutations([*gb[0], *gb[1]])
    ),
)
_whole_frame = st.one_of(
    st.tuples(st.just("truncated"), st.floats(0.0, 0.99)),
    st.tuples(st.just("garbage"), st.binary(max_size=200), st.booleans()),
    st.tuples(st.just("not_array"), st.sampled_from(["object", "text"])),
    st.tuples(st.just("literal"), st.sampled_from(["1e400", "-1e400", "NaN", "Infinity"])),
    st.tuples(
        st.just("raw_nul"),
    ),
)
frame_draws = st.one_of(_events_frame, _events_frame, _whole_frame)  # 2:1 mixed frames


def draw_frames(n: int) -> list[Any]:
    """``n`` draws, the same on every run (derandomized, no example database): CI reproduces
    a failure from the test alone. Drawn once, before the pipeline starts."""
    drawn: list[Any] = []

    @settings(
        max_examples=n, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(frame_draws)
    def collect(draw: Any) -> None:
        drawn.append(draw)

    collect()
    return drawn[:n]


# -- a draw -> bytes and expectations -----------------------------------------------------------


@dataclass(frozen=True)
class BadItem:
    marker: str
    reason: str  # a fragment the dead letter's reason must hold
    kind: str | None = None  # the dead letter's kind, where it is known ("trades", "quotes")


@dataclass(frozen=True)
class FuzzFrame:
    payload: bytes
    binary: bool
    good: tuple[Trade | Quote, ...]  # records the pipeline must store
    bad: tuple[BadItem, ...]  # one dead letter each


class FrameBuilder:
    """Numbers markers, trade ids and times, so every item is unique across the run."""

    def __init__(self) -> None:
        self.bad_count = 0
        self.good_count = 0

    def _marker(self) -> str:
        self.bad_count += 1
        return marker(self.bad_count)

    def build(self, draw: Any, now_ms: int) -> FuzzFrame:
        if draw[0] == "events":
            texts, good, bad = [], [], []
            for item in draw[1]:
                if item[0] == "good":
                    event = self._good_event(item, now_ms)
                    record = event_to_record(event)
                    assert isinstance(record, Trade | Quote)
                    good.append(record)
                    texts.append(orjson.dumps(event))
                else:
                    text, expected = self._bad_event(item, now_ms)
                    texts.append(text)
                    bad.append(expected)
            return FuzzFrame(b"[" + b",".join(texts) + b"]", False, tuple(good), tuple(bad))
        return self._whole_frame(draw, now_ms)

    def _good_event(self, item: Any, now_ms: int) -> dict[str, Any]:
        _, ev, pair, price, size = item
        self.good_count += 1
        t = now_ms - self.good_count  # a time of its own: quotes are keyed by their whole state
        if ev == "XT":
            return {"ev": "XT", "pair": pair, "p": price, "s": size, "t": t, "x": 1,
                    "i": f"fuzz-{self.good_count}", "c": [1], "r": now_ms}  # fmt: skip
        return {"ev": "XQ", "pair": pair, "bp": price, "bs": size, "ap": price + 0.01,
                "as": size, "t": t, "x": 1, "r": now_ms}  # fmt: skip

    def _valid(self, ev: str, m: str, now_ms: int) -> dict[str, Any]:
        """A valid event of ``ev`` carrying marker ``m`` (a field the parser ignores)."""
        if ev == "XT":
            return {"ev": "XT", "fz": m, "pair": "BTC-USD", "p": 1.5, "s": 2.0, "t": now_ms,
                    "x": 1, "i": m, "c": [1], "r": now_ms}  # fmt: skip
        return {"ev": "XQ", "fz": m, "pair": "ETH-USD", "bp": 1.5, "bs": 2.0, "ap": 1.6,
                "as": 1.0, "t": now_ms, "x": 1, "r": now_ms}  # fmt: skip

    def _bad_event(self, item: Any, now_ms: int) -> tuple[bytes, BadItem]:
        m = self._marker()
        what = item[0]
        if what == "field":
            _, ev, name, value = item
            event = self._valid(ev, m, now_ms)
            huge = None
            if isinstance(value, tuple) and value[0] == "ahead":
                value = now_ms + value[1]
            elif isinstance(value, tuple) and value[0] == HUGE:
                huge, value = value[1], HUGE
            event[name] = value
            text = orjson.dumps(event)
            if huge is not None:
                text = text.replace(orjson.dumps(HUGE), huge.encode())
            return text, BadItem(m, f"field '{name}'" if name != "pair" else "bad pair", KIND[ev])
        if what == "missing":
            _, ev, name = item
            event = self._valid(ev, m, now_ms)
            del event[name]
            return orjson.dumps(event), BadItem(m, f"missing field '{name}'", KIND[ev])
        if what == "unknown":
            return orjson.dumps({"ev": item[1], "fz": m}), BadItem(m, "unknown event", "")
        if what == "no_ev":
            event = self._valid("XT", m, now_ms)
            del event["ev"]
            return orjson.dumps(event), BadItem(m, "missing field 'ev'", "")
        if what == "not_object_list":
            return orjson.dumps([m, 1, None]), BadItem(m, "event is not a JSON object: list", "")
        if what == "not_object_text":
            return orjson.dumps(m), BadItem(m, "event is not a JSON object: str", "")
        if what == "status_without_text":
            return orjson.dumps({"ev": "status", "fz": m}), BadItem(m, "without a 'status'", "")
        raise ValueError(what)

    def _whole_frame(self, draw: Any, now_ms: int) -> FuzzFrame:
        m = self._marker()
        what, binary = draw[0], False
        if what == "truncated":  # cut after the marker, before the closing bracket
            text = orjson.dumps([self._valid("XT", m, now_ms), self._valid("XQ", m, now_ms)])
            keep = text.index(m.encode()) + len(m)
            payload = text[: keep + int(draw[1] * (len(text) - 1 - keep))]
            reason = "frame is not JSON"
        elif what == "garbage":  # 0xFE is never UTF-8: never JSON either
            payload, binary, reason = b"\xfe" + m.encode() + draw[1], draw[2], "frame is not JSON"
        elif what == "not_array":
            value: Any = {"fz": m} if draw[1] == "object" else m
            payload, reason = orjson.dumps(value), "frame is not a JSON array"
        elif what == "literal":  # orjson refuses infinities and NaN: the frame is not JSON
            payload = f'[{{"ev":"XT","fz":"{m}","p":{draw[1]}}}]'.encode()
            reason = "frame is not JSON"
        else:  # raw_nul: a control character inside a JSON string
            payload, reason = f'[{{"ev":"XT","fz":"{m}\x00"}}]'.encode(), "frame is not JSON"
        return FuzzFrame(payload, binary, (), (BadItem(m, reason, ""),))
