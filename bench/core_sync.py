#!/usr/bin/env python3
"""Core benchmark: lead file → rules → .ics, at N = 1,000, 10,000 and 50,000 leads.

    python bench/core_sync.py [--sizes 1000,10000,50000] [--out bench/out/core.json]

For each N it generates a realistic lead file (see `make_leads`) in a temporary folder with a
config and an .ics target, then measures, each step in its OWN fresh process, `--repeat` times
(median reported):

  rules        load + validate + rules in-process (import of followsync excluded; the import,
               the load+validate and the rules parts are reported separately), once with no
               lead cache (a first run ever) and once with the lead cache warm
  validate     the whole `followsync validate` process
  first sync   the whole `followsync sync` process on an empty state and no .ics file
  floor        icalendar alone building + serialising the same number of items of the same
               shape (in-process, import excluded): the part of a first sync that is not ours
  no-op sync   `followsync sync` again with nothing changed
  one change   `followsync sync` after one lead got a new `by: them` touch (1 item moves)

Wall time is measured around the child process; peak RSS is that child's own ru_maxrss,
obtained with os.wait4 on its pid (so it is never mixed up with another child's). The
printout is a markdown table plus the first-sync / floor ratios; the same data goes to JSON.

Nothing here imports followsync in the benchmark process itself: every measured step is a
child process, so module caches, warm imports and the benchmark's own memory do not leak in.
"""

from __future__ import annotations

import argparse
import compileall
import itertools
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOW = "2026-12-01T08:00"  # --now for every run (the state remembers days; keep it fixed)
TIMEZONE = "Europe/Berlin"
MB = 1024.0  # ru_maxrss is in KiB on Linux

# Goals from issue 13 ("a sync costs what changed"), by N and step: (seconds, peak RSS MB);
# the first sync at 10,000 is judged against the icalendar floor (at most 0.75x its time).
SNAPSHOT: Path | None = None  # a copy of followsync/ the children import (see --live)
REF: str | None = None  # the git ref it was taken from (--ref), else the working tree
GOALS: dict[tuple[int, str], tuple[float | None, float]] = {
    (1_000, "one"): (0.25, 150.0),
    (10_000, "rules_warm"): (1.0, 150.0),
    (10_000, "one"): (0.5, 150.0),
    (10_000, "first"): (None, 150.0),  # time: the floor ratio below
    (10_000, "noop"): (0.4, 150.0),  # "keep" (0.30 s, 66 MB in the issue, a quiet machine)
    (10_000, "validate"): (None, 150.0),
    (50_000, "one"): (1.0, 500.0),
    (50_000, "noop"): (0.4, 500.0),
    (50_000, "first"): (25.0, 500.0),
    (50_000, "rules"): (None, 500.0),
    (50_000, "rules_warm"): (None, 500.0),
    (50_000, "validate"): (None, 500.0),
}
GOAL_FIRST_RATIO = 0.75
GOAL_SCALING = 10.0  # time at 10,000 / time at 1,000: linear or better
FLOOR_MAX_N = 10_000  # the icalendar floors take minutes above this (and have no goal there)


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------

FIRST = ["Zoë", "José", "Françoise", "Jürgen", "Søren", "Łukasz", "Anaïs", "Björn", "Siobhán",
         "Chloé", "Tomás", "Renée", "Ingrid", "Mateus", "Aoife", "Kateřina", "Dana", "Lena",
         "Grace", "Viktor", "Ruth", "Paul", "Amara", "Yusuf", "Mei", "Hiroshi", "Priya",
         "Olúwáseun", "Nikolaj", "Émile", "Inês", "Göran", "Małgorzata", "Raúl", "Saoirse",
         "Thảo", "Ayşe", "Jan", "Sara", "Omar"]
LAST = ["Müller", "García", "Østergaard", "Nguyễn", "O'Brien", "Kowalczyk", "Åberg", "Šimić",
        "Ferreira", "Okafor", "Lin", "Nagy", "Adler", "Whitfield", "Reyes", "Meyer", "Dubois",
        "Novák", "Rossi", "Yılmaz", "Haraldsdóttir", "Papadopoulos", "Schäfer", "Lefèvre",
        "Tanaka", "Kumar", "Andersson", "Brennan", "Costa", "Mbeki", "van der Berg", "Żak"]
ORGS = ["Fernhill Robotics", "Harbor Talent", "Quill & Co", "Atlas Freight", "Brightline",
        "Nordlys AS", "Café Métier", "Zürich Analytics GmbH", "Škoda Digital", "Lumen Labs",
        "Acme Corp", "Orbit Health", "Kestrel Capital", "Bâtiment Vert", "Tidewater Energy",
        "Moss & Partners", "Helix Bio", "Granite Ledger", "São Paulo Dados", "Blue Fjord",
        "Copperleaf", "Wrenfield Studio", "Polaris Mobility", "Ångström Optics", "Maple & Finch"]
ROLES = ["CEO", "CTO", "Recruiter", "Head of Product", "Engineering Manager", "Talent Partner",
         "VP Sales", "Founder", "Hiring Manager", "Director of Data", "COO", "Design Lead",
         "Principal Engineer", "People Ops", "Product Manager"]
