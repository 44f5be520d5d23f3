"""Touches found in mail: read the headers of an IMAP mailbox, never anything else.

Why it looks like this:
- Invisible to the user: folders are opened with EXAMINE (read-only) and headers fetched with
  BODY.PEEK, so no flag ever changes; bodies are never asked for.
- Cheap when idle: per folder a bookmark (UIDVALIDITY, last UID); a folder with nothing new
  costs one STATUS. A changed UIDVALIDITY voids every UID: the folder is read again from
  `since`, and touches already known (by key) are not reported twice.
- Addresses are compared exactly after lower-casing (IMAP SEARCH FROM/TO would match
  substrings: `ann@x` inside `joann@x`), so the server is never asked to filter by address.
- Dates: the Date header is the sender's and is kept (a copy filed later, or imported, has a
  later INTERNALDATE), except when it is missing, unreadable, or more than a day after the
  server's INTERNALDATE (a sender's clock cannot be ahead of arrival): then INTERNALDATE.
- A message's key is its Message-ID; without one, a stand-in made of sender, Date header and
  subject, so the same message in two folders is still one touch; without a readable Date
  either, of its arrival and its rank among such twins, so two messages never become one.
- Hostile input: whatever goes wrong reading one message's headers skips that message (noted
  in `ScanResult.skipped`, with lists and robots); it never stops the scan. An address is the
  addr-spec only (`read_addresses`): a display name that looks like an address is not one.
- stdlib `imaplib`, no dependency: on Dovecot with 20,000 messages, `imapclient` took about
  5x a bare imaplib fetch of the same headers (1.6 s against 0.3 s) before any matching,
  while this scan stays within 1.5x of it (bench/mail_scan.py). The bulk FETCH answers are
  streamed (see `_fetch`). IDLE, which imaplib lacks before 3.14, is in sources/idle.py.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import imaplib
import itertools
import json
import re
import socket
import ssl
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime
from typing import Protocol

from followsync.durations import MAX_YEAR, MIN_YEAR
from followsync.errors import SignInRefused, TargetError
from followsync.hosts import is_loopback
from followsync.model import MailAuth, Tls
from followsync.sources import Bookmark, Direction, FoundTouch, ScanResult, Skipped

HEADER_FIELDS = ("FROM", "TO", "CC", "DATE", "MESSAGE-ID", "SUBJECT", "LIST-ID", "AUTO-SUBMITTED",
                 "PRECEDENCE", "X-AUTOREPLY", "X-AUTORESPOND", "RETURN-PATH")
FETCH_ITEMS = f"(INTERNALDATE BODY.PEEK[HEADER.FIELDS ({' '.join(HEADER_FIELDS)})])"
SENT_NAMES = ("Sent", "Sent Items", "Sent Messages", "[Gmail]/Sent Mail")
MAX_RECIPIENTS = 20
ROBOT_PRECEDENCE = frozenset({"bulk", "list", "junk", "auto_reply"})
FUTURE_DATE_SLACK = timedelta(days=1)
MAX_SET = 4000  # characters of a UID set in one command (servers cap line length)


class MailError(TargetError):
    """A mailbox could not be scanned (unreachable, TLS, refused login, missing folder); the
    other sources and the calendars go on. Never carries a password."""


class MailLoginRefused(MailError):
    """The server refused the username/password, or the OAuth sign-in (its token, or the
    token endpoint's answer to a refresh): not tried again until that changes."""


class TokenSource(Protocol):
    """An OAuth mailbox's access tokens (msauth.Tokens, googleauth.Tokens): `access` the
    kept one (refreshed when near expiry), `refresh` a new one. Both raise TargetError."""

    def access(self) -> str: ...

    def refresh(self) -> str: ...


@dataclass(frozen=True)
class Mailbox:
    """One `mail:` entry, credentials already resolved: a password, or (`auth: microsoft`,
    `auth: google`) the tokens of its sign-in, never both."""

    name: str
    host: str
    username: str
    password: str = field(repr=False)
    port: int | None = None  # None: 993 for implicit TLS, 143 otherwise
    tls: Tls = "implicit"
    me: tuple[str, ...] = ()
    folders: tuple[str, ...] | None = None  # None: INBOX, \Sent (or a known name), \All
    since: date = date(1970, 1, 1)
    auth: MailAuth = "password"
    tokens: TokenSource | None = field(default=None, repr=False, compare=False)

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (993 if self.tls == "implicit" else 143)

    @property
    def my_addresses(self) -> frozenset[str]:
        mine = {a.strip().lower() for a in self.me if a.strip()}
        if not mine and "@" in self.username:
            mine.add(self.username.strip().lower())
        return frozenset(mine)


@dataclass
class MailSource:
    """A `TouchSource` over one mailbox."""

    mailbox: Mailbox
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None

    @property
    def name(self) -> str:
        return self.mailbox.name

    def scan(self, leads: Mapping[str, str], bookmarks: Mapping[str, Bookmark],
             known: Collection[str], tz: tzinfo) -> ScanResult:
        return scan_mailbox(self.mailbox, leads, bookmarks, known, tz, timeout=self.timeout,
                            ssl_context=self.ssl_context)


def scan_mailbox(mailbox: Mailbox, leads: Mapping[str, str], bookmarks: Mapping[str, Bookmark],
                 known: Collection[str], tz: tzinfo, *, timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> ScanResult:
    """Scan `mailbox` for touches with the leads whose addresses are the keys of `leads`
    (lower-cased address → lead id). Raises MailError when the mailbox cannot be read."""
    lead_of = {address.strip().lower(): lead for address, lead in leads.items()}
    matcher = _Matcher(mailbox.my_addresses, lead_of, tz)
    with connect(mailbox, timeout, ssl_context) as imap:
        folders = _folders(imap, mailbox)
        seen: set[str] = set(known)
        touches: list[FoundTouch] = []
        new_marks: dict[str, Bookmark] = {}
        fetched = 0
        for folder in folders:
            mark, found, count = _scan_folder(imap, folder, bookmarks.get(folder), mailbox.since,
                                              matcher, seen)
            new_marks[folder] = mark
            touches.extend(found)
            fetched += count
    return ScanResult(tuple(sorted(touches)), new_marks, tuple(folders), fetched,
                      tuple(matcher.skipped))


# ------------------------------------------------------------------ connection
@contextlib.contextmanager
def connect(mailbox: Mailbox, timeout: float, context: ssl.SSLContext | None
            ) -> Iterator[imaplib.IMAP4]:
    """A logged-in session (the scan's and the IDLE watcher's, sources/idle.py): every
    failure is a MailError, a refused login a MailLoginRefused; logs out on leaving."""
    where = f"mailbox {mailbox.name!r} ({mailbox.host}:{mailbox.effective_port})"
    if mailbox.tls == "none" and mailbox.tokens is not None:
        raise MailError(f"{where}: tls: none would send the OAuth token in clear text",
                        "use tls: implicit (port 993) or tls: starttls (port 143)")
    if mailbox.tls == "none" and not is_loopback(mailbox.host):
        raise MailError(f"{where}: tls: none sends the password in clear text; refused for a "
                        "host that is not on this machine",
                        "use tls: implicit (port 993) or tls: starttls (port 143)")
    if mailbox.tls != "none":
        context = context or ssl.create_default_context()
    imap: imaplib.IMAP4
    try:
        if mailbox.tls == "implicit":
            imap = imaplib.IMAP4_SSL(mailbox.host, mailbox.effective_port, ssl_context=context,
                                     timeout=timeout)
        else:
            imap = imaplib.IMAP4(mailbox.host, mailbox.effective_port, timeout=timeout)
    except ssl.SSLError as exc:
        raise _tls_error(where, exc) from None
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailError(f"{where}: cannot connect: {_reason(exc)}",
                        "check host and port, and that the server is up") from None
    try:
        if mailbox.tls == "starttls":
            if "STARTTLS" not in imap.capabilities:
                raise MailError(f"{where}: the server does not offer STARTTLS",
                                "use tls: implicit, usually on port 993")
            imap.starttls(ssl_context=context)
        _login(imap, mailbox, where)
        yield imap
    except ssl.SSLError as exc:
        raise _tls_error(where, exc) from None
    except (OSError, imaplib.IMAP4.abort) as exc:
        raise MailError(f"{where}: connection lost: {_reason(exc)}",
                        "the next scan will retry") from None
    except imaplib.IMAP4.error as exc:
        raise MailError(f"{where}: the server refused a request: {_reason(exc)}") from None
    finally:
        with contextlib.suppress(Exception):
            imap.logout()


def _login(imap: imaplib.IMAP4, mailbox: Mailbox, where: str) -> None:
    if mailbox.tokens is not None:
        _oauth_login(imap, mailbox, mailbox.tokens, where)
        return
    try:
        if mailbox.username.isascii() and mailbox.password.isascii():
            imap.login(mailbox.username, mailbox.password)
        else:
            secret = f"\0{mailbox.username}\0{mailbox.password}".encode()
            imap.authenticate("PLAIN", lambda _challenge: secret)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:
        reason = _reason(exc).replace(mailbox.password, "***") if mailbox.password else _reason(exc)
        raise MailLoginRefused(
            f"{where}: login refused for {mailbox.username!r}: {reason}",
            "check the username and password (Gmail, Fastmail and iCloud need an app password)",
        ) from None


def xoauth2(username: str, token: str) -> bytes:
    """The XOAUTH2 initial response (Google's and Microsoft's, the same), before base64."""
    return f"user={username}\x01auth=Bearer {token}\x01\x01".encode()


def _oauth_login(imap: imaplib.IMAP4, mailbox: Mailbox, tokens: TokenSource,
                 where: str) -> None:
    """AUTHENTICATE XOAUTH2 with the kept access token; refused, once more with a refreshed
    one (the kept one may have been revoked or expired early); refused again:
    MailLoginRefused. A token error that asks for a new sign-in is a refusal too."""
    if "AUTH=XOAUTH2" not in imap.capabilities:
        raise MailError(f"{where}: the server does not offer OAuth (AUTHENTICATE XOAUTH2)",
                        f"check the host; auth: {mailbox.auth} is for "
                        f"{_OAUTH_HOSTS[mailbox.auth]}")
    reason = ""
    for fetch in (tokens.access, tokens.refresh):
        token = _token(fetch, mailbox, where)
        reason = _authenticate(imap, mailbox.username, token)
        if not reason:
            return
        reason = reason.replace(token, "***")
    raise MailLoginRefused(f"{where}: the OAuth sign-in was refused for "
                           f"{mailbox.username!r}: {reason}", _refused_hint(mailbox))


_OAUTH_HOSTS = {"microsoft": "outlook.office365.com", "google": "imap.gmail.com",
                "password": ""}


def _token(fetch: Callable[[], str], mailbox: Mailbox, where: str) -> str:
    """A token from `fetch`; its TargetError as this mailbox's: a refusal (not tried again
    until it changes) when it asks for `followsync auth NAME`, else a failure (retried)."""
    try:
        return fetch()
    except TargetError as exc:
        kind = MailLoginRefused if isinstance(exc, SignInRefused) \
            or f"followsync auth {mailbox.name}" in exc.hint else MailError
        said = exc.message.removeprefix(f"mailbox {mailbox.name}: ")
        raise kind(f"{where}: {said}", exc.hint) from None


def _authenticate(imap: imaplib.IMAP4, username: str, token: str) -> str:
    """One AUTHENTICATE XOAUTH2: "" when logged in, else the server's reason. A refusal
    comes as a continuation holding a JSON error (Gmail, Dovecot), answered with an empty
    line, then NO; or as a bare NO (Outlook: "AUTHENTICATE failed.")."""
    said: list[bytes] = []

    def answer(challenge: bytes) -> bytes:
        if said:  # the error's details: an empty answer ends the exchange
            said.append(challenge)
            return b""
        said.append(b"")
        return xoauth2(username, token)

    try:
        imap.authenticate("XOAUTH2", answer)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:
        detail = _challenge_detail(said[1:])
        return _reason(exc)[:300] + (f" ({detail})" if detail else "")
    except ValueError:  # a continuation imaplib cannot decode (not base64): the server's
        raise imaplib.IMAP4.abort("AUTHENTICATE: an answer that is not base64") from None
    return ""


def _challenge_detail(challenges: list[bytes]) -> str:
    """`status 401` from the JSON a server sent with a refusal; "" when there is none (or
    it cannot be read: the server's text is hostile like any other)."""
    for raw in challenges:
        try:
            data = json.loads(raw[:2000])
        except (ValueError, RecursionError):
            continue
        if isinstance(data, dict) and data.get("status"):
            return f"status {str(data['status'])[:20]}"
    return ""


def _refused_hint(mailbox: Mailbox) -> str:
    hint = (f"sign in again: `followsync auth {mailbox.name}`, with the account "
            f"{mailbox.username} (the username must be the account signed in)")
    if mailbox.auth == "microsoft":
        hint += ("; if it is still refused, IMAP may be disabled for this mailbox by its "
                 "administrator (Microsoft 365 admin center → Users → the user → Mail → "
                 "Manage email apps → IMAP)")
    return hint


def _tls_error(where: str, exc: ssl.SSLError) -> MailError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return MailError(f"{where}: the server's certificate is not trusted: "
                         f"{exc.verify_message or exc.reason}",
                         "certificates are always verified: check the host name; a server "
                         "with its own certificate needs it trusted by this machine")
    return MailError(f"{where}: TLS failed: {exc.reason or exc}",
                     "check the port: 993 is implicit TLS, 143 plain or STARTTLS")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):  # (its first argument is a number: -2, -3)
        return f"host name not found ({exc.strerror or 'no answer from DNS'})"
    text = exc.args[0] if exc.args else exc
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text) or type(exc).__name__


