"""Whether a process id names a live process on this machine: for state left behind by a
process that may be gone (a stream lease held by a killed worker, a Prometheus multiprocess
file of a dead pool process, a test's claim on a Redis database)."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs here (a zombie, killed and not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True  # not Linux, or gone this instant: kill(0) said it was there
    return state not in ("Z", "X")
