"""A real Dovecot (Debian's `dovecot-imapd`, 2.3) on 127.0.0.1 for the mail tests and bench.

Why this shape: Dovecot runs from a config of its own in a short temp folder (socket paths
must stay under ~100 characters), without TLS, with passwd-file users and maildir storage.
It refuses to touch mail as uid 0 and CI runs as root, so the mail belongs to a system user
(`followsync-test`, created when missing; `nobody` if that fails). Every test gets a fresh
user, hence an empty mailbox (a passwd-file of its own).

Mail goes in with IMAP APPEND (which sets INTERNALDATE), as a user's client would put it.

    server = start_dovecot()
    account = server.new_account()
    account.create_folder("Sent")            # \\Sent (see MAILBOXES)
    account.append("INBOX", message(frm="ann@x.org", to="me@here.org"), when=datetime(...))
    server.stop()
"""

from __future__ import annotations

import contextlib
import imaplib
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from followsync.sources.mail import decode_folder, encode_folder

HOST = "127.0.0.1"
PASSWORD = "dove-s3cret"
TEST_USER = "followsync-test"

# Folders that get a special-use flag when they exist (Dovecot's `mailbox` settings; a
# folder not listed here has none, so the name fall-backs can be tested with "Sent Items").
MAILBOXES: Mapping[str, str] = {"Sent": r"\Sent", "All Mail": r"\All", "Junk": r"\Junk"}


class DovecotMissing(RuntimeError):
    """No `dovecot` binary: the tests that need one are skipped with this reason."""


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.path.exists(p)), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _mail_owner() -> tuple[int, int, str]:
    """(uid, gid, name) that owns the mail: never root, which Dovecot refuses."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return entry.pw_uid, entry.pw_gid, entry.pw_name
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                               "/usr/sbin/nologin", TEST_USER], capture_output=True)
        try:
            entry = pwd.getpwnam(TEST_USER) if made.returncode == 0 else pwd.getpwnam("nobody")
        except KeyError:
            entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid, entry.pw_name


def _config(base: Path, port: int, uid: int, gid: int, owner: str, tls_port: int = 0,
            extra: str = "", oauth2: bool = False) -> str:
    root = os.geteuid() == 0
    internal = "dovecot" if root and _has_user("dovecot") else owner
    login = "dovenull" if root and _has_user("dovenull") else owner
    mailboxes = "\n".join(f'  mailbox "{name}" {{\n    special_use = {flag}\n  }}'
                          for name, flag in MAILBOXES.items())
    return f"""\
# followsync tests: an unprivileged Dovecot 2.3 of its own
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
info_log_path = {base}/dovecot.log
instance_name = followsync-test-{port}
protocols = imap
listen = {HOST}
{_ssl(base, tls_port)}
disable_plaintext_auth = no
{_auth(base, oauth2)}
# a refused login answers at once (tests of refusals would wait 2 s, then up to 15 s each)
auth_failure_delay = 0
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_uid = {uid}
mail_gid = {gid}
userdb {{
  driver = passwd-file
  args = username_format=%u {base}/users/%u
  default_fields = uid={uid} gid={gid} home={base}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
{mailboxes}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {HOST}
    port = {port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
{extra}
"""


def _auth(base: Path, oauth2: bool) -> str:
    """Passwords (a passwd-file), or with `oauth2` only XOAUTH2 and OAUTHBEARER checked by
    the introspection endpoint in `oauth2.conf.ext` (no password passdb at all)."""
    if not oauth2:
        return f"""auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/users/%u
}}"""
    return f"""auth_mechanisms = xoauth2 oauthbearer
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {base}/oauth2.conf.ext
}}"""


def _oauth2_conf(introspection_url: str, scope: str) -> str:
    """Dovecot's oauth2 passdb asking `introspection_url` (RFC 7662: POST token=...) whether
    a bearer token is active, and for whom (`username`)."""
    return f"""introspection_url = {introspection_url}