NOTE_LINES = [
    "Met at the Berlin product meetup; interested in onboarding work.",
    "Said they would open a role once the Q1 budget is signed.",
    "Prefers email over phone; answers on Fridays.",
    "Bring the churn analysis and the redesign case study.",
    "Introduced by Ruth — mention her when writing.",
    "Team is moving to a new office in spring; hiring freeze until then.",
    "Asked for a portfolio link and two references.",
    "Très sympa; speaks French and German, meeting notes in the shared doc.",
    "Follow the company blog: they announce openings there first.",
    "Wants someone who can start before the summer.",
    "Salary band discussed: within range. Equity unclear.",
    "Their recruiter is on leave until the 15th.",
]
ME_NOTES = ["emailed a short hello", "sent my CV", "asked whether the CV arrived",
            "thank-you email after the call", "one more short note", "shared the case study",
            "applied through the careers page", "commented on their post", "sent a LinkedIn note"]
THEM_NOTES = ["replied, check back after the budget", "phone call, 20 minutes",
              "lunch; offered two intros", "answered, they are still deciding",
              "coffee chat at the conference", "video call with the team lead",
              "said: not now, maybe next quarter"]
CLOSED = ["hired", "declined", "lost", "closed"]
OPEN = ["waiting", "promised", "networking", "contacted", "waiting", "waiting"]

DEFAULTS_YAML = """\
defaults:
  cadence: [2w, 1mo, 2mo]         # quick at first, then back off if nobody answers
  give_up_after: 3                # three unanswered follow-ups: let it rest
  at: "09:15"
  alarms: [0m, 1d]                # at the start, and at the same time the day before
  days: [mon, tue, wed, thu, fri] # a follow-up due on a weekend is shown on Monday
  on_status:
    interviewed: {after: 1d, do: "send a thank-you note"}
    applied: {after: 10d, do: "ask where the application stands"}
  on_other_status:
    offer: {after: 0d, do: "tell them about the offer and its deadline"}
"""

_PLAIN = re.compile(r"^[^\W\d_][\w .,@+()/’'&-]*$")


def q(text: str) -> str:
    """A YAML scalar for `text`: plain when that is safe, else double-quoted (JSON is YAML)."""
    if _PLAIN.match(text) and ": " not in text and " #" not in text and not text.endswith(" "):
        return text
    return json.dumps(text, ensure_ascii=False)


def slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-") or "x"


def make_leads(n: int, seed: int, today: date) -> list[tuple[str, dict[str, Any]]]:
    """n leads of the shapes a real user writes (a job search or a small sales pipeline).

    ~5% closed, ~5% gone cold (3+ unanswered), ~10% with a status_since that fires an
    `on_status` trigger, ~40% last_contact, ~10% next, ~8% snooze, ~15% one-offs.
    """
    rnd = random.Random(seed)
    leads: list[tuple[str, dict[str, Any]]] = []

    def past(lo: int, hi: int) -> date:
        return today - timedelta(days=rnd.randint(lo, hi))

    for i in range(n):
        first, last, org = rnd.choice(FIRST), rnd.choice(LAST), rnd.choice(ORGS)
        lead: dict[str, Any] = {"name": f"{first} {last}"}
        if rnd.random() < 0.9:
            lead["org"] = org
        if rnd.random() < 0.75:
            lead["role"] = rnd.choice(ROLES)
        if rnd.random() < 0.8:
            # (each its own: two leads may not share an address)
            lead["email"] = f"{slug(first)}.{slug(last)}.{i}@{slug(org)}.example"
        if rnd.random() < 0.3:
            lead["phone"] = f"+49 30 {rnd.randint(1000000, 9999999)}"
        if rnd.random() < 0.2:
            lead["url"] = f"https://www.linkedin.com/in/{slug(first)}-{slug(last)}-{i}"
        if rnd.random() < 0.4:
            lead["tags"] = rnd.sample(["referral", "network", "startup", "remote", "berlin",
                                       "product", "data", "sales"], rnd.randint(1, 3))
        roll = rnd.random()
        kind = "closed" if roll < 0.05 else "cold" if roll < 0.10 else "open"
        if kind == "closed":
            lead["status"] = rnd.choice(CLOSED)
        elif rnd.random() < 0.10:
            lead["status"] = rnd.choice(["applied", "interviewed"])
            lead["status_since"] = past(0, 12)
        elif rnd.random() < 0.7:
            lead["status"] = rnd.choice(OPEN)
        if rnd.random() < 0.6:
            lead["notes"] = "\n".join(rnd.sample(NOTE_LINES, rnd.randint(1, 4)))
        if rnd.random() < 0.4:
            lead["last_contact"] = past(20, 200)
        log: list[tuple[date, str, str]] = []
        if kind == "cold":
            start = past(120, 200)
            for k in range(rnd.randint(3, 4)):
                log.append((start + timedelta(days=15 * k), "me", rnd.choice(ME_NOTES)))
        else:
            for _ in range(rnd.choice([0, 0, 1, 1, 2, 2, 3, 4])):
                by = rnd.choice(["me", "me", "me", "them", "both"])
                log.append((past(1, 180), by, rnd.choice(ME_NOTES if by == "me" else THEM_NOTES)))
            log.sort()
            trailing = 0
            for _, by, _ in reversed(log):
                if by != "me":
                    break
                trailing += 1
            if trailing >= 3:  # keep "cold" at the share chosen above
                d0, _, _ = log[-1]
                log[-1] = (d0, "them", rnd.choice(THEM_NOTES))
            rnd.shuffle(log)  # "touches, in any order"
        if log:
            lead["log"] = log
        if kind == "open" and rnd.random() < 0.10:
            lead["next"] = today + timedelta(days=rnd.randint(-5, 90))
        if kind == "open" and rnd.random() < 0.08:
            lead["snooze_until"] = today + timedelta(days=rnd.randint(1, 60))
        if rnd.random() < 0.05:
            lead["cadence"] = rnd.choice([["6w"], ["1w", "2w"], ["1mo", "3mo"]])
        if rnd.random() < 0.03:
            lead["all_day"] = True
        if rnd.random() < 0.03:
            lead["as"] = "todo"
        if rnd.random() < 0.15:
            ones = []
            days = rnd.sample(range(-10, 120), rnd.randint(1, 2))
            for k, day in enumerate(days):
                one: dict[str, Any] = {"on": today + timedelta(days=day),
                                       "do": rnd.choice(["send a short end-of-year hello",
                                                         "Ask about the Q1 budget",
                                                         "Share the new case study",
                                                         "Check whether the role is open"])}
                if rnd.random() < 0.3:
                    one["at"] = "10:00"
                if rnd.random() < 0.2:
                    one["id"] = f"ping-{k}"
                if rnd.random() < 0.1:
                    one["done"] = True
                ones.append(one)
            lead["follow_ups"] = ones
        lead_id = f"{slug(first)}-{slug(org)}-{i}"
        leads.append((lead_id, lead))
    return leads


