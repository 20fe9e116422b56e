"""Items the broker has taken and the store has not yet confirmed (pure: time is an argument).

The publisher notes each item it published (``published``), and every second or so hands in
the sequence numbers the ingest tasks marked applied (``rrr.applied``); ``settle`` says which
items to confirm in the journal and which to publish again:

- applied: confirmed, whatever their order (the journal keeps its cursor at the oldest item
  still unconfirmed);
- not applied ``republish_after_s`` after their last publish: published again. By then kombu
  has restored any message a dead consumer held (the default is the visibility timeout + 60 s),
  so what is still missing was lost between the broker and a consumer, or is in a backlog;
- not applied ``idle_after_s`` after their last publish while the ingest queues are empty and
  no consumer holds a message: nothing can still bring them, so published again now.

Each republish doubles the item's next wait (up to ``MAX_DOUBLINGS``), so a database outage
or a long backlog is not flooded with copies: a repeat is a no-op in the store, but not free.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_DOUBLINGS = 6  # waits of at most 64x the base: ~12 h at the default 11 minutes


@dataclass(slots=True)
class Sent:
    published_s: float  # monotonic time of the latest publish
    republished: int = 0

    def due(self, now_s: float, wait_s: float) -> bool:
        return now_s - self.published_s >= wait_s * 2 ** min(self.republished, MAX_DOUBLINGS)


@dataclass(frozen=True)
class Settlement:
    confirm: list[int]  # applied: confirm in the journal (and forget their marks)
    republish: list[int]  # publish again, oldest first


class Awaiting:
    """Published, not yet applied, by journal sequence number, oldest first."""

    def __init__(self) -> None:
        self._sent: dict[int, Sent] = {}

    def __len__(self) -> int:
        return len(self._sent)

    def seqs(self) -> list[int]:
        return list(self._sent)

    def published(self, seq: int, now_s: float) -> None:
        self._sent[seq] = Sent(now_s)

    def republished(self, seq: int, now_s: float) -> None:
        sent = self._sent[seq]
        sent.published_s = now_s
        sent.republished += 1

    def oldest_s(self) -> float | None:
        """When the item published longest ago was last published, or None."""
        return min((s.published_s for s in self._sent.values()), default=None)

    def settle(
        self,
        applied: Iterable[int],
        now_s: float,
        republish_after_s: float,
        *,
        ingest_idle: bool = False,
        idle_after_s: float = 0.0,
    ) -> Settlement:
        """Drop the applied items (returned to confirm) and name those due for a republish."""
        confirm = sorted(seq for seq in set(applied) if self._sent.pop(seq, None) is not None)
        wait_s = min(idle_after_s, republish_after_s) if ingest_idle else republish_after_s
        republish = [seq for seq, sent in self._sent.items() if sent.due(now_s, wait_s)]
        return Settlement(confirm, republish)
