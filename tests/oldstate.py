"""A state folder as an older followsync left it (its schema version and tables), for the
tests that the upgrade (`State._migrate`) keeps what it held."""

from __future__ import annotations

import sqlite3
from pathlib import Path

# The tables as schema 4 had them (what later versions add columns to).
ITEMS_4 = """CREATE TABLE items (
    target TEXT NOT NULL, uid TEXT NOT NULL, href TEXT NOT NULL, etag TEXT NOT NULL,
    hash TEXT NOT NULL, sequence INTEGER NOT NULL DEFAULT 0,
    gone INTEGER NOT NULL DEFAULT 0, lead TEXT NOT NULL, rule TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '', edited INTEGER NOT NULL DEFAULT 0,
    moved TEXT NOT NULL DEFAULT '', PRIMARY KEY (target, uid));"""
LEADS_3 = """CREATE TABLE leads (
    lead TEXT PRIMARY KEY, first_seen TEXT NOT NULL, status TEXT, status_changed TEXT);"""
TOUCHES_4 = """CREATE TABLE touches (
    target TEXT NOT NULL, uid TEXT NOT NULL, lead TEXT NOT NULL, day TEXT NOT NULL,
    note TEXT NOT NULL, PRIMARY KEY (target, uid, day));"""


def old_state(folder: Path, version: int, *sql: str) -> None:
    """Write `folder`/state.sqlite at schema `version` with these statements (tables and rows)."""
    db = sqlite3.connect(folder / "state.sqlite")
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
                     f"INSERT INTO meta VALUES ('schema', '{version}');\n" + "\n".join(sql))
    db.commit()
    db.close()