def _q(name: str) -> str:
    """A folder name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501 §5.1.3)."""
    name = encode_folder(name)
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_folder(name: str) -> str:
    """Modified UTF-7 for folder names typed by the user (`Éléments envoyés`); ASCII stays."""
    if name.isascii():
        return name.replace("&", "&-")
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            packed = base64.b64encode("".join(run).encode("utf-16-be")).rstrip(b"=")
            out.append("&" + packed.decode().replace("/", ",") + "-")
            run.clear()

    for char in name:
        if " " <= char <= "~":
            flush()
            out.append("&-" if char == "&" else char)
        else:
            run.append(char)
    flush()
    return "".join(out)


_SHIFTED = re.compile(r"&([^-]*)-")


def decode_folder(name: str) -> str:
    """A folder name as LIST gives it (modified UTF-7) → text; a malformed one stays as is."""
    def one(match: re.Match[str]) -> str:
        if not match.group(1):
            return "&"
        packed = match.group(1).replace(",", "/")
        return base64.b64decode(packed + "=" * (-len(packed) % 4)).decode("utf-16-be")

    try:
        return _SHIFTED.sub(one, name)
    except (ValueError, UnicodeDecodeError):
        return name


def _check(result: tuple[str, Sequence[object]], what: str) -> Sequence[object]:
    typ, data = result
    if typ != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        raise imaplib.IMAP4.error(f"{what}: {typ} {detail}".strip())
    return data


