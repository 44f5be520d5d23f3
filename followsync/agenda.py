"""PURE: the rules' plans → what `followsync agenda` shows (and its stable JSON shape)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any

from followsync.leads import MailTouch, Touch
from followsync.rules import FollowUp, LeadPlan

RECENT_DAYS = 30  # how far back `agenda` lists touches that came from a calendar
WHO_WIDTH = 34  # the "who" column of the text table
MAIL_LEADS = 5  # leads whose latest mail `agenda` shows (`agenda --mail`: every mail)


@dataclass(frozen=True)
class Agenda:
    today: date
    overdue: list[FollowUp]
    upcoming: list[FollowUp]
    cold: list[LeadPlan]
    later: int  # pending follow-ups beyond the window
    from_calendar: list[tuple[LeadPlan, Touch]]  # recent to-dos ticked off in a calendar
    # (lead, rule) → the rules' follow-up, for items shown where the user moved them
    moved: dict[tuple[str, str], FollowUp] = field(default_factory=dict)
    from_mail: list[tuple[LeadPlan, MailTouch]] = field(default_factory=list)  # newest first


def _placed(f: FollowUp, where: str) -> FollowUp | None:
    """`f` at the date (and time) its item has in the calendar, or None if it is where the
    rules put it (or `where` cannot be read)."""
    try:
        if "T" in where:
            stamp = datetime.fromisoformat(where)
            due, at = stamp.date(), stamp.time().replace(second=0, microsecond=0)
        else:
            due, at = date.fromisoformat(where), None
    except ValueError:
        return None
    at_or_none: time | None = at
    if (due, at_or_none) == (f.due, f.at):
        return None
    return replace(f, due=due, at=at_or_none, overdue_days=0)


def _laid(f: FollowUp, slot: str) -> FollowUp:
    """`f` at the time its item was laid among others (spread), if that slot is for the
    day and time the rules give now (else the item is to be laid anew: as the rules say)."""
    from followsync.slots import Slot

    found = Slot.parse(slot) if slot else None
    if found is None or (found.day, found.base) != (f.due, f.at):
        return f
    return replace(f, at=found.start)


def build(
    plans: list[LeadPlan], today: date, days: int,
    moves: Mapping[tuple[str, str], str] | None = None,
    laid: Mapping[tuple[str, str], str] | None = None,
) -> Agenda:
    """Overdue items, those due within `days`, and the leads that have gone cold. `moves`
    (from the state) puts an item the user moved in a calendar at the date they see there;
    `laid`, an item laid after others of its time (spread) at its time there."""
    horizon = today + timedelta(days=days)
    moved: dict[tuple[str, str], FollowUp] = {}
    shown: list[FollowUp] = []
    for f in (f for p in plans for f in p.follow_ups):
        there = _placed(f, (moves or {}).get((f.lead_id, f.rule), ""))
        if there is not None:
            moved[(f.lead_id, f.rule)] = f
        else:
            f = _laid(f, (laid or {}).get((f.lead_id, f.rule), ""))
        shown.append(there or f)
    items = sorted(shown,
                   key=lambda f: (f.due, f.at.isoformat() if f.at else "", f.lead_id, f.rule))
    overdue = [f for f in items if f.overdue_days or f.due < today]
    upcoming = [f for f in items if f not in overdue and f.due <= horizon]
    later = len(items) - len(overdue) - len(upcoming)
    cold = sorted((p for p in plans if p.cold and not p.closed), key=lambda p: p.lead_id)
    since = today - timedelta(days=RECENT_DAYS)
    recent = sorted(((p, t) for p in plans for t in p.calendar_touches if t.date >= since),
                    key=lambda pt: (pt[1].date, pt[0].lead_id), reverse=True)
    mail = sorted(((p, t) for p in plans for t in p.mail_touches if t.date >= since),
                  key=lambda pt: (pt[1].at, pt[0].lead_id), reverse=True)
    return Agenda(today, overdue, upcoming, cold, later, recent, moved, mail)


def _item(f: FollowUp, agenda: Agenda) -> dict[str, Any]:
    today = agenda.today
    rules = agenda.moved.get((f.lead_id, f.rule), f)
    was = rules.due - timedelta(days=rules.overdue_days)
    return {
        "lead": f.lead_id, "name": f.person.name, "org": f.person.org, "rule": f.rule,
        "due": f.due.isoformat(), "at": f.at.strftime("%H:%M") if f.at else None,
        "was_due": was.isoformat(), "overdue_days": max(f.overdue_days, (today - f.due).days, 0),
        "title": f.title, "action": f.action, "reason": f.reason, "as": f.kind,
        "moved_in_calendar": rules is not f,
        "rule_due": rules.due.isoformat(),
        "rule_at": rules.at.strftime("%H:%M") if rules.at else None,
    }


def _sentence(action: str) -> str:
    """An action as the start of a line (`follow up` → `Follow up`): the column is no title."""
    return action[:1].upper() + action[1:]


def shorten(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut between words (at a space or after a
    hyphen) with an ellipsis; mid-word only when a word boundary would keep under half."""
    if len(text) <= width:
        return text
    cut = text[:width - 1]
    if not text[width - 1].isspace():
        ends = [i for i, c in enumerate(cut) if c.isspace()] + \
               [i + 1 for i, c in enumerate(cut) if c in "-/"]
        best = max(ends, default=0)
        if best >= (width - 1) // 2:
            cut = cut[:best]
    return cut.rstrip(" ,;:-–—/(") + "…"


