"""The stream lease's decisions (workers.stream_lease), and LeasedStream driven with an
in-memory lease and a scripted vendor stream: who connects, when a holder lets go."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from rrr.models import SystemEvent
from tests.support.waiting import wait_for
from tests.unit.test_stream_worker import T0, Harness, frame, xt
from workers.leased_stream import LeasedStream
from workers.stream import RESTART_MARGIN_MS
from workers.stream_lease import (
    LEASE_LOST_EVENT,
    TAKEOVER_EVENT,
    HeldLease,
    Holder,
    LeasePolicy,
    Renewal,
    RenewalAnswer,
    gone_here,
    lease_fields,
    live_standbys,
    parse_holder,
    takeover_event,
)

MACHINE = "vm|boot-1|pid:[1]"
A = Holder("host-a", 101, 1_000, "n-a", MACHINE)
B = Holder("host-b", 202, 50_000, "n-b", "other|boot-2|pid:[9]")


# -- timings -----------------------------------------------------------------------------------


@pytest.mark.parametrize("lease_s", [2, 3, 10, 30])
def test_a_holder_is_disconnected_before_its_lease_can_expire(lease_s: int) -> None:
    policy = LeasePolicy(lease_s)
    sent_at = 500.0
    # Redis applies the SET or renewal after it was sent: it expires at sent_at + lease_s or later.
    assert policy.deadline(sent_at) == sent_at + lease_s - policy.margin_s
    assert policy.margin_s > 0
    # A connection that does not close when asked is cut, still before that time.
    assert 0 < policy.abort_after_s < policy.margin_s
    # A renewal (bounded by its connect and read timeouts) and a retry start before it.
    one_try_s = 2 * policy.io_timeout_s
    assert policy.renew_every_s + one_try_s + policy.poll_s < lease_s - policy.margin_s
    assert policy.poll_s <= 1.0


def test_ten_seconds_by_default_figures() -> None:
    policy = LeasePolicy(10)
    assert (policy.renew_every_s, policy.margin_s, policy.poll_s) == (10 / 3, 2.5, 1.0)
    assert policy.deadline(0.0) == 7.5


def timeline(policy: LeasePolicy, outcomes: list[Renewal]) -> tuple[float | None, float]:
    """A holder that took the lease at 0, a standby listed, and renews every renew_every_s
    with these outcomes (each applied by Redis the moment it was sent, its latest possible
    expiry): when it lets go (None: never, within the outcomes) and when Redis expires its
    lease."""
    held = HeldLease.acquired(policy, 0.0)
    held.saw_standbys(True)
    expiry = policy.lease_s
    for n, outcome in enumerate(outcomes, start=1):
        at = n * policy.renew_every_s
        if not held.check(at):
            return held.valid_until, expiry
        if not held.after_renewal(outcome, at):
            return at, expiry
        if outcome is Renewal.RENEWED:
            expiry = at + policy.lease_s
    return (None if held.check(len(outcomes) * policy.renew_every_s) else held.valid_until), expiry


@pytest.mark.parametrize(
    ("outcomes", "lets_go"),
    [
        ([Renewal.RENEWED] * 6, False),
        ([Renewal.RENEWED, Renewal.FAILED, Renewal.RENEWED, Renewal.RENEWED], False),
        ([Renewal.RENEWED, Renewal.FAILED, Renewal.FAILED, Renewal.FAILED], True),
        ([Renewal.FAILED] * 4, True),
        ([Renewal.RENEWED, Renewal.NOT_OWNER], True),
    ],
)
def test_a_holder_cut_from_redis_lets_go_first(outcomes: list[Renewal], lets_go: bool) -> None:
    policy = LeasePolicy(10)
    let_go_at, expiry = timeline(policy, outcomes)
    assert (let_go_at is not None) is lets_go
    if let_go_at is not None:
        assert let_go_at <= expiry - policy.margin_s


def test_held_lease_outcomes() -> None:
    policy = LeasePolicy(3)
    held = HeldLease.acquired(policy, 10.0)
    assert held.valid_until == 12.25 and held.check(12.2)
    assert held.after_renewal(Renewal.RENEWED, 11.0) and held.valid_until == 13.25
    # An older renewal answered late never shortens the deadline.
    assert held.after_renewal(Renewal.RENEWED, 10.5) and held.valid_until == 13.25
    assert held.after_renewal(Renewal.FAILED, 12.0) and held.check(13.2)
    retaken = HeldLease.acquired(policy, 10.0)  # the key had vanished and is ours again
    assert retaken.after_renewal(Renewal.RETAKEN, 11.0) and retaken.valid_until == 13.25
    assert not held.check(13.25)  # standby_known until Redis says otherwise
    assert "no renewal reached Redis" in held.lost_reason and "standby" in held.lost_reason
    # Lost is final: a renewal that gets through afterwards does not revive it.
    assert not held.after_renewal(Renewal.RENEWED, 13.3)

    taken = HeldLease.acquired(policy, 0.0)
    assert not taken.after_renewal(Renewal.NOT_OWNER, 1.0)
    assert taken.lost_reason == "the lease expired or another process holds it"


def test_with_no_standby_listed_the_holder_keeps_its_connection_past_the_deadline() -> None:
    """A lone stream worker rides out a broker outage: past the deadline it stays on the feed
    (unconfirmed), never (re)connects, and a renewal that gets through confirms it again."""
    policy = LeasePolicy(10)
    held = HeldLease.acquired(policy, 0.0)
    held.saw_standbys(False)
    assert held.check(5.0) and held.confirmed(5.0) and not held.held_over(5.0)
    assert held.after_renewal(Renewal.FAILED, 3.4)
    # Past the deadline (7.5 s) and far past the lease itself: kept while connected.
    for now in (7.5, 10.0, 30.0):
        assert held.check(now, connected=True)
        assert held.held_over(now) and not held.confirmed(now)
    assert not held.lost_reason
    # A renewal sent while held over: our token still there (or the key gone and retaken).
    assert held.after_renewal(Renewal.RETAKEN, 31.0, standby_known=False)
    assert held.confirmed(32.0) and held.valid_until == policy.deadline(31.0)
    assert held.may_connect(32.0)  # a drop now may reconnect: the lease is confirmed

    # Held over, the connection drops (pushed out by a standby that started meanwhile).
    pushed = HeldLease.acquired(policy, 0.0)
    pushed.saw_standbys(False)
    assert pushed.check(20.0, connected=True)
    assert not pushed.may_connect(20.0)
    assert "not reconnecting" in pushed.lost_reason
    assert not pushed.check(20.1) and not pushed.after_renewal(Renewal.RENEWED, 20.2)

    # Held over and the connection is down (reconnecting): let go, do not connect.
    down = HeldLease.acquired(policy, 0.0)
    down.saw_standbys(False)
    assert not down.check(8.0, connected=False)
    assert "feed connection is down" in down.lost_reason

    # Held over, then Redis answers with another token: lost at once.
    taken = HeldLease.acquired(policy, 0.0)
    taken.saw_standbys(False)
    assert taken.check(9.0) and not taken.after_renewal(Renewal.NOT_OWNER, 9.5)


def test_a_standby_listed_at_the_last_contact_makes_the_holder_let_go() -> None:
    """What the last successful renewal listed decides; a failed one changes nothing."""
    policy = LeasePolicy(10)
    held = HeldLease.acquired(policy, 0.0)
    held.saw_standbys(False)
    assert held.after_renewal(Renewal.RENEWED, 3.0, standby_known=True)
    assert held.after_renewal(Renewal.FAILED, 6.0, standby_known=None)
    assert held.check(10.4) and not held.check(policy.deadline(3.0))
    alone = HeldLease.acquired(policy, 0.0)
    alone.saw_standbys(True)
    assert alone.after_renewal(Renewal.RENEWED, 3.0, standby_known=False)
    assert alone.check(policy.deadline(3.0) + 5)  # held over
    # Never told (Redis did not answer the read after the SET): let go, as without the rule.
    assert not HeldLease.acquired(policy, 0.0).check(policy.deadline(0.0))


# -- holders -----------------------------------------------------------------------------------


def test_holder_token_round_trip() -> None:
    assert parse_holder(A.token()) == A
    assert parse_holder(A.token().encode()) == A
    assert A.describe() == "host-a pid 101"


@pytest.mark.parametrize(
    "raw",
    [None, b"", b"not json", b"[]", b'{"host": "x"}', b'{"host":"h","pid":"x","since_ms":1}'],
)
def test_a_value_that_is_no_holder_is_none(raw: bytes | None) -> None:
    assert parse_holder(raw) is None


def test_a_value_written_otherwise_is_none() -> None:
    """Only a token this code wrote: the compare-and-delete of a dead holder must match it."""
    spaced = '{"host": "host-a", "pid": 101, "since_ms": 1000, "nonce": "n-a", "machine": ""}'
    assert parse_holder(spaced) is None


@pytest.mark.parametrize(
    ("holder", "alive", "gone"),
    [
        (A, False, True),  # this machine, its process gone: take the lease now
        (A, True, False),  # still running (or its pid reused): wait for the expiry
        (B, False, False),  # another machine: only the expiry is proof
        (Holder("h", 1, 0, "n", ""), False, False),  # no machine recorded
    ],
)
def test_gone_here(holder: Holder, alive: bool, gone: bool) -> None:
    assert gone_here(holder, MACHINE, lambda pid: alive) is gone


# -- records -----------------------------------------------------------------------------------


def test_takeover_event() -> None:
    event = takeover_event(A, B, {"X:BTCUSD": 44_000, "X:ETHUSD": 45_500}, 10)
    assert (event.component, event.event_type, event.severity) == (
        "stream_worker",
        TAKEOVER_EVENT,
        "warning",
    )
    assert event.ts_ms == B.since_ms
    assert event.details == {
        "host": "host-b",
        "pid": 202,
        "previous_host": "host-a",
        "previous_pid": 101,
        "previous_since_ms": 1_000,
        "last_seen_ms": 45_500,
        "gap_ms": 4_500,
        "lease_s": 10,
    }
    assert "from host-a pid 101" in event.message and "4.5 s" in event.message
    assert event.dedupe_key == "stream_takeover:n-b"
    unknown = takeover_event(A, B, None, 10)
    assert unknown.details["gap_ms"] is None and "unknown" in unknown.message


def test_lease_fields() -> None:
    fields = lease_fields(B, 10, 3, 51_000, A)
    assert fields == {
        "lease.holder_host": "host-b",
        "lease.holder_pid": 202,
        "lease.holder_since_ms": 50_000,
        "lease.lease_s": 10,
        "lease.renewed_ms": 51_000,
        "lease.takeovers": 3,
        "lease.previous_host": "host-a",
        "lease.previous_pid": 101,
        "lease.standbys": [],
    }
    assert lease_fields(B, 10, 0, 0, None)["lease.previous_pid"] == 0
    assert lease_fields(B, 10, 0, 0, None, ["h pid 1"])["lease.standbys"] == ["h pid 1"]


def test_live_standbys_are_those_that_tried_within_the_lease() -> None:
    reported = {b"host-c pid 3": b"95000", b"host-b pid 2": b"99000", b"old pid 1": b"80000"}
    assert live_standbys(reported, 100_000, 10) == ["host-b pid 2", "host-c pid 3"]
    assert live_standbys({"x pid 1": "garbage"}, 100_000, 10) == []
    # The holder's own entry from standing by before is no standby.
    me = Holder("host-b", 2, 0, "n")
    assert live_standbys(reported, 100_000, 10, me) == ["host-c pid 3"]


# -- LeasedStream with an in-memory lease ------------------------------------------------------


class MemoryLease:
    """RedisLease's surface over a dict; ``renewals`` scripts what renew() answers."""

    def __init__(self, policy: LeasePolicy, held_by: Holder | None = None) -> None:
        self.policy = policy
        self.value: Holder | None = held_by
        self.renewals: list[Renewal] = []
        self.released: list[Holder] = []
        self.mine: Holder | None = None
        self.count = 0
        self.standing_by: dict[str, int] = {}
        self.answered = 0  # renewals answered (their standbys read)
        self.hang = threading.Event()  # set: renew() does not return until ``unhang``
        self.unhang = threading.Event()

    def try_acquire(self, me: Holder) -> bool:
        if self.value is not None:
            return False
        self.value = self.mine = me
        return True

    def renew(self) -> RenewalAnswer:
        if self.hang.is_set():
            self.unhang.wait(30)
            return RenewalAnswer(Renewal.FAILED, {})
        outcome = self.renewals.pop(0) if self.renewals else Renewal.RENEWED
        answer = RenewalAnswer(outcome, {} if outcome is Renewal.FAILED else self.standbys())
        self.answered += 1
        return answer

    def release(self) -> bool:
        if self.mine is not None and self.value == self.mine:
            self.released.append(self.mine)
            self.value = None
            return True
        return False

    def break_lease(self, holder: Holder) -> bool:
        return False

    def forget(self) -> None:
        self.mine = None

    def holder(self) -> Holder | None:
        return self.value

    def count_takeover(self) -> int:
        self.count += 1
        return self.count

    def takeovers(self) -> int:
        return self.count

    def last_seen(self) -> dict[str, int]:
        return {"X:BTCUSD": 40_000}

    def report_standby(self, me: Holder, now_ms: int) -> None:
        self.standing_by[me.describe()] = now_ms

    def drop_standby(self, me: Holder) -> None:
        self.standing_by.pop(me.describe(), None)

    def standbys(self) -> dict[str, int]:
        return dict(self.standing_by)