introspection_mode = post
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
{f"scope = {scope}" if scope else ""}
"""


def _ssl(base: Path, tls_port: int) -> str:
    if not tls_port:
        return "ssl = no"
    return f"ssl = yes\nssl_cert = <{base}/cert.pem\nssl_key = <{base}/key.pem"


def _self_signed(base: Path) -> None:
    """A self-signed certificate for 127.0.0.1 and localhost (openssl CLI)."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=followsync test", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(base / "key.pem"), "-out", str(base / "cert.pem")],
        check=True, capture_output=True)
    (base / "key.pem").chmod(0o600)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class Dovecot:
    """A running Dovecot; `new_account()` gives a fresh, empty mailbox."""

    base: Path
    port: int
    process: subprocess.Popen[bytes]
    uid: int
    gid: int
    host: str = HOST
    tls_port: int = 0  # implicit TLS; the plain port then offers STARTTLS

    @property
    def cafile(self) -> str:
        """The self-signed certificate to trust (TLS servers only)."""
        return str(self.base / "cert.pem")
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def new_account(self, password: str = PASSWORD, *, user: str | None = None,
                    token: Callable[[], str] | None = None) -> Account:
        """A fresh mailbox. On an oauth2 server: `user` (the account the tokens are for) and
        `token` (gives a bearer token the helpers below log in with)."""
        with self._lock:
            user = user or f"u{next(self._names)}-{os.getpid()}"
            home = self.base / "home" / user
            home.mkdir(parents=True)
            os.chown(home, self.uid, self.gid)
            # one passwd-file per user: Dovecot reads a new file at once, while a changed
            # file may be re-read only a second later
            entry = self.base / "users" / user
            entry.write_text(f"{user}:{{PLAIN}}{password}::::::\n", encoding="utf-8")
            entry.chmod(0o644)
        return Account(self, user, password, token)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.base / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def refused_logins(self, username: str) -> int:
        """How many logins of `username` this server refused (its log: one line per
        connection, with its number of attempts)."""
        try:
            text = (self.base / "dovecot.log").read_text(errors="replace")
        except OSError:
            return 0
        return sum(int(m.group(1)) for m in re.finditer(
            rf"auth failed, (\d+) attempts? in .*user=<{re.escape(username)}>", text))

    def kick(self, username: str) -> None:
        """Disconnect `username`'s sessions: each is sent `* BYE` (doveadm kick)."""
        subprocess.run(["doveadm", "-c", str(self.base / "dovecot.conf"), "kick", username],
                       check=True, capture_output=True)

    def logins(self, username: str) -> int:
        """How many logins of `username` succeeded (its log)."""
        try:
            text = (self.base / "dovecot.log").read_text(errors="replace")
        except OSError:
            return 0
        return len(re.findall(rf"Login: user=<{re.escape(username)}>", text))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.base, ignore_errors=True)


