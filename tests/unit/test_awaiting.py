"""Which published items to confirm and which to publish again, given the applied marks and the
time (pure); and the confirm token's form."""

from __future__ import annotations

import pytest

from rrr.applied import make_token, parse_token
from workers.awaiting import MAX_DOUBLINGS, Awaiting

AFTER_S = 660.0  # the default: visibility timeout + 60 s
IDLE_S = 5.0


def awaiting(*published_s: float) -> Awaiting:
    """Items 1, 2, ... published at the given times."""
    items = Awaiting()
    for seq, at in enumerate(published_s, start=1):
        items.published(seq, at)
    return items


def test_applied_items_are_confirmed_in_any_order_and_forgotten() -> None:
    items = awaiting(0, 0, 0, 0)
    settled = items.settle({4, 2, 99}, now_s=1, republish_after_s=AFTER_S)
    assert settled.confirm == [2, 4]  # 99 was never published (or settled before): ignored
    assert settled.republish == []
    assert items.seqs() == [1, 3] and len(items) == 2
    assert items.settle({2}, now_s=2, republish_after_s=AFTER_S).confirm == []  # once only


@pytest.mark.parametrize(
    ("now_s", "due"),
    [
        (100.0, []),  # a backlog, or a dead consumer's message kombu has not restored yet
        (659.9, []),
        (660.0, [1]),
        (700.0, [1, 2]),
    ],
)
def test_unapplied_items_go_again_after_the_wait(now_s: float, due: list[int]) -> None:
    items = awaiting(0, 40, 41)
    settled = items.settle({3}, now_s, AFTER_S)
    assert (settled.confirm, settled.republish) == ([3], due)


def test_each_republish_doubles_the_next_wait_up_to_a_bound() -> None:
    items = awaiting(0)
    now = 0.0
    waits = []
    for _ in range(MAX_DOUBLINGS + 2):
        start = now
        while not items.settle((), now, AFTER_S).republish:
            now += 10
        items.republished(1, now)
        waits.append(now - start)
    assert waits[:4] == [660, 1320, 2640, 5280]  # a long database outage is not flooded
    assert waits[-1] == waits[-2] == 660 * 2**MAX_DOUBLINGS


def test_with_the_ingest_queues_idle_a_missing_item_goes_after_seconds() -> None:
    items = awaiting(0, 8)
    kw = {"republish_after_s": AFTER_S, "idle_after_s": IDLE_S}
    assert items.settle((), 10, ingest_idle=False, **kw).republish == []  # busy: wait it out
    assert items.settle((), 10, ingest_idle=True, **kw).republish == [1]  # nothing can bring it
    items.republished(1, 10)
    assert items.settle((), 14, ingest_idle=True, **kw).republish == [2]
    assert items.settle((), 19.9, ingest_idle=True, **kw).republish == [2]  # 1: 10 s now
    assert items.settle((), 20, ingest_idle=True, **kw).republish == [1, 2]


def test_the_oldest_publish_time() -> None:
    items = awaiting(5, 3, 9)
    assert items.oldest_s() == 3
    items.republished(2, 12)
    assert items.oldest_s() == 5
    items.settle({1, 2, 3}, 13, AFTER_S)
    assert items.oldest_s() is None


def test_confirm_tokens_round_trip_and_bad_ones_are_named() -> None:
    token = make_token("3f2a9c", 41)
    assert token == "3f2a9c:41" and parse_token(token) == ("3f2a9c", 41)
    assert parse_token("a:b:7") == ("a:b", 7)
    for bad in ("3f2a9c", ":41", "3f2a9c:", "3f2a9c:-1", 41, None, ["3f2a9c", 41]):
        with pytest.raises(ValueError, match="not a confirm token"):
            parse_token(bad)