def dump_lead(lead_id: str, lead: dict[str, Any]) -> str:
    out = [f"  {lead_id}:"]
    for key in ("name", "org", "role", "email", "phone", "url"):
        if key in lead:
            value = lead[key]
            out.append(f"    {key}: {json.dumps(value) if key == 'phone' else q(value)}")
    if "tags" in lead:
        out.append(f"    tags: [{', '.join(lead['tags'])}]")
    if "status" in lead:
        out.append(f"    status: {lead['status']}")
    if "status_since" in lead:
        out.append(f"    status_since: {lead['status_since'].isoformat()}")
    if "notes" in lead:
        out.append("    notes: |")
        out.extend(f"      {line}" for line in lead["notes"].split("\n"))
    if "last_contact" in lead:
        out.append(f"    last_contact: {lead['last_contact'].isoformat()}")
    if lead.get("log"):
        out.append("    log:")
        for day, by, note in lead["log"]:
            if by == "me" and not note.startswith("said"):
                out.append(f"      - {day.isoformat()} {note}")  # the "DATE text" form
            else:
                out.append(f"      - {{date: {day.isoformat()}, by: {by}, "
                           f"note: {json.dumps(note, ensure_ascii=False)}}}")
    for key in ("next", "snooze_until"):
        if key in lead:
            out.append(f"    {key}: {lead[key].isoformat()}")
    if "cadence" in lead:
        out.append(f"    cadence: [{', '.join(lead['cadence'])}]")
    if "all_day" in lead:
        out.append("    all_day: true")
    if "as" in lead:
        out.append(f"    as: {lead['as']}")
    if "follow_ups" in lead:
        out.append("    follow_ups:")
        for one in lead["follow_ups"]:
            parts = [f"on: {one['on'].isoformat()}", f"do: {json.dumps(one['do'])}"]
            if "at" in one:
                parts.append(f'at: "{one["at"]}"')
            if "id" in one:
                parts.append(f"id: {one['id']}")
            if one.get("done"):
                parts.append("done: true")
            out.append(f"      - {{{', '.join(parts)}}}")
    return "\n".join(out)


def dump_leads(leads: list[tuple[str, dict[str, Any]]]) -> str:
    head = ("# Generated by bench/core_sync.py: a large, realistic lead file.\n"
            "version: 1\n\n" + DEFAULTS_YAML + "\nleads:\n")
    return head + "\n\n".join(dump_lead(i, lead) for i, lead in leads) + "\n"


CONFIG_YAML = f"""\
leads: leads.yaml
timezone: {TIMEZONE}
state_dir: state
targets:
  - name: file
    type: ics
    path: followups.ics
"""


# ---------------------------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------------------------

RULES_CHILD = r"""
import json, resource, sys, time
from datetime import date
from pathlib import Path
t0, c0 = time.perf_counter(), time.process_time()
from followsync.gcpause import paused_gc
from followsync.leads import load_leads
from followsync.sync.planning import make_plans
t1, c1 = time.perf_counter(), time.process_time()
with paused_gc():  # as in a sync: cli.main runs every command with the collector paused
    book = load_leads([Path(sys.argv[1])])
    t2, c2 = time.perf_counter(), time.process_time()
    plans, changed = make_plans(book, date.fromisoformat(sys.argv[2]), {})
    t3, c3 = time.perf_counter(), time.process_time()
items = sum(len(p.follow_ups) for p in plans)
print(json.dumps({"import_s": t1 - t0, "load_validate_s": t2 - t1, "rules_s": t3 - t2,
                  "cpu_s": c3 - c1, "cpu_load_validate_s": c2 - c1, "cpu_rules_s": c3 - c2,
                  "leads": len(book.leads), "items": items,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# icalendar alone: the same item shape followsync writes (a standalone VCALENDAR per item, as a
# CalDAV resource is; VEVENT with TZID'd start/end, summary, description, categories, two
# VALARMs, two X- marks), with no VTIMEZONE. `--with-tz` adds the per-item VTIMEZONE the way
# followsync's render adds it (parsed from cached text), to show what that costs.
FLOOR_CHILD = r"""
import json, resource, sys, time
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo
data = json.loads(open(sys.argv[1], encoding="utf-8").read())
count, with_tz = int(sys.argv[2]), sys.argv[3] == "1"
t0 = time.perf_counter()
from icalendar import Alarm, Calendar, Event, Timezone
t1, c1 = time.perf_counter(), time.process_time()
zone = ZoneInfo("Europe/Berlin")
stamp = datetime(2026, 12, 1, 7, 0, tzinfo=timezone.utc)
tztext = None
if with_tz:
    tztext = Timezone.from_tzid("Europe/Berlin", first_date=date(2025, 1, 1),
                                last_date=date(2029, 1, 1)).to_ical()