def start_dovecot(timeout: float = 20.0, *, tls: bool = False, extra: str = "",
                  oauth2: str | None = None, oauth2_scope: str = "") -> Dovecot:
    """Start Dovecot in the foreground (`dovecot -F -c CONF`) on a free port; ready when it
    greets. With `tls`, also implicit TLS on `tls_port` and STARTTLS on the plain port, with a
    self-signed certificate (`cafile`). `extra`: more settings (e.g. `imap_capability = ...`
    for a server without IDLE). `oauth2`: an introspection URL; logins are then XOAUTH2 or
    OAUTHBEARER only, with tokens that endpoint says are active (and hold `oauth2_scope`),
    for accounts made with `new_account(user=..., token=...)`. Raises DovecotMissing
    without a `dovecot` binary (or, for tls, without `openssl`)."""
    binary = dovecot_binary()
    if binary is None:
        raise DovecotMissing("dovecot is not installed (Debian: apt-get install dovecot-imapd; "
                             ".ci/run installs it)")
    uid, gid, owner = _mail_owner()
    base = Path(tempfile.mkdtemp(prefix="fsdv", dir="/tmp"))
    base.chmod(0o755)
    (base / "home").mkdir()
    (base / "home").chmod(0o755)
    (base / "users").mkdir()
    (base / "users").chmod(0o755)
    port = free_port()
    tls_port = 0
    if tls:
        if shutil.which("openssl") is None:
            shutil.rmtree(base, ignore_errors=True)
            raise DovecotMissing("openssl is not installed: no certificate for the TLS tests")
        _self_signed(base)
        tls_port = free_port()
    conf = base / "dovecot.conf"
    conf.write_text(_config(base, port, uid, gid, owner, tls_port, extra, oauth2 is not None))
    if oauth2 is not None:
        (base / "oauth2.conf.ext").write_text(_oauth2_conf(oauth2, oauth2_scope))
    process = subprocess.Popen([binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=open(base / "stderr.log", "wb"))  # noqa: SIM115
    server = Dovecot(base, port, process, uid, gid, tls_port=tls_port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = (base / "stderr.log").read_text(errors="replace")
            log = server.log_tail()
            shutil.rmtree(base, ignore_errors=True)
            raise RuntimeError(f"dovecot exited with {process.returncode}:\n{err}\n{log}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                if sock.recv(200).startswith(b"* OK"):
                    return server
        except OSError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"dovecot did not answer on {HOST}:{port} within {timeout} s")


def message(*, frm: str, to: str | Sequence[str] = (), cc: str | Sequence[str] = (),
            subject: str = "hello", date: datetime | str | None = None,
            message_id: str | None = None, extra: Mapping[str, str] | None = None,
            body: str = "A body that the scanner must never read.\r\n") -> bytes:
    """An RFC 5322 message; `date=None` leaves the Date header out, as does message_id=""."""
    lines = [f"From: {frm}"]
    for name, value in (("To", to), ("Cc", cc)):
        values = [value] if isinstance(value, str) else list(value)
        if values:
            lines.append(f"{name}: {', '.join(values)}")
    lines.append(f"Subject: {subject}")
    if date is not None:
        lines.append(f"Date: {date if isinstance(date, str) else format_datetime(date)}")
    if message_id:
        lines.append(f"Message-ID: {message_id}")
    lines.extend(f"{k}: {v}" for k, v in (extra or {}).items())
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def _imap_date(when: datetime) -> str:
    return imaplib.Time2Internaldate(when if when.tzinfo else when.replace(tzinfo=UTC))


def _q(name: str) -> str:
    name = encode_folder(name)
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Account:
    """One user's mailbox, with the helpers a test needs to shape it (an admin's view: these
    helpers may SELECT and change things; the scanner under test never does)."""

    server: Dovecot
    username: str
    password: str
    token: Callable[[], str] | None = None  # an oauth2 server's: logs in with XOAUTH2

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @contextlib.contextmanager
    def client(self) -> Iterator[imaplib.IMAP4]:
        imap = imaplib.IMAP4(self.host, self.port, timeout=30)
        try:
            if self.token is not None:
                raw = f"user={self.username}\x01auth=Bearer {self.token()}\x01\x01".encode()
                imap.authenticate("XOAUTH2", lambda _challenge: raw)
            else:
                imap.login(self.username, self.password)
            yield imap
        finally:
            with contextlib.suppress(Exception):
                imap.logout()

    def create_folder(self, name: str) -> None:
        with self.client() as imap:
            _ok(imap.create(_q(name)), "CREATE", name)

    def delete_folder(self, name: str) -> None:
        with self.client() as imap:
            _ok(imap.delete(_q(name)), "DELETE", name)

    def recreate_folder(self, name: str) -> None:
        """Delete and re-create `name` with the same messages (same dates and flags): what a
        server rebuild does; the folder gets a new UIDVALIDITY."""
        before = self.uidvalidity(name)
        if name.upper() == "INBOX":
            # INBOX cannot be deleted: drop its UID list and indexes, as a rebuild would
            maildir = self.server.base / "home" / self.username / "Maildir"
            for path in maildir.iterdir():
                if path.name.startswith(("dovecot-uidlist", "dovecot.index")):
                    path.unlink()
        else:
            saved = self.messages(name)
            self.delete_folder(name)
            self.create_folder(name)
            with self.client() as imap:
                for raw, when, flags in saved:
                    _append(imap, name, raw, when, flags)
        if self.uidvalidity(name) == before:
            raise RuntimeError(f"{name}: UIDVALIDITY did not change on re-creation")

    def append(self, folder: str, raw: bytes, when: datetime | None = None,
               flags: Sequence[str] = ()) -> None:
        with self.client() as imap:
            _append(imap, folder, raw, when, flags)

    def append_many(self, folder: str, messages: Sequence[tuple[bytes, datetime | None]]) -> None:
        with self.client() as imap:
            for raw, when in messages:
                _append(imap, folder, raw, when, ())

    def folders(self) -> list[str]:
        with self.client() as imap:
            typ, data = imap.list()
        _ok((typ, data), "LIST", "")
        names = []
        for line in data:
            if isinstance(line, bytes):
                match = re.match(rb'\([^)]*\) (?:"[^"]*"|NIL) (.*)$', line)
                if match:
                    names.append(decode_folder(match.group(1).decode().strip('"')))
        return names

    def uidvalidity(self, folder: str) -> int:
        with self.client() as imap:
            typ, data = imap.status(_q(folder), "(UIDVALIDITY)")
        _ok((typ, data), "STATUS", folder)
        found = re.search(rb"UIDVALIDITY (\d+)", data[0] if isinstance(data[0], bytes) else b"")
        assert found is not None, data
        return int(found.group(1))

    def flags(self, folder: str) -> dict[int, frozenset[str]]:
        """Every message's flags by UID, read without changing them (EXAMINE, FLAGS only)."""
        with self.client() as imap:
            _ok(imap.select(_q(folder), readonly=True), "EXAMINE", folder)
            _typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
        result: dict[int, frozenset[str]] = {}
        for item in data:
            if not isinstance(item, bytes):
                continue
            uid = re.search(rb"UID (\d+)", item)
            flags = re.search(rb"FLAGS \(([^)]*)\)", item)
            if uid and flags:
                result[int(uid.group(1))] = frozenset(flags.group(1).decode().split())
        return result

    def all_flags(self) -> dict[str, dict[int, frozenset[str]]]:
        return {name: self.flags(name) for name in self.folders()}

    def messages(self, folder: str) -> list[tuple[bytes, datetime, tuple[str, ...]]]:
        """(raw, INTERNALDATE, flags) of every message, in UID order (BODY.PEEK: no \\Seen)."""
        out = []
        with self.client() as imap:
            _ok(imap.select(_q(folder), readonly=True), "EXAMINE", folder)
            _typ, data = imap.uid("FETCH", "1:*", "(INTERNALDATE FLAGS BODY.PEEK[])")
        for item in data:
            if isinstance(item, tuple):
                meta = item[0]
                parsed = imaplib.Internaldate2tuple(meta)
                assert parsed is not None, meta
                when = datetime.fromtimestamp(time.mktime(parsed), UTC)
                found = re.search(rb"FLAGS \(([^)]*)\)", meta)
                flags = tuple(found.group(1).decode().split()) if found else ()
                out.append((item[1], when, tuple(f for f in flags if f != r"\Recent")))
        return out


def _append(imap: imaplib.IMAP4, folder: str, raw: bytes, when: datetime | None,
            flags: Sequence[str]) -> None:
    date = _imap_date(when) if when is not None else None
    flag_list = "(" + " ".join(flags) + ")" if flags else None
    _ok(imap.append(_q(folder), flag_list, date, raw), "APPEND", folder)


def _ok(result: tuple[str, Sequence[object]], what: str, folder: str) -> None:
    typ, data = result
    if typ != "OK":
        raise RuntimeError(f"{what} {folder!r} failed: {typ} {data!r}")


# ---------------------------------------------------------------- counting TCP proxy
class CountingProxy:
    """A TCP relay on 127.0.0.1 that records every command line the client sends (tag
    stripped), so a test can count what a scan asked the server. Literals are not commands:
    the scanner under test sends none."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.commands: list[str] = []
        self._listener = socket.create_server((HOST, 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        # a misbehaving middle box: "cut" drops each connection just after IDLE started
        # (the server's `+` passed), "refuse" answers IDLE with NO itself
        self.on_idle: str | None = None

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def verbs(self) -> list[str]:
        return [c.split(" ", 1)[0].upper() if not c.upper().startswith("UID ")
                else " ".join(c.split(" ", 2)[:2]).upper() for c in self.commands]

    def reset(self) -> None:
        self.commands.clear()

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self._open.extend((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def cut(self) -> None:
        """Drop every open connection (as a server restart or a NAT timeout would); new
        ones are still relayed."""
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._open.clear()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        pending = b""
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                idle = b""
                if record:
                    pending += chunk
                    *lines, pending = pending.split(b"\r\n")
                    for line in lines:
                        parts = line.decode(errors="replace").split(" ", 1)
                        self.commands.append(parts[1] if len(parts) == 2 else parts[0])
                        if len(parts) == 2 and parts[1].upper() == "IDLE":
                            idle = line.split(b" ", 1)[0]
                if idle and self.on_idle == "refuse":
                    src.sendall(idle + b" NO IDLE is not allowed here\r\n")
                    continue
                dst.sendall(chunk)
                if idle and self.on_idle == "cut":
                    time.sleep(0.1)  # the server's `+` reaches the client first
                    break
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(2)


def running_dovecot(tls: bool = False, extra: str = "", oauth2: str | None = None,
                    oauth2_scope: str = "") -> Iterator[Dovecot]:
    """A fixture's body: a Dovecot for the tests that use it, stopped after them (the tests
    are skipped, saying why, where Dovecot cannot run)."""
    import pytest

    try:
        server = start_dovecot(tls=tls, extra=extra, oauth2=oauth2, oauth2_scope=oauth2_scope)
    except DovecotMissing as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()