# ------------------------------------------------------------------ folders
_LIST_LINE = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<sep>"(?:[^"\\]|\\.)*"|NIL) (?P<name>.*)$')


def _parse_list(data: Sequence[object]) -> list[tuple[frozenset[str], str, str]]:
    """(flags, separator, name) from LIST responses; names may come quoted or as literals."""
    out = []
    for item in data:
        if isinstance(item, tuple):
            line, name_bytes = bytes(item[0]), bytes(item[1])
            match = _LIST_LINE.match(line.rsplit(b" ", 1)[0] + b" x")
            name = decode_folder(name_bytes.decode("utf-8", "replace"))
        elif isinstance(item, bytes):
            match = _LIST_LINE.match(item)
            raw = match.group("name").decode("utf-8", "replace") if match else ""
            name = decode_folder(_unquote(raw))
        else:
            continue
        if match is None:
            continue
        flags = frozenset(f.lower() for f in match.group("flags").decode().split())
        sep = _unquote(match.group("sep").decode()) if match.group("sep") != b"NIL" else ""
        out.append((flags, sep, name))
    return out


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _folders(imap: imaplib.IMAP4, mailbox: Mailbox) -> list[str]:
    """The folders to scan: the configured ones, else INBOX, the \\Sent folder(s) (or the first
    common Sent name when none is flagged) and the \\All folder(s)."""
    if mailbox.folders is not None:
        return list(dict.fromkeys(mailbox.folders))
    listed = _parse_list(_check(imap.list('""', "*"), "LIST"))
    chosen = ["INBOX"]
    sent = [name for flags, _, name in listed if "\\sent" in flags and "\\noselect" not in flags]
    if not sent:
        by_name = {name: sep for flags, sep, name in listed if "\\noselect" not in flags}
        for wanted in SENT_NAMES:
            hit = next((name for name, sep in by_name.items()
                        if name == wanted or (sep and name.endswith(sep + wanted))), None)
            if hit:
                sent = [hit]
                break
    every = [name for flags, _, name in listed if "\\all" in flags and "\\noselect" not in flags]
    for name in [*sent, *every]:
        if name.upper() != "INBOX" and name not in chosen:
            chosen.append(name)
    return chosen


