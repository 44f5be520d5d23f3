"""Review findings on the microsoft target (each test fails on the code it was written
against)."""

from __future__ import annotations

from pathlib import Path

from tests.msemu import MsEmu
from tests.test_backend_contract import item, new_uid
from tests.test_microsoft import (  # noqa: F401  (fixtures)
    LEADS,
    backend,
    create,
    emu,
    ours,
    project,
    run,
    settings_for,
    signed_in,
    sync,
)


def test_an_event_deleted_in_outlook_can_be_created_again(emu: MsEmu, tmp_path: Path) -> None:
    """The listing says the item is gone; the contract says create conflicts only when the
    UID exists. The lead file changed that follow-up: it must come back (SPEC §3)."""
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    known, cursor = sync(emu, settings, {}, None, create(uid))
    known, cursor = sync(emu, settings, known, cursor)
    emu.delete_event(ours(emu)[uid]["id"])
    b = backend(emu, settings)
    listing = b.listing(known, cursor)
    assert uid not in listing.items
    b.create(uid, item(uid))
    b.close()
    assert set(ours(emu)) == {uid}


def test_a_follow_up_deleted_in_outlook_comes_back_when_the_lead_file_changes_it(
        emu: MsEmu, signed_in: MsEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu)
    assert run(config, "sync")[0] == 0
    run(config, "sync")
    dana = next(e for e in ours(emu).values() if e["subject"].startswith("Dana"))
    emu.delete_event(dana["id"])
    (tmp_path / "leads.yaml").write_text(LEADS.replace("2030-11-01", "2030-11-15"))
    for _ in range(3):
        code, out = run(config, "sync")
        assert code == 0, out
    assert any(e["subject"].startswith("Dana") for e in ours(emu).values()), out
