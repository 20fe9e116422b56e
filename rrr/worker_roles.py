"""The pipeline's two kinds of Celery worker, and the command line that starts each one.

Ingest has capacity of its own: the ``ingest`` worker consumes only the stream's insert tasks,
and a second worker takes ``backfill`` (chunks, gap repairs) and ``default`` (quality,
sentiment, housekeeping). However many repairs a reconnect asks for, no insert ever waits for
a process that a repair holds. One table serves the Procfile (``rrr worker ingest``) and
``rrr run``, so both always start the same workers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rrr.config import Settings
from rrr.errors import ConfigError


@dataclass(frozen=True, slots=True)
class WorkerRole:
    queues: tuple[str, ...]
    concurrency: Callable[[Settings], int]  # worker processes, from the settings
    setting: str  # the variable that sizes it, for messages and docs


ROLES: dict[str, WorkerRole] = {
    "ingest": WorkerRole(("ingest",), lambda s: s.ingest_concurrency, "RRR_INGEST_CONCURRENCY"),
    "backfill": WorkerRole(
        ("backfill", "default"), lambda s: s.backfill_concurrency, "RRR_BACKFILL_CONCURRENCY"
    ),
}


def worker_role(name: str) -> WorkerRole:
    try:
        return ROLES[name]
    except KeyError:
        raise ConfigError(
            f"no worker role {name!r}: choose {' or '.join(ROLES)} (ingest takes the stream's "
            "inserts; backfill takes backfill chunks, gap repairs and the default queue)"
        ) from None


def worker_argv(
    settings: Settings, role: str, node_name: str, extra: Sequence[str] = ()
) -> list[str]:
    """``celery worker`` for ``role``: its queues and its number of processes.

    ``node_name`` must be unique per running worker (Celery's remote control and Flower tell
    workers apart by it), e.g. ``ingest-<pid>@%h``."""
    chosen = worker_role(role)
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "worker",
        "-Q",
        ",".join(chosen.queues),
        "-c",
        str(chosen.concurrency(settings)),
        "-n",
        node_name,
        "--loglevel",
        settings.log_level,
        *extra,
    ]