class ReconnectingVendor:
    """PolygonStream's loop: connected until dropped (``push_out``: the vendor's
    max_connections), then reconnecting after a short backoff, until stopped."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.stopping = False
        self.dropped = threading.Event()

    def run(self, listener: Any) -> None:
        while not self.stopping:
            self.log.append("connected")
            listener.on_connected()
            while not self.stopping and not self.dropped.wait(0.01):
                pass
            self.dropped.clear()
            self.log.append("disconnected")
            listener.on_disconnected("max_connections")
            time.sleep(0.05)

    def push_out(self) -> None:
        self.dropped.set()

    def stop(self) -> None:
        self.stopping = True

    def abort(self) -> None:
        self.stop()


class Vendor:
    """A vendor connection: connected until stopped (``stuck``: until aborted, as when the
    reading thread waits on a full publish queue)."""

    def __init__(self, log: list[str], stuck: bool = False) -> None:
        self.log = log
        self.stuck = stuck
        self.stopped = threading.Event()

    def run(self, listener: Any) -> None:
        self.log.append("connected")
        listener.on_connected()
        self.stopped.wait(30)
        self.log.append("disconnected")
        listener.on_disconnected("stopped")

    def stop(self) -> None:
        if not self.stuck:
            self.stopped.set()

    def abort(self) -> None:
        self.log.append("aborted")
        self.stopped.set()


class Listener:
    def __init__(self, slow_s: float = 0.0) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.slow_s = slow_s  # how long on_lease_acquired takes (a slow Redis or broker)

    def on_connected(self) -> None:
        self.calls.append(("connected", None))

    def on_frame(self, frame: Any) -> None: ...

    def on_idle(self) -> None: ...

    def on_disconnected(self, reason: str) -> None:
        self.calls.append(("disconnected", reason))

    def on_lease_acquired(
        self, last_seen: Mapping[str, int] | None, events: list[SystemEvent]
    ) -> None:
        self.calls.append(("acquired", (dict(last_seen or {}), [e.event_type for e in events])))
        threading.Event().wait(self.slow_s)

    def on_lease_lost(self, events: list[SystemEvent]) -> None:
        assert [e.event_type for e in events] == [LEASE_LOST_EVENT]
        self.calls.append(("lost", [e.details["reason"] for e in events]))

    def lost_reason(self) -> str:
        """Why the first spell ended, waiting for it."""
        wait_for(lambda: any(c[0] == "lost" for c in self.calls), 5, "the loss recorded")
        (reason,) = next(c[1] for c in self.calls if c[0] == "lost")
        return str(reason)


def leased(
    lease: MemoryLease, log: list[str], stuck: bool = False, reconnecting: bool = False
) -> tuple[LeasedStream, list[Any]]:
    vendors: list[Any] = []

    def connect() -> Any:
        vendors.append(ReconnectingVendor(log) if reconnecting else Vendor(log, stuck))
        return vendors[-1]

    ids = iter(range(1000, 2000))
    stream = LeasedStream(
        connect,
        lease,  # type: ignore[arg-type]
        identity=lambda now_ms: Holder("me", 7, now_ms, f"n{next(ids)}", MACHINE),
    )
    return stream, vendors


class Run:
    """A LeasedStream running in a thread, its vendor connections' log and its listener."""

    def __init__(self, lease: MemoryLease, listener: Listener, **vendor: bool) -> None:
        self.log: list[str] = []
        self.stream, self.vendors = leased(lease, self.log, **vendor)
        self.listener = listener
        self.thread = threading.Thread(target=self.stream.run, args=(listener,), daemon=True)

    def wait_connected(self) -> None:
        wait_for(lambda: self.log == ["connected"], 5, "connected")


