"""Stage two of a journal confirmation: the store has the item, not only the broker.

The publisher hands each item it published to ``published``; ``tick`` (in the publisher's
thread, every ``every_s``) asks the broker's Redis which of them the ingest tasks marked applied
(``rrr.applied``), confirms those in the journal, forgets their marks, and publishes again, from
the journal, those ``workers.awaiting`` names as due. A Redis that cannot answer delays this,
nothing more: the items stay journaled.

Repair requests are confirmed at publish (``CONFIRMED_AT_PUBLISH``): one can wait minutes in the
rate limiter, and the quality task finds any gap again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from rrr.applied import AppliedMarks
from rrr.stats import StreamStats
from rrr.wire import REPAIR
from workers.awaiting import Awaiting
from workers.journal import Journal

log = logging.getLogger(__name__)

CONFIRMED_AT_PUBLISH = frozenset({REPAIR})
# An item not applied this long after its publish while the ingest queues are empty and no
# consumer holds a message was lost on its way; healthy ones are applied within a second.
IDLE_AFTER_S = 5.0


class Confirmer:
    def __init__(
        self,
        journal: Journal,
        marks: AppliedMarks,
        stats: StreamStats,
        *,
        republish_after_s: float,
        idle_after_s: float = IDLE_AFTER_S,
        every_s: float = 1.0,
    ) -> None:
        self._journal = journal
        self._marks = marks
        self._stats = stats
        self._awaiting = Awaiting()
        self.republish_after_s = republish_after_s
        self.idle_after_s = idle_after_s
        self.every_s = every_s
        self._next_tick_s = 0.0
        self._unreachable = False

    def __len__(self) -> int:
        return len(self._awaiting)

    def token(self, kind: str, seq: int) -> str | None:
        """The confirm token an item carries, or None for one confirmed at publish."""
        return None if kind in CONFIRMED_AT_PUBLISH else self._marks.token(seq)

    def published(self, kind: str, seq: int, now_s: float) -> None:
        if kind in CONFIRMED_AT_PUBLISH:
            self._journal.confirm(seq)
        else:
            self._awaiting.published(seq, now_s)
        self._stats.awaiting_applied = len(self._awaiting)

    def tick(
        self, now_s: float, republish: Callable[[int], bool], every_s: float | None = None
    ) -> None:
        """Confirm what was applied; ``republish(seq)`` what is due (True: the broker took it,
        False: stop republishing for now)."""
        if not self._awaiting or now_s < self._next_tick_s:
            return
        self._next_tick_s = now_s + (self.every_s if every_s is None else every_s)
        awaiting = self._awaiting
        try:
            applied = self._marks.applied_among(awaiting.seqs())
            idle = self._looks_idle(now_s, len(applied))
        except redis.RedisError as exc:
            if not self._unreachable:
                self._unreachable = True
                log.warning("cannot read applied marks (%s): items stay journaled", exc)
            return
        if self._unreachable:
            self._unreachable = False
            log.warning("applied marks readable again")
        settlement = awaiting.settle(
            applied,
            now_s,
            self.republish_after_s,
            ingest_idle=idle,
            idle_after_s=self.idle_after_s,
        )
        for seq in settlement.confirm:
            self._journal.confirm(seq)
        if settlement.confirm:
            try:
                self._marks.forget(settlement.confirm)
            except redis.RedisError as exc:  # the marks expire by themselves
                log.debug("applied marks not removed: %r", exc)
        if settlement.republish:
            log.warning(
                "%d published item(s) not applied after %.0f s or more%s: publishing them again "
                "(a no-op for any the store has)",
                len(settlement.republish),
                self.idle_after_s if idle else self.republish_after_s,
                " with the ingest queues empty" if idle else "",
            )
        for seq in settlement.republish:
            if not republish(seq):
                break
            awaiting.republished(seq, now_s)
            self._stats.items_republished += 1
        self._stats.awaiting_applied = len(awaiting)

    def republish_all(self, republish: Callable[[int], bool]) -> None:
        """At a stop: every item not applied yet goes once more, oldest first, while the broker
        takes them."""
        seqs = self._awaiting.seqs()
        if seqs:
            log.warning(
                "stopping: %d published item(s) not applied yet go once more (they also stay "
                "journaled for the next start)",
                len(seqs),
            )
        for seq in seqs:
            if not republish(seq):
                return
            self._stats.items_republished += 1

    def _looks_idle(self, now_s: float, applied: int) -> bool:
        """Ask whether the pipeline is idle only when something has waited long enough."""
        oldest = self._awaiting.oldest_s()
        if oldest is None or now_s - oldest < self.idle_after_s or applied >= len(self._awaiting):
            return False
        return self._marks.ingest_idle()
