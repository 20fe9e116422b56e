"""The children of `rrr run`: started with their output prefixed (what the console shows of it:
rrr_cli.child_output), watched, and stopped in waves (SIGTERM, then SIGKILL after a grace
period) so that none is left behind; they also get SIGTERM if this process dies (Linux
parent-death signal)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rrr.broker import die_with_parent
from rrr.config import PROJECT_ROOT
from rrr_cli.child_output import ChildOutput

# Stop waves: the order matters only here. The stream worker, at its stop, waits for the ingest
# worker to apply what it published, so the ingest worker outlives it; the simulator outlives
# the stream and the backfill worker that read it; the broker outlives everyone. The rest is
# independent, and one wave's children stop together: one after another, their grace periods
# (a Celery warm shutdown, the stream's wait for its last batches) would add up.
STOP_FIRST, STOP_AFTER_STREAM, STOP_LAST = 0, 1, 2


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    stop_wave: int = STOP_FIRST
    reader: threading.Thread | None = None
    ready_when: str | None = None  # a text its output prints once it is ready
    ready: threading.Event = field(default_factory=threading.Event)
    output: ChildOutput = field(default_factory=ChildOutput)

    def prefixed(self, line: str) -> str:
        return f"{self.name:>9} | {line}"


@dataclass
class Supervisor:
    """Starts children, shows their warnings and errors prefixed with their name (every line
    when ``verbose``), and stops every one of them."""

    emit: Callable[[str], None]
    verbose: bool = False
    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        ready_when: str | None = None,
        stop_wave: int = STOP_FIRST,
    ) -> Child:
        proc = subprocess.Popen(
            argv,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in waves
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        child = Child(name, proc, stop_wave, ready_when=ready_when)
        child.output.verbose = self.verbose
        self.emit(child.prefixed(f"started (pid {proc.pid})"))
        child.reader = threading.Thread(target=self._pump, args=(child,), daemon=True)
        child.reader.start()
        self.children.append(child)
        return child

    def adopt(self, name: str, proc: subprocess.Popen[bytes], stop_wave: int) -> None:
        self.children.append(Child(name, proc, stop_wave))

    def _pump(self, child: Child) -> None:
        assert child.proc.stdout is not None
        for raw in child.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if child.ready_when is not None and child.ready_when in line:
                child.ready.set()
            if child.output.show(line):
                self.emit(child.prefixed(line))

    def report_exit(self, child: Child) -> None:
        """A child's exit code and its last lines, shown or not: why it stopped."""
        if child.reader is not None:
            child.reader.join(timeout=2)  # its last lines
        self.emit(child.prefixed(f"exited with code {child.proc.returncode}; its last lines:"))
        for line in child.output.tail:
            self.emit(child.prefixed(f"  {line}"))

    def wait_ready(self, child: Child, stop: threading.Event, timeout_s: float) -> bool:
        """Until ``child`` says it is ready; False on timeout, on a stop, or when any child
        exited (the watch loop then reports it)."""
        deadline = time.monotonic() + timeout_s
        while not child.ready.wait(0.1):
            if stop.is_set() or self.exited() is not None or time.monotonic() > deadline:
                return False
        return True

    def exited(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def stop_all(self, grace_s: float = 20.0) -> None:
        """Wave by wave (``Child.stop_wave``), the children of one wave at once."""
        for wave in sorted({c.stop_wave for c in self.children}):
            group = [c.proc for c in self.children if c.stop_wave == wave]
            with ThreadPoolExecutor(len(group)) as pool:
                list(pool.map(stop_process, group, [grace_s] * len(group)))


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 20.0) -> None:
    """SIGTERM the process itself, wait up to ``grace_s`` for a clean exit, then SIGKILL
    whatever is left of its group (it was started in a session of its own).

    The main process only: a Celery worker's warm shutdown lets its pool finish the task in
    hand and ack it, whereas a TERM to the whole group kills the pool children mid-task (a
    WorkerLostError, and the batch delivered again)."""
    if proc.poll() is None:
        proc.terminate()
    deadline = time.monotonic() + grace_s
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything the process left behind
    if proc.poll() is None:
        proc.wait(timeout=5)


def wait_for_port(port: int, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False