@contextlib.contextmanager
def running(lease: MemoryLease, listener: Listener | None = None, **vendor: bool) -> Iterator[Run]:
    run = Run(lease, listener or Listener(), **vendor)
    run.thread.start()
    try:
        yield run
    finally:
        run.stream.stop()
        lease.unhang.set()
        run.thread.join(10)
    assert not run.thread.is_alive()


def test_a_standby_connects_only_once_the_holder_is_gone() -> None:
    lease = MemoryLease(LeasePolicy(2), held_by=A)
    with running(lease) as run:
        stream = run.stream
        wait_for(lambda: lease.value == A and not run.vendors, 5, "standing by")
        threading.Event().wait(3 * lease.policy.poll_s)
        assert not run.vendors and not stream.held  # A still holds it
        assert list(lease.standing_by) == ["me pid 7"]
        lease.value = None  # A's lease expired
        run.wait_connected()
        assert stream.held and stream.previous == A
        acquired = ("acquired", ({"X:BTCUSD": 40_000}, [TAKEOVER_EVENT]))
        assert run.listener.calls[0] == acquired
        assert stream.stats_fields()["lease.takeovers"] == 1
        assert not lease.standing_by  # no longer a standby
    assert run.log == ["connected", "disconnected"] and lease.released  # released at the stop


