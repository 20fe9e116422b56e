"""One row the database refuses never takes its batch with it.

The row checks (rrr.storage.rows, rrr.bounds) set aside every row they know a database would
refuse before a batch is written. Whatever still gets through (a constraint, a value one
database takes and another does not) fails the batch's one transaction. ``apply_isolating``
then finds the refused rows by halving: each half is applied as a batch of its own (an id
derived from the parent's, so a redelivery skips the halves already stored), a half of one
refused row is set aside in ``dead_letters`` with the database's reason, and the parent's id is
recorded last, so the whole batch counts as applied exactly once.

A batch with k refused rows out of n costs about 2·k·log2(n) extra transactions; the common
case, a batch with none, costs nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rrr.errors import PermanentStorageError
from rrr.models import Batch, Rejected, raw_text
from rrr.storage.base import BatchResult, Store

log = logging.getLogger(__name__)


@dataclass
class _Tally:
    stored: int = 0
    rejected: int = 0


def apply_isolating(store: Store, batch: Batch, *, version_ms: int | None = None) -> BatchResult:
    """``store.apply_batch``, except that rows the database refuses for good are set aside
    one by one instead of failing the batch. Transient errors propagate (retry the batch).
    ``version_ms``: the bars' version; None: the batch's own."""
    if version_ms is None:
        version_ms = batch.version_ms
    try:
        return store.apply_batch(batch, version_ms=version_ms)
    except PermanentStorageError as exc:
        log.warning("batch %s refused (%s); finding the refused rows", batch.id, exc)
    tally = _Tally()
    _apply_halves(store, batch, version_ms, tally)
    # The parent id last: a redelivery after this point is a no-op; before it, the halves
    # already stored are skipped by their own ids and the search goes on where it stopped.
    done = store.apply_batch(Batch(batch.id, batch.kind, []), version_ms=version_ms)
    return BatchResult(batch.id, done.applied, tally.stored, tally.rejected)


def _apply_halves(store: Store, batch: Batch, version_ms: int | None, tally: _Tally) -> None:
    rows = batch.rows
    middle = len(rows) // 2
    for part, (lo, hi) in enumerate(((0, middle), (middle, len(rows)))):
        if lo == hi:
            continue
        half = Batch(f"{batch.id}/{part}", batch.kind, rows[lo:hi])
        try:
            result = store.apply_batch(half, version_ms=version_ms)
        except PermanentStorageError as exc:
            if len(half.rows) > 1:
                _apply_halves(store, half, version_ms, tally)
                continue
            reason = f"refused by the database in batch {batch.id}: {exc}"
            letter = Rejected(raw=raw_text(half.rows[0]), reason=reason, kind=batch.kind)
            store.add_dead_letters([letter])  # stored once: letters are keyed by content
            tally.rejected += 1
            continue
        tally.stored += result.stored
        tally.rejected += result.rejected
