"""The backfill-chunk part of the Store contract, against every store: plan rows, atomic
claims with a lease, progress."""

from __future__ import annotations

import threading
from collections.abc import Callable

from rrr.backfill.plan import BackfillRequest, plan_backfill
from rrr.storage import Store

T0 = 1_767_225_600_000  # 2026-01-01
HOUR = 3_600_000
LEASE = 60_000


def opened(store_factory: Callable[[], Store]) -> Store:
    store = store_factory()
    store.migrate()
    return store


def small_plan(tickers: tuple[str, ...] = ("X:BTCUSD", "X:ETHUSD"), hours: int = 4):
    request = BackfillRequest(tickers, T0, T0 + hours * HOUR, 1, "minute")
    return plan_backfill(request, max_base_bars=60)  # one chunk per hour


def test_chunks_are_written_once_and_move_to_the_newest_plan(
    store_factory: Callable[[], Store],
) -> None:
    store = opened(store_factory)
    plan = small_plan()
    assert store.upsert_chunks(list(plan.chunks)) == 8
    assert store.upsert_chunks(list(plan.chunks)) == 0
    state = store.get_chunk(plan.chunks[0].chunk_id)
    assert state is not None
    assert state.chunk == plan.chunks[0]
    assert (state.status, state.attempts, state.bars_stored, state.last_error) == (
        "pending", 0, 0, None,
    )  # fmt: skip
    assert store.get_chunk("nope") is None
    assert store.chunks_not_done(plan.plan_id) == [c.chunk_id for c in plan.chunks]

    wider = small_plan(hours=6)  # shares the first four hours' chunks
    assert store.upsert_chunks(list(wider.chunks)) == 4
    assert store.chunk_progress(wider.plan_id).total == 12
    assert store.chunk_progress(plan.plan_id).total == 0


def test_claim_finish_fail_and_the_lease(store_factory: Callable[[], Store]) -> None:
    store = opened(store_factory)
    plan = small_plan()
    store.upsert_chunks(list(plan.chunks))
    a, b, c = (ch.chunk_id for ch in plan.chunks[:3])
    now = T0 + 100 * HOUR

    assert store.claim_chunk(a, now, LEASE) == 1
    assert store.claim_chunk(a, now + 1_000, LEASE) is None  # held by a live claim
    store.touch_chunk(a, 30, now + LEASE - 1)  # renewed
    assert store.claim_chunk(a, now + LEASE + 1, LEASE) is None
    assert store.claim_chunk(a, now + 2 * LEASE, LEASE) == 2  # lease ran out: taken over
    store.finish_chunk(a, 60, now + 2 * LEASE + 5)
    assert store.claim_chunk(a, now + 10 * LEASE, LEASE) is None  # done stays done
    store.fail_chunk(a, "late news from a stale worker", now + 10 * LEASE)
    done = store.get_chunk(a)
    assert done is not None
    assert (done.status, done.bars_stored, done.attempts, done.last_error) == ("done", 60, 2, None)
    assert done.finished_ms == now + 2 * LEASE + 5

    assert store.claim_chunk(b, now, LEASE) == 1
    store.fail_chunk(b, "HTTP 429: slow down", now + 1, retry=True)
    assert store.get_chunk(b).status == "pending"  # type: ignore[union-attr]
    assert store.claim_chunk(b, now + 2, LEASE) == 2
    store.fail_chunk(b, "HTTP 401: Unknown API Key", now + 3)
    assert store.get_chunk(b).status == "failed"  # type: ignore[union-attr]

    assert store.claim_chunk(c, now, LEASE) == 1
    store.touch_chunk(c, 17, now + 4)

    progress = store.chunk_progress(plan.plan_id)
    assert progress.counts == {"done": 1, "failed": 1, "running": 1, "pending": 5}
    assert progress.bars_stored == 60 + 17
    assert progress.last_error == "HTTP 401: Unknown API Key"
    assert progress.first_started_ms is not None
    assert not progress.finished
    assert store.chunks_not_done(plan.plan_id) == [ch.chunk_id for ch in plan.chunks[1:]]
    assert store.claim_chunk(b, now + 5, LEASE) == 3  # failed chunks are claimable again


def test_concurrent_claims_have_one_winner(store_factory: Callable[[], Store]) -> None:
    plan = small_plan(hours=10)
    stores = [opened(store_factory) for _ in range(3)]
    stores[0].upsert_chunks(list(plan.chunks))
    wins: list[str] = []
    lock = threading.Lock()

    def claim_all(store: Store) -> None:
        for chunk in plan.chunks:
            if store.claim_chunk(chunk.chunk_id, T0, LEASE) is not None:
                with lock:
                    wins.append(chunk.chunk_id)

    threads = [threading.Thread(target=claim_all, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(wins) == sorted(c.chunk_id for c in plan.chunks)