def test_a_holder_that_finds_another_token_disconnects_at_once_and_stands_by() -> None:
    lease = MemoryLease(LeasePolicy(2))
    with running(lease) as run:
        run.wait_connected()
        assert run.listener.calls[0] == ("acquired", ({"X:BTCUSD": 40_000}, []))  # no takeover
        lease.value = B  # (its lease expired while it was away and B took it)
        lease.renewals = [Renewal.NOT_OWNER]
        wait_for(lambda: run.log == ["connected", "disconnected"], 5, "disconnected")
        assert run.listener.lost_reason() == "the lease expired or another process holds it"
        assert not run.stream.held and run.stream.stats_fields() == {}
        assert len([c for c in run.listener.calls if c[0] == "lost"]) == 1
        lease.value = None  # B gone: this one takes it again
        wait_for(lambda: len(run.vendors) == 2 and run.log[-1] == "connected", 5, "connected again")
    assert len(lease.released) == 1  # the second spell's lease, at the stop


@pytest.mark.parametrize("stuck", [False, True], ids=["closes", "cut"])
def test_a_holder_whose_renewals_fail_disconnects_by_its_deadline(stuck: bool) -> None:
    lease = MemoryLease(LeasePolicy(2))
    lease.standing_by["host-b pid 202"] = 10**15  # a standby listed (fresh for ever)
    with running(lease, stuck=stuck) as run:
        run.wait_connected()
        lease.renewals = [Renewal.FAILED] * 1000  # Redis unreachable from now on
        expected = ["connected", *(["aborted"] if stuck else []), "disconnected"]
        wait_for(lambda: run.log == expected, 5, "disconnected")
        assert "no renewal reached Redis" in run.listener.lost_reason()


