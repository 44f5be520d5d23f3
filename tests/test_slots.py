"""The pure slot assignment behind `spread` (README "What appears in the calendar"): items of
one calendar due at one time are laid end to end, keep their slot while their day stays, and
a new one takes the first free slot in the order asked."""

from __future__ import annotations

from datetime import date, time
from itertools import pairwise
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from followsync.slots import DAY_MINUTES, Ask, Slot, assign
from followsync.state import SCHEMA_VERSION, State
from tests.oldstate import ITEMS_4, old_state

MON, TUE = date(2026, 12, 7), date(2026, 12, 8)
NINE = time(9)


def at(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)


def test_items_of_one_time_are_laid_end_to_end_in_the_order_asked() -> None:
    laid = assign([Ask(f"k{i}", MON, NINE, 15) for i in range(7)])
    assert [laid.slots[f"k{i}"].start for i in range(7)] == [at(540 + 15 * i) for i in range(7)]
    assert not laid.clash


def test_an_item_keeps_its_slot_and_a_new_one_takes_the_first_free() -> None:
    first = assign([Ask(f"k{i}", MON, NINE, 15) for i in range(4)]).slots
    # k1 moved to another day; k9 is new and asked for before the others
    asks = [Ask("k9", MON, NINE, 15)] + [
        Ask(f"k{i}", TUE if i == 1 else MON, NINE, 15, first[f"k{i}"]) for i in range(4)]
    again = assign(asks).slots
    assert {k: again[k] for k in ("k0", "k2", "k3")} == {k: first[k] for k in ("k0", "k2", "k3")}
    assert again["k9"].start == at(555)  # the slot k1 left
    assert again["k1"] == Slot(TUE, NINE, NINE, 15)


def test_a_slot_is_kept_only_for_the_same_day_time_and_length() -> None:
    had = Slot(MON, NINE, at(570), 15)
    assert assign([Ask("k", MON, NINE, 15, had)]).slots["k"] == had
    for ask in (Ask("k", TUE, NINE, 15, had), Ask("k", MON, time(10), 15, had),
                Ask("k", MON, NINE, 30, had)):
        assert assign([ask]).slots["k"].start == ask.base


def test_different_lengths_and_times_never_overlap() -> None:
    laid = assign([Ask("a", MON, NINE, 30), Ask("b", MON, at(555), 15), Ask("c", MON, NINE, 15)])
    assert [laid.slots[k].start for k in "abc"] == [NINE, at(570), at(585)]


def test_a_full_day_leaves_the_rest_at_their_time_without_a_slot() -> None:
    laid = assign([Ask(f"k{i}", MON, time(23), 30) for i in range(3)])
    assert [laid.slots[k].start for k in ("k0", "k1")] == [time(23), time(23, 30)]
    assert "k2" not in laid.slots


def test_a_kept_slot_that_another_items_holds_is_a_clash() -> None:
    had = Slot(MON, NINE, NINE, 15)
    laid = assign([Ask("k", MON, NINE, 15, had)], taken=[had])
    assert laid.clash and laid.slots["k"].start == at(555)
    assert not assign([Ask("k", MON, NINE, 15, had)], taken=[Slot(MON, NINE, at(555), 15)]).clash


def test_the_stored_text_reads_back() -> None:
    slot = Slot(MON, NINE, at(555), 15)
    assert slot.text() == "2026-12-07T09:15|09:00|15"
    assert Slot.parse(slot.text()) == slot
    assert Slot.parse("") is None and Slot.parse("2026-12-07T25:00|09:00|15") is None


_asks = st.lists(st.tuples(st.sampled_from([MON, TUE]), st.sampled_from([540, 545, 600, 1380]),
                           st.sampled_from([0, 15, 30, 45]), st.booleans(), st.integers(0, 6)),
                 max_size=40)


@settings(max_examples=300, deadline=None)
@given(_asks, _asks)
def test_slots_never_overlap_and_kept_ones_stay(first: list[tuple[date, int, int, bool, int]],
                                                 then: list[tuple[date, int, int, bool, int]]
                                                 ) -> None:
    """Two rounds: the second asks again for some of the first's items (some moved to the
    other day) with the slots they got. No two items overlap; each item starts at or after
    its time and ends by midnight; an item whose day, time and length stayed keeps its slot
    unless an earlier-asked kept one holds it."""
    asks = [Ask(f"k{i}", day, at(base), minutes) for i, (day, base, minutes, _, _) in
            enumerate(first)]
    before = assign(asks).slots
    again = [Ask(a.key, TUE if move and a.day == MON else a.day, a.base, a.minutes,
                 before.get(a.key)) for a, (_, _, _, move, _) in zip(asks, first, strict=True)]
    again += [Ask(f"n{i}", day, at(base), minutes) for i, (day, base, minutes, _, _) in
              enumerate(then)]
    order = sorted(range(len(again)), key=lambda i: (i % 7, i))  # any order of asking
    asked = [again[i] for i in order]
    after = assign(asked).slots
    spans: dict[date, list[tuple[int, int, str]]] = {}
    for ask in asked:
        slot = after.get(ask.key)
        if slot is None:
            continue
        begin, end = slot.span()
        assert slot.day == ask.day and begin >= ask.base.hour * 60 + ask.base.minute
        assert end <= DAY_MINUTES and end - begin == ask.minutes
        if begin != end:
            spans.setdefault(slot.day, []).append((begin, end, ask.key))
    for found in spans.values():
        found.sort()
        assert all(a[1] <= b[0] for a, b in pairwise(found)), found
    # every kept slot stays where no item asked before it claimed the same place
    claimed: list[Slot] = []
    for ask in asked:
        kept = ask.keeps()
        if kept is None:
            continue
        b, e = kept.span()
        if all(e <= c.span()[0] or c.span()[1] <= b or b == e for c in claimed if c.day == ask.day):
            assert after[ask.key] == kept
            claimed.append(kept)


def test_a_schema_4_state_gains_the_slot_column(tmp_path: Path) -> None:
    """The state of a followsync from before `spread`: its rows read with no slot (the next
    full sync lays the items and keeps their slots), and slots can be kept and found."""
    old_state(tmp_path, 4, ITEMS_4, "INSERT INTO items (target, uid, href, etag, hash, lead, rule) "
              "VALUES ('t', 'u1', 'h1', 'e1', 'x', 'dana', 'cadence');")
    state = State(tmp_path)
    try:
        assert state.rows("t")["u1"].slot == ""
        slot = Slot(MON, NINE, at(555), 15).text()
        with state.transaction():
            state.set_slots("t", {"u1": slot})
        assert state.rows("t")["u1"].slot == slot
        assert state.slots_besides("t", ["sam"], [MON]) == [slot]
        assert state.slots_besides("t", ["dana"], [MON]) == []
        assert state.slots_besides("t", ["sam"], [TUE]) == []
        version = state.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
        assert int(version) == SCHEMA_VERSION == 5
    finally:
        state.close()
