"""What followsync remembers between runs, in SQLite under `state_dir`.

Per target and UID: where the item is (href), its ETag and the input hash last written, so a
sync knows what it owns and what changed without re-reading everything; per lead: when it was
first seen and the status seen last (for status triggers). One lock per state dir (see
`lock_state`) keeps two processes from syncing at once. Every transaction is begun and ended
here: the sync says where one starts (`transaction`) and where it may be made durable early
(`checkpoint`), never BEGIN or COMMIT itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import stat
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from followsync.errors import FollowsyncError
from followsync.locks import Lock
from followsync.model import Remote, Row

if TYPE_CHECKING:  # a no-op sync needs neither (see sync.fastpath)
    from followsync.leads import Touch
    from followsync.rules import Memory
    from followsync.sources import Bookmark, FoundTouch

SCHEMA_VERSION = 5
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    target TEXT NOT NULL, uid TEXT NOT NULL, href TEXT NOT NULL, etag TEXT NOT NULL,
    hash TEXT NOT NULL, sequence INTEGER NOT NULL DEFAULT 0, gone INTEGER NOT NULL DEFAULT 0,
    lead TEXT NOT NULL, rule TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '', edited INTEGER NOT NULL DEFAULT 0,
    moved TEXT NOT NULL DEFAULT '',
    slot TEXT NOT NULL DEFAULT '', shape TEXT NOT NULL DEFAULT '',
    kept TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (target, uid)
);
-- what a sync of a few leads asks (sync.delta, sync.fastpath): their rows, and counts
CREATE INDEX IF NOT EXISTS items_by_lead ON items (target, lead);
CREATE INDEX IF NOT EXISTS items_by_gone ON items (target, gone);
CREATE TABLE IF NOT EXISTS touches (
    target TEXT NOT NULL, uid TEXT NOT NULL, lead TEXT NOT NULL, day TEXT NOT NULL,
    note TEXT NOT NULL, rule TEXT NOT NULL DEFAULT '', PRIMARY KEY (target, uid, day)
);
CREATE TABLE IF NOT EXISTS cursors (target TEXT PRIMARY KEY, cursor TEXT);
-- status_changed: when a sync first saw the status (ISO date-time, local wall time, to the
-- minute); a plain date (schema < 5) is that day as a whole (rules.status_key)
CREATE TABLE IF NOT EXISTS leads (
    lead TEXT PRIMARY KEY, first_seen TEXT NOT NULL, status TEXT, status_changed TEXT
);
CREATE TABLE IF NOT EXISTS mail_touches (
    key TEXT NOT NULL, lead TEXT NOT NULL, at TEXT NOT NULL, by TEXT NOT NULL,
    subject TEXT NOT NULL, mailbox TEXT NOT NULL, folder TEXT NOT NULL,
    PRIMARY KEY (key, lead)
);
CREATE TABLE IF NOT EXISTS mail_marks (
    mailbox TEXT NOT NULL, folder TEXT NOT NULL, uidvalidity INTEGER NOT NULL,
    last_uid INTEGER NOT NULL, PRIMARY KEY (mailbox, folder)
);
"""


# a day's slots by a range of text (slots.Slot.text begins with the day)
_SLOT_INDEX = "CREATE INDEX IF NOT EXISTS items_by_slot ON items (target, slot)"


UPGRADED = "upgraded-from-before-5"  # (meta) see State._migrate and sync.apply._upgraded