# ------------------------------------------------------------------ one folder
_NUMBER = {name: re.compile(rb"\b" + name.encode() + rb" (\d+)") for name in ("UIDNEXT", "UIDVALIDITY")}
_UID = re.compile(rb"\bUID (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')


def _status(imap: imaplib.IMAP4, folder: str) -> tuple[int, int]:
    data = _check(imap.status(_q(folder), "(UIDNEXT UIDVALIDITY)"), f"STATUS {folder}")
    line = b" ".join(d for d in data if isinstance(d, bytes))
    numbers = [_NUMBER[n].search(line) for n in ("UIDVALIDITY", "UIDNEXT")]
    if numbers[0] is None or numbers[1] is None:
        raise imaplib.IMAP4.error(f"STATUS {folder}: no UIDVALIDITY/UIDNEXT in {line!r}")
    return int(numbers[0].group(1)), int(numbers[1].group(1))


def _examine(imap: imaplib.IMAP4, folder: str) -> tuple[int, int | None]:
    _check(imap.select(_q(folder), readonly=True), f"EXAMINE {folder}")
    validity = imap.untagged_responses.get("UIDVALIDITY", [None])[-1]
    uidnext = imap.untagged_responses.get("UIDNEXT", [None])[-1]
    if not isinstance(validity, bytes) or not validity.strip().isdigit():
        raise imaplib.IMAP4.error(f"EXAMINE {folder}: no UIDVALIDITY")
    nxt = int(uidnext) if isinstance(uidnext, bytes) and uidnext.strip().isdigit() else None
    return int(validity), nxt


def _scan_folder(imap: imaplib.IMAP4, folder: str, mark: Bookmark | None, since: date,
                 matcher: _Matcher, seen: set[str]
                 ) -> tuple[Bookmark, list[FoundTouch], int]:
    if mark is not None:
        validity, uidnext = _status(imap, folder)
        if validity == mark.uidvalidity and uidnext <= mark.last_uid + 1:
            return mark, [], 0
    validity, examined_next = _examine(imap, folder)
    if mark is not None and mark.uidvalidity == validity:
        last = mark.last_uid
        top = (examined_next - 1) if examined_next else None
        chunks: Iterable[str] = [f"{last + 1}:{top if top is not None else '*'}"]
    else:
        last = 0
        data = _check(imap.uid("SEARCH", "SINCE", _imap_date(since)), f"SEARCH {folder}")
        uids = sorted({int(u) for d in data if isinstance(d, bytes) for u in d.split()})
        chunks = _uid_sets(uids)
    touches: list[FoundTouch] = []
    highest = max(last, (examined_next or 1) - 1)
    count = 0
    for uid_set in chunks:
        for uid, internal, header in _fetch(imap, uid_set):
            if uid <= last:  # `n:*` always returns the last message, even below n
                continue
            count += 1
            highest = max(highest, uid)
            touches.extend(matcher.read(uid, header, internal, folder, seen))
    return Bookmark(validity, highest), touches, count


def _uid_sets(uids: Sequence[int]) -> Iterator[str]:
    """Sorted UIDs as compact UID sets (`1:500,502`), each under MAX_SET characters. A FETCH
    is streamed, so one set can hold any number of messages."""
    parts: list[str] = []
    size = 0
    i = 0
    while i < len(uids):
        j = i
        while j + 1 < len(uids) and uids[j + 1] == uids[j] + 1:
            j += 1
        part = f"{uids[i]}:{uids[j]}" if j > i else str(uids[i])
        if parts and size + len(part) + 1 > MAX_SET:
            yield ",".join(parts)
            parts, size = [], 0
        parts.append(part)
        size += len(part) + 1
        i = j + 1
    if parts:
        yield ",".join(parts)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _imap_date(day: date) -> str:
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


_IDATE = re.compile(rb"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-]\d\d)(\d\d)")
_MONTH_NUMBER = {m.lower().encode(): n for n, m in enumerate(_MONTHS, 1)}


def _internaldate(text: bytes) -> datetime | None:
    match = _IDATE.match(text)
    if match is None:
        return None
    day, mon, year, hh, mm, ss, oh, om = match.groups()
    month = _MONTH_NUMBER.get(mon.lower())
    if month is None:
        return None
    sign = -1 if oh.startswith(b"-") else 1
    offset = timedelta(hours=int(oh), minutes=sign * int(om))
    try:
        return datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=UTC) - offset
    except (ValueError, OverflowError):
        return None


