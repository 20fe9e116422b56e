"""The stream lease's decisions (pure): who holds it, how long a holder may trust it, what a
takeover and a loss record.

The vendor serves one WebSocket connection per key (a second one pushes the first out), so at
most one ``rrr stream`` may be connected: the one holding a lease in Redis (``LEASE_KEY``, SET NX
PX, its value the holder's token below). The holder renews it every third of the lease. Redis
expires an unrenewed lease ``lease_s`` after the last renewal it applied, which is after the
holder sent it: so a holder that counts from the moment it *sent* its last successful renewal
knows a time before which the lease cannot have expired anywhere. It disconnects from the vendor
``margin_s`` before that time unless a renewal succeeded meanwhile; a standby can only take the
lease once Redis expired it. Two holders are therefore never connected at once, even when the
holder is cut off from Redis while its vendor connection stays up.

Unless nobody could take over: a holder that saw no live standby at its last successful contact
with Redis (the standbys hash, read with every renewal) keeps its vendor connection past that
deadline (``HeldLease.check``), so a lone stream worker rides out a broker outage with its journal
and loses no quote (quotes have no REST history). Its lease is then *unconfirmed*: it never opens
a connection (``may_connect``; a dropped one is not reopened), and a renewal that gets through
confirms it again (our token still there, or the key gone and ours again) or ends it (another
token). The race this leaves: a standby started during the outage, unseen by the holder, takes
the expired lease and connects. The vendor then pushes the older connection out (spec 1.5: the
new connection wins; the simulator sends ``max_connections`` and closes the oldest). The holder
reads what was sent to it up to the close frame (its journal keeps it), sees its connection end
while unconfirmed, and stands by instead of reconnecting; the takeover's gap is repaired from
REST as any other. So even then only one of the two is connected after the push, and nothing the
old holder read is lost. The same push is why a holder still connected may renew past its
deadline: while its connection is up, no other process connected on the key since.

Times here are plain numbers passed in (``time.monotonic()`` seconds for deadlines, epoch ms for
records); the Redis and thread side is ``workers.lease_redis`` and ``workers.leased_stream``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

import orjson

from rrr.models import SystemEvent

LEASE_KEY = "rrr:stream:lease"
# How many times a standby took the lease over from another holder (kept like last_seen).
TAKEOVERS_KEY = "rrr:stream:lease:takeovers"
# Standbys say they are there: field "host pid N", value the epoch ms of their last try.
STANDBYS_KEY = "rrr:stream:lease:standbys"
COMPONENT = "stream_worker"  # workers.stream's component: one name for the stream's events
TAKEOVER_EVENT = "stream_takeover"
LEASE_LOST_EVENT = "stream_lease_lost"


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """The lease's timings, all derived from ``lease_s`` (RRR_STREAM_LEASE_S)."""

    lease_s: float

    @property
    def renew_every_s(self) -> float:
        return self.lease_s / 3

    @property
    def margin_s(self) -> float:
        """How long before the lease could expire in Redis the holder is already disconnected:
        time for the read loop to notice (~20 ms) and send its close frame, and for clocks that
        run a little apart. Two renewals are tried before it (at 1/3 and 2/3)."""
        return self.lease_s / 4

    @property
    def abort_after_s(self) -> float:
        """A holder letting go asks its vendor connection to close (a close frame, what was
        read is delivered); one still open this long after is cut (``PolygonStream.abort``),
        still half the margin before the lease could expire."""
        return self.margin_s / 2

    @property
    def poll_s(self) -> float:
        """A standby tries to take the lease this often; a holder whose renewal failed tries
        again this soon."""
        return min(1.0, self.lease_s / 10)

    @property
    def io_timeout_s(self) -> float:
        """One lease command's connect and read timeout: a renewal that hangs counts as failed
        in time for a retry before the holder's deadline, and a slow answer (a loaded machine
        or Redis) is still waited for: the renewal counts from when it was sent."""
        return min(2.0, self.lease_s / 8)

    def deadline(self, sent_at: float) -> float:
        """Until when (monotonic) a holder may stay connected after a renewal (or the acquiring
        SET) it sent at ``sent_at`` succeeded."""
        return sent_at + self.lease_s - self.margin_s


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds (or held) the lease; its token is the lease key's value."""

    host: str
    pid: int
    since_ms: int  # when it took the lease
    nonce: str  # unique per acquisition: a restarted process with a reused pid is another holder
    # Where ``pid`` means something: host name, boot id, namespaces (see gone_here).
    machine: str = ""

    def token(self) -> str:
        return orjson.dumps(
            {
                "host": self.host,
                "pid": self.pid,
                "since_ms": self.since_ms,
                "nonce": self.nonce,
                "machine": self.machine,
            }
        ).decode()

    def describe(self) -> str:
        return f"{self.host} pid {self.pid}"


