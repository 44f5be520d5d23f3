"""Targets behind one small protocol (base.Backend): the sync never knows which kind it
talks to.

A new target type is a module here and one case in `open_backend`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_never

if TYPE_CHECKING:
    from datetime import date

    from followsync.backends.base import Backend
    from followsync.config import Target


def open_backend(target: Target, readonly: bool = False, today: date | None = None) -> Backend:
    """The backend for a target, its module imported only when used; a readonly one (for
    `plan` and the fast path) creates nothing, not even a missing calendar. `today` is the
    sync's day (None: the clock's), which places a Microsoft target's delta window."""
    match target.type:
        case "ics":
            from followsync.backends.icsfile import IcsFileBackend

            assert target.path is not None
            return IcsFileBackend(target.path, label=target.name)
        case "caldav":
            from followsync.backends.caldav import CaldavBackend

            return CaldavBackend(target, readonly=readonly)
        case "google":
            from followsync.backends.google import GoogleBackend
            from followsync.googleauth import settings_for

            return GoogleBackend(settings_for(target), readonly=readonly)
        case "microsoft":
            from followsync.backends.microsoft import MicrosoftBackend
            from followsync.msauth import settings_for as microsoft_settings

            return MicrosoftBackend(microsoft_settings(target), readonly=readonly, today=today)
        case _:
            assert_never(target.type)