total = 0
for k in range(count):
    p = data[k % len(data)]
    summary = f"Follow up: {p['who']} — Follow up with {p['name']}"
    cal = Calendar()
    cal.add("prodid", "-//followsync//followsync 0.1.0//EN")
    cal.add("version", "2.0")
    ev = Event()
    ev.add("uid", f"followsync-{p['id']}-cadence-{k}-file")
    ev.add("dtstamp", stamp)
    ev.add("sequence", 0)
    ev.add("summary", summary)
    ev.add("description", p["description"])
    ev.add("categories", ["followsync"])
    start = datetime(2026, 12, 1 + k % 28, 9, 15, tzinfo=zone)
    ev.add("dtstart", start)
    ev.add("dtend", start + timedelta(minutes=15))
    ev.add("transp", "TRANSPARENT")
    ev.add("X-FOLLOWSYNC-LEAD", p["id"])
    ev.add("X-FOLLOWSYNC-RULE", "cadence")
    for before in (timedelta(0), timedelta(days=1)):
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", summary)
        alarm.add("trigger", -before)
        ev.add_component(alarm)
    if with_tz:
        cal.add_component(Timezone.from_ical(tztext))
    cal.add_component(ev)
    total += len(cal.to_ical())
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "cpu_s": c2 - c1, "items": count,
                  "bytes": total,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


@dataclass
class Run:
    wall_s: float
    cpu_s: float  # user + system of the child: what the step costs without other load
    maxrss_mb: float
    rc: int
    stdout: str
    stderr: str


# Starts every measured child, from a process of its own started before the bench holds any
# data: a child's ru_maxrss counts the pages of whoever forked it (Linux records the forked
# copy's high-water mark at exec), so children forked by the bench itself inherited its
# ~240 MB at 50,000 leads as their "peak".
SPAWNER = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    job = json.loads(line)
    with open(job["out"], "wb") as out, open(job["err"], "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(job["argv"], cwd=job["cwd"], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, env=job["env"])
        deadline = started + job["timeout"]
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
    print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
                      "maxrss_kb": usage.ru_maxrss, "rc": proc.returncode}), flush=True)
"""
_spawner: subprocess.Popen[str] | None = None


def start_spawner() -> None:
    """Start the process that runs the children (call before holding any large data)."""
    global _spawner
    if _spawner is None:
        _spawner = subprocess.Popen([sys.executable, "-c", SPAWNER], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)


def child_env(cwd: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a measured child working in `cwd`: the measured copy of followsync
    first on its path, its own cache folder (never the user's), then `extra` on top."""
    env = dict(os.environ)
    if SNAPSHOT is not None:  # the frozen copy of followsync/ comes first on sys.path
        env["PYTHONPATH"] = os.pathsep.join(
            [str(SNAPSHOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.pop("FOLLOWSYNC_NOW", None)
    env.pop("FOLLOWSYNC_CONFIG", None)
    env["XDG_CACHE_HOME"] = str(cwd / "cache")  # never the user's (the lead cache is in state_dir)
    env.update(extra or {})
    return env


def run_child(argv: list[str], cwd: Path, timeout: float = 1800.0,
              env: dict[str, str] | None = None) -> Run:
    """Run argv as a fresh process (started by the spawner); wall time around it, peak RSS
    from os.wait4 on its pid. `env` is added to `child_env(cwd)`."""
    start_spawner()
    assert _spawner is not None and _spawner.stdin and _spawner.stdout
    with tempfile.NamedTemporaryFile() as out, tempfile.NamedTemporaryFile() as err:
        env = child_env(cwd, env)
        _spawner.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "env": env,
                                         "timeout": timeout, "out": out.name,
                                         "err": err.name}) + "\n")
        _spawner.stdin.flush()
        done = json.loads(_spawner.stdout.readline())
        return Run(done["wall"], done["cpu"], done["maxrss_kb"] / MB, done["rc"],
                   Path(out.name).read_bytes().decode("utf-8", "replace"),
                   Path(err.name).read_bytes().decode("utf-8", "replace"))


def followsync_cmd() -> list[str]:
    """The real console script next to this python, else `python -m followsync`."""
    script = Path(sys.executable).parent / "followsync"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "followsync"]


def code_fingerprint() -> dict[str, Any]:
    """Which followsync was measured: HEAD, whether the tree is dirty, a digest of its sources.

    The working tree may change while a long run goes on; a digest taken before and after
    each N shows whether it did. Only read-only git commands are used.
    """
    import hashlib

    def digest_of(folder: Path) -> str:
        digest = hashlib.sha256()
        for path in sorted(folder.rglob("*.py")):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0"
                          + path.read_bytes())
        return digest.hexdigest()[:16]

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                                  text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", "followsync")
    measured = SNAPSHOT / "followsync" if SNAPSHOT is not None else ROOT / "followsync"
    return {"head": git("rev-parse", "HEAD"), "followsync_dirty": bool(dirty),
            "followsync_sha256": digest_of(measured),
            "working_tree_sha256": digest_of(ROOT / "followsync"),
            "snapshot": str(SNAPSHOT) if SNAPSHOT is not None else None, "ref": REF}