def who(name: str, org: str | None, width: int = WHO_WIDTH) -> str:
    """"Name (Org)" in at most `width` characters: the org is shortened first, between
    words, with an ellipsis, and its parenthesis is always closed."""
    if not org:
        return shorten(name, width)
    full = f"{name} ({org})"
    if len(full) <= width:
        return full
    room = width - len(name) - 3  # " (" and ")"
    if room >= 4:
        return f"{name} ({shorten(org, room)})"
    return shorten(name, width)


def to_json(agenda: Agenda) -> dict[str, Any]:
    """The documented `agenda --json` shape (README "agenda"); keys are only ever added."""
    return {
        "version": 1,
        "today": agenda.today.isoformat(),
        "overdue": [_item(f, agenda) for f in agenda.overdue],
        "upcoming": [_item(f, agenda) for f in agenda.upcoming],
        "cold": [{"lead": p.lead_id, "name": p.person.name, "org": p.person.org,
                  "unanswered": p.unanswered,
                  "last_touch": p.last_touch.date.isoformat() if p.last_touch else None}
                 for p in agenda.cold],
        "later": agenda.later,
        "from_calendar": [{"lead": p.lead_id, "name": p.person.name, "date": t.date.isoformat(),
                           "by": t.by, "note": t.note} for p, t in agenda.from_calendar],
        "from_mail": [{"lead": p.lead_id, "name": p.person.name, "date": t.date.isoformat(),
                       "time": t.at.strftime("%H:%M"), "by": t.by, "subject": t.subject}
                      for p, t in agenda.from_mail],
    }


def to_text(agenda: Agenda, all_mail: bool = False) -> str:
    """A readable table: when, who, what; the follow-ups first, then cold leads, to-dos
    ticked off, and mail (short unless `all_mail`)."""
    lines: list[str] = []

    def row(f: FollowUp) -> str:
        when = f.due.strftime("%a %Y-%m-%d") + (f" {f.at.strftime('%H:%M')}" if f.at else "      ")
        late = ""
        days = max(f.overdue_days, (agenda.today - f.due).days)
        if days > 0:
            late = f"  [{days} day{'s' if days != 1 else ''} overdue]"
        rules = agenda.moved.get((f.lead_id, f.rule))
        if rules is not None:
            was = rules.due.isoformat() + (f" {rules.at.strftime('%H:%M')}" if rules.at else "")
            late += f"  [moved in the calendar; the rules say {was}]"
        return f"  {when}  {who(f.person.name, f.person.org):<{WHO_WIDTH}}  {_sentence(f.action)}{late}"

    if agenda.overdue:
        lines.append("Overdue")
        lines.extend(row(f) for f in agenda.overdue)
    lines.append("Upcoming" if agenda.upcoming else "Upcoming: nothing in this window")
    lines.extend(row(f) for f in agenda.upcoming)
    if agenda.later:
        lines.append(f"  ... and {agenda.later} later (use --days to see further)")
    if agenda.cold:
        lines.append("Gone cold (no answer; not chased any more)")
        for p in agenda.cold:
            last = p.last_touch.date.isoformat() if p.last_touch else "never"
            lines.append(f"  {who(p.person.name, p.person.org):<{WHO_WIDTH}}  "
                         f"{p.unanswered} unanswered, last touch {last}")
    if agenda.from_calendar:
        lines.append(f"Ticked off in a calendar (last {RECENT_DAYS} days; not in the lead file)")
        for p, t in agenda.from_calendar:
            lines.append(f"  {t.date.strftime('%a %Y-%m-%d')}        "
                         f"{who(p.person.name, p.person.org):<{WHO_WIDTH}}  {t.note}")
    if agenda.from_mail:
        lines += _mail_lines(agenda.from_mail, all_mail)
    return "\n".join(lines)


def _mail_lines(mail: list[tuple[LeadPlan, MailTouch]], all_mail: bool) -> list[str]:
    """The recent mail, newest first: all of it (`--mail`), else the latest mail of each lead
    and at most MAIL_LEADS leads, so a busy month does not bury the follow-ups."""
    def line(p: LeadPlan, t: MailTouch, more: int = 0) -> str:
        way = "from" if t.by == "them" else "to"
        return (f"  {t.at.strftime('%a %Y-%m-%d %H:%M')}  "
                f"{who(p.person.name, p.person.org):<{WHO_WIDTH}}  {way}: "
                f"{t.subject or '(no subject)'}" + (f"  (+{more} more)" if more else ""))

    latest: dict[str, tuple[LeadPlan, MailTouch]] = {}
    count: dict[str, int] = {}
    for p, t in mail:  # newest first: a lead's first mail here is its latest
        latest.setdefault(p.lead_id, (p, t))
        count[p.lead_id] = count.get(p.lead_id, 0) + 1
    if all_mail or (len(latest) == len(mail) and len(latest) <= MAIL_LEADS):
        return [f"Mail (last {RECENT_DAYS} days)", *(line(p, t) for p, t in mail)]
    shown = list(latest.values())[:MAIL_LEADS]
    found = [f"Mail (last {RECENT_DAYS} days; the latest per lead, `agenda --mail` for all "
             f"{len(mail)})"]
    found += [line(p, t, count[p.lead_id] - 1) for p, t in shown]
    if len(latest) > len(shown):
        rest = len(latest) - len(shown)
        found.append(f"  ... and {rest} more lead{'s' if rest != 1 else ''} (`agenda --mail`)")
    return found
