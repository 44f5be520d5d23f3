"""followsync's marks on the items it writes, and reading them back from raw iCalendar text.

`render` writes the marks; the backends list only items that carry them. Plain regular
expressions, so listing a calendar loads no iCalendar library.
"""

from __future__ import annotations

import re

LEAD_MARK = "X-FOLLOWSYNC-LEAD"
RULE_MARK = "X-FOLLOWSYNC-RULE"

_UNFOLD = re.compile(r"\r?\n[ \t]")
_MARK = re.compile(rf"^{LEAD_MARK}[;:]", re.MULTILINE)
_UID = re.compile(r"^UID(?:;[^:\r\n]*)?:(.*?)\r?$", re.MULTILINE)


def unfold(text: str) -> str:
    return _UNFOLD.sub("", text)


def is_owned(text: str) -> bool:
    """Whether an item carries followsync's mark (only those are ever changed or deleted)."""
    return bool(_MARK.search(unfold(text)))


def uid_of(text: str) -> str | None:
    match = _UID.search(unfold(text))
    return match.group(1).strip() if match else None
