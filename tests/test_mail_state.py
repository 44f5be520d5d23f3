"""Mail touches and bookmarks in the state: one touch per message and lead whichever mailbox
saw it, bookmarks replaced per mailbox, and a schema-3 state gaining the mail tables."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from followsync.sources import Bookmark, FoundTouch
from followsync.state import SCHEMA_VERSION, State
from tests.oldstate import LEADS_3, old_state

WHEN = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


def touch(key: str, lead: str = "dana", by: str = "them", folder: str = "INBOX") -> FoundTouch:
    return FoundTouch(WHEN, lead, by, key, f"about {key}", folder)  # type: ignore[arg-type]


def test_a_message_seen_by_two_mailboxes_is_one_touch(tmp_path: Path) -> None:
    state = State(tmp_path)
    try:
        with state.transaction():
            assert state.save_mail_scan("a|key", "a", "d1", {"INBOX": Bookmark(7, 3)},
                                        [touch("<m1>"), touch("<m1>", lead="ann")]) == 2
        generation = state.mail_generation()
        with state.transaction():
            assert state.save_mail_scan("b|key", "b", "d2", {"All": Bookmark(9, 5)},
                                        [touch("<m1>", folder="All")]) == 0
        assert state.mail_generation() == generation  # nothing new: a no-op sync stays one
        assert [(t.key, t.lead) for t in state.mail_touches()] == [("<m1>", "ann"),
                                                                  ("<m1>", "dana")]
        assert state.mail_keys() == {"<m1>"}
        assert state.mail_marks("a|key") == {"INBOX": Bookmark(7, 3)}
        assert state.mail_looked_for("b|key") == "d2"
        with state.transaction():  # a new scan's bookmarks replace the mailbox's own
            state.save_mail_scan("a|key", "a", "d1", {"Sent": Bookmark(1, 1)}, [])
        assert state.mail_marks("a|key") == {"Sent": Bookmark(1, 1)}
        assert state.mail_marks("b|key") == {"All": Bookmark(9, 5)}
        with state.transaction():  # a rescan from scratch replaces the mailbox's touches
            state.save_mail_scan("a|key", "a", "d3", {}, [touch("<m2>")], replace_all=True)
        assert {(t.key, t.lead) for t in state.mail_touches()} == {("<m2>", "dana")}
        assert state.mail_generation() != generation
        assert state.mail_touches()[0].when == WHEN
    finally:
        state.close()


def test_a_schema_3_state_gains_the_mail_tables(tmp_path: Path) -> None:
    old_state(tmp_path, 3, LEADS_3,
              "INSERT INTO leads VALUES ('dana', '2026-11-01', 'waiting', NULL);")
    state = State(tmp_path)
    try:
        assert set(state.memories()) == {"dana"}
        assert state.mail_touches() == []
        with state.transaction():
            state.save_mail_scan("a", "a", "d", {"INBOX": Bookmark(1, 2)}, [touch("<m>")])
        assert len(state.mail_touches()) == 1
        version = state.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
        assert int(version) == SCHEMA_VERSION  # (the latest, whichever it is)
    finally:
        state.close()
