"""The daemon's log lines on stderr: journald-friendly under systemd, timestamped otherwise.

When stderr is connected to the journal ($JOURNAL_STREAM names its device:inode) each line
starts with a syslog priority such as `<3>` and carries no timestamp (journald adds its own);
elsewhere a line starts with a short local time. Continuation lines of a multi-line message
(a lead file's FILE:LINE:COL problems) get the same prefix, so none is lost or mis-leveled.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import TextIO

PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
            logging.DEBUG: 7}
LEVEL_WORD = {logging.CRITICAL: "error", logging.ERROR: "error", logging.WARNING: "warning"}


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (unknown levels round down to the next one)."""
    for level in sorted(PRIORITY, reverse=True):
        if levelno >= level:
            return PRIORITY[level]
    return 7


def to_journal(environ: Mapping[str, str], stream: TextIO) -> bool:
    """True when `stream` is the journal stream systemd gave us ($JOURNAL_STREAM=DEV:INODE)."""
    value = environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        found = os.fstat(stream.fileno())
    except (ValueError, OSError):
        return False
    return (found.st_dev, found.st_ino) == (device, inode)


class JournalFormatter(logging.Formatter):
    """`<N>message`, one priority prefix per line."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS [warning: ]message`, continuation lines indented under the message."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        word = LEVEL_WORD.get(record.levelno)
        head = f"{stamp} {word}: " if word else f"{stamp} "
        lines = super().format(record).splitlines() or [""]
        return "\n".join([head + lines[0], *(" " * 9 + line for line in lines[1:])])


def setup(verbose: int, quiet: bool, environ: Mapping[str, str] | None = None,
          stream: TextIO | None = None) -> None:
    """Send followsync's (and the libraries' warnings) log records to stderr, formatted."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    journal = to_journal(os.environ if environ is None else environ, stream)
    handler.setFormatter(JournalFormatter("%(message)s") if journal
                         else ConsoleFormatter("%(message)s"))
    own = logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO
    libraries = logging.DEBUG if verbose >= 2 else logging.WARNING
    for name, level in (("followsync", own), ("apscheduler", libraries), ("watchdog", libraries)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(max(level, own))
        logger.propagate = False
