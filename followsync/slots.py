"""PURE: where timed follow-ups of one calendar are laid so that they never sit on top of
each other (README "What appears in the calendar", `spread`).

Items due on one day at one time are laid one after another, each its `duration` long. An
item keeps the slot it has while its day, time and length stay the same (so a touch
rewrites only the items it moves); the others take, in the order asked (the order of the
lead files and of the leads in them), the first free start from their time. No clock, no
state: the slot an item has now is an argument.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, time

DAY_MINUTES = 24 * 60


@dataclass(frozen=True)
class Slot:
    """Where an item is laid: on `day`, from `start`, `minutes` long, asked for at `base`."""

    day: date
    base: time
    start: time
    minutes: int

    def text(self) -> str:
        """`2026-12-07T09:15|09:00|15`: kept in the state; begins with the day, so the
        state finds a day's slots by a range of text."""
        return f"{self.day.isoformat()}T{self.start:%H:%M}|{self.base:%H:%M}|{self.minutes}"

    @classmethod
    def parse(cls, text: str) -> Slot | None:
        """The slot `text()` wrote, or None (an empty or damaged value: no slot)."""
        try:
            when, base, minutes = text.split("|")
            day, start = when.split("T")
            return cls(date.fromisoformat(day), time.fromisoformat(base),
                       time.fromisoformat(start), int(minutes))
        except ValueError:
            return None

    def span(self) -> tuple[int, int]:
        """Minutes from midnight where the item begins and ends."""
        begin = _minutes(self.start)
        return begin, begin + self.minutes


@dataclass(frozen=True)
class Ask:
    """An item asking for a slot: `key` names it, `had` is the slot its item has now."""

    key: str
    day: date
    base: time
    minutes: int
    had: Slot | None = None

    def keeps(self) -> Slot | None:
        """The slot it had, if it still fits its day, time and length."""
        had = self.had
        if had is not None and (had.day, had.base, had.minutes) == \
                (self.day, self.base, self.minutes):
            return had
        return None


@dataclass(frozen=True)
class Laid:
    """The slots given, by key (an item without one stays at its time: its day was full);
    `clash`: an item had to leave its slot because a `taken` one overlaps it."""

    slots: dict[str, Slot]
    clash: bool = False


class _Day:
    """The spans (minutes from midnight) a day's items hold, in order of their start."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, int]] = []
        self.full: set[tuple[int, int]] = set()  # (base, minutes) that found no room

    def free(self, span: tuple[int, int]) -> bool:
        """Whether `span` overlaps nothing held (an empty span overlaps nothing)."""
        begin, end = span
        return begin == end or all(end <= b or e <= begin for b, e in self.spans)

    def hold(self, span: tuple[int, int]) -> None:
        if span[0] != span[1]:
            insort(self.spans, span)

    def first(self, base: int, minutes: int) -> int | None:
        """The earliest start from `base` where `minutes` fit before midnight, overlapping
        nothing held; None if there is none (the day is full from there)."""
        if minutes == 0:
            return base
        if (base, minutes) in self.full:  # spans are only ever added: still full
            return None
        start = base
        for begin, end in self.spans:
            if end <= start:
                continue
            if begin >= start + minutes:
                break
            start = end
        if start + minutes <= DAY_MINUTES:
            return start
        self.full.add((base, minutes))
        return None


def assign(asks: Sequence[Ask], taken: Iterable[Slot] = ()) -> Laid:
    """Every ask's slot. `taken` are slots of items not asking (they stay where they are).

    First every item that can keep its slot keeps it (in the order asked, when two claim
    one place); then the others, in order, take the first start from their time where
    they overlap nothing; one that finds no room before midnight gets no slot."""
    days: dict[date, _Day] = {}
    fixed: dict[date, _Day] = {}
    for slot in taken:
        days.setdefault(slot.day, _Day()).hold(slot.span())
        fixed.setdefault(slot.day, _Day()).hold(slot.span())
    slots: dict[str, Slot] = {}
    clash = False
    for ask in asks:
        kept = ask.keeps()
        if kept is None:
            continue
        span, day = kept.span(), days.setdefault(ask.day, _Day())
        if span[1] <= DAY_MINUTES and day.free(span):
            slots[ask.key] = kept
            day.hold(span)
        elif not fixed.setdefault(ask.day, _Day()).free(span):
            clash = True
    for ask in asks:
        if ask.key in slots:
            continue
        day = days.setdefault(ask.day, _Day())
        start = day.first(_minutes(ask.base), ask.minutes)
        if start is not None:
            slots[ask.key] = Slot(ask.day, ask.base, _time(start), ask.minutes)
            day.hold((start, start + ask.minutes))
    return Laid(slots, clash)


def _minutes(moment: time) -> int:
    return moment.hour * 60 + moment.minute


def _time(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)