_SUMMARY = re.compile(r"(\d+) created, (\d+) updated, (\d+) deleted, (\d+) unchanged")


def counts(text: str) -> dict[str, int] | None:
    match = _SUMMARY.search(text)
    if not match:
        return None
    return dict(zip(("created", "updated", "deleted", "unchanged"),
                    (int(g) for g in match.groups()), strict=True))


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One measured step at one N: `repeat` runs of a fresh child process each."""

    n: int
    name: str
    key: str  # rules | validate | first | floor | floor_tz | noop | one
    runs: list[Run] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)  # per-run JSON from a child
    detail: str = ""

    @property
    def wall(self) -> float:
        """Median seconds: the work timed inside the child for in-process steps, else the
        whole process."""
        if self.key.startswith("rules"):
            return statistics.median(e["load_validate_s"] + e["rules_s"] for e in self.extra)
        if self.key.startswith("floor"):
            return self.med("build_s")
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def cpu(self) -> float:
        """Median CPU seconds (user + system) of the same span."""
        if self.key.startswith("rules") or self.key.startswith("floor"):
            return self.med("cpu_s")
        return statistics.median(r.cpu_s for r in self.runs)

    @property
    def process_wall(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def rss(self) -> float:
        return max(r.maxrss_mb for r in self.runs)

    def med(self, key: str) -> float:
        return statistics.median(e[key] for e in self.extra)


class Bench:
    def __init__(self, n: int, folder: Path, repeat: int, seed: int, verbose: bool) -> None:
        self.n, self.folder, self.repeat, self.verbose = n, folder, repeat, verbose
        self.today = date.fromisoformat(NOW[:10])
        self.leads = make_leads(n, seed, self.today)
        self.fs = followsync_cmd()
        self.changes = 0
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(CONFIG_YAML, encoding="utf-8")
        self.write_leads()
        self.write_floor_data()

    # files -----------------------------------------------------------------
    @property
    def leads_path(self) -> Path:
        return self.folder / "leads.yaml"

    def write_leads(self) -> None:
        self.leads_path.write_text(dump_leads(self.leads), encoding="utf-8")

    def write_floor_data(self) -> None:
        rows = []
        for lead_id, lead in self.leads:
            who = f"{lead['name']} ({lead['org']})" if lead.get("org") else lead["name"]
            desc = [f"Follow up with {lead['name']}", "",
                    "Why this date: 2nd follow-up: last touch 2026-11-03 (sent my CV) + 1mo",
                    "Unanswered so far: 1 follow-up.", ""]
            if lead.get("role") or lead.get("org"):
                desc.append(", ".join(x for x in (lead.get("role"), lead.get("org")) if x))
            for label, key in (("Email", "email"), ("Phone", "phone"), ("Link", "url"),
                               ("Status", "status")):
                if lead.get(key):
                    desc.append(f"{label}: {lead[key]}")
            if lead.get("notes"):
                desc += ["", "Notes:", lead["notes"]]
            rows.append({"id": lead_id, "name": lead["name"], "who": who,
                         "description": "\n".join(desc)})
        (self.folder / "floor.json").write_text(json.dumps(rows, ensure_ascii=False),
                                                encoding="utf-8")

    def reset_target(self) -> None:
        shutil.rmtree(self.folder / "state", ignore_errors=True)
        (self.folder / "followups.ics").unlink(missing_ok=True)

    def change_one_lead(self) -> str:
        """A `by: them` reply today on an open lead with only a cadence item: 1 item moves."""
        for lead_id, lead in self.leads[self.changes * 97 % len(self.leads):]:
            if (lead.get("status") in CLOSED or lead.get("follow_ups") or "next" in lead
                    or "snooze_until" in lead or "status_since" in lead
                    or not (lead.get("log") or lead.get("last_contact"))):
                continue
            if any(d0 >= self.today for d0, _, _ in lead.get("log", [])):
                continue
            lead.setdefault("log", []).append((self.today, "them", "replied: let's talk"))
            self.changes += 1
            self.write_leads()
            return lead_id
        raise RuntimeError("no lead to change")

    # running ---------------------------------------------------------------
    def sync(self) -> Run:
        run = run_child([*self.fs, "--config", str(self.folder / "config.yaml"), "--now", NOW,
                         "sync"], self.folder)
        if run.rc != 0:
            raise RuntimeError(f"sync failed ({run.rc}): {run.stdout}{run.stderr}")
        return run

    def log(self, text: str) -> None:
        if self.verbose:
            print(f"  [{self.n}] {text}", file=sys.stderr, flush=True)

    def measure(self) -> list[Step]:
        steps: list[Step] = []
        cfg = str(self.folder / "config.yaml")

        for key, label in (("rules", "load + validate + rules, no lead cache (in-process)"),
                           ("rules_warm", "load + validate + rules, lead cache warm "
                            "(in-process)")):
            rules = Step(self.n, label, key)
            for _ in range(self.repeat):
                if key == "rules":  # a first run ever: no lead cache (it is filled here)
                    shutil.rmtree(self.folder / "cache", ignore_errors=True)
                run = run_child([sys.executable, "-c", RULES_CHILD, str(self.leads_path),
                                 NOW[:10]], self.folder)
                if run.rc != 0:
                    raise RuntimeError(run.stderr)
                rules.runs.append(run)
                rules.extra.append(json.loads(run.stdout))
                self.log(f"{key} {rules.extra[-1]}")
            rules.detail = (f"CPU: load+validate {rules.med('cpu_load_validate_s'):.2f} s, "
                            f"rules {rules.med('cpu_rules_s'):.2f} s; import "
                            f"{rules.med('import_s'):.2f} s wall (excluded); "
                            f"{rules.extra[0]['items']:,} items")
            steps.append(rules)

        validate = Step(self.n, "`followsync validate` (process)", "validate")
        for _ in range(self.repeat):
            run = run_child([*self.fs, "--config", cfg, "validate"], self.folder)
            if run.rc != 0:
                raise RuntimeError(run.stdout + run.stderr)
            validate.runs.append(run)
            self.log(f"validate {run.wall_s:.2f} s wall {run.cpu_s:.2f} s CPU")
        steps.append(validate)

        first = Step(self.n, "first `sync` to .ics (process)", "first")
        for _ in range(self.repeat):
            self.reset_target()
            run = self.sync()
            first.runs.append(run)
            self.log(f"first sync {run.wall_s:.2f} s wall {run.cpu_s:.2f} s CPU "
                     f"{run.maxrss_mb:.0f} MB {counts(run.stdout)}")
        first.detail = f"{counts(first.runs[-1].stdout)}"
        items = (counts(first.runs[-1].stdout) or {}).get("created", 0)
        steps.append(first)

        floors = ((False, "icalendar floor: same items, build+serialise"),
                  (True, "icalendar floor + per-item VTIMEZONE"))
        for with_tz, label in floors if self.n <= FLOOR_MAX_N else ():
            floor = Step(self.n, label, "floor_tz" if with_tz else "floor")
            for _ in range(self.repeat):
                run = run_child([sys.executable, "-c", FLOOR_CHILD,
                                 str(self.folder / "floor.json"), str(items),
                                 "1" if with_tz else "0"], self.folder)
                if run.rc != 0:
                    raise RuntimeError(run.stderr)
                floor.runs.append(run)
                floor.extra.append(json.loads(run.stdout))
                self.log(f"floor tz={with_tz} {floor.extra[-1]}")
            floor.detail = (f"{items:,} items, {1000 * floor.cpu / max(items, 1):.2f} ms CPU "
                            f"per item; import {floor.med('import_s'):.2f} s (excluded)")
            steps.append(floor)

        noop = Step(self.n, "no-op `sync` (process)", "noop")
        for _ in range(self.repeat):
            run = self.sync()
            noop.runs.append(run)
            got = counts(run.stdout)
            if got and (got["created"] or got["updated"] or got["deleted"]):
                raise RuntimeError(f"no-op sync changed something: {run.stdout}")
            self.log(f"no-op sync {run.wall_s:.2f} s wall {run.cpu_s:.2f} s CPU {run.maxrss_mb:.0f} MB "
                     f"{got}")
        noop.detail = f"{counts(noop.runs[-1].stdout)}"
        steps.append(noop)

        one = Step(self.n, "`sync` after one lead changed (process)", "one")
        for _ in range(self.repeat):
            lead_id = self.change_one_lead()
            run = self.sync()
            one.runs.append(run)
            self.log(f"one-change sync ({lead_id}) {run.wall_s:.2f} s wall {run.cpu_s:.2f} s CPU "
                     f"{run.maxrss_mb:.0f} MB {counts(run.stdout)}")
        one.detail = f"{counts(one.runs[-1].stdout)}"
        steps.append(one)
        return steps


    def profile(self, out_dir: Path) -> list[Path]:
        """One extra run of each step under cProfile: N-step.prof and a readable N-step.txt."""
        import io
        import pstats

        out_dir.mkdir(parents=True, exist_ok=True)
        child = self.folder / "rules_child.py"
        child.write_text(RULES_CHILD, encoding="utf-8")
        sync = ["-m", "followsync", "--config", str(self.folder / "config.yaml"), "--now", NOW,
                "sync"]
        plans = [("rules", [str(child), str(self.leads_path), NOW[:10]], None),
                 ("first", sync, self.reset_target), ("noop", sync, None),
                 ("one", sync, self.change_one_lead)]
        written = []
        for key, argv, before in plans:
            if before is not None:
                before()
            prof = out_dir / f"{self.n}-{key}.prof"
            self.log(f"profiling {key} → {prof}")
            run = run_child([sys.executable, "-m", "cProfile", "-o", str(prof), *argv],
                            self.folder)
            if run.rc != 0:
                raise RuntimeError(f"profiling {key} failed: {run.stdout}{run.stderr}")
            text = io.StringIO()
            stats = pstats.Stats(str(prof), stream=text)
            text.write(f"# {self.n} leads, step {key}: {run.stdout.strip()}\n")
            stats.sort_stats("cumulative").print_stats(35)
            stats.sort_stats("tottime").print_stats(20)
            txt = prof.with_suffix(".txt")
            txt.write_text(text.getvalue(), encoding="utf-8")
            written.append(txt)
        return written


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def judge(step: Step, floor: Step | None) -> tuple[str, str, str]:
    """(goal, verdict on wall time, verdict on CPU time) from GOALS; "—" where none.

    Wall time is what the issue's goals are about; CPU time is shown beside it because on a
    shared, loaded machine the wall time also measures the neighbours.
    """
    goal = GOALS.get((step.n, step.key))
    if goal is None:
        return "—", "—", "—"
    seconds, rss = goal
    mem_ok = step.rss < rss
    mem = f"RSS < {rss:.0f} MB"

    def verdict(ok: bool) -> str:
        return "PASS" if ok and mem_ok else "FAIL"

    if step.key == "first" and seconds is None and floor is not None:
        return (f"≤ {GOAL_FIRST_RATIO}× floor, {mem}",
                verdict(step.wall <= GOAL_FIRST_RATIO * floor.wall),
                verdict(step.cpu <= GOAL_FIRST_RATIO * floor.cpu))
    if seconds is None:
        return mem, verdict(True), verdict(True)
    return (f"< {seconds:g} s, {mem}", verdict(step.wall < seconds), verdict(step.cpu < seconds))


def items_at(steps: list[Step]) -> dict[int, int]:
    """The follow-ups planned at each N (from the in-process rules step)."""
    found: dict[int, int] = {}
    for step in steps:
        if step.key.startswith("rules") and step.extra:
            found[step.n] = int(step.extra[0]["items"])
    return found


def scaling(steps: list[Step]) -> list[str]:
    """Each step's time at the larger N ÷ at the smaller: linear (or better) is ≤ N ratio.

    Each N's lead file is drawn at random, so the larger one does not hold exactly N-ratio
    times the work (10,000 leads plan ~10.1× the follow-ups of 1,000): the per-item column
    scales the ratio to exactly the N ratio of items, and is the one judged."""
    sizes = sorted({s.n for s in steps})
    items = items_at(steps)
    lines = ["", "Scaling: each step's median wall (and CPU) time at the larger N ÷ at the "
             "smaller; linear is at most the ratio of the N. The files are drawn at random, so "
             "the items ratio is not exactly the N ratio: \"per item\" is the wall ratio × "
             "(N ratio ÷ items ratio), what the ratio would be for exactly N-ratio times the "
             "work, and is judged:", "",
             "| step | N | items ratio | wall ratio | CPU ratio | wall ratio per item | goal "
             "| result |", "|---|---|---:|---:|---:|---:|---|---|"]
    for small, large in itertools.pairwise(sizes):
        limit = large / small
        work = items[large] / items[small] if items.get(small) and items.get(large) else limit
        for step in steps:
            if step.n != large:
                continue
            other = next((s for s in steps if s.n == small and s.key == step.key), None)
            if other is None or other.wall <= 0:
                continue
            ratio, cpu = step.wall / other.wall, step.cpu / max(other.cpu, 1e-9)
            per_item = ratio * limit / work
            # (the icalendar floors are not followsync's: shown, not judged)
            judged = small == 1_000 and large == 10_000 and not step.key.startswith("floor")
            lines.append(f"| {step.name} | {large:,} ÷ {small:,} | {work:.2f} | {ratio:.1f} | "
                         f"{cpu:.1f} | {per_item:.1f} | "
                         f"{'≤ ' + format(GOAL_SCALING, 'g') if judged else f'(≤ {limit:g})'} | "
                         f"{('PASS' if per_item <= GOAL_SCALING else 'FAIL') if judged else '—'}"
                         " |")
    return lines


def report(steps: list[Step]) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    lines = ["| N | step | median wall s | median CPU s | peak RSS MB | goal (issue 13) "
             "| wall | CPU | detail |",
             "|---:|---|---:|---:|---:|---|---|---|---|"]
    rows, ratios = [], []
    floors = {s.n: s for s in steps if s.key == "floor"}
    floors_tz = {s.n: s for s in steps if s.key == "floor_tz"}
    for step in steps:
        goal, by_wall, by_cpu = judge(step, floors.get(step.n))
        lines.append(f"| {step.n:,} | {step.name} | {step.wall:.3f} | {step.cpu:.3f} | "
                     f"{step.rss:.0f} | {goal} | {by_wall} | {by_cpu} | {step.detail} |")
        rows.append({"n": step.n, "step": step.name, "key": step.key,
                     "median_wall_s": round(step.wall, 4), "median_cpu_s": round(step.cpu, 4),
                     "process_wall_median_s": round(step.process_wall, 4),
                     "process_walls_s": [round(r.wall_s, 4) for r in step.runs],
                     "process_cpus_s": [round(r.cpu_s, 4) for r in step.runs],
                     "peak_rss_mb": round(step.rss, 1), "goal": goal, "result_wall": by_wall,
                     "result_cpu": by_cpu, "detail": step.detail, "child": step.extra})
    lines += scaling(steps)
    lines += ["", "First sync against the icalendar floor (same number of items, same shape):", "",
              "| N | items | first sync wall s | floor wall s | ratio | first sync CPU s "
              "| floor CPU s | ratio | floor+VTIMEZONE CPU s | ratio |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in sorted(floors):
        first = next(s for s in steps if s.n == n and s.key == "first")
        f0, ft = floors[n], floors_tz[n]
        entry = {"n": n, "items": f0.extra[0]["items"],
                 "first_sync_wall_s": round(first.wall, 3), "floor_wall_s": round(f0.wall, 3),
                 "ratio_wall": round(first.wall / f0.wall, 2),
                 "first_sync_cpu_s": round(first.cpu, 3), "floor_cpu_s": round(f0.cpu, 3),
                 "ratio_cpu": round(first.cpu / f0.cpu, 2),
                 "floor_tz_cpu_s": round(ft.cpu, 3), "ratio_cpu_tz": round(first.cpu / ft.cpu, 2)}
        ratios.append(entry)
        lines.append(f"| {n:,} | {entry['items']:,} | {first.wall:.2f} | {f0.wall:.2f} | "
                     f"{entry['ratio_wall']:.2f}× | {first.cpu:.2f} | {f0.cpu:.2f} | "
                     f"{entry['ratio_cpu']:.2f}× | {ft.cpu:.2f} | {entry['ratio_cpu_tz']:.2f}× |")
    return "\n".join(lines), rows, ratios


def take_snapshot(base: Path, ref: str | None = None) -> Path:
    """Copy followsync/ (the working tree, or as committed at `ref`) to base/snapshot, compile
    it, and make every later child import that copy (see SNAPSHOT); its folder."""
    global SNAPSHOT, REF
    REF = ref
    SNAPSHOT = base / "snapshot"
    shutil.rmtree(SNAPSHOT, ignore_errors=True)
    if ref:  # a committed version, read with `git archive` (changes nothing)
        import io
        import tarfile

        blob = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref,
                               "followsync"], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            tar.extractall(SNAPSHOT, filter="data")
    else:
        shutil.copytree(ROOT / "followsync", SNAPSHOT / "followsync",
                        ignore=shutil.ignore_patterns("__pycache__"))
    # `pip install .` (the README's way) writes each module's .pyc at install time; an
    # environment with PYTHONDONTWRITEBYTECODE=1 (as here) would otherwise recompile every
    # module in every child and measure the compiler, not followsync.
    compileall.compile_dir(SNAPSHOT / "followsync", quiet=1)
    probe = run_child([sys.executable, "-c", "import followsync; print(followsync.__file__)"],
                      base)
    if not probe.stdout.strip().startswith(str(SNAPSHOT)):
        raise SystemExit(f"the snapshot is not what the children import: {probe.stdout}"
                         f"{probe.stderr}; run with --live")
    return SNAPSHOT


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000", help="comma-separated N "
                        "(default 1000,10000,50000)")
    parser.add_argument("--out", default=str(HERE / "out" / "core.json"), help="JSON result")
    parser.add_argument("--repeat", type=int, default=3, help="runs per step (median reported)")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a "
                        "temporary folder, removed afterwards)")
    parser.add_argument("--profile", metavar="DIR", nargs="?", const=str(HERE / "out" / "prof"),
                        help="after measuring, run each step once more under cProfile and "
                        "write N-step.prof / N-step.txt to DIR (default bench/out/prof)")
    parser.add_argument("--live", action="store_true", help="import followsync/ as it is at "
                        "each step (default: a copy taken at the start, so a working tree "
                        "edited during a long run does not mix versions)")
    parser.add_argument("--ref", metavar="GIT-REF", help="measure followsync/ as committed "
                        "at this ref (e.g. HEAD), extracted with `git archive`, instead of a "
                        "copy of the working tree")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]

    start_spawner()  # before any lead file is made: see SPAWNER
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="followsync-bench-"))
    if args.live and args.ref:
        parser.error("--ref and --live exclude each other")
    if not args.live:
        take_snapshot(base, args.ref)
    steps: list[Step] = []
    code: list[dict[str, Any]] = []
    loads: list[dict[str, Any]] = []
    try:
        for n in sizes:
            print(f"N = {n:,} in {base / str(n)}", file=sys.stderr, flush=True)
            before, load_before = code_fingerprint(), os.getloadavg()
            bench = Bench(n, base / str(n), args.repeat, args.seed, not args.quiet)
            steps += bench.measure()
            after, load_after = code_fingerprint(), os.getloadavg()
            code.append({"n": n, "before": before, "after": after})
            loads.append({"n": n, "before": load_before, "after": load_after})
            if before["followsync_sha256"] != after["followsync_sha256"]:
                print(f"WARNING: followsync/ changed while N = {n:,} was measured",
                      file=sys.stderr)
            if args.profile:
                try:
                    for path in bench.profile(Path(args.profile).resolve()):
                        print(f"profile: {path}", file=sys.stderr)
                except RuntimeError as exc:  # a profile is a bonus: keep the measurements
                    print(f"WARNING: {exc}", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    table, rows, ratios = report(steps)
    if REF:
        measured = f"followsync/ as committed at {REF} = {code[0]['before']['head'][:7]}"
    elif SNAPSHOT:
        dirty = " + local changes" if code[0]["before"]["followsync_dirty"] else ""
        measured = f"a copy of the working tree at HEAD {code[0]['before']['head'][:7]}{dirty}"
    else:
        measured = "the live working tree"
    versions = ", ".join(
        c["before"]["followsync_sha256"]
        + ("" if c["before"]["followsync_sha256"] == c["after"]["followsync_sha256"]
           else f" → {c['after']['followsync_sha256']} (CHANGED during the run)")
        for c in code)
    table += ("\n\nload average (1 min) before → after each N: "
              + "; ".join(f"N={x['n']:,}: {x['before'][0]:.1f} → {x['after'][0]:.1f}"
                          for x in loads)
              + f" on {os.cpu_count()} CPUs. followsync measured: {versions} ({measured}).")
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "when": datetime.now().isoformat(timespec="seconds"), "now": NOW, "timezone": TIMEZONE,
        "python": sys.version.split()[0], "platform": platform.platform(),
        "cpus": os.cpu_count(), "repeat": args.repeat, "seed": args.seed,
        "command": followsync_cmd(), "code": code, "loadavg": loads, "steps": rows,
        "first_sync_vs_floor": ratios,
        "goals": {f"{n}:{key}": {"seconds": g[0], "rss_mb": g[1]}
                  for (n, key), g in GOALS.items()}
                 | {"first_sync_floor_ratio": GOAL_FIRST_RATIO, "scaling": GOAL_SCALING},
    }, indent=2, ensure_ascii=False), encoding="utf-8")
    out.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
    print(f"\nJSON: {out} (table: {out.with_suffix('.md')})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
