"""Connection parameters every PostgreSQL connection gets unless DATABASE_URL sets them, pure.

libpq's defaults wait forever: no connect timeout, no statement timeout, and the kernel's TCP
keepalive (off, or a first probe after two hours). A database behind a dead link then hangs a
worker until Celery's hard time limit kills it. With these, every wait is bounded and ends in
an error that ``map_pg_error``/``connect_error`` call transient, so the task retries on a fresh
connection instead of dead-lettering a healthy batch or losing it to a hard kill.

Why each value:
- ``connect_timeout`` 10 s: a healthy server, TLS included and across an ocean, answers in
  well under a second; a server that accepts and says nothing (a blackholed route, a stuck
  pooler) is given up after 10 s, leaving the retry plenty of room within the soft limit.
- ``keepalives_idle`` 30 s, ``keepalives_interval`` 10 s, ``keepalives_count`` 3: a peer that
  vanished while we wait for an answer is noticed 30 + 3 x 10 = 60 s after its last sign of
  life (NAT boxes and cloud load balancers drop idle flows after a few minutes; 30 s also
  keeps the flow alive through them).
- ``tcp_user_timeout`` 60 s: data we sent that stays unacknowledged that long means the link
  is gone (the kernel would otherwise retransmit for ~15 minutes). Keepalives do not cover
  this case: they only run while nothing is in flight.
- ``statement_timeout`` 90 % of the task soft time limit (270 s of 300 s): a statement the
  server is still running then (a lock held by a stuck session, an overloaded server) is
  cancelled by the server itself, which leaves the connection usable and raises QueryCanceled
  (transient), a little before Celery's soft limit would interrupt the task in mid-I/O.
  Sent as a startup option (``-c statement_timeout=...``): free per transaction, and fine on
  Supabase's Supavisor. PgBouncer refuses unknown startup options unless told
  ``ignore_startup_parameters = options``; set your own ``options`` in DATABASE_URL to skip it.

A value DATABASE_URL sets itself (``?connect_timeout=3``, ``options=-c statement_timeout=0``)
always wins; the same names in libpq's PG* environment variables do not, since rrr reads its
settings from DATABASE_URL only.
"""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

CONNECT_TIMEOUT_S = 10
KEEPALIVES_IDLE_S = 30
KEEPALIVES_INTERVAL_S = 10
KEEPALIVES_COUNT = 3
TCP_USER_TIMEOUT_MS = 60_000
DEFAULT_TASK_SOFT_TIME_LIMIT_S = 300  # rrr.config.Settings.task_soft_time_limit_s's default


def statement_timeout_ms(task_soft_time_limit_s: float) -> int:
    """A statement timeout a little under the task's soft time limit (see the module doc)."""
    return max(1, int(task_soft_time_limit_s * 900))


DEFAULT_STATEMENT_TIMEOUT_MS = statement_timeout_ms(DEFAULT_TASK_SOFT_TIME_LIMIT_S)

_DEFAULTS = {
    "connect_timeout": str(CONNECT_TIMEOUT_S),
    "keepalives": "1",
    "keepalives_idle": str(KEEPALIVES_IDLE_S),
    "keepalives_interval": str(KEEPALIVES_INTERVAL_S),
    "keepalives_count": str(KEEPALIVES_COUNT),
    "tcp_user_timeout": str(TCP_USER_TIMEOUT_MS),
}


def connect_options(
    url: str, statement_timeout: int = DEFAULT_STATEMENT_TIMEOUT_MS
) -> dict[str, str]:
    """Keyword arguments for ``psycopg.connect(url, **...)``: the defaults above that ``url``
    leaves unset. Raises ``psycopg.ProgrammingError`` for a URL libpq cannot parse."""
    given = conninfo_to_dict(url)
    extra = {name: value for name, value in _DEFAULTS.items() if name not in given}
    options = str(given.get("options") or "")
    if "statement_timeout" not in options:
        ours = f"-c statement_timeout={int(statement_timeout)}"
        extra["options"] = f"{options} {ours}" if options else ours
    return extra
