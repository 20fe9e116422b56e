"""Which lines of a child's output `rrr run` shows on its console (pure, line by line).

A child writes its log records in rrr.logs.FORMAT (``<date> <time> LEVEL   process logger:
message``), Python warnings (``file.py:893: SecurityWarning: ...``) and free text: Celery's
start banner, its task list, tracebacks. The console shows the records at ``WARNING`` or above,
the first line of a Python warning, and the lines that continue a shown record (a traceback
after an ERROR); everything else is in the log file (the child writes it there itself; the
banners are Celery's prints and go nowhere else). At full feed Celery writes two INFO lines per
`insert_batch`, ~100 a second, which would bury the warnings. ``verbose`` (`rrr run --verbose`
or ``LOG_LEVEL=DEBUG``) shows every line as it comes.

What was left off is not lost for the one case where it matters: the last lines of a child
that exits are kept (``ChildOutput.tail``) and printed with its exit code.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass, field

# "2026-12-01 20:48:50,943 WARNING MainProcess rrr.broker_persistence: ..."
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+)\b")
# "/path/celery/platforms.py:893: SecurityWarning: You're running the worker with ..."
_PY_WARNING = re.compile(r"^\S+\.py:\d+: \w*Warning: ")
TAIL_LINES = 40


def record_level(line: str) -> int | None:
    """The level of a log record's first line; WARNING for a Python warning; None for a line
    that starts no record (a continuation, a banner)."""
    match = _RECORD.match(line)
    if match is not None:
        level = logging.getLevelName(match["level"])
        return level if isinstance(level, int) else logging.INFO
    if _PY_WARNING.match(line):
        return logging.WARNING
    return None


@dataclass
class ChildOutput:
    """One child's output, line by line: ``show(line)`` says whether the console shows it."""

    verbose: bool = False
    threshold: int = logging.WARNING
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    _showing: bool = False  # the record being continued was shown
    _python_warning: bool = False  # ... and is a Python warning: its continuation is noise

    def show(self, line: str) -> bool:
        self.tail.append(line)
        if self.verbose:
            return True
        level = record_level(line)
        if level is None:
            return self._showing and not self._python_warning
        self._showing = level >= self.threshold
        self._python_warning = _RECORD.match(line) is None
        return self._showing