def test_a_holder_whose_renewal_hangs_is_disconnected_by_the_watchdog() -> None:
    """Redis does not answer at all: the renewal thread is stuck in its command, and the
    watchdog alone disconnects the holder at its deadline."""
    lease = MemoryLease(LeasePolicy(2))
    lease.standing_by["host-b pid 202"] = 10**15
    with running(lease) as run:
        run.wait_connected()
        lease.hang.set()
        wait_for(lambda: run.log == ["connected", "disconnected"], 5, "disconnected")
        lease.unhang.set()
        assert "no renewal reached Redis" in run.listener.lost_reason()


@pytest.mark.parametrize("listed", [True, False], ids=["standby_came", "standby_left"])
def test_the_last_renewal_that_got_through_says_whether_a_standby_waits(listed: bool) -> None:
    """A standby that starts (or stops) after the lease was taken is learnt from the renewals:
    then Redis is cut off, and the holder lets go at its deadline only if one was listed."""
    lease = MemoryLease(LeasePolicy(2))
    if not listed:
        lease.standing_by["host-b pid 202"] = 10**15
    with running(lease, reconnecting=True) as run:
        run.wait_connected()
        if listed:
            lease.standing_by["host-b pid 202"] = 10**15
        else:
            lease.standing_by.clear()
        # The second renewal answered from now was sent after the change.
        answered = lease.answered
        wait_for(lambda: lease.answered >= answered + 2, 5, "a renewal that read the standbys")
        lease.renewals = [Renewal.FAILED] * 1000
        if listed:
            wait_for(lambda: run.log == ["connected", "disconnected"], 5, "let go")
            assert "a standby was listed" in run.listener.lost_reason()
        else:
            threading.Event().wait(lease.policy.lease_s + 0.5)  # past the deadline: held over
            assert run.log == ["connected"] and run.stream.held


