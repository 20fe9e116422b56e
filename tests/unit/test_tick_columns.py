"""Trades and quotes checked a column at a time (rows.tick_columns) must accept only batches
the per-row checks accept (it may send an unusual storable one, a float trade id, the per-row
way), and every batch of the usual shape; their COPY text (copy_text.tick_copy_text) must carry
every value as the per-row writer would: the same decimal, the same ms, the same text."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from rrr.bounds import EARLIEST_MS, INT32_MAX, SMALLINT_MAX
from rrr.models import Quote, Trade
from rrr.storage.copy_text import tick_copy_text
from rrr.storage.rows import ROW_PROBLEMS, tick_columns

NOW = 1_764_547_200_000  # 2025-12-01
T0 = NOW - 3_600_000

# Values a field may take: storable ones, and ones a per-row check refuses.
numbers = st.one_of(
    st.floats(min_value=1e-8, max_value=1e7),
    st.integers(min_value=1, max_value=10**6),
    st.sampled_from([0, 0.0, -1.5, float("nan"), float("inf"), None, True, "1.5", 10**30]),
)
times = st.one_of(
    st.integers(min_value=EARLIEST_MS, max_value=NOW + 86_400_000),
    st.sampled_from([EARLIEST_MS - 1, NOW + 86_400_001, 1.5, None, "t", 2**70]),
)
texts = st.one_of(st.sampled_from(["X:BTCUSD", "X:ETH\\USD", "tab\there"]),
                  st.sampled_from(["", "nul\x00", None, 7]))  # fmt: skip
exchanges = st.one_of(st.integers(0, INT32_MAX), st.sampled_from([-1, INT32_MAX + 1, "1", None]))
trade_ids = st.one_of(st.text(min_size=1, max_size=8), st.integers(0, 10**12),
                      st.sampled_from(["", None, 1.5, "a\x00b"]))  # fmt: skip
conditions = st.one_of(st.lists(st.integers(0, SMALLINT_MAX), max_size=3),
                       st.sampled_from([[SMALLINT_MAX + 1], ["x"], 5, None, [True]]))  # fmt: skip


def mostly(good: Any, any_value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Nine times in ten the good value, else anything: most batches pass, many do not."""
    return st.one_of(*([st.just(good)] * 9), any_value)


trade = st.builds(
    lambda *f: Trade(*f),
    mostly("X:BTCUSD", texts), mostly(23, exchanges), trade_ids, mostly(43575.6, numbers),
    mostly(0.5, numbers), mostly([2], conditions), mostly(T0, times), mostly(T0 + 5, times),
    mostly("polygon", texts),
)  # fmt: skip
quote = st.builds(
    lambda *f: Quote(*f),
    mostly("X:BTCUSD", texts), mostly(1, exchanges), mostly(100.5, numbers), mostly(2.0, numbers),
    mostly(100.75, numbers), mostly(0.0, numbers), mostly(T0, times), mostly(None, times),
    mostly("polygon", texts),
)  # fmt: skip


batches = st.one_of(
    st.tuples(st.just("trades"), st.lists(trade, min_size=1, max_size=6)),
    st.tuples(st.just("quotes"), st.lists(quote, min_size=1, max_size=6)),
)


def usual(kind: str, rows: list[Any]) -> bool:
    """Trade ids of text or int only: what the column check takes without looking further."""
    return kind != "trades" or all(type(r[2]) in (str, int) for r in rows)


def per_row_ok(kind: str, rows: list[Any]) -> bool:
    return all(ROW_PROBLEMS[kind](r, NOW) is None for r in rows)


GOOD_QUOTE = Quote("X:BTCUSD", 1, 100.5, 2.0, 100.75, 0.0, T0, None, "polygon")
GOOD_TRADE = Trade("X:BTCUSD", 23, "7", 43575.6, 0.5, [2], T0, T0 + 5, "polygon")


@settings(max_examples=400, deadline=None)
@given(batches)
@example(("quotes", [GOOD_QUOTE, GOOD_QUOTE._replace(ask_price=-1.5)]))  # the cases hypothesis
@example(("quotes", [GOOD_QUOTE._replace(bid_size=float("nan"))]))  # may not draw every run
@example(("trades", [GOOD_TRADE, GOOD_TRADE._replace(trade_id="a\x00b")]))
@example(("trades", [GOOD_TRADE._replace(conditions=[SMALLINT_MAX + 1])]))
@example(("trades", [GOOD_TRADE._replace(received_ms=NOW + 86_400_001)]))
def test_columns_exactly_when_every_row_passes(case: tuple[str, list[Any]]) -> None:
    kind, rows = case
    rows = [list(r) if i % 2 else r for i, r in enumerate(rows)]  # as decoded, and as built
    columns = tick_columns(kind, rows, NOW)
    if usual(kind, rows):
        assert (columns is not None) == per_row_ok(kind, rows), rows
    if columns is not None:
        assert per_row_ok(kind, rows), rows
        assert [list(r) for r in zip(*columns, strict=True)] == [list(r) for r in rows]


def expected_fields(kind: str, row: Any) -> list[Any]:
    """What the per-row writer wrote: text escaped, numbers as Decimal(repr), times as ms."""
    out: list[Any] = []
    for i, v in enumerate(row):
        if i in (0, 8) or (kind == "trades" and i == 2):
            text = str(v).replace("\\", "\\\\").replace("\t", "\\t")
            out.append(text.replace("\n", "\\n").replace("\r", "\\r"))
        elif i in (6, 7):
            out.append(v)
        elif kind == "trades" and i == 5:
            out.append("{" + ",".join(map(str, v)) + "}")
        else:
            out.append(Decimal(repr(v)))
    return out


def parsed_fields(kind: str, line: str) -> list[Any]:
    out: list[Any] = []
    for i, field in enumerate(line.split("\t")):
        if i in (6, 7):
            out.append(None if field == "\\N" else int(
                datetime.strptime(field, "%Y-%m-%d %H:%M:%S.%f+00").replace(tzinfo=UTC)
                .timestamp() * 1000 + 0.5))  # fmt: skip
        elif i in (0, 8) or (kind == "trades" and i in (2, 5)):
            out.append(field)
        else:
            out.append(Decimal(field))
    return out


@settings(max_examples=200, deadline=None)
@given(batches)
@example(("trades", [GOOD_TRADE, GOOD_TRADE._replace(trade_id="a\tb\\c\r")]))  # escapes
@example(("trades", [GOOD_TRADE._replace(trade_id=7), GOOD_TRADE._replace(received_ms=None)]))
def test_copy_text_carries_every_value_as_the_row_writer_did(case: tuple[str, list[Any]]) -> None:
    kind, rows = case
    columns = tick_columns(kind, rows, NOW)
    if columns is None:
        return  # a batch with a bad row: the per-row path, tested in test_rows
    ids = [f"id-{i}".encode() for i in range(len(rows))]
    lines = tick_copy_text(kind, columns, ids).decode().split("\n")
    assert lines[-1] == ""
    assert [line.split("\t", 1)[0] for line in lines[:-1]] == [i.decode() for i in ids]
    assert [parsed_fields(kind, line.split("\t", 1)[1]) for line in lines[:-1]] == [
        expected_fields(kind, r) for r in rows
    ]
