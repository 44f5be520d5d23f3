"""Scanning the configured mailboxes against the state (README "Mail").

Per mailbox: resolve the password, scan from the stored bookmarks, keep the new touches and
bookmarks. A mailbox's bookmarks are only good for what they were read for (the leads'
addresses, my addresses, `since`, the folders): when that changes, the mailbox is read again
from `since` and its touches are replaced by what that scan finds, so an address added to a
lead finds the older mail too, and an address removed no longer counts. A mailbox that fails
is reported (exit 3) and the others are still scanned.

A refused login is reported with a salted digest of what was tried (the mailbox's config
entry and the password as resolved then, or for an OAuth mailbox the refresh token kept after
the refusal; `credentials_digest`). The daemon hands it back as `held`: a mailbox whose
credentials still have that digest is not logged in to again (repeated failed logins lock
real accounts), while a changed password (its command's output, the keyring), a new sign-in
(`followsync auth NAME`) or entry is tried at once. No password or token is ever kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass, field
from datetime import date, datetime, tzinfo
from typing import TYPE_CHECKING

from followsync.config import Config, MailConfig
from followsync.errors import EXIT_OK, EXIT_TARGET, FollowsyncError
from followsync.sources import FoundTouch, Skipped
from followsync.state import State, shortcuts_in

if TYPE_CHECKING:
    from followsync.leads import LeadBook, Touch
    from followsync.sources.mail import Mailbox, TokenSource

log = logging.getLogger("followsync")
# Salts the credentials digests: a new one in each process, kept in memory only.
_SALT = os.urandom(16)
KEPT_SKIPS = 200  # skipped messages kept per mailbox for `mail -v` (the latest)


def shown(text: str, width: int = 60) -> str:
    """A header's text as it may reach a terminal or a log: no control characters (an
    escape sequence in a subject is the sender's, not ours), at most `width` characters."""
    clean = "".join("?" if unicodedata.category(c).startswith("C") else c for c in text)
    return clean if len(clean) <= width else clean[:width - 1] + "…"


def _skip_order(item: Skipped) -> tuple[str, str, int]:
    return (item.when.isoformat() if item.when else "", item.folder, item.uid)


def kept_skips(state: State, mailbox: str) -> list[Skipped]:
    """The skipped messages kept for a mailbox (its config key); [] when none or unreadable."""
    text = state.meta(f"mail-skipped:{mailbox}")
    if not text:
        return []
    try:
        return [Skipped(str(f), int(u), datetime.fromisoformat(w) if w else None, str(s),
                        str(j), str(y), bool(c)) for f, u, w, s, j, y, c in json.loads(text)]
    except (ValueError, TypeError):
        return []


def keep_skips(state: State, mailbox: str, before: list[Skipped], new: Iterable[Skipped]
               ) -> list[Skipped]:
    """`before` and `new`, a message skipped again (a rescan) once, the latest KEPT_SKIPS;
    written to the state (the caller's transaction)."""
    kept: dict[tuple[object, ...], Skipped] = {}
    for item in [*before, *new]:
        kept[(item.folder, item.when, item.sender, item.subject, item.why)] = item
    latest = list(kept.values())[-KEPT_SKIPS:]
    state.set_meta(f"mail-skipped:{mailbox}", json.dumps(
        [[*astuple(s)[:2], s.when.isoformat() if s.when else None, *astuple(s)[3:]]
         for s in latest]))
    return latest


@dataclass
class MailReport:
    """What scanning one mailbox did."""

    name: str
    found: list[FoundTouch] = field(default_factory=list)  # touches new to the state
    folders: tuple[str, ...] = ()
    seconds: float = 0.0
    rescanned: bool = False  # read from `since` (first scan, or what it looks for changed)
    error: str | None = None
    hint: str = ""
    exit_code: int = EXIT_OK
    refused: str | None = None  # the login was refused: `credentials_digest` of what was tried
    held: bool = False  # not logged in to: these credentials were refused before (`held`)
    oauth: bool = False  # an OAuth mailbox: its credentials are a sign-in, not a password
    skipped: list[Skipped] = field(default_factory=list)  # kept in the state (`mail -v`)
    new_skips: int = 0  # messages this scan skipped

    def summary(self) -> str:
        if self.error:
            return f"mailbox {self.name}: FAILED: {self.error}"
        if self.held:
            what = f"sign-in (followsync auth {self.name})" if self.oauth else "password"
            return (f"mailbox {self.name}: not tried: its login was refused and neither its "
                    f"{what} nor its config entry changed since")
        count = len(self.found)
        folders = len(self.folders)
        line = (f"mailbox {self.name}: {count} new touch{'' if count == 1 else 'es'} "
                f"({folders} folder{'' if folders == 1 else 's'}, {self.seconds:.2f} s)")
        if self.new_skips:
            one = self.new_skips == 1
            line += (f"; {self.new_skips} message{'' if one else 's'} skipped (followsync "
                     f"mail -v lists {'it' if one else 'them'})")
        return line

    def skipped_lines(self, zone: tzinfo) -> list[str]:
        """`followsync mail -v`: what was skipped and why, oldest first (README "Mail")."""
        if not self.skipped:
            return []
        whole = [s for s in self.skipped if not s.counted]
        notes = len(self.skipped) - len(whole)
        head = f"mailbox {self.name}: {len(whole)} message{'' if len(whole) == 1 else 's'} skipped"
        head += f", {notes} address{'' if notes == 1 else 'es'} left out" if notes else ""
        lines = [head]
        for item in sorted(self.skipped, key=_skip_order):
            when = item.when.astimezone(zone).strftime("%Y-%m-%d %H:%M") if item.when \
                else "(no date)       "
            lines.append(f"  {when}  {shown(item.folder)} {item.uid}  "
                         f"{shown(item.sender) or '(no sender)'}  \"{shown(item.subject)}\": "
                         f"{shown(item.why, 200)}")
        return lines