def test_a_lease_that_ran_out_while_being_taken_is_never_connected_on() -> None:
    """Handing on what was seen before took longer than the lease (a slow broker), and no
    renewal got through meanwhile: the vendor connection is not opened."""
    lease = MemoryLease(LeasePolicy(2))
    lease.renewals = [Renewal.FAILED] * 1000
    listener = Listener(slow_s=lease.policy.lease_s)  # past the deadline (1.5 s)
    with running(lease, listener) as run:
        assert "no renewal reached Redis" in listener.lost_reason()
        assert run.log == [] and not run.stream.held


def test_a_lone_holder_whose_renewals_fail_stays_connected_until_they_succeed() -> None:
    """No standby listed: a broker outage of three leases leaves the feed connection up."""
    lease = MemoryLease(LeasePolicy(2))
    with running(lease, reconnecting=True) as run:
        run.wait_connected()
        lease.renewals = [Renewal.FAILED] * 30  # ~6.5 s: poll_s 0.2 after the first try
        threading.Event().wait(2 * lease.policy.lease_s)  # the deadline was at 1.5 s
        assert run.log == ["connected"] and run.stream.held
        wait_for(lambda: not lease.renewals, 15, "Redis back")
        threading.Event().wait(lease.policy.lease_s)  # confirmed again: a drop reconnects
        run.vendors[0].push_out()
        wait_for(lambda: run.log == ["connected", "disconnected", "connected"], 5, "reconnected")
        assert not [c for c in run.listener.calls if c[0] == "lost"]
    assert len(run.vendors) == 1


def test_a_held_over_holder_pushed_out_does_not_reconnect_and_stands_by() -> None:
    """The race: unseen by the holder (Redis out of its reach), a standby took the expired
    lease and connected; the vendor pushes the older connection out. The holder must not
    reconnect (it would push the standby out in turn): it stands by."""
    lease = MemoryLease(LeasePolicy(2))
    with running(lease, reconnecting=True) as run:
        run.wait_connected()
        lease.renewals = [Renewal.FAILED] * 1000
        threading.Event().wait(lease.policy.lease_s + 0.5)  # past the deadline: held over
        assert run.log == ["connected"] and run.stream.held
        lease.value = B  # the standby's lease, once Redis expired ours
        run.vendors[0].push_out()
        assert "not reconnecting" in run.listener.lost_reason()
        threading.Event().wait(1.0)
        assert run.log == ["connected", "disconnected"] and len(run.vendors) == 1
        assert not run.stream.held
        assert list(lease.standing_by) == ["me pid 7"]  # standing by again


# -- StreamWorker on taking the lease ----------------------------------------------------------


@pytest.mark.parametrize("redis_knows", [True, False], ids=["last_seen", "redis_silent"])
def test_taking_the_lease_repairs_from_where_the_holders_before_stopped(
    tmp_path: Path, redis_knows: bool
) -> None:
    """This process streamed, lost the lease, and takes it again minutes later: the repair
    starts a margin before the last events the other holder saved (its own older gap was that
    holder's to repair). Without them (Redis did not say), its own open gaps stay."""
    last_seen = {"X:BTCUSD": T0 + 200_000, "X:ETHUSD": T0 + 200_500}
    takeover = takeover_event(A, B, last_seen, 10)
    h = Harness(
        tmp_path,
        [
            lambda listener: listener.on_connected(),
            frame(xt(1, ts=T0 + 100), xt(2, "ETH-USD", ts=T0 + 150)),
            lambda listener: listener.on_disconnected("stopped"),
            lambda listener: listener.on_lease_acquired(
                last_seen if redis_knows else None, [takeover]
            ),
            lambda listener: listener.on_connected(),
            frame(xt(3, ts=T0 + 205_000), xt(4, "ETH-USD", ts=T0 + 205_100)),
        ],
    )
    h.stream.script.append(lambda _: h.worker.stop())
    h.worker.run()
    starts = {r["ticker"]: r["start_ms"] for r in h.repairs}
    if redis_knows:
        margin = RESTART_MARGIN_MS
        assert starts == {"X:BTCUSD": T0 + 200_000 - margin, "X:ETHUSD": T0 + 200_500 - margin}
    else:
        assert starts == {"X:BTCUSD": T0 + 100, "X:ETHUSD": T0 + 150}
    assert {r["end_ms"] for r in h.repairs} == {T0 + 205_000, T0 + 205_100}
    assert [e.event_type for e in h.events if e.event_type == TAKEOVER_EVENT] == [TAKEOVER_EVENT]