def _older(path: Path) -> bool:
    """Whether the state at `path` is of an older schema (it needs an upgrade). Any doubt
    says no: the ordinary opening then reports what is wrong."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            found = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        finally:
            db.close()
        return found is not None and int(found[0]) < SCHEMA_VERSION
    except (sqlite3.DatabaseError, ValueError):
        return False


class State:
    """An open state database. Writes are grouped in transactions by the caller."""

    def __init__(self, folder: Path, readonly: bool = False) -> None:
        self.folder = folder
        path = folder / "state.sqlite"
        if readonly and not path.exists():
            self.db = sqlite3.connect(":memory:")
        elif readonly and _older(path):  # `plan` writes nothing: the upgrade is made in memory
            self.db = sqlite3.connect(":memory:", isolation_level=None)
            try:
                disk = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
                try:
                    disk.backup(self.db)
                finally:
                    disk.close()
            except sqlite3.DatabaseError as exc:
                raise damaged(path, exc) from None
        else:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():  # (made 0600, as everything kept there: its -wal and -shm
                with contextlib.suppress(OSError):  # files take the database's mode)
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
            self.db = sqlite3.connect(path, timeout=10, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            self.db.executescript(_SCHEMA)
            found = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise damaged(path, exc) from None
        if found is None:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(found[0]) > SCHEMA_VERSION:
            raise FollowsyncError(f"the state in {folder} is from a newer followsync "
                                  f"(schema {found[0]})", "upgrade followsync")
        elif int(found[0]) < SCHEMA_VERSION:
            self._migrate(int(found[0]))
        self.db.execute(_SLOT_INDEX)  # (after `_migrate`: an older state lacks the column)

    def _migrate(self, version: int) -> None:
        """Bring an older state up to date in place (1 → 2: source hash and edited flag;
        2 → 3: where an edited item stands in the calendar; 3 → 4: mail touches and
        bookmarks, whose tables `_SCHEMA` has just created: a first scan fills them; 4 → 5:
        the rule of a to-do ticked off in a calendar (one ticked off before: its item's, if
        the state still has the item), and a status change kept with its time (an older
        date-only one still reads, as that day: rules.status_key); where a spread item
        was laid; an item's shape and the calendar app's bookkeeping kept, filled as items are
        written; the items kept as edited are read again once: sync.apply.unfrozen)."""
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(items)")}
        if version < 2:
            if "source" not in columns:
                self.db.execute("ALTER TABLE items ADD COLUMN source TEXT NOT NULL DEFAULT ''")
            if "edited" not in columns:
                self.db.execute("ALTER TABLE items ADD COLUMN edited INTEGER NOT NULL DEFAULT 0")
        if version < 3 and "moved" not in columns:
            self.db.execute("ALTER TABLE items ADD COLUMN moved TEXT NOT NULL DEFAULT ''")
        touch_columns = {r[1] for r in self.db.execute("PRAGMA table_info(touches)")}
        if version < 5 and "rule" not in touch_columns:
            self.db.execute("ALTER TABLE touches ADD COLUMN rule TEXT NOT NULL DEFAULT ''")
        if version < 5:  # a to-do ticked off before: the rule of its item, if still known
            self.db.execute("UPDATE touches SET rule=COALESCE((SELECT i.rule FROM items i "
                            "WHERE i.target=touches.target AND i.uid=touches.uid), '') "
                            "WHERE rule=''")
        if version < 5:
            for column in ("slot", "shape", "kept"):
                if column not in columns:
                    self.db.execute(f"ALTER TABLE items ADD COLUMN {column} TEXT NOT NULL "
                                    "DEFAULT ''")
            # Items kept as edited may only hold a calendar app's bookkeeping, which older
            # versions took for an edit: the next sync reads them again (no ETag, no cursor)
            # and lets the overdue roll go on for those still where followsync put them.
            self.db.execute("UPDATE items SET etag='' WHERE edited=1 AND gone=0")
            self.db.execute("DELETE FROM cursors")
            # and the items moved or deleted by hand take this version's source hashes once
            # (sync.apply._upgraded): its texts changed, the lead file did not
            self.set_meta(UPGRADED, "5")
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    @contextlib.contextmanager
    def transaction(self, keep_on_error: bool = False) -> Iterator[None]:
        """All writes inside or none. `keep_on_error` commits what was written even when the
        block fails: for a backend whose every write reaches the server at once, the state
        must remember what is there (see Backend.immediate)."""
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("COMMIT" if keep_on_error else "ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def checkpoint(self) -> None:
        """Inside a transaction: make what was written so far durable, and go on."""
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")

    # items -------------------------------------------------------------------
    def rows(self, target: str, leads: Collection[str] | None = None) -> dict[str, Row]:
        """The target's rows; with `leads`, only those of these leads (sync.delta)."""
        columns = ("uid, href, etag, hash, sequence, lead, rule, gone, source, edited, moved, "
                   "slot, shape, kept")
        if leads is None:
            cur = self.db.execute(f"SELECT {columns} FROM items WHERE target=?", (target,))
        else:
            cur = self.db.execute(f"SELECT {columns} FROM items WHERE target=? AND lead IN "
                                  "(SELECT value FROM json_each(?))",
                                  (target, json.dumps(list(leads))))
        return {r[0]: Row(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], bool(r[9]),
                          r[10], r[11], r[12], r[13]) for r in cur}

    def put(self, target: str, row: Row) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO items (target, uid, href, etag, hash, sequence, gone, lead,"
            " rule, source, edited, moved, slot, shape, kept) VALUES "
            "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (target, row.uid, row.href, row.etag, row.hash, row.sequence, int(row.gone),
             row.lead, row.rule, row.source, int(row.edited), row.moved, row.slot, row.shape,
             row.kept))

    def slots_besides(self, target: str, leads: Collection[str], days: Collection[date]
                      ) -> list[str]:
        """The slots other leads' items hold on these days (sync.delta: what the leads it
        plans must lay their items around); items deleted or moved by hand hold none."""
        found: list[str] = []
        for day in sorted(set(days)):
            found += [r[0] for r in self.db.execute(
                "SELECT slot FROM items WHERE target=? AND slot>=? AND slot<? AND gone=0 AND "
                "edited=0 AND lead NOT IN (SELECT value FROM json_each(?))",
                (target, day.isoformat(), f"{day.isoformat()}U", json.dumps(list(leads))))]
        return found

    def set_slots(self, target: str, slots: Mapping[str, str]) -> None:
        """Where items that need no writing are laid (the state of an older followsync)."""
        self.db.executemany("UPDATE items SET slot=? WHERE target=? AND uid=?",
                            [(slot, target, uid) for uid, slot in slots.items()])

    def standing(self, target: str) -> tuple[dict[str, Remote], int]:
        """`model.standing(self.rows(target))` and how many rows there are, without making
        the rows (the no-op sync of 50,000 items)."""
        found = {uid: Remote(href, etag) for uid, href, etag in self.db.execute(
            "SELECT uid, href, etag FROM items WHERE target=? AND gone=0", (target,))}
        total = self.db.execute("SELECT COUNT(*) FROM items WHERE target=?", (target,))
        return found, int(total.fetchone()[0])

    def leads_of(self, target: str, uids: Collection[str]) -> dict[str, str]:
        """uid → lead of those of these items the state has a row for (sync: whose items
        changed in a calendar)."""
        if not uids:
            return {}
        return dict(self.db.execute(
            "SELECT uid, lead FROM items WHERE target=? AND uid IN "
            "(SELECT value FROM json_each(?))", (target, json.dumps(list(uids)))))

    def counts(self, target: str) -> tuple[int, int]:
        """How many rows the target has: (standing, gone), from an index (not 60,000 rows)."""
        found = dict(self.db.execute(
            "SELECT gone, COUNT(*) FROM items WHERE target=? GROUP BY gone", (target,)))
        return found.get(0, 0), found.get(1, 0)

    def counts_besides(self, target: str, leads: Collection[str]) -> tuple[int, int]:
        """How many rows of other leads than these the target has: (standing, gone). All
        the rows less these leads' (two index lookups, not a scan of every row)."""
        standing, gone = self.counts(target)
        found = dict(self.db.execute(
            "SELECT gone, COUNT(*) FROM items WHERE target=? AND lead IN "
            "(SELECT value FROM json_each(?)) GROUP BY gone", (target, json.dumps(list(leads)))))
        return standing - found.get(0, 0), gone - found.get(1, 0)

    def moves(self) -> dict[tuple[str, str], str]:
        """(lead, rule) → where the user moved its item in a calendar (`agenda` shows the
        date the user sees)."""
        return self._per_follow_up("moved", "edited=1 AND gone=0 AND moved!=''")

    def laid(self) -> dict[tuple[str, str], str]:
        """(lead, rule) → the slot its item was laid in (slots.Slot.text; `agenda` shows the
        time the user sees)."""
        return self._per_follow_up("slot", "slot!='' AND edited=0 AND gone=0")

    def _per_follow_up(self, column: str, where: str) -> dict[tuple[str, str], str]:
        """(lead, rule) → `column` of its item where `where` holds; the first target's, when
        several calendars hold it."""
        found: dict[tuple[str, str], str] = {}
        for lead, rule, value in self.db.execute(
                f"SELECT lead, rule, {column} FROM items WHERE {where} ORDER BY target, uid"):
            found.setdefault((lead, rule), value)
        return found

    def forget(self, target: str, uid: str) -> None:
        self.db.execute("DELETE FROM items WHERE target=? AND uid=?", (target, uid))

    def forget_all(self, target: str) -> None:
        """Drop every item row of a target (its calendar was deleted on the server)."""
        self.db.execute("DELETE FROM items WHERE target=?", (target,))

    def clean_digest(self, target: str) -> str | None:
        """The inputs digest of the target's last clean sync (see sync.fastpath)."""
        found = self.db.execute("SELECT value FROM meta WHERE key=?",
                                (f"clean:{target}",)).fetchone()
        return str(found[0]) if found else None

    def set_clean_digest(self, target: str, digest: str | None) -> None:
        if digest is None:
            self.db.execute("DELETE FROM meta WHERE key=?", (f"clean:{target}",))
        else:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"clean:{target}", digest))

    def note(self, key: str) -> str | None:
        """A value the sync keeps between runs (sync.delta's basis), else None: also when it
        is not whole (a note is a shortcut: one that cannot be read is as none)."""
        found = self.db.execute("SELECT value FROM meta WHERE key=?", (f"note:{key}",)).fetchone()
        if not found or not isinstance(found[0], str):
            return None
        check, _, value = found[0].partition(" ")
        return value if check == _check(value) else None

    def set_note(self, key: str, value: str | None) -> None:
        if value is None:
            self.db.execute("DELETE FROM meta WHERE key=?", (f"note:{key}",))
        else:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            (f"note:{key}", f"{_check(value)} {value}"))

    def cursor(self, target: str) -> str | None:
        found = self.db.execute("SELECT cursor FROM cursors WHERE target=?", (target,)).fetchone()
        return found[0] if found else None

    def set_cursor(self, target: str, cursor: str | None) -> None:
        self.db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?)", (target, cursor))

    # leads -------------------------------------------------------------------
    def memories(self, leads: Collection[str] | None = None) -> dict[str, Memory]:
        """Every lead's memory (or these leads'), with the touches that came from calendars."""
        from followsync.leads import Touch
        from followsync.rules import Memory

        only = "" if leads is None else " WHERE lead IN (SELECT value FROM json_each(?))"
        args = () if leads is None else (json.dumps(list(leads)),)
        found: dict[str, list[Touch]] = {}
        for lead, day, note, rule in self.db.execute(
                f"SELECT lead, day, note, rule FROM touches{only} ORDER BY day, target, uid",
                args):
            touch = Touch(date=date.fromisoformat(day), note=note, rule=rule or None)
            known = found.setdefault(lead, [])
            if touch not in known:  # two to-dos of a lead ticked off one day in one calendar
                known.append(touch)  # are one touch, as in the sync that first saw them
        cur = self.db.execute(f"SELECT lead, first_seen, status, status_changed FROM leads{only}",
                              args)
        return {r[0]: Memory(date.fromisoformat(r[1]), r[2], _changed(r[3]),
                             tuple(found.get(r[0], ()))) for r in cur}

    def add_touch(self, target: str, uid: str, lead: str, touch: Touch) -> bool:
        """Remember a to-do completed in a calendar; False if it was already known."""
        cur = self.db.execute("INSERT OR IGNORE INTO touches VALUES (?,?,?,?,?,?)",
                              (target, uid, lead, touch.date.isoformat(), touch.note,
                               touch.rule or ""))
        return cur.rowcount > 0

    def remember(self, changed: Iterable[tuple[str, Memory]]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO leads VALUES (?,?,?,?)",
            [(lead, m.first_seen.isoformat(), m.status,
              m.status_changed.isoformat() if m.status_changed else None) for lead, m in changed])

    def meta(self, key: str) -> str | None:
        found = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(found[0]) if found else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # mail (README "Mail") ----------------------------------------------------------
    def mail_marks(self, mailbox: str) -> dict[str, Bookmark]:
        """How far each folder of a mailbox was read (by its config key)."""
        from followsync.sources import Bookmark

        return {r[0]: Bookmark(int(r[1]), int(r[2])) for r in self.db.execute(
            "SELECT folder, uidvalidity, last_uid FROM mail_marks WHERE mailbox=?", (mailbox,))}

    def mail_looked_for(self, mailbox: str) -> str | None:
        """The digest of what the mailbox's bookmarks were read for (addresses, since, ...)."""
        found = self.db.execute("SELECT value FROM meta WHERE key=?",
                                (f"mail-for:{mailbox}",)).fetchone()
        return str(found[0]) if found else None

    def mail_keys(self) -> set[str]:
        """The message keys of every stored mail touch (a message seen twice is one touch)."""
        return {r[0] for r in self.db.execute("SELECT DISTINCT key FROM mail_touches")}

    def save_mail_scan(self, mailbox: str, name: str, looked_for: str,
                       marks: Mapping[str, Bookmark], found: Iterable[FoundTouch],
                       replace_all: bool = False) -> int:
        """Keep a scan's outcome: the mailbox's bookmarks become `marks`, and the touches
        found are added (`replace_all`: they replace the mailbox's stored ones, after a
        rescan from scratch). The number of touches that were new."""
        if replace_all:
            self.db.execute("DELETE FROM mail_touches WHERE mailbox=?", (name,))
        before = self.db.total_changes
        self.db.executemany(
            "INSERT OR IGNORE INTO mail_touches VALUES (?,?,?,?,?,?,?)",
            [(t.key, t.lead, t.when.isoformat(), t.by, t.subject, name, t.folder)
             for t in found])
        added = self.db.total_changes - before
        self.db.execute("DELETE FROM mail_marks WHERE mailbox=?", (mailbox,))
        self.db.executemany("INSERT INTO mail_marks VALUES (?,?,?,?)",
                            [(mailbox, folder, m.uidvalidity, m.last_uid)
                             for folder, m in marks.items()])
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        (f"mail-for:{mailbox}", looked_for))
        if added or replace_all:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('mail-generation', ?)",
                            (str(int(self.mail_generation()) + 1),))
        return added

    def mail_generation(self) -> str:
        """Changes whenever the stored mail touches do (a sync's no-op path compares it)."""
        found = self.db.execute("SELECT value FROM meta WHERE key='mail-generation'").fetchone()
        return str(found[0]) if found else "0"

    def mail_touches(self) -> list[FoundTouch]:
        """Every stored mail touch, oldest first."""
        from followsync.sources import FoundTouch

        return [FoundTouch(datetime.fromisoformat(r[0]), r[1], r[2], r[3], r[4], r[5])
                for r in self.db.execute(
                    "SELECT at, lead, by, key, subject, folder FROM mail_touches"
                    " ORDER BY at, lead, key")]

    def close(self) -> None:
        self.db.close()


