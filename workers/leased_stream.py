"""The vendor stream behind the stream lease: connected only while this process holds it.

``LeasedStream`` is the ``Stream`` the ``StreamWorker`` runs. Standing by, it tries to take the
lease every ``poll_s``; once it holds it, it tells the listener (``on_lease_acquired``: what the
holders before saw last, for the repair of the time nobody streamed, and a ``stream_takeover``
event when it took over from another holder), opens the vendor stream and keeps the lease:

- a renewal thread renews it every ``lease_s / 3`` (sooner again after a failed try);
- a watchdog thread, which does no I/O and so never hangs, stops the vendor stream the moment
  the holder's deadline passes without a successful renewal (``workers.stream_lease``), or at
  once when a renewal finds the lease gone or another token in it. When the last renewal that
  got through listed no live standby, the holder keeps its connection past the deadline (a lone
  stream worker rides out a broker outage on its journal) but never reconnects: a connection
  that ends while the lease is unconfirmed (say the vendor pushed it out for a standby that
  started meanwhile) ends the spell, and this process stands by.

A lost lease ends only the vendor connection: the listener hears ``on_disconnected`` and
``on_lease_lost``, its publisher keeps draining the journal to the broker, and this stream stands
by again. ``stop()`` closes the vendor connection first and then releases the lease, so a
standby takes over within ``poll_s`` of a clean shutdown.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import redis

from rrr import clock
from rrr.models import SystemEvent
from rrr.pids import pid_alive
from rrr.polygon.stream import StreamListener
from workers.lease_redis import RedisLease
from workers.stream_lease import (
    HeldLease,
    Holder,
    LeasePolicy,
    Renewal,
    gone_here,
    lease_fields,
    lease_lost_event,
    live_standbys,
    takeover_event,
)

log = logging.getLogger(__name__)

REMIND_EVERY_S = 60.0  # a standby says whom it waits for this often
# A dead holder's connection closed with its process (the kernel sends the FIN), but the vendor
# notices on its next read of that socket: connecting a moment later keeps it from ever seeing
# two connections on the key (it would push the older, dead one out: max_connections).
DEAD_HOLDER_GRACE_S = 1.0


class _SpellListener:
    """The listener one spell of holding the lease hands its vendor stream: the worker's own
    callbacks, plus whether the connection is up (the watchdog's question) and no reconnect
    once the lease is unconfirmed. ``on_frame`` and ``on_idle`` are the worker's bound methods
    themselves: nothing is added to the hot path."""

    def __init__(self, worker: StreamListener, on_up: Callable[[bool], None]) -> None:
        self._worker = worker
        self._on_up = on_up
        self.on_frame = worker.on_frame
        self.on_idle = worker.on_idle

    def on_connected(self) -> None:
        self._on_up(True)
        self._worker.on_connected()

    def on_disconnected(self, reason: str) -> None:
        self._on_up(False)  # may stop the vendor stream before it would reconnect
        self._worker.on_disconnected(reason)


class VendorStream(Protocol):
    def run(self, listener: StreamListener) -> None: ...

    def stop(self) -> None: ...

    def abort(self) -> None: ...


class LeaseListener(StreamListener, Protocol):
    def on_lease_acquired(
        self, last_seen: Mapping[str, int] | None, events: list[SystemEvent]
    ) -> None:
        """This process holds the lease; the vendor connection opens next."""

    def on_lease_lost(self, events: list[SystemEvent]) -> None:
        """The lease was lost and the vendor connection is closed; standing by again."""


def this_machine() -> str:
    """Host name, boot id, pid and network namespaces: two processes that agree on all of them
    see the same pids (another host, a reboot or a container with pids of its own does not).
    The network namespace keeps test hosts made with ``ip netns`` apart, as real hosts are."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespaces = [os.readlink(f"/proc/self/ns/{ns}") for ns in ("pid", "net")]
    except OSError:
        return ""  # not Linux: never take a lease early
    return "|".join([socket.gethostname(), boot_id, *namespaces])


def new_holder(now_ms: int) -> Holder:
    return Holder(socket.gethostname(), os.getpid(), now_ms, uuid.uuid4().hex, MACHINE)


MACHINE = this_machine()


class LeasedStream:
    def __init__(
        self,
        connect: Callable[[], VendorStream],
        lease: RedisLease,
        *,
        identity: Callable[[int], Holder] = new_holder,
        now_ms: Callable[[], int] = clock.now_ms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect  # a fresh vendor stream per spell of holding the lease
        self._lease = lease
        self.policy: LeasePolicy = lease.policy
        self._identity = identity
        self._now_ms = now_ms
        self._monotonic = monotonic
        self._stopping = False
        self._wake = threading.Event()  # stop() cuts a standby's wait short
        self._guard = threading.Lock()  # the held lease, between the threads
        self._inner: VendorStream | None = None
        self.holder: Holder | None = None  # this process, while it holds the lease
        self.previous: Holder | None = None  # whom it took the lease over from, if anyone
        self.takeovers = 0  # the deployment's count (Redis), as of the last acquisition
        self.renewed_ms = 0
        self.released = False  # stopped and gave the lease back
        self._standby: Holder | None = None  # as listed in the standbys hash
        self._connected = False  # this spell's vendor connection is up (on_connected)

    @property
    def held(self) -> bool:
        return self.holder is not None

    def stats_fields(self) -> dict[str, Any]:
        """The ``lease.*`` stats fields while this process holds the lease, else none (called
        by the heartbeat thread: one read of the standbys hash)."""
        me = self.holder
        if me is None:
            return {}
        try:
            standbys = live_standbys(
                self._lease.standbys(), self._now_ms(), self.policy.lease_s, me
            )
        except redis.RedisError:
            standbys = []
        return lease_fields(
            me, self.policy.lease_s, self.takeovers, self.renewed_ms, self.previous, standbys
        )

    def stop(self) -> None:
        """Close the vendor connection (if any) and return from ``run``; safe from a signal
        handler."""
        self._stopping = True
        self._wake.set()
        inner = self._inner
        if inner is not None:
            inner.stop()

    def run(self, listener: LeaseListener) -> None:
        try:
            while not self._stopping:
                acquired = self._stand_by()
                if acquired is None:
                    return
                me, previous, sent_at = acquired
                self._hold(listener, me, previous, sent_at)
        finally:
            self._leave_standbys()
            if self.holder is not None:
                self.released = self._lease.release()
                log.info("stream lease released by %s", self.holder.describe())

    # -- standing by ---------------------------------------------------------------------------

    def _stand_by(self) -> tuple[Holder, Holder | None, float] | None:
        """Wait for the lease: (me, the holder seen while waiting, when the SET was sent)."""
        previous: Holder | None = None
        next_reminder = 0.0
        while not self._stopping:
            me = self._identity(self._now_ms())
            sent_at = self._monotonic()
            try:
                if self._lease.try_acquire(me):
                    self._leave_standbys()
                    return me, previous, sent_at
                self._lease.report_standby(me, me.since_ms)
                self._standby = me
                seen = self._lease.holder()
                if seen is not None and self._break_if_gone(seen):
                    previous = seen
                    self._wake.wait(DEAD_HOLDER_GRACE_S)
                    continue  # its lease is gone now: take it
            except redis.RedisError as exc:
                if sent_at >= next_reminder:
                    log.warning("standby: cannot reach Redis for the stream lease (%s)", exc)
                    next_reminder = sent_at + REMIND_EVERY_S
            else:
                if seen is not None and (seen != previous or sent_at >= next_reminder):
                    log.info(
                        "standby: the stream lease is held by %s (since %d); connecting when"
                        " it stops renewing it (lease %g s)",
                        seen.describe(),
                        seen.since_ms,
                        self.policy.lease_s,
                    )
                    next_reminder = sent_at + REMIND_EVERY_S
                previous = seen or previous
            self._wake.wait(self.policy.poll_s)
        return None

    def _leave_standbys(self) -> None:
        standby, self._standby = self._standby, None
        if standby is not None:
            with contextlib.suppress(redis.RedisError):
                self._lease.drop_standby(standby)

    def _break_if_gone(self, holder: Holder) -> bool:
        """A holder that ran on this machine and is gone (``rrr stream`` restarted after a
        kill) leaves its lease now, not at its expiry."""
        if not gone_here(holder, MACHINE, pid_alive) or not self._lease.break_lease(holder):
            return False
        log.warning(
            "the stream lease's holder %s ran on this machine and is gone: taking the lease"
            " now, not at its expiry",
            holder.describe(),
        )
        return True

    # -- holding -------------------------------------------------------------------------------

    def _hold(
        self, listener: LeaseListener, me: Holder, previous: Holder | None, sent_at: float
    ) -> None:
        held = HeldLease.acquired(self.policy, sent_at)
        done = threading.Event()  # the vendor stream returned: this spell is over
        self._connected = False
        # Kept from the start: reading what was seen before and handing on the takeover's
        # event may take a while when Redis or the broker is slow.
        threads = [
            threading.Thread(target=self._renew, args=(me, held, done), name="lease-renew"),
            threading.Thread(target=self._watch, args=(held, done), name="lease-watchdog"),
        ]
        for thread in threads:
            thread.daemon = True
            thread.start()
        try:
            last_seen, events = self._on_acquired(me, previous)
            known = self._standby_known(me)
            if known is not None:
                with self._guard:
                    held.saw_standbys(known)
            with self._guard:
                self.holder, self.previous, self.renewed_ms = me, previous, me.since_ms
            log.info(
                "stream lease taken by %s%s", me.describe(),
                f" over from {previous.describe()}" if previous else "",
            )  # fmt: skip
            listener.on_lease_acquired(last_seen, events)
            inner = self._connect()
            self._inner = inner
            with self._guard:  # stopped, or the deadline passed meanwhile: no connection
                go = not self._stopping and held.may_connect(self._monotonic())
            if go:
                inner.run(_SpellListener(listener, lambda up: self._connection_up(held, up)))
        finally:
            done.set()
            self._inner = None
            for thread in threads:
                thread.join(timeout=2 * self.policy.io_timeout_s + 1)
        reason = held.lost_reason
        if reason:
            self._lease.forget()
            with self._guard:
                self.holder = None
            log.error("stream lease lost by %s: %s; standing by", me.describe(), reason)
            listener.on_lease_lost([lease_lost_event(me, reason, self._now_ms())])

    def _on_acquired(
        self, me: Holder, previous: Holder | None
    ) -> tuple[dict[str, int] | None, list[SystemEvent]]:
        """What the holders before saw last, and the takeover's event (when there was one)."""
        last_seen: dict[str, int] | None = None
        try:
            last_seen = self._lease.last_seen()
            self.takeovers = self._lease.count_takeover() if previous else self._lease.takeovers()
        except redis.RedisError as exc:
            log.warning("stream lease taken, but what was seen before is unknown (%s)", exc)
        if previous is None or previous.nonce == me.nonce:
            return last_seen, []
        return last_seen, [takeover_event(previous, me, last_seen, self.policy.lease_s)]

    def _standby_known(self, me: Holder) -> bool | None:
        """Whether a live standby is listed now; None when Redis cannot say."""
        try:
            reported = self._lease.standbys()
        except redis.RedisError:
            return None
        return bool(live_standbys(reported, self._now_ms(), self.policy.lease_s, me))

    def _connection_up(self, held: HeldLease, up: bool) -> None:
        """From the reading thread: the vendor connection opened or ended. One that ended while
        the lease is unconfirmed is not reopened: the spell ends (standing by)."""
        with self._guard:
            self._connected = up
            again = up or held.may_connect(self._monotonic())
            inner = self._inner
        if not again and inner is not None:
            inner.stop()  # before PolygonStream.run would back off and reconnect

    def _renew(self, me: Holder, held: HeldLease, done: threading.Event) -> None:
        wait_s = self.policy.renew_every_s
        while not done.wait(wait_s):
            sent_at = self._monotonic()
            # Past the deadline a renewal could take back an expired key: only while the
            # connection it kept is up (no other process connected on the key meanwhile).
            with self._guard:
                keep = held.check(sent_at, self._connected)
                held_over = held.held_over(sent_at)
            if not keep:
                self._disconnect(done)
                return
            outcome, standbys = self._lease.renew()
            known = bool(live_standbys(standbys, self._now_ms(), self.policy.lease_s, me))
            with self._guard:
                keep = held.after_renewal(outcome, sent_at, known)
            if outcome is Renewal.RETAKEN:
                log.warning(
                    "the stream lease's key was gone (Redis restarted without AOF, or it"
                    " expired while this process was cut off): ours again"
                )
            if outcome in (Renewal.RENEWED, Renewal.RETAKEN):
                if held_over and keep:
                    log.warning(
                        "stream lease confirmed again: the feed connection was kept while"
                        " Redis was out of reach (no standby was listed)"
                    )
                self.renewed_ms = self._now_ms()
                wait_s = self.policy.renew_every_s
            else:
                log.warning("stream lease not renewed (%s)", outcome.value)
                wait_s = self.policy.poll_s
            if not keep:
                self._disconnect(done)
                return

    def _watch(self, held: HeldLease, done: threading.Event) -> None:
        """No I/O here: the deadline is kept even while a renewal hangs. Past it, with no
        standby known, it looks again every ``poll_s`` (the connection may be down)."""
        warned = False
        while True:
            with self._guard:
                now = self._monotonic()
                ok = held.check(now, self._connected)
                held_over = held.held_over(now)
                left_s = held.left_s(now)
            if not ok:
                self._disconnect(done)
                return
            if held_over and not warned:
                log.warning(
                    "stream lease unconfirmed: no renewal reached Redis for %g s; no standby"
                    " was listed, so the feed connection is kept (the journal holds what is"
                    " read) and not reopened until a renewal gets through",
                    self.policy.lease_s - self.policy.margin_s,
                )
            warned = held_over
            if done.wait(left_s if left_s > 0 else self.policy.poll_s):
                return

    def _disconnect(self, returned: threading.Event) -> None:
        """Close the vendor connection; cut it if it is not closed in ``abort_after_s`` (the
        reading thread may be held up, e.g. waiting for room in a publish queue that a cut-off
        broker does not empty)."""
        with self._guard:  # once per spell, whether the watchdog or a renewal found it lost
            inner, self._inner = self._inner, None
        if inner is None:
            return
        inner.stop()
        if not returned.wait(self.policy.abort_after_s):
            log.error(
                "the feed connection did not close within %g s of losing the lease: cutting it",
                self.policy.abort_after_s,
            )
            inner.abort()
