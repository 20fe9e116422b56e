"""Dependencies point one way: the rrr library never imports Celery, tasks or workers."""

import ast
from pathlib import Path

RRR = Path(__file__).resolve().parents[2] / "rrr"
FORBIDDEN = ("celery", "kombu", "tasks", "workers", "celeryconfig")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


# rrr/cli.py is the composition layer (STYLE.md: tasks/*, workers/*, rrr.cli): it turns flags
# into Settings and hands them to tasks and workers, so it alone may import them.
COMPOSITION = {"cli.py"}


def test_rrr_never_imports_celery_tasks_or_workers() -> None:
    offenders = {
        str(path.relative_to(RRR.parent)): sorted(imported_modules(path) & set(FORBIDDEN))
        for path in RRR.rglob("*.py")
        if path.relative_to(RRR).as_posix() not in COMPOSITION
    }
    assert {k: v for k, v in offenders.items() if v} == {}


# config.py builds Settings from it; runner.py hands the environment on to child processes.
ENVIRONMENT_READERS = {"config.py", "runner.py"}


def test_only_config_reads_the_environment() -> None:
    readers = [
        str(p.relative_to(RRR.parent))
        for p in RRR.rglob("*.py")
        if ("os.environ" in p.read_text() or "getenv" in p.read_text())
        and p.name not in ENVIRONMENT_READERS
    ]
    assert readers == []