def lead_addresses(book: LeadBook) -> dict[str, str]:
    """Every lead address (lower-cased) → its lead id. An address two leads share belongs to
    the first in file order (and is warned about: its mail cannot tell them apart)."""
    found: dict[str, str] = {}
    for lead_id, item in book.leads.items():
        for address in item.lead.addresses():
            other = found.setdefault(address, lead_id)
            if other != lead_id:
                log.warning("warning: %s is the email of both %s and %s; its mail counts for %s",
                            address, other, lead_id, other)
    return found


def looked_for(box: MailConfig, addresses: Mapping[str, str]) -> str:
    """A digest of everything a mailbox's bookmarks depend on besides the server."""
    what = [sorted(addresses.items()), sorted(box.me), str(box.since), box.folders,
            box.username]
    return hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()


def password_of(box: MailConfig) -> str:
    """The mailbox's password, found as a CalDAV target's is (README "The config file")."""
    from followsync.credentials import password_for

    return password_for(box) or ""


def credentials_digest(box: MailConfig, password: str) -> str:
    """What a login tried, as a digest salted per process: the mailbox's config entry (so an
    edit of it counts as a change) and the password resolved for it."""
    entry = json.dumps(dataclasses.asdict(box), default=str, sort_keys=True)
    return hmac.new(_SALT, f"{entry}\0{password}".encode(), hashlib.sha256).hexdigest()


def mailbox_of(box: MailConfig, since: date) -> Mailbox:
    """The mailbox to scan: its password resolved, or for an OAuth mailbox the tokens of its
    sign-in (no password is ever looked for)."""
    from followsync.sources.mail import Mailbox

    oauth = box.auth != "password"
    return Mailbox(name=box.name, host=box.host, username=box.username,
                   password="" if oauth else password_of(box), port=box.port, tls=box.tls,
                   me=box.me, folders=box.folders, since=since, auth=box.auth,
                   tokens=tokens_of(box) if oauth else None)


def tokens_of(box: MailConfig) -> TokenSource:
    """An OAuth mailbox's access tokens for IMAP: Microsoft's (the IMAP resource) or
    Google's (the mail scope), of the sign-in `followsync auth NAME` made."""
    if box.auth == "microsoft":
        from followsync import msauth

        return msauth.Tokens(msauth.settings_for(box), "imap")
    from followsync import googleauth

    return googleauth.Tokens(googleauth.settings_for(box))


def kept_sign_in(box: MailConfig) -> str:
    """What an OAuth mailbox's sign-in is now: its kept refresh token ("" when there is none
    or it cannot be read), which a new `followsync auth NAME` changes. Only ever hashed into
    `credentials_digest`, never kept or shown."""
    try:
        if box.auth == "microsoft":
            from followsync import msauth

            store = msauth.store_for(msauth.settings_for(box), readonly=True)
            return store.refresh_token() or ""
        from followsync import googleauth

        settings = googleauth.settings_for(box)
        client = googleauth.load_client(settings)
        return googleauth.TokenStore(settings, client.client_id, readonly=True
                                     ).refresh_token() or ""
    except FollowsyncError:
        return ""


def login_digest(box: MailConfig, mailbox: Mailbox) -> str:
    """`credentials_digest` of what a login of `mailbox` tries now: its password, or the
    sign-in kept for it (read again after a refusal: a refresh may have rolled it)."""
    if box.auth == "password":
        return credentials_digest(box, mailbox.password)
    return credentials_digest(box, kept_sign_in(box))


def known_addresses(config: Config, state: State) -> dict[str, str]:
    """`lead_addresses` of the lead files as they are now, without loading them when they
    are as at the last scan (their fingerprint is kept with the map in the state):
    a sync with nothing new stays cheap. A lead file that does not load raises ConfigError."""
    from followsync import fingerprint

    key = f"{fingerprint.code()}|{fingerprint.files(config.lead_paths)}"
    kept = state.meta("mail-addresses")
    if kept is not None:
        with contextlib.suppress(Exception):  # (only a shortcut: anything odd is a miss)
            saved = json.loads(kept)
            if saved["files"] == key:
                return {str(k): str(v) for k, v in saved["map"].items()}
    from followsync.leads import load_leads

    found = lead_addresses(load_leads(list(config.lead_paths), named_at=config.lead_named_at,
                                      shortcuts=shortcuts_in(config.state_dir)))
    with state.transaction():
        state.set_meta("mail-addresses", json.dumps({"files": key, "map": found}))
    return found