def _check(value: str) -> str:
    """A note's checksum: a note damaged since it was written is not read."""
    return hashlib.blake2b(value.encode(), digest_size=16).hexdigest()


def _changed(text: str | None) -> date | None:
    """A stored status change: a date-time (`2026-05-06T09:14:00`), or a date (older states)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text) if "T" in text else date.fromisoformat(text)
    except ValueError:  # (not one followsync wrote: as if the change were not known)
        return None


def damaged(path: Path, exc: Exception) -> FollowsyncError:
    """The one message for a state database SQLite cannot read."""
    return FollowsyncError(f"the state database {path} is damaged ({exc})",
                           "move it away; the next sync rebuilds it from the calendars")


@contextlib.contextmanager
def _folder_errors(folder: Path) -> Iterator[None]:
    """A state folder that cannot be used (a file, no permission, a damaged database) is a
    user's problem with a hint, not a crash."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise damaged(folder / "state.sqlite", exc) from None
    except OSError as exc:
        why = "it is a file" if folder.exists() and not folder.is_dir() else exc.strerror
        raise FollowsyncError(f"cannot use the state folder {folder}: {why}",
                              "check `state_dir:` in the config") from None


def private_folder(folder: Path) -> None:
    """Refuse a state folder that is not the user's own, or that others may enter (README,
    "What followsync keeps"): whoever can write there could change what followsync
    remembers, and what it keeps (names, notes) is nobody else's to read. Raised before
    anything is read from it or written to it; a folder not there yet passes (it is made
    0700), and one that cannot be looked at is left to the opening to report."""
    try:
        info = folder.stat()
    except OSError:
        return
    if not stat.S_ISDIR(info.st_mode):
        return
    if info.st_uid != os.geteuid():
        raise FollowsyncError(
            f"cannot use the state folder {folder}: it belongs to another user "
            f"(uid {info.st_uid}), not to you (uid {os.geteuid()})",
            f"use a `state_dir:` of your own, or give it to yourself: "
            f"`chown {os.geteuid()} {folder}` and `chmod 700 {folder}`")
    if info.st_mode & 0o077:
        raise FollowsyncError(
            f"cannot use the state folder {folder}: others may read or enter it "
            f"(mode {stat.S_IMODE(info.st_mode):04o}; it must be 0700)",
            f"run `chmod 700 {folder}`")


def shortcuts_in(folder: Path) -> Path | None:
    """Where shortcuts are kept in the state folder `folder` (README, "What followsync
    keeps"), or None when that folder is refused (`private_folder`): a command that needs
    no state (`validate`, `done`) then reads and writes no shortcut there either."""
    try:
        private_folder(folder)
    except FollowsyncError:
        return None
    return folder / "shortcuts"


def open_state(folder: Path, readonly: bool = False) -> State:
    """The state in `folder` (readonly: for `plan` and `agenda`, nothing is created)."""
    private_folder(folder)
    with _folder_errors(folder):
        return State(folder, readonly=readonly)


def lock_state(folder: Path) -> Lock:
    """Take the state dir's lock (LockBusy when another sync holds it); release it after."""
    private_folder(folder)
    lock = Lock(folder)
    with _folder_errors(folder):
        lock.acquire()
    return lock
