"""PURE: the rules' plans → what `followsync agenda` shows (and its stable JSON shape)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from followsync.leads import Touch
from followsync.rules import FollowUp, LeadPlan

RECENT_DAYS = 30  # how far back `agenda` lists touches that came from a calendar


@dataclass(frozen=True)
class Agenda:
    today: date
    overdue: list[FollowUp]
    upcoming: list[FollowUp]
    cold: list[LeadPlan]
    later: int  # pending follow-ups beyond the window
    from_calendar: list[tuple[LeadPlan, Touch]]  # recent to-dos ticked off in a calendar


def build(plans: list[LeadPlan], today: date, days: int) -> Agenda:
    """Overdue items, those due within `days`, and the leads that have gone cold."""
    horizon = today + timedelta(days=days)
    items = sorted((f for p in plans for f in p.follow_ups),
                   key=lambda f: (f.due, f.at.isoformat() if f.at else "", f.lead_id, f.rule))
    overdue = [f for f in items if f.overdue_days or f.due < today]
    upcoming = [f for f in items if f not in overdue and f.due <= horizon]
    later = len(items) - len(overdue) - len(upcoming)
    cold = sorted((p for p in plans if p.cold and not p.closed), key=lambda p: p.lead_id)
    since = today - timedelta(days=RECENT_DAYS)
    recent = sorted(((p, t) for p in plans for t in p.calendar_touches if t.date >= since),
                    key=lambda pt: (pt[1].date, pt[0].lead_id), reverse=True)
    return Agenda(today, overdue, upcoming, cold, later, recent)


def _item(f: FollowUp, today: date) -> dict[str, Any]:
    was = f.due - timedelta(days=f.overdue_days)
    return {
        "lead": f.lead_id, "name": f.person.name, "org": f.person.org, "rule": f.rule,
        "due": f.due.isoformat(), "at": f.at.strftime("%H:%M") if f.at else None,
        "was_due": was.isoformat(), "overdue_days": max(f.overdue_days, (today - f.due).days, 0),
        "action": f.action, "reason": f.reason, "as": f.kind,
    }


def to_json(agenda: Agenda) -> dict[str, Any]:
    """The documented `agenda --json` shape (README "agenda"); keys are only ever added."""
    return {
        "version": 1,
        "today": agenda.today.isoformat(),
        "overdue": [_item(f, agenda.today) for f in agenda.overdue],
        "upcoming": [_item(f, agenda.today) for f in agenda.upcoming],
        "cold": [{"lead": p.lead_id, "name": p.person.name, "org": p.person.org,
                  "unanswered": p.unanswered,
                  "last_touch": p.last_touch.date.isoformat() if p.last_touch else None}
                 for p in agenda.cold],
        "later": agenda.later,
        "from_calendar": [{"lead": p.lead_id, "name": p.person.name, "date": t.date.isoformat(),
                           "by": t.by, "note": t.note} for p, t in agenda.from_calendar],
    }


def to_text(agenda: Agenda) -> str:
    """A readable table: when, who, what."""
    lines: list[str] = []

    def row(f: FollowUp) -> str:
        when = f.due.strftime("%a %Y-%m-%d") + (f" {f.at.strftime('%H:%M')}" if f.at else "      ")
        who = f.person.name + (f" ({f.person.org})" if f.person.org else "")
        late = ""
        days = max(f.overdue_days, (agenda.today - f.due).days)
        if days > 0:
            late = f"  [{days} day{'s' if days != 1 else ''} overdue]"
        return f"  {when}  {who:<34.34}  {f.action}{late}"

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
            who = p.person.name + (f" ({p.person.org})" if p.person.org else "")
            lines.append(f"  {who:<34.34}  {p.unanswered} unanswered, last touch {last}")
    if agenda.from_calendar:
        lines.append(f"Ticked off in a calendar (last {RECENT_DAYS} days; not in the lead file)")
        for p, t in agenda.from_calendar:
            who = p.person.name + (f" ({p.person.org})" if p.person.org else "")
            lines.append(f"  {t.date.strftime('%a %Y-%m-%d')}        {who:<34.34}  {t.note}")
    return "\n".join(lines)
