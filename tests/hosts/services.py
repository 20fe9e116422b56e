"""The ``db`` host's servers: a PostgreSQL cluster of its own (``initdb`` in a temporary folder,
run as the ``postgres`` user, never root) and a Redis with AOF and ``noeviction``, both listening
on the host's address only. Processes on hosts: ``HostProcess``."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg

from rrr.pids import pid_alive
from tests.hosts.netns import Host
from tests.integration.stream_support import LoggedProcess, RedisServer
from tests.support.waiting import wait_for

PG_USER = "postgres"
PG_PORT = 5432  # the host's own port space: no other cluster listens there
REDIS_PORT = 6379  # the same
PG_DATA_PREFIX = "rrr-hosts-pg-"  # + the creating process's id: a killed run's is found later


def pg_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's programs (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    return Path(found[-1]).parent if found else None


class HostProcess(LoggedProcess):
    """A program run on a host (``ip netns exec``), its output in ``log_path``."""

    def __init__(
        self, host: Host, argv: list[str], env: dict[str, str], log_path: Path,
        user: str | None = None, cwd: Path | None = None,
    ) -> None:  # fmt: skip
        self.host = host
        super().__init__(host.command(argv, user), env, log_path, cwd)

    def kill(self) -> None:
        """SIGKILL to the whole session (pool children too), even when its leader has exited:
        whatever it left running in its session goes as well."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        self._log.close()


class PostgresOnHost:
    """``initdb`` + ``postgres`` on ``host``, trust auth for the run's subnet."""

    def __init__(self, host: Host, bin_dir: Path, log_dir: Path) -> None:
        self.host = host
        self.bin_dir = bin_dir
        self.log_dir = log_dir
        # Not under pytest's tmp_path: its folders are root's alone (0700), and the server runs
        # as postgres. A run killed before its teardown leaves its cluster (100+ MB): the next
        # run removes it, as remove_stale() does its namespaces.
        remove_stale_data()
        self.data_root = Path(tempfile.mkdtemp(prefix=f"{PG_DATA_PREFIX}{os.getpid()}-"))
        self.proc: HostProcess | None = None

    @property
    def base_url(self) -> str:
        return f"postgresql://{PG_USER}@{self.host.address}:{PG_PORT}"

    def start(self) -> None:
        user = pwd.getpwnam(PG_USER)
        os.chmod(self.data_root, 0o755)
        data = self.data_root / "data"
        data.mkdir()
        os.chown(data, user.pw_uid, user.pw_gid)
        os.chmod(data, 0o700)
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        out = subprocess.run(
            self.host.command(
                [str(self.bin_dir / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
                 "--no-sync", "--encoding=UTF8"],
                PG_USER,
            ),
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert out.returncode == 0, f"initdb failed: {out.stderr}"
        subnet = self.host.address.rsplit(".", 1)[0] + ".0/24"
        with open(data / "pg_hba.conf", "a") as f:
            f.write(f"host all all {subnet} trust\n")
        self.proc = HostProcess(
            self.host,
            [str(self.bin_dir / "postgres"), "-D", str(data),
             "-c", f"listen_addresses={self.host.address}", "-c", f"port={PG_PORT}",
             "-c", f"unix_socket_directories={data}", "-c", "max_connections=200",
             "-c", "fsync=off", "-c", "full_page_writes=off"],
            env, self.log_dir / "db-postgres.log", user=PG_USER,
        )  # fmt: skip
        wait_for(self._accepts, 60, "the db host's PostgreSQL")

    def _accepts(self) -> bool:
        assert self.proc is not None
        if not self.proc.alive():
            raise AssertionError(f"postgres exited:\n{self.proc.log()}")
        try:
            with psycopg.connect(f"{self.base_url}/postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def new_database(self, name: str) -> str:
        with psycopg.connect(f"{self.base_url}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{self.base_url}/{name}"

    def stop(self) -> None:
        try:
            if self.proc is not None:
                # SIGINT, a fast shutdown: a smart one (SIGTERM) waits for every client, and
                # the sessions of a lost host's processes never end by themselves.
                self.proc.terminate(30, signal.SIGINT)
        finally:
            shutil.rmtree(self.data_root, ignore_errors=True)


def remove_stale_data() -> list[Path]:
    """Remove the clusters of runs whose process is gone; returns their folders."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{PG_DATA_PREFIX}*"):
        pid = folder.name.removeprefix(PG_DATA_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def redis_on_host(host: Host, directory: Path) -> RedisServer:
    """The broker: Redis on ``host``'s address, AOF fsynced every second (as rrr runs its
    embedded one). No password: the subnet is the test's own; a real broker across machines
    has one."""
    return RedisServer(
        directory, "everysec", bind=host.address, port=REDIS_PORT, launch=host.command
    )