def parse_holder(raw: bytes | str | None) -> Holder | None:
    """The holder a lease value names; None when the key is absent or holds something else."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
        holder = Holder(
            str(value["host"]),
            int(value["pid"]),
            int(value["since_ms"]),
            str(value["nonce"]),
            str(value.get("machine", "")),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
    # Only a value this code wrote: the token is what the compare-and-delete must match.
    text = raw.decode() if isinstance(raw, bytes) else raw
    return holder if holder.token() == text else None


def gone_here(holder: Holder, machine: str, alive: Callable[[int], bool]) -> bool:
    """Whether ``holder`` was a process of this very machine (same host name, boot, pid and
    network namespaces) that no longer runs: its lease can be taken at once instead of waiting
    for it to expire, as when ``rrr stream`` restarts after a kill. A holder elsewhere, or a pid
    that runs (even if reused by another program), is waited out: only the expiry is proof."""
    return bool(holder.machine) and holder.machine == machine and not alive(holder.pid)


class Renewal(Enum):
    RENEWED = "renewed"  # the lease is ours for lease_s more
    # The key was gone (a Redis restarted without AOF) and is ours again, for lease_s: before
    # the holder's deadline it cannot have expired, so nobody else could hold it legitimately.
    RETAKEN = "retaken"
    NOT_OWNER = "not_owner"  # the key is gone or holds another token: lost at once
    FAILED = "failed"  # Redis did not answer: keep trying until the deadline


class RenewalAnswer(NamedTuple):
    outcome: Renewal
    # The standbys hash (``STANDBYS_KEY``) as read in the same step; empty when it FAILED.
    standbys: Mapping[Any, Any]


@dataclass(slots=True)
class HeldLease:
    """A holder's local view of its lease: the monotonic time until which it is confirmed (no
    other process can hold it), and whether a standby could take it over after that."""

    policy: LeasePolicy
    valid_until: float
    lost_reason: str = ""
    # Whether a live standby was listed at the last successful contact with Redis. True until
    # Redis said otherwise: a holder that never learnt it lets go at its deadline.
    standby_known: bool = True

    @classmethod
    def acquired(cls, policy: LeasePolicy, sent_at: float) -> HeldLease:
        return cls(policy, policy.deadline(sent_at))

    def after_renewal(
        self, outcome: Renewal, sent_at: float, standby_known: bool | None = None
    ) -> bool:
        """Record a renewal sent at ``sent_at`` (``standby_known``: what its answer listed);
        False once the lease must be given up."""
        if outcome in (Renewal.RENEWED, Renewal.RETAKEN):
            self.valid_until = max(self.valid_until, self.policy.deadline(sent_at))
            if standby_known is not None:
                self.standby_known = standby_known
            return not self.lost_reason
        if outcome is Renewal.NOT_OWNER:
            self.lose("the lease expired or another process holds it")
            return False
        return not self.lost_reason  # FAILED: the watchdog acts at the deadline

    def saw_standbys(self, known: bool) -> None:
        """Redis listed the standbys (or none) just after the lease was taken."""
        self.standby_known = known

    def confirmed(self, now: float) -> bool:
        """Whether the lease is surely ours at ``now``: before the deadline, not lost."""
        return not self.lost_reason and now < self.valid_until

    def check(self, now: float, connected: bool = True) -> bool:
        """Whether to stay on the vendor at ``now``: False once the deadline passed without a
        successful renewal, unless no standby was known and the connection is up (it is kept,
        unconfirmed, until a renewal answers); False for good once lost."""
        if self.lost_reason or now < self.valid_until:
            return not self.lost_reason
        cut_off_s = f"{self.policy.lease_s - self.policy.margin_s:g} s"
        if self.standby_known:
            self.lose(
                f"no renewal reached Redis for {cut_off_s} and a standby was listed;"
                f" disconnecting {self.policy.margin_s:g} s before the lease could expire"
            )
        elif not connected:
            self.lose(
                f"no renewal reached Redis for {cut_off_s} and the feed connection is down:"
                " not reconnecting without a confirmed lease"
            )
        return not self.lost_reason

    def may_connect(self, now: float) -> bool:
        """Whether a vendor connection may be opened (or reopened after a drop) at ``now``:
        only while the lease is confirmed. Once not, the lease is given up (standing by, this
        process takes it again when it can)."""
        if not self.confirmed(now):
            self.lose(
                "the feed connection ended while the lease was unconfirmed (cut off from"
                " Redis; another process may hold it and have pushed this one out):"
                " not reconnecting without it"
            )
        return not self.lost_reason

    def held_over(self, now: float) -> bool:
        """Connected past the deadline: kept because no standby was known."""
        return not self.lost_reason and now >= self.valid_until

    def lose(self, reason: str) -> None:
        self.lost_reason = self.lost_reason or reason

    def left_s(self, now: float) -> float:
        return self.valid_until - now


def takeover_event(
    previous: Holder, me: Holder, last_seen: Mapping[str, int] | None, lease_s: float
) -> SystemEvent:
    """The system event of a standby taking the lease over from ``previous``. ``gap_ms``: from
    the last event the holders before saw (``rrr.stats`` last_seen) to the takeover, the time
    nobody streamed (the repair asks REST for it, from a margin before)."""
    last_ms = max(last_seen.values()) if last_seen else None
    gap_ms = None if last_ms is None else max(0, me.since_ms - last_ms)
    gap = "unknown" if gap_ms is None else f"{gap_ms / 1000:.1f} s"
    return SystemEvent(
        component=COMPONENT,
        event_type=TAKEOVER_EVENT,
        severity="warning",
        message=(
            f"stream lease taken over by {me.describe()} from {previous.describe()}"
            f" (held since {previous.since_ms}); {gap} since the last event seen, repaired"
            " from REST"
        ),
        ts_ms=me.since_ms,
        details={
            "host": me.host,
            "pid": me.pid,
            "previous_host": previous.host,
            "previous_pid": previous.pid,
            "previous_since_ms": previous.since_ms,
            "last_seen_ms": last_ms,
            "gap_ms": gap_ms,
            "lease_s": lease_s,
        },
        dedupe_key=f"stream_takeover:{me.nonce}",
    )


def lease_lost_event(me: Holder, reason: str, now_ms: int) -> SystemEvent:
    return SystemEvent(
        component=COMPONENT,
        event_type=LEASE_LOST_EVENT,
        severity="warning",
        message=(
            f"stream lease lost by {me.describe()} ({reason}): disconnected from the feed,"
            " now standing by; its journal keeps draining"
        ),
        ts_ms=now_ms,
        details={"host": me.host, "pid": me.pid, "since_ms": me.since_ms, "reason": reason},
        dedupe_key=f"stream_lease_lost:{me.nonce}",
    )


def live_standbys(
    reported: Mapping[Any, Any], now_ms: int, lease_s: float, me: Holder | None = None
) -> list[str]:
    """The standbys that tried for the lease within ``lease_s`` (a dead one stops trying), by
    name, from the standbys hash (bytes or text); ``me`` (the holder) is never one, should its
    own entry from standing by before still be there."""
    live = []
    for name, seen_ms in reported.items():
        try:
            fresh = now_ms - int(seen_ms) <= lease_s * 1000
        except ValueError:
            continue
        text = name.decode() if isinstance(name, bytes) else str(name)
        if fresh and (me is None or text != me.describe()):
            live.append(text)
    return sorted(live)


def lease_fields(
    me: Holder,
    lease_s: float,
    takeovers: int,
    renewed_ms: int,
    previous: Holder | None,
    standbys: list[str] | None = None,
) -> dict[str, Any]:
    """The ``lease.*`` section of the stream stats hash (``rrr status``), written by the
    holder's heartbeat only."""
    return {
        "lease.holder_host": me.host,
        "lease.holder_pid": me.pid,
        "lease.holder_since_ms": me.since_ms,
        "lease.lease_s": lease_s,
        "lease.renewed_ms": renewed_ms,
        "lease.takeovers": takeovers,
        "lease.previous_host": previous.host if previous else "",
        "lease.previous_pid": previous.pid if previous else 0,
        "lease.standbys": standbys or [],
    }
