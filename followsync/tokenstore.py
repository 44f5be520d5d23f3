"""Keeping an OAuth sign-in between runs: the refresh token in the keyring when one works,
else in a mode-0600 JSON file in the state folder; the short-lived access tokens (with their
expiry) always in that file, so a no-op sync makes no token request.

Shared by the Google sign-in (`googleauth`) and the Microsoft one (`msauth`). The file names
its owner (the OAuth client, and for Microsoft the sign-in authority): tokens of another
client are no use with this one and read as nothing. The file is read back only if it is
still a regular 0600 file of this user's (`atomic.read_private`); anything that does not
read back is "not signed in", never an error. No token is ever logged or shown.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from followsync.atomic import read_private, write_private
from followsync.errors import TargetError

KEYRING_SERVICE = "followsync"
EARLY = 60.0  # refresh an access token this many seconds before it expires
LIMIT = 1 << 20  # a token file is a few KB; anything bigger is not ours


def slug(name: str) -> str:
    """A config name as a file-name part."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class KeptTokens:
    """One sign-in's tokens: `path` (JSON, 0600) holds `owner`'s fields, the access tokens
    (`{prefix}access_token`, `{prefix}expires`: one pair per resource) and, when no keyring
    works, the refresh token; the keyring holds it under `account` otherwise."""

    def __init__(self, path: Path, owner: Mapping[str, str], account: str, who: str,
                 readonly: bool = False) -> None:
        self.path, self.owner, self.account, self.who = path, dict(owner), account, who
        self.readonly = readonly

    def read(self) -> dict[str, Any]:
        raw = read_private(self.path, LIMIT)
        try:
            data = json.loads(raw) if raw is not None else {}
        except ValueError:
            return {}
        if not isinstance(data, dict) or any(data.get(k) != v for k, v in self.owner.items()):
            return {}  # another client's (or authority's) tokens are no use with this one
        return data

    def differs(self) -> list[str]:
        """The owner fields (client_id, authority) of a kept file made for other settings:
        a sign-in that is there but no use with these (a typo in the config, or a changed
        client_id)."""
        raw = read_private(self.path, LIMIT)
        try:
            data = json.loads(raw) if raw is not None else {}
        except ValueError:
            return []
        if not isinstance(data, dict):
            return []
        return [k for k, v in self.owner.items() if data.get(k) not in (None, v)]

    def write(self, data: dict[str, Any]) -> None:
        # readonly (plan, and the no-op check before a sync): only the token file `auth`
        # made is refreshed in place, nothing new is created — else every no-op sync after
        # the first hour would ask for a new access token
        if self.readonly and not self.path.exists():
            return
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # as the state's
            write_private(self.path, json.dumps({**data, **self.owner}).encode())
        except OSError as exc:
            raise TargetError(f"{self.who}: cannot write {self.path} "
                              f"({exc.strerror or type(exc).__name__})") from None

    def cached_access(self, prefix: str = "", data: dict[str, Any] | None = None
                      ) -> str | None:
        """The access token kept under `prefix` while it has more than EARLY s to live
        (from `data`, what `read` gave, when the caller has it already)."""
        kept = self.cached(prefix, data)
        return kept[0] if kept else None

    def cached(self, prefix: str = "", data: dict[str, Any] | None = None
               ) -> tuple[str, float] | None:
        """(access token, when it expires) as `cached_access`."""
        data = self.read() if data is None else data
        token, expires = data.get(f"{prefix}access_token"), data.get(f"{prefix}expires", 0)
        if isinstance(token, str) and token and isinstance(expires, int | float) \
                and expires - EARLY > time.time():
            return token, float(expires)
        return None

    def keep_access(self, token: str, expires_in: float, prefix: str = "") -> None:
        self.keep(None, {prefix: (token, expires_in)})

    def refresh_token(self) -> str | None:
        ring = keyring_module()
        if ring is not None:
            with contextlib.suppress(Exception):
                value = ring.get_password(KEYRING_SERVICE, self.account)
                if value:
                    return str(value)
        value = self.read().get("refresh_token")
        return value if isinstance(value, str) and value else None

    def keep_refresh(self, token: str, **more: Any) -> str:
        """Store the refresh token (and `more` plain fields); returns where ("the keyring"
        or the file's path)."""
        return self.keep(token, {}, **more)

    def keep(self, refresh: str | None, access: Mapping[str, tuple[str, float]],
             **more: Any) -> str:
        """Keep, in one write of the file: a refresh token (when given: in the keyring, else
        in the file), access tokens by prefix with their lifetime in seconds, and `more`
        plain fields. Returns where the refresh token is ("the keyring" or the file)."""
        data = self.read()
        where = str(self.path)
        if refresh is not None:
            data.pop("refresh_token", None)
            ring = keyring_module()
            try:
                if ring is None:
                    raise LookupError
                ring.set_password(KEYRING_SERVICE, self.account, refresh)
                where = "the keyring"
            except Exception:
                data["refresh_token"] = refresh
        now = time.time()
        for prefix, (token, expires_in) in access.items():
            data.update({f"{prefix}access_token": token, f"{prefix}expires": now + expires_in})
        data.update(more)
        self.write(data)
        return where


def keyring_module() -> Any:
    """The keyring module when it is installed and has a working backend, else None
    ($FOLLOWSYNC_NO_KEYRING: never, as the tests run)."""
    if os.environ.get("FOLLOWSYNC_NO_KEYRING"):
        return None
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
            return None
    except Exception:
        return None
    return keyring
