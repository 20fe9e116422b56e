"""Adoption planning (pure): from catalog facts to the steps, and nothing once adopted."""

from __future__ import annotations

from rrr.storage.adopt.plan import ColumnFact, TableFacts, TablePlan, plan_adoption
from rrr.storage.adopt.report import describe
from rrr.storage.adopt.run import TableResult
from rrr.storage.adopt.targets import table_targets

TARGETS = table_targets(900)
TS = "timestamp without time zone"


def original_trades(**extra: ColumnFact) -> TableFacts:
    cols = {
        "id": ColumnFact("uuid", True, "gen_random_uuid()"),
        "ticker": ColumnFact("text", False, None),
        "event_time": ColumnFact(TS, False, None),
        "price": ColumnFact("numeric", False, None),
        "size": ColumnFact("numeric", False, None),
        "exchange_id": ColumnFact("integer", False, None),
        "conditions": ColumnFact("integer[]", False, None),
        "trade_id": ColumnFact("text", False, None),
        "created_at": ColumnFact(TS, False, "now()"),
        "notes": ColumnFact("text", False, None),
        **extra,
    }
    return TableFacts("crypto_trades", cols, frozenset({"crypto_trades_pkey"}), True)


def test_an_original_table_plans_columns_types_fills_and_the_key() -> None:
    [plan] = plan_adoption(TARGETS, {"crypto_trades": original_trades()}, migrated=False)
    assert plan.columns_added == ["received_time", "source"]
    assert plan.type_changes == [
        "event_time timestamp -> timestamptz (UTC)",
        "created_at timestamp -> timestamptz (UTC)",
    ]
    assert plan.filled == ["trade_id", "conditions"]
    assert plan.key_added == ("ticker", "exchange_id", "trade_id")
    sql = [s.sql for s in plan.statements]
    assert "ADD COLUMN source text NOT NULL DEFAULT 'polygon'" in sql[0]
    assert "trade_id = coalesce(trade_id, id::text)" in sql[1]
    assert [s.set_aside for s in plan.statements] == [None, None, "incomplete", "duplicate", None]
    assert "ADD CONSTRAINT crypto_trades_natural_key UNIQUE" in sql[-1]
    # rrr's checks, for rows written from now on: a row already there is kept as it is.
    assert plan.checks_added == ["price > 0", "size >= 0"]
    assert "ADD CONSTRAINT crypto_trades_price_check CHECK (price > 0) NOT VALID" in sql[-1]
    assert "source DROP DEFAULT" in sql[-1]  # rrr's source has no default
    assert not any("notes" in s for s in sql)  # the user's column is never touched


def adopted(facts: TableFacts) -> TableFacts:
    """The facts after adoption: what the plan added, typed and NOT NULL as planned."""
    target = next(t for t in TARGETS if t.table == facts.name)
    cols = dict(facts.columns)
    for col in target.columns:
        cols[col.name] = ColumnFact(col.type, col.not_null, col.default)
    added = {f"{facts.name}_natural_key"} | {
        f"{facts.name}_{c.name}_check" for c in target.columns if c.check is not None
    }
    return TableFacts(facts.name, cols, facts.constraints | added, True)


def test_an_adopted_table_plans_nothing_so_a_rerun_is_a_no_op() -> None:
    assert plan_adoption(TARGETS, {"crypto_trades": adopted(original_trades())}, False) == []


def test_nothing_is_adopted_once_rrr_migrated_or_when_not_original() -> None:
    assert plan_adoption(TARGETS, {"crypto_trades": original_trades()}, migrated=True) == []
    rrr_shaped = original_trades(id=ColumnFact("bigint", True, None))
    assert plan_adoption(TARGETS, {"crypto_trades": rrr_shaped}, migrated=False) == []


def test_a_required_column_that_cannot_be_derived_is_a_problem_not_a_guess() -> None:
    facts = original_trades()
    cols = {k: v for k, v in facts.columns.items() if k != "price"}
    no_price = TableFacts("crypto_trades", cols, facts.constraints, True)
    [plan] = plan_adoption(TARGETS, {"crypto_trades": no_price}, migrated=False)
    assert plan.problems == ["column price is missing and cannot be derived"]
    assert plan.statements == []


def test_the_summary_names_rows_kept_and_set_aside() -> None:
    result = TableResult(TablePlan("crypto_trades", columns_added=["source"]), 4, {"duplicate": 1})
    assert describe([result], dry_run=False) == [
        "adopted original tables",
        "crypto_trades:",
        "  rows kept: 4; duplicates set aside: 1; incomplete rows set aside: 0;"
        " columns added: source",
    ]
    assert describe([], dry_run=True) == ["no original tables to adopt"]