_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")
_TAGS = itertools.count(1)


def _fetch(imap: imaplib.IMAP4, uid_set: str) -> Iterator[tuple[int, bytes, bytes]]:
    """Send `UID FETCH uid_set FETCH_ITEMS` and stream back (UID, INTERNALDATE as sent,
    header bytes) per message as it arrives.

    Why not `imap.uid("FETCH", ...)`: imaplib's generic reader keeps every response in memory
    and costs more per message than everything else the scan does (the bench's floor is that
    reader). This reads the same wire with imaplib's public send/readline/read, answer by
    answer; items outside the literal may come before or after it."""
    tag = f"FSYNC{next(_TAGS)}".encode()
    imap.send(b"%s UID FETCH %s %s\r\n" % (tag, uid_set.encode(), FETCH_ITEMS.encode()))
    done = tag + b" "
    while True:
        line = imap.readline()
        if not line:
            raise imaplib.IMAP4.abort("the server closed the connection")
        if line.startswith(done):
            status = line[len(done):].split(b" ", 1)
            if status[0] != b"OK":
                raise imaplib.IMAP4.error(f"FETCH: {line[len(done):].decode(errors='replace')}")
            return
        if line.startswith(b"* BYE"):
            raise imaplib.IMAP4.abort(line.decode(errors="replace").strip())
        header: bytes | None = None
        literal = _LITERAL.search(line)
        while literal is not None:
            data = imap.read(int(literal.group(1)))
            header = data if header is None else header
            line = line[:literal.start()] + b" " + imap.readline()
            literal = _LITERAL.search(line)
        if header is None or b" FETCH " not in line[:40]:
            continue  # EXISTS, EXPUNGE, a flag change: not ours
        uid = _UID.search(line)
        internal = _INTERNALDATE.search(line)
        if uid is not None:
            yield int(uid.group(1)), internal.group(1) if internal else b"", header


# ------------------------------------------------------------------ headers → touches
_FOLDED = re.compile(r"\r?\n(?=[ \t])")


