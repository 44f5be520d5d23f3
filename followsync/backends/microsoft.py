"""An Outlook calendar (Microsoft 365, Outlook.com) as a target, through Microsoft Graph v1.0.

SKELETON: to be written (issue 19)."""

from __future__ import annotations

from collections.abc import Mapping

from followsync.backends.base import Listing
from followsync.errors import TargetError
from followsync.model import Remote
from followsync.msauth import MicrosoftSettings


class MicrosoftBackend:
    """One Outlook calendar; events only."""

    immediate = True
    cursor_only = False

    def __init__(self, settings: MicrosoftSettings, readonly: bool = False) -> None:
        self.settings = settings
        self.label = settings.name
        self.readonly = readonly
        raise TargetError(f"target {settings.name}: Microsoft targets are not built yet")

    def listing(self, known: Mapping[str, Remote], cursor: str | None) -> Listing:
        raise NotImplementedError

    def supports(self, component: str) -> bool:
        return component == "VEVENT"

    def get(self, remote: Remote) -> str:
        raise NotImplementedError

    def find(self, uid: str) -> Remote | None:
        raise NotImplementedError

    def create(self, uid: str, text: str) -> Remote:
        raise NotImplementedError

    def update(self, remote: Remote, text: str) -> Remote:
        raise NotImplementedError

    def delete(self, remote: Remote) -> None:
        raise NotImplementedError

    def commit(self) -> str | None:
        return None

    def close(self) -> None:
        pass