def scan_mailboxes(
    config: Config, addresses: Mapping[str, str], state: State, today: date, *,
    since: date | None = None, only: Iterable[str] | None = None,
    held: Mapping[str, str] | None = None,
) -> list[MailReport]:
    """Scan every mailbox (or those named in `only`) for mail with `addresses` (address →
    lead id, see `lead_addresses`) and keep what was found. `since`: a one-off look back
    from that date, beyond the bookmarks (touches already known are not found twice).
    `held`: mailbox name → the `credentials_digest` its server refused; such a mailbox is
    not logged in to while its credentials are the same (the daemon's; a command run by hand
    always tries). The caller holds the state's lock."""
    from followsync.sources.mail import MailLoginRefused, scan_mailbox

    wanted = set(only) if only is not None else None
    reports = []
    for box in config.mailboxes:
        if wanted is not None and box.name not in wanted:
            continue
        report = MailReport(box.name, oauth=box.auth != "password")
        reports.append(report)
        started = time.monotonic()
        digest = looked_for(box, addresses)
        fresh = state.mail_looked_for(box.key) != digest
        marks = {} if fresh or since is not None else state.mail_marks(box.key)
        # From scratch, every touch is found again (and replaces the mailbox's stored ones);
        # else a message already known (in any mailbox) is not looked at twice.
        known = set() if fresh else state.mail_keys()
        mailbox: Mailbox | None = None
        try:
            first = box.since_day(today)
            if since is not None:
                first = min(first, since) if fresh else since
            mailbox = mailbox_of(box, first)
            if held and box.name in held:
                tried = login_digest(box, mailbox)
                if held[box.name] == tried:
                    report.held = True
                    continue
            result = scan_mailbox(mailbox, addresses, marks, known, config.timezone,
                                  timeout=box.timeout)
        except FollowsyncError as exc:
            if isinstance(exc, MailLoginRefused) and mailbox is not None:
                report.refused = login_digest(box, mailbox)
            report.error, report.hint, report.exit_code = exc.message, exc.hint, EXIT_TARGET
            report.seconds = time.monotonic() - started
            continue
        with state.transaction():
            before = {(t.key, t.lead) for t in state.mail_touches()} if fresh else set()
            state.save_mail_scan(box.key, box.name, digest, result.bookmarks, result.touches,
                                 replace_all=fresh)
            if fresh or result.skipped:  # from scratch: what was skipped before goes
                skips = keep_skips(state, box.key, [] if fresh else kept_skips(state, box.key),
                                   result.skipped)
            else:
                skips = kept_skips(state, box.key)
        report.skipped = skips
        report.new_skips = sum(not s.counted for s in result.skipped)
        report.found = [t for t in result.touches if (t.key, t.lead) not in before] \
            if fresh else _new(result.touches, known)
        report.folders = result.folders
        report.rescanned = fresh or since is not None
        report.seconds = time.monotonic() - started
    return reports


def _new(found: Iterable[FoundTouch], known: set[str]) -> list[FoundTouch]:
    return [t for t in found if t.key not in known]


def touch_note(touch: FoundTouch, name: str) -> str:
    """How a mail touch reads in a reason: `mail from Dana Whitfield "Re: the role"`."""
    way = "from" if touch.by == "them" else "to"
    subject = " ".join(touch.subject.split()) or "(no subject)"
    return f'mail {way} {name} "{subject}"'


def lead_touches(state: State, book: LeadBook, config: Config) -> list[tuple[str, Touch]]:
    """The stored mail touches of the leads in `book`, as touches the rules count, in time
    order (a lead's touches of one day are ordered by their time)."""
    from followsync.leads import MailTouch

    found: list[tuple[str, Touch]] = []
    for touch in sorted(state.mail_touches()):
        item = book.leads.get(touch.lead)
        if item is None:
            continue
        local = touch.when.astimezone(config.timezone)
        found.append((touch.lead, MailTouch(date=local.date(), by=touch.by,
                                            note=touch_note(touch, item.lead.name),
                                            at=local.replace(tzinfo=None),
                                            subject=touch.subject,
                                            message_id=_message_id(touch.key))))
    return found


def _message_id(key: str) -> str:
    """The message's own Message-ID, or "" for the stand-in of a mail without one."""
    return "" if key.endswith("@no-message-id.followsync>") else key


__all__ = ["MailReport", "credentials_digest", "known_addresses", "lead_addresses", "lead_touches",
           "scan_mailboxes", "touch_note"]