def parse_headers(raw: bytes) -> dict[str, list[str]]:
    """Header fields by lower-cased name (all occurrences), unfolded. Bytes outside ASCII are
    read as UTF-8 (what mail clients send today), else Latin-1."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    fields: dict[str, list[str]] = {}
    for line in _FOLDED.sub("", text).splitlines():
        name, sep, value = line.partition(":")
        if sep and name and not name[0].isspace():
            fields.setdefault(name.strip().lower(), []).append(value.strip())
    return fields


# What may stand in a local part or a domain without quotes or brackets (RFC 5322 atext and
# dots, plus anything outside ASCII: RFC 6532).
_ATEXT = r'[^\s()<>\[\]:;@\\,"]'
_LOCAL = re.compile(_ATEXT + r'+|"(?:[^"\\\r\n]|\\.)*"')
_DOMAIN = re.compile(_ATEXT + r"+|\[[^\[\]\\\s]*\]")
_PLAIN = re.compile(_ATEXT + "+")
_SIMPLE = re.compile(r'\s*(?:[^<>",;:()@\[\]\\]*<(' + _ATEXT + "+@" + _ATEXT + r"+)>"
                     r"|(" + _ATEXT + "+@" + _ATEXT + r"+))\s*")


def addr_spec(text: str) -> str | None:
    """`local@domain` lower-cased when `text` is exactly one addr-spec (RFC 5322 §3.4.1; a
    quoted local part that needs no quotes loses them), else None."""
    text = text.strip()
    local = _LOCAL.match(text)
    if local is None or local.end() >= len(text) or text[local.end()] != "@":
        return None
    domain = _DOMAIN.fullmatch(text, local.end() + 1)
    if domain is None:
        return None
    left = local.group()
    if left.startswith('"'):
        inner = re.sub(r"\\(.)", r"\1", left[1:-1])
        left = inner if _PLAIN.fullmatch(inner) else left
    return f"{left}@{domain.group()}".lower()


def _judge(outside: list[str], inside: list[str], angles: int, trailing: bool) -> str | None:
    """The address of one mailbox of a list: the angle-addr when there is one (whatever the
    display name before it says), else the whole text; "" for an empty part."""
    if angles > 1 or trailing:
        return None
    if angles == 1:
        text = "".join(inside).strip()
        if text.startswith("@"):  # an obsolete source route: <@relay.example:ann@x.org>
            text = text.partition(":")[2]
        return addr_spec(text)
    text = "".join(outside).strip()
    return addr_spec(text) if text else ""


def read_addresses(value: str) -> tuple[list[str], list[str]]:
    """The addresses of an address-list header (RFC 5322 §3.4), lower-cased, and the parts
    that are not an address (as written). Comments are dropped and groups opened. A display
    name is never an address: `dana@acme.example <spam@evil.example>` is from
    spam@evil.example. Linear in the length of `value`; never raises."""
    found: list[str] = []
    bad: list[str] = []
    outside: list[str] = []
    inside: list[str] = []
    angles, trailing, in_angle, quoted, escaped, depth, start = 0, False, False, False, False, 0, 0

    def close(end: int, broken: bool = False) -> None:
        address = None if broken else _judge(outside, inside, angles, trailing)
        if address is None:
            bad.append(value[start:end].strip())
        elif address:
            found.append(address)

    for i, char in enumerate(value):
        if depth:  # a comment: dropped, nested ones too
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            else:
                depth += {"(": 1, ")": -1}.get(char, 0)
            continue
        target = inside if in_angle else outside
        if quoted:
            target.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            continue
        if char == "(":
            depth = 1
            target.append(" ")
        elif in_angle:
            if char == ">":
                in_angle = False
            elif char == "<":
                angles += 1  # nested: not an address
            else:
                inside.append(char)
        elif char == "<":
            in_angle = True
            angles += 1
        elif char in ",;":
            close(i)
            outside, inside, angles, trailing, start = [], [], 0, False, i + 1
        elif char == ":":  # a group's name ends here: drop it
            outside, inside, angles, trailing, start = [], [], 0, False, i + 1
        else:
            if char == '"':
                quoted = True
            if angles and not char.isspace():
                trailing = True
            outside.append(char)
    close(len(value), broken=quoted or in_angle or depth > 0)
    return found, bad


def _read_all(values: Iterable[str]) -> tuple[list[str], list[str]]:
    """`read_addresses` over several header values; plain forms (`addr`, `Name <addr>`,
    comma-separated) are read by a regex that gives the same answer about ten times faster."""
    found: list[str] = []
    bad: list[str] = []
    for value in values:
        if '"' not in value and "(" not in value and "\\" not in value:
            parts = [_SIMPLE.fullmatch(part) for part in value.split(",") if part.strip()]
            if all(parts):
                found.extend((m.group(1) or m.group(2)).lower() for m in parts if m)
                continue
        more, wrong = read_addresses(value)
        found.extend(more)
        bad.extend(wrong)
    return found, bad


def _addresses(values: list[str]) -> list[str]:
    """The addresses in header values, lower-cased (what is not an address is left out)."""
    return _read_all(values)[0]


# A cheap first look that cannot miss a real address (one without quotes, spaces or brackets
# in it): the runs between delimiters that hold an @, confirmed by `read_addresses` before
# they count. A run is only tried from its start, and possessively: linear however long a
# run without an @ is (a plain search tried every position of it, each to its end).
_TOKEN = re.compile(r'(?<![^\s<>,;:"()\[\]])[^\s<>,;:"()\[\]@]*+@[^\s<>,;:"()\[\]]+')
_FROM_FIELD = re.compile(rb"(?im)^from[ \t]*:(.*(?:\r?\n[ \t].*)*)")


def _tokens(value: str) -> set[str]:
    return set(_TOKEN.findall(value.lower()))


def uncomment(value: str) -> str:
    """A structured header value without its (comments) (RFC 5322 §3.2.2), quotes kept."""
    if "(" not in value:
        return value
    out: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in value:
        if escaped:
            escaped = False
            if not depth:
                out.append(char)
            continue
        if char == "\\" and (depth or quoted):
            escaped = True
            if not depth:
                out.append(char)
            continue
        if depth:
            depth += {"(": 1, ")": -1}.get(char, 0)
            if not depth:
                out.append(" ")
        elif char == '"':
            quoted = not quoted
            out.append(char)
        elif char == "(" and not quoted:
            depth = 1
        else:
            out.append(char)
    return "".join(out)


def robot_reason(fields: Mapping[str, list[str]]) -> str | None:
    """Why a message is from a list, a robot or an out-of-office reply (README "Mail"), or
    None for a person's mail. Comments in these fields are ignored (RFC 3834)."""
    if fields.get("list-id"):
        return "a list (List-Id)"
    for value in fields.get("auto-submitted", []):
        kind = uncomment(value).split(";", 1)[0].strip().lower()
        if kind not in ("", "no"):
            return f"a robot (Auto-Submitted: {kind[:40]})"
    for name, shown in (("x-autoreply", "X-Autoreply"), ("x-autorespond", "X-Autorespond")):
        if name in fields:
            return f"an automatic reply ({shown})"
    if any("".join(uncomment(v).split()) == "<>" for v in fields.get("return-path", [])):
        return "an automatic reply (Return-Path: <>)"
    for value in fields.get("precedence", []):
        kind = uncomment(value).strip().lower()
        if kind in ROBOT_PRECEDENCE:
            what = "an automatic reply" if kind == "auto_reply" else "bulk mail"
            return f"{what} (Precedence: {kind})"
    return None


