"""What each HTTP server asked for last, kept between runs in the state folder.

Two things, per server (scheme://host:port): that it asked for Digest — then it never gets
the password in a Basic header, in this run or any later one — and its last Digest
challenge with the nonce count used so far, so the next run's first request answers it at
once: a no-op sync to a Digest server is one request, not a 401 and a retry. A nonce the
server no longer takes costs that one 401, as before.

One JSON file, `http-auth.json` in `state_dir`, written atomically and mode 0600; it holds
the challenge's public fields only (realm, nonce, opaque, algorithm, qop, userhash), never
the password or anything derived from it. It is a shortcut: a file that does not read back
cleanly, or that is not the user's own private file, is ignored, never an error; it is
written only into a state folder that exists (the sync makes it; `plan` never does).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from followsync.atomic import read_private, write_private
from followsync.backends.digest import Challenge, Remembered, usable

log = logging.getLogger("followsync")
FILE = "http-auth.json"
FIELDS = ("realm", "nonce", "opaque", "algorithm", "qop", "userhash")
MAX_SERVERS = 64  # the most recently used are kept
MAX_BYTES = 256 * 1024
MAX_NC = 0xFFFFFFFF  # the nonce count is 8 hex digits


def recall(folder: Path | None, origin: str) -> Remembered | None:
    """What `origin` asked for last; None when it never asked for Digest (as far as a
    readable file says)."""
    servers = _read(folder)
    if origin not in servers:
        return None
    return _entry(servers[origin])


def keep(folder: Path | None, origin: str, remembered: Remembered) -> None:
    """Note what `origin` asked for (the most recent last); a failure to write only costs
    the next run a 401."""
    if folder is None or not folder.is_dir():
        return
    servers = _read(folder)
    servers.pop(origin, None)
    entry: dict[str, Any] = {"nc": remembered.nc}
    if remembered.challenge is not None:
        entry["challenge"] = {k: v for k, v in remembered.challenge.params.items()
                              if k in FIELDS}
    servers[origin] = entry
    kept = dict(list(servers.items())[-MAX_SERVERS:])
    data = json.dumps({"version": 1, "servers": kept}, indent=1).encode()
    try:
        write_private(folder / FILE, data)
    except OSError as exc:
        log.debug("cannot keep %s: %s", folder / FILE, exc.strerror or type(exc).__name__)


def _read(folder: Path | None) -> dict[str, Any]:
    """The servers' entries as stored (each checked when used); {} for anything but the
    user's own private, well-formed file."""
    if folder is None:
        return {}
    raw = read_private(folder / FILE, MAX_BYTES)
    if raw is None:
        return {}
    try:
        found = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    servers = found.get("servers") if isinstance(found, dict) else None
    if not isinstance(servers, dict):
        return {}
    return {str(origin): entry for origin, entry in servers.items()}


def _entry(entry: Any) -> Remembered:
    """A server's entry; one that is not as written still says "Digest", with nothing
    else kept."""
    if not isinstance(entry, dict):
        return Remembered(None)
    nc, fields = entry.get("nc"), entry.get("challenge")
    if type(nc) is not int or not 0 <= nc <= MAX_NC or not isinstance(fields, dict):
        return Remembered(None)
    params = {k: v for k, v in fields.items() if k in FIELDS}
    if not all(isinstance(v, str) and len(v) <= 1024 for v in params.values()) \
            or "nonce" not in params:
        return Remembered(None)
    challenge = Challenge("digest", params)
    return Remembered(challenge, nc) if usable(challenge) else Remembered(None)
