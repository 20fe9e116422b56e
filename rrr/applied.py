"""Applied marks: how an ingest task tells the stream worker "stored", through the broker's Redis.

The stream worker keeps an item in its journal until the store has it, not only the broker
(kombu's Redis transport takes a message with BRPOP and records it as unacked only afterwards:
a consumer killed in between loses it for good). Each item it publishes carries a confirm token
``"<session>:<seq>"`` (the publishing process's random session, the item's journal sequence
number). Once the item's store write has committed, or it was set aside, the task adds ``seq``
to the set ``rrr:applied:<session>``; the stream worker reads the set, confirms those items in
its journal and removes them from the set. A mark that is never written costs a republish, which
batch ids and natural keys make a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

APPLIED_KEY = "rrr:applied:{session}"
# Marks outlive any pause of a stream worker that still waits for them; an orphaned set (its
# worker gone for good) expires by itself.
APPLIED_TTL_S = 86_400
CHUNK = 1000  # members per SMISMEMBER / SREM: one round trip stays short
# kombu's Redis transport: the hash of delivered-but-not-acked messages (``unacked_key``).
KOMBU_UNACKED_KEY = "unacked"


def make_token(session: str, seq: int) -> str:
    return f"{session}:{seq}"


def parse_token(token: object) -> tuple[str, int]:
    """(session, seq) of a confirm token; ValueError naming the token when it is not one."""
    if isinstance(token, str):
        session, _, seq = token.rpartition(":")
        if session and seq.isdigit():
            return session, int(seq)
    raise ValueError(f"not a confirm token ('<session>:<seq>'): {token!r}")


def add_mark(pipe: redis.client.Pipeline, token: object) -> None:
    """Queue on ``pipe`` the mark that the item ``token`` names is stored (or set aside), so it
    shares a round trip with the caller's other commands. Idempotent. ValueError for a token
    that is none, before anything is queued."""
    session, seq = parse_token(token)
    key = APPLIED_KEY.format(session=session)
    pipe.sadd(key, seq)
    pipe.expire(key, APPLIED_TTL_S)


def mark_applied(client: redis.Redis, token: object) -> None:
    """Record that the item ``token`` names is stored (or set aside). Idempotent."""
    with client.pipeline(transaction=False) as pipe:
        add_mark(pipe, token)
        pipe.execute()


class AppliedMarks:
    """The stream worker's side: tokens for its items, and which of them were applied."""

    def __init__(self, client: redis.Redis, session: str, queues: Sequence[str] = ("ingest",)):
        self.client = client
        self.session = session
        self._key = APPLIED_KEY.format(session=session)
        self._queues = tuple(queues)

    def token(self, seq: int) -> str:
        return make_token(self.session, seq)

    def applied_among(self, seqs: Sequence[int]) -> set[int]:
        applied: set[int] = set()
        for start in range(0, len(seqs), CHUNK):
            chunk = seqs[start : start + CHUNK]
            found = self.client.smismember(self._key, chunk)  # type: ignore[arg-type]
            applied.update(seq for seq, hit in zip(chunk, found, strict=True) if hit)
        return applied

    def forget(self, seqs: Iterable[int]) -> None:
        seqs = list(seqs)
        for start in range(0, len(seqs), CHUNK):
            self.client.srem(self._key, *seqs[start : start + CHUNK])

    def ingest_idle(self) -> bool:
        """Nothing waits in the ingest queues and no consumer holds a message: any item
        published a while ago and still not applied was lost on its way (or its mark was)."""
        with self.client.pipeline(transaction=False) as pipe:
            for queue in self._queues:
                pipe.llen(queue)
            pipe.hlen(KOMBU_UNACKED_KEY)
            return not any(pipe.execute())