def is_robot(fields: Mapping[str, list[str]]) -> bool:
    """Lists, newsletters and automatic replies are not touches."""
    return robot_reason(fields) is not None


def _usable(when: datetime | None) -> datetime | None:
    """`when` in UTC if followsync can count it (years MIN_YEAR to MAX_YEAR), else None."""
    if when is None:
        return None
    try:
        utc = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    return utc if MIN_YEAR <= utc.year <= MAX_YEAR else None


def header_date(fields: Mapping[str, list[str]]) -> datetime | None:
    """The Date header in UTC, or None when it is missing or cannot be read (or is out of
    followsync's years: `Fri, 31 Dec 99999999999` is a lie, not a date)."""
    for value in fields.get("date", [])[:1]:
        try:
            return _usable(parsedate_to_datetime(value))
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return None


def touch_date(fields: Mapping[str, list[str]], internal: datetime | None) -> datetime | None:
    """The Date header, unless it is missing, unreadable or more than a day after the
    server's INTERNALDATE: then INTERNALDATE (see the module docstring); None when neither
    can be used."""
    return _pick(header_date(fields), _usable(internal))


def _pick(sent: datetime | None, arrived: datetime | None) -> datetime | None:
    if sent is None or (arrived is not None and sent > arrived + FUTURE_DATE_SLACK):
        return arrived
    return sent


def message_key(fields: Mapping[str, list[str]], sender: str, arrived: datetime | None = None,
                rank: int = 0, *, dated: bool | None = None) -> str:
    """The Message-ID; without one, a stand-in from sender, subject and the Date header
    (stable across folders, unlike INTERNALDATE); without a readable Date either, from the
    arrival and `rank` (how many such messages came before it in its folder, that second),
    so two such messages are never one touch, and a rebuilt folder gives the same keys."""
    for value in fields.get("message-id", []):
        if value.strip():
            return value.strip()
    subject = fields.get("subject", [""])[:1]
    if dated if dated is not None else header_date(fields) is not None:
        basis = [sender, *fields.get("date", [""])[:1], *subject]
    else:
        basis = [sender, *subject, "arrived", arrived.isoformat() if arrived else "",
                 str(rank)]
    return f"<{hashlib.sha256(chr(0).join(basis).encode()).hexdigest()[:32]}" \
           "@no-message-id.followsync>"


def decode_subject(fields: Mapping[str, list[str]]) -> str:
    raw = fields.get("subject", [""])[0]
    if "=?" not in raw:
        return raw.strip()
    try:
        return str(make_header(decode_header(raw))).strip()
    except (ValueError, LookupError, UnicodeError):
        return raw.strip()


def _glimpse(raw: bytes, name: str) -> str:
    """A header's raw value for a message that cannot be read ("" when even that fails)."""
    try:
        return parse_headers(raw).get(name, [""])[0][:200]
    except Exception:  # only for the note about a message that already failed
        return ""


