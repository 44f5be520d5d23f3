"""Plans and wants: the leads' memories, touches found outside the lead file, the rules'
answer, and the items each target should hold.

`merge_touches` is THE one place where touches from touch sources join the leads' memories:
to-dos completed in a calendar and the mail touches kept in the state (README "Mail").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

from followsync.config import Config, Target
from followsync.model import Kind, Row
from followsync.state import State

if TYPE_CHECKING:  # the core (pydantic models, rules, diff) loads only when a plan is made
    from followsync import diff as d
    from followsync.leads import LeadBook, Touch
    from followsync.rules import FollowUp, LeadPlan, Memory
    from followsync.slots import Slot
    from followsync.sync.session import Completion

LeadTouch = tuple[str, "Touch"]  # a lead id and a touch with that lead


def merge_touches(
    memories: dict[str, Memory], *sources: Iterable[LeadTouch]
) -> dict[str, Memory]:
    """The leads' memories with every touch the sources found added (once each); a touch
    for a lead the state does not know yet waits for the sync after the lead is seen."""
    merged = dict(memories)
    for source in sources:
        for lead, touch in source:
            known = merged.get(lead)
            if known is not None and touch not in known.touches:
                merged[lead] = replace(known, touches=(*known.touches, touch))
    return merged


def mail_touches(config: Config, state: State, book: LeadBook) -> list[LeadTouch]:
    """The mail touches the state keeps, for the leads of `book` (none without `mail:`)."""
    if not config.mailboxes:
        return []
    from followsync.sources.scan import lead_touches

    return lead_touches(state, book, config)


def local_now(config: Config, now: datetime) -> datetime:
    """`now` as the config's wall time, without a zone: what touches' times are in (a
    status change is remembered at this moment)."""
    zoned = now.astimezone(config.timezone) if now.tzinfo else now
    return zoned.replace(tzinfo=None, microsecond=0)


def make_plans(
    book: LeadBook, today: date, known: dict[str, Memory], mail: Iterable[LeadTouch] = (),
    now: datetime | None = None,
) -> tuple[list[LeadPlan], list[tuple[str, Memory]]]:
    """The rules' answer for every lead, and the lead memories that changed. `mail` joins
    the memories after every lead has one: a lead first seen today counts its mail too.
    `now` (local wall time, see `local_now`) dates a status change seen now."""
    from followsync.gcpause import paused_gc
    from followsync.rules import plan, remember

    with paused_gc():  # (see gcpause: with the collector on, planning 50,000 leads was
        return _make_plans(book, today, known, mail, plan, remember, now)  # superlinear)


def _make_plans(
    book: LeadBook, today: date, known: dict[str, Memory], mail: Iterable[LeadTouch],
    plan: Any, remember: Any, now: datetime | None = None,
) -> tuple[list[LeadPlan], list[tuple[str, Memory]]]:
    memory: dict[str, Memory] = {}
    changed: list[tuple[str, Memory]] = []
    for lead_id, item in book.leads.items():
        before = known.get(lead_id)
        after = remember(before, item.lead, today, now)
        memory[lead_id] = after
        if after != before:
            changed.append((lead_id, after))
    return plan(book.leads.values(), today, merge_touches(memory, mail)), changed


def plan_leads(
    book: LeadBook, today: date, state: State, completions: list[Completion], dry_run: bool,
    mail: Iterable[LeadTouch] = (), now: datetime | None = None,
) -> list[LeadPlan]:
    """Plan every lead with what the state remembers, the touches found this sync and the
    mail touches (`mail`, from the state: see sources.scan.lead_touches); a real sync then
    remembers the lead memories and completions (`plan` writes nothing)."""
    memories = merge_touches(state.memories(), [(c.lead, c.touch) for c in completions])
    plans, changed = make_plans(book, today, memories, mail, now)
    if not dry_run:
        with state.transaction():
            state.remember(changed)
            for found in completions:
                state.add_touch(found.target_key, found.uid, found.lead, found.touch)
    return plans


def wants_for(
    plans: Iterable[LeadPlan], target: Target, zone: str, todo_ok: bool = True,
    rows: Mapping[str, Row] | None = None, taken: Iterable[str] = (),
    there: Callable[[str], str] | None = None,
) -> dict[str, d.Want]:
    """The items a target should hold, by UID (see `laid_wants`)."""
    return laid_wants(plans, target, zone, todo_ok, rows, taken, there).wants


@dataclass(frozen=True)
class Wanted:
    wants: dict[str, d.Want]
    clash: bool  # an item left its slot for one of `taken` (sync.delta then does a full sync)


def laid_wants(
    plans: Iterable[LeadPlan], target: Target, zone: str, todo_ok: bool = True,
    rows: Mapping[str, Row] | None = None, taken: Iterable[str] = (),
    there: Callable[[str], str] | None = None,
) -> Wanted:
    """The items a target should hold, by UID, each timed one that is `spread` laid in its
    slot (README "What appears in the calendar"). `rows` (the state's, by UID) say where
    the items are laid now; `taken`, the slots of items not planned here (sync.delta);
    `there(uid)`, where an item the state does not know stands in the calendar
    (readback.placed_at, "" if nowhere): a lost state finds the items where they are.
    The slot is in the content hash (it is written) but not in the source hash: a slot
    that changes with the day does not undo a calendar edit."""
    from followsync import diff as d
    from followsync.render import input_hash, source_hash, uid_for
    from followsync.slots import Ask, Slot, assign

    rows = rows or {}
    found: list[tuple[str, FollowUp, Kind, str, str]] = []  # uid, item, kind, digest, source
    asks: list[Ask] = []
    for lead_plan in plans:
        for item in lead_plan.follow_ups:
            kind = target.kind or item.kind
            if kind == "todo" and not todo_ok:
                kind = "event"
            uid = uid_for(target.name, item.lead_id, item.rule)
            digest = input_hash(item, kind, zone, uid)
            source = source_hash(item, kind, zone, uid) if item.overdue_days else digest
            found.append((uid, item, kind, digest, source))
            if item.at is None or not item.spread:
                continue
            row = rows.get(uid)
            minutes = int(item.duration.as_timedelta().total_seconds() // 60)
            if row is not None and (row.gone or row.edited):
                if row.source == source:
                    continue  # deleted or moved by hand, and kept so: it takes no slot
                had = None  # the lead file changed it: the user's time gives way, a new slot
            elif row is not None:
                had = Slot.parse(row.slot)
            else:  # unknown to the state: where it stands in the calendar, if it is there
                had = _standing(there(uid), item.at, minutes) if there is not None else None
            asks.append(Ask(uid, item.due, item.at, minutes, had))
    laid = assign(asks, (slot for slot in map(Slot.parse, taken) if slot is not None))
    wants: dict[str, d.Want] = {}
    for uid, item, kind, digest, source in found:
        slot = laid.slots.get(uid)
        if slot is not None and slot.start != item.at:
            item = replace(item, at=slot.start)
            digest = input_hash(item, kind, zone, uid)
        wants[uid] = d.Want(uid, item, kind, digest, source, slot.text() if slot else "")
    return Wanted(wants, laid.clash)


def _standing(where: str, base: time, minutes: int) -> Slot | None:
    """The slot of an item that stands at `where` (readback.placed_at) in the calendar."""
    from followsync.slots import Slot

    try:
        moment = datetime.fromisoformat(where) if "T" in where else None
    except ValueError:
        return None
    return Slot(moment.date(), base, moment.time(), minutes) if moment is not None else None


def taken_besides(
    state: State, target_key: str, leads: Iterable[str], plans: Iterable[LeadPlan]
) -> list[str]:
    """The slots the target's items of other leads than these hold, on the days these
    leads' plans have timed items (what sync.delta lays its items around)."""
    days = {f.due for p in plans for f in p.follow_ups if f.at is not None and f.spread}
    return state.slots_besides(target_key, set(leads), days) if days else []


def relaid(wants: Mapping[str, d.Want], rows: Mapping[str, Row]) -> dict[str, str]:
    """uid → slot for the items whose rows say another slot though their content is the
    same (nothing to write): a state from before slots, whose items were all at their time."""
    return {uid: want.slot for uid, want in wants.items()
            if (row := rows.get(uid)) is not None and row.hash == want.hash
            and row.slot != want.slot and not row.gone and not row.edited}
