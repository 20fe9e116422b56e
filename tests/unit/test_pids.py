import os
import subprocess
import sys
import time
from pathlib import Path

from rrr.pids import pid_alive


def test_a_running_process_is_alive_and_a_zombie_or_reaped_one_is_not() -> None:
    assert pid_alive(1) and pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    # Exited, not yet reaped: a zombie, whose pid still answers kill(0).
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid)