class _Matcher:
    """Turns one message's headers into touches (see `touches`), noting what it skips."""

    def __init__(self, me: frozenset[str], leads: Mapping[str, str], tz: tzinfo) -> None:
        self.me = me
        self.leads = leads
        self.lead_addresses = frozenset(leads)
        self.anyone = self.lead_addresses | me
        self.tz = tz
        self.skipped: list[Skipped] = []
        self._ranks: dict[tuple[str, str], int] = {}

    def read(self, uid: int, raw: bytes, internal: bytes, folder: str, seen: set[str]
             ) -> list[FoundTouch]:
        """`touches`, contained: whatever goes wrong reading one message (the headers are
        the sender's) skips that message, noted, and the scan goes on."""
        try:
            return self.touches(raw, internal, folder, seen, uid)
        except Exception as exc:  # hostile input: it costs one message, never the scan
            arrived = None
            with contextlib.suppress(Exception):
                arrived = _usable(_internaldate(internal))
            self.skipped.append(Skipped(folder, uid, arrived, _glimpse(raw, "from"),
                                        _glimpse(raw, "subject"),
                                        f"cannot be read ({type(exc).__name__}: {exc})"[:200]))
            return []

    def touches(self, raw: bytes, internal: bytes, folder: str, seen: set[str], uid: int = 0
                ) -> list[FoundTouch]:
        """From one of `me` to a lead in To/Cc: `me` for each such lead; from a lead: `them`.
        Nothing for robots, lists, more than MAX_RECIPIENTS, or a key already in `seen`
        (which this adds to). Most mail is from neither: that is ruled out from the From
        line alone, before any full parse. A message between the user and a lead that is
        not a touch, or whose To/Cc holds something that is not an address, is noted in
        `skipped`."""
        found = _FROM_FIELD.search(raw)
        if found is None:
            return []
        if self.anyone.isdisjoint(_tokens(found.group(1).decode("utf-8", "replace"))):
            return []
        fields = parse_headers(raw)
        arrived = _usable(_internaldate(internal))
        senders, bad = _read_all(fields.get("from", []))
        if bad or not senders:
            what = f": {bad[0][:80]!r}" if bad else ""
            return self._skip(fields, folder, uid, arrived, "", f"From is not an address{what}")
        sender = senders[0]
        mine = sender in self.me
        if not mine and sender not in self.leads:
            return []
        to_cc = fields.get("to", []) + fields.get("cc", [])
        if mine and self.lead_addresses.isdisjoint(_tokens(" ".join(to_cc))):
            return []
        recipients, bad = _read_all(to_cc)
        pairs: list[tuple[str, Direction]]
        if mine:
            pairs = [(lead, "me") for lead in dict.fromkeys(
                self.leads[a] for a in recipients if a in self.leads)]
            if not pairs:  # a lead's address is there, but not as an address
                return self._skip(fields, folder, uid, _pick(header_date(fields), arrived),
                                  sender, f"To/Cc: {bad[0][:80]!r} is not an address") \
                    if bad else []
        else:
            pairs = [(self.leads[sender], "them")]
        sent = header_date(fields)
        key = self._key(fields, sender, arrived, folder, dated=sent is not None)
        if key in seen:
            return []
        seen.add(key)  # whatever follows, this message was looked at (a copy in All Mail too)
        why = robot_reason(fields)
        count = len(set(recipients))
        if why is None and count > MAX_RECIPIENTS:
            why = f"to more than {MAX_RECIPIENTS} recipients ({count})"
        when = _pick(sent, arrived)
        if why is None and when is None:
            why = "no usable date (no readable Date header and no date from the server)"
        if why is not None:
            return self._skip(fields, folder, uid, when or arrived, sender, why)
        assert when is not None
        subject = decode_subject(fields)
        local = when.astimezone(self.tz)
        touches = [FoundTouch(local, lead, by, key, subject, folder) for lead, by in pairs]
        if bad:
            self._skip(fields, folder, uid, when, sender,
                       f"To/Cc: {bad[0][:80]!r} is not an address, left out (the message "
                       "still counts)", counted=True)
        return touches

    def _key(self, fields: Mapping[str, list[str]], sender: str, arrived: datetime | None,
             folder: str, *, dated: bool) -> str:
        rank = 0
        if not dated and not any(v.strip() for v in fields.get("message-id", [])):
            basis = (folder, message_key(fields, sender, arrived, -1, dated=False))
            rank = self._ranks.get(basis, 0)
            self._ranks[basis] = rank + 1
        return message_key(fields, sender, arrived, rank, dated=dated)

    def _skip(self, fields: Mapping[str, list[str]], folder: str, uid: int,
              when: datetime | None, sender: str, why: str, *, counted: bool = False
              ) -> list[FoundTouch]:
        sender = sender or (fields.get("from", [""])[0][:200])
        self.skipped.append(Skipped(folder, uid, when, sender, decode_subject(fields)[:200], why,
                                    counted))
        return []


__all__ = ["MailError", "MailLoginRefused", "MailSource", "Mailbox", "TokenSource", "connect",
           "read_addresses", "scan_mailbox"]
