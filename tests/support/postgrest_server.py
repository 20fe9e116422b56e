"""A real PostgREST process serving one PostgreSQL schema on 127.0.0.1, configured as Supabase
configures it: it logs in as ``authenticator``, anonymous requests run as ``anon``, and a
request's HS256 JWT chooses its role. Its settings (JWT secret included) go in its environment,
never on its command line, so ``ps`` and the logs never show the secret.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from rrr.broker import die_with_parent
from tests.support.supabase_keys import make_jwt, new_jwt_secret

READY_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def authenticator_uri(database_url: str) -> str:
    """The test database's URL, logging in as ``authenticator`` (the test cluster trusts
    127.0.0.1, as Supabase's pooler trusts its own network), without search_path options."""
    parts = urlsplit(database_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"authenticator@{host}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class PostgrestProcess:
    """``PostgrestProcess(binary, database_url, schema).start()``; ``.url`` serves the API at
    ``/`` (Supabase's gateway adds ``/rest/v1``: tests/support/supabase_gateway.py)."""

    def __init__(
        self,
        binary: Path,
        database_url: str,
        schema: str,
        *,
        max_rows: int = 1000,
        channel: str = "pgrst",
    ) -> None:
        self.binary = binary
        self.schema = schema
        self.jwt_secret = new_jwt_secret()
        self.service_key = make_jwt(self.jwt_secret, "service_role")
        self.anon_key = make_jwt(self.jwt_secret, "anon")
        self.port = free_port()
        self.admin_port = free_port()
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PGRST_DB_URI": authenticator_uri(database_url),
            "PGRST_DB_SCHEMAS": schema,
            "PGRST_DB_ANON_ROLE": "anon",
            "PGRST_JWT_SECRET": self.jwt_secret,
            "PGRST_DB_MAX_ROWS": str(max_rows),
            # The NOTIFY channel it reloads its schema cache on. Every PostgREST on the test
            # database hears every schema install's NOTIFY pgrst; a test that must control
            # when its server reloads gives it a channel of its own.
            "PGRST_DB_CHANNEL": channel,  # Supabase's "max rows" (1,000 by default)
            "PGRST_DB_POOL": "4",  # two test workers share one PostgreSQL
            "PGRST_SERVER_HOST": "127.0.0.1",
            "PGRST_SERVER_PORT": str(self.port),
            "PGRST_ADMIN_SERVER_PORT": str(self.admin_port),
            "PGRST_LOG_LEVEL": "warn",
        }
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - read back when it fails
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PostgrestProcess:
        self.proc = subprocess.Popen(
            [str(self.binary)],
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # never outlives a killed test run
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until the admin server's /ready says the pool is up and the schema cache loaded."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"PostgREST exited ({self.proc.returncode}): {self.log()}")
                try:
                    if http.get(f"http://127.0.0.1:{self.admin_port}/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                time.sleep(0.02)
        raise RuntimeError(f"PostgREST not ready within {timeout_s} s: {self.log()}")

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
