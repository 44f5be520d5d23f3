"""An in-RAM target for engine tests; it passes the same contract tests as the real ones."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from followsync.backends.base import Listing
from followsync.errors import Conflict
from followsync.marks import is_owned, uid_of
from followsync.model import Remote


class MemoryBackend:
    """A calendar held in a dict href → (etag, text); ETags are content digests."""

    label = "memory"
    immediate = True  # like a server: every write lands at once
    cursor_only = False

    def __init__(self, components: tuple[str, ...] = ("VEVENT", "VTODO")) -> None:
        self.items: dict[str, tuple[str, str]] = {}
        self.components = components
        self.writes = 0

    def listing(self, known: Mapping[str, Remote], cursor: str | None) -> Listing:
        owned: dict[str, Remote] = {}
        foreign = 0
        for href, (etag, text) in self.items.items():
            uid = uid_of(text)
            if uid and is_owned(text):
                owned[uid] = Remote(href, etag)
            else:
                foreign += 1
        return Listing(owned, cursor=None, foreign=foreign)

    def supports(self, component: str) -> bool:
        return component in self.components

    def get(self, remote: Remote) -> str:
        return self.items[remote.href][1]

    def find(self, uid: str) -> Remote | None:
        for href, (etag, text) in self.items.items():
            if uid_of(text) == uid:
                return Remote(href, etag)
        return None

    def create(self, uid: str, text: str) -> Remote:
        if self.find(uid) is not None:
            raise Conflict(uid)
        return self._put(f"{uid}.ics", text)

    def update(self, remote: Remote, text: str) -> Remote:
        self._check(remote)
        return self._put(remote.href, text)

    def delete(self, remote: Remote) -> None:
        self._check(remote)
        del self.items[remote.href]
        self.writes += 1

    def commit(self) -> str | None:
        return None

    def close(self) -> None:
        pass

    def put_foreign(self, href: str, text: str) -> Remote:
        """What another calendar app does: write any item, no questions asked."""
        return self._put(href, text, count=False)

    def _check(self, remote: Remote) -> None:
        current = self.items.get(remote.href)
        if current is None or current[0] != remote.etag:
            raise Conflict(remote.href)

    def _put(self, href: str, text: str, count: bool = True) -> Remote:
        etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:16] + '"'
        self.items[href] = (etag, text)
        self.writes += count
        return Remote(href, etag)
