#!/usr/bin/env python3
"""CalDAV benchmark: followsync against vdirsyncer, a naive python-caldav loop and a raw floor.

    python bench/caldav_sync.py [--n 1000] [--out bench/out/caldav.json] [--profile]

One Radicale server (started here on a free 127.0.0.1 port, htpasswd plain auth, `delay = 0`,
its storage in a temporary folder) serves every competitor, each in its OWN fresh calendar, so
all of them meet the same server process. A small counting reverse proxy on 127.0.0.1
(tests/faultproxy.py, no faults set) sits in front of it: every competitor talks to the proxy,
which records each request, so requests are counted per step exactly as they reach the server.

Competitors and steps (each step is its own child process):

  raw floor    a keep-alive http.client loop PUTting the N items (no preconditions): the floor
               for a first upload. Run first and last; the faster run is the floor.
  followsync   `followsync --config CFG --now NOW sync` on a generated lead file of N leads
               (one cadence follow-up each, timed events, Europe/Berlin): initial (calendar
               created by followsync itself), no-op, and after 10 leads got a new log line.
  vdirsyncer   0.21 from its own venv (bench/.venv-vdirsyncer, made on first use), a
               `filesystem` → `caldav` pair over a vdir holding the same N items (the exact
               texts followsync renders); `discover` (setup, reported apart), then sync
               (initial), sync (no-op), 10 files rewritten, sync.
  naive        python-caldav 3.x: get_principal, calendar by name, `add_event` per item; no-op
               and "10 changed" fetch every event, compare it (normalised) with the wanted
               set, and save what differs.

For each step: wall time around the child, the child's CPU (user+sys) and peak RSS from
os.wait4 on its pid, and the requests the proxy saw (by method). The printout is a markdown
table, the ratios and pass/fail against the issue's goals (N = 1,000); the same data, with
each followsync step's request log, goes to JSON. `--profile` then runs followsync's no-op and
a first sync into another fresh calendar under cProfile (not measured) and writes the top
functions next to the JSON.

The vdir and the naive loop get the items pre-rendered (their rendering is not counted);
followsync's steps include loading and checking the lead file, the rules and the rendering.
Nothing but 127.0.0.1 is ever contacted (the venv install uses pip's configured index).
"""

from __future__ import annotations

import argparse
import base64
import compileall
import contextlib
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
from faultproxy import FaultProxy  # noqa: E402  (a counting proxy when no fault is set)


class TimingProxy(FaultProxy):
    """The fault proxy (no faults set) that also sums the time spent waiting on Radicale, so a
    step's wall time splits into server time and the rest (client work and scheduling)."""

    def __init__(self, upstream: str, timeout: float = 30.0) -> None:
        super().__init__(upstream, timeout)
        self.upstream_s = 0.0

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes
                 ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        started = time.perf_counter()
        try:
            return super()._forward(method, path, headers, body)
        finally:
            spent = time.perf_counter() - started
            with self._lock:
                self.upstream_s += spent

HOST = "127.0.0.1"
USER, PASSWORD = "alice", "bench-pass-1"
NOW = "2026-12-01T08:00"
TIMEZONE = "Europe/Berlin"
MB = 1024.0  # ru_maxrss is KiB on Linux
VENV = HERE / ".venv-vdirsyncer"
CHANGED = 10
CHANGE_NOTE = "sent a short follow-up note"

# The goals (N = 1,000).
GOAL_INITIAL_RATIO = 1.1  # followsync initial wall ≤ 1.1 × raw floor
GOAL_INITIAL_CPU = 1.0  # s of client CPU
GOAL_NOOP_RATIO = 0.5  # followsync no-op wall ≤ 0.5 × vdirsyncer no-op wall
GOAL_NOOP_REQUESTS = 1
GOAL_CHANGED_OTHER = 2  # besides the 10 PUTs

# ---------------------------------------------------------------------------------------------
# Lead file
# ---------------------------------------------------------------------------------------------

FIRST = ["Zoë", "José", "Françoise", "Jürgen", "Søren", "Łukasz", "Anaïs", "Björn", "Siobhán",
         "Chloé", "Tomás", "Renée", "Ingrid", "Mateus", "Aoife", "Dana", "Lena", "Grace",
         "Viktor", "Ruth", "Paul", "Amara", "Yusuf", "Mei", "Priya", "Omar"]
LAST = ["Müller", "García", "Østergaard", "Nguyễn", "O'Brien", "Kowalczyk", "Åberg", "Ferreira",
        "Okafor", "Lin", "Nagy", "Whitfield", "Reyes", "Meyer", "Dubois", "Novák", "Rossi"]
ORGS = ["Fernhill Robotics", "Harbor Talent", "Quill & Co", "Atlas Freight", "Nordlys AS",
        "Café Métier", "Zürich Analytics GmbH", "Lumen Labs", "Acme Corp", "Orbit Health",
        "Kestrel Capital", "Helix Bio", "Granite Ledger", "Blue Fjord", "Ångström Optics"]
ROLES = ["CTO", "Recruiter", "Head of Product", "Engineering Manager", "Talent Partner"]
NOTES = ["Met at the spring job fair.", "Wants a portfolio link first.",
         "Prefers email; slow to answer in December.", "Introduced by a former colleague.",
         "Team is hiring two backend engineers next quarter."]
LEADS_HEAD = """\
# Generated by bench/caldav_sync.py: one cadence follow-up per lead, timed events.
version: 1
defaults:
  cadence: [1w, 2w, 1mo]
  at: "09:00"
  alarms: [0m]
leads:
"""


def make_leads(n: int, seed: int, today: date) -> list[dict[str, Any]]:
    """n open leads, each with a recent two-way contact, so each has one future follow-up."""
    rnd = random.Random(seed)
    leads = []
    for i in range(n):
        first, last, org = rnd.choice(FIRST), rnd.choice(LAST), rnd.choice(ORGS)
        leads.append({
            "id": f"lead-{i:05d}", "name": f"{first} {last}", "org": org,
            "role": rnd.choice(ROLES), "email": f"p{i}@example.com",
            "notes": rnd.sample(NOTES, rnd.randint(1, 2)),
            "last_contact": today - timedelta(days=rnd.randint(0, 6)),
            "log": [],
        })
    return leads


def dump_leads(leads: list[dict[str, Any]]) -> str:
    out = [LEADS_HEAD]
    for lead in leads:
        out.append(f"  {lead['id']}:\n")
        for key in ("name", "org", "role", "email"):
            out.append(f"    {key}: {json.dumps(lead[key], ensure_ascii=False)}\n")
        out.append("    notes: |\n" + "".join(f"      {n}\n" for n in lead["notes"]))
        out.append(f"    last_contact: {lead['last_contact'].isoformat()}\n")
        if lead["log"]:
            out.append("    log:\n" + "".join(f"      - {d.isoformat()} {t}\n"
                                              for d, t in lead["log"]))
    return "".join(out)


CONFIG_YAML = """\
leads: leads.yaml
timezone: {zone}
state_dir: {state}
targets:
  - {{name: bench, type: caldav, url: "{url}", calendar: "{calendar}", username: {user},
     password_env: BENCH_PW}}
"""

# ---------------------------------------------------------------------------------------------
# Child programs (each runs as its own process)
# ---------------------------------------------------------------------------------------------

# Renders exactly what followsync PUTs for each item (same config, same --now), one file per
# UID: the vdir's contents and the naive loop's wanted set. Not measured.
RENDER_CHILD = r"""
import sys
from datetime import datetime
from pathlib import Path
from followsync.config import load_config
from followsync.sync.planning import make_plans, wants_for
from followsync.leads import load_leads
from followsync.render import render
cfg, now_text, out, sequence = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
config = load_config(cfg)
now = datetime.fromisoformat(now_text).replace(tzinfo=config.timezone)
book = load_leads(list(config.lead_paths), named_at=config.lead_named_at)
plans, _ = make_plans(book, config.today(now), {})
wants = wants_for(plans, config.targets[0], config.timezone.key)
out.mkdir(parents=True, exist_ok=True)
for uid, want in wants.items():
    text = render(want.item, uid=uid, kind=want.kind, zone=config.timezone, stamp=now,
                  sequence=sequence)
    (out / f"{uid}.ics").write_bytes(text.encode("utf-8"))
print(len(wants))
"""

# The floor: one keep-alive connection, one unconditional PUT per item, nothing else.
RAW_CHILD = r"""
import base64, http.client, os, sys
port, path, folder, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
bad = 0
for name in sorted(os.listdir(folder)):
    with open(os.path.join(folder, name), "rb") as fh:
        body = fh.read()
    conn.request("PUT", path + name, body=body,
                 headers={"Content-Type": "text/calendar; charset=utf-8", "Authorization": auth})
    response = conn.getresponse()
    response.read()
    bad += response.status not in (200, 201, 204)
conn.close()
print(f"bad={bad}")
sys.exit(1 if bad else 0)
"""

# A naive python-caldav 3.x client: add_event per item; fetch everything and compare.
NAIVE_CHILD = r"""
import os, re, sys
from pathlib import Path
import caldav
from icalendar import Calendar

mode, url, user, password, name, folder = sys.argv[1:7]
VOLATILE = {"DTSTAMP", "LAST-MODIFIED", "SEQUENCE", "PRODID", "CREATED"}

def normalise(text):
    out = []
    for comp in Calendar.from_ical(text).walk():
        if comp.name in ("VCALENDAR", "VTIMEZONE", "STANDARD", "DAYLIGHT"):
            continue
        props = []
        for key, value in comp.property_items(recursive=False):
            if key in VOLATILE or key in ("BEGIN", "END"):
                continue
            raw = value.to_ical() if hasattr(value, "to_ical") else value
            raw = raw.decode() if isinstance(raw, bytes) else str(raw)
            params = getattr(value, "params", None) or {}
            props.append(key + "".join(f";{k}={params[k]}" for k in sorted(params)) + ":"
                         + re.sub(r"[ \t]+(\\n|$)", r"\1", raw))
        out.append(comp.name + "\n" + "\n".join(sorted(props)))
    return "\n\n".join(out)

def uid_of(text):
    return re.search(r"^UID:(.*?)\r?$", text, re.M).group(1).strip()

client = caldav.DAVClient(url=url, username=user, password=password, enable_rfc6764=False,
                          timeout=120)
calendar = client.get_principal().calendar(name=name)
wanted = {}
for path in sorted(Path(folder).iterdir()):
    text = path.read_text(encoding="utf-8")
    wanted[uid_of(text)] = text
if mode == "initial":
    for text in wanted.values():
        calendar.add_event(text)
    print(f"saved={len(wanted)}")
    sys.exit(0)
have = {}
for event in calendar.get_events():
    text = event.data
    have[uid_of(text)] = (event, text)
saved = 0
for uid, text in wanted.items():
    found = have.get(uid)
    if found is None or normalise(found[1]) != normalise(text):
        calendar.add_event(text)
        saved += 1
print(f"fetched={len(have)} saved={saved}")
"""

# ---------------------------------------------------------------------------------------------
# Server, proxy, processes
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def auth_header() -> str:
    return "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def direct(port: int, method: str, path: str, body: bytes | str = b"",
           headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request straight to Radicale (bypassing the proxy: setup and checks, not counted)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        conn.request(method, path, body=body.encode() if isinstance(body, str) else body,
                     headers={"Authorization": auth_header(), **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Radicale:
    def __init__(self, root: Path) -> None:
        self.root = root
        storage = root / "collections"
        storage.mkdir(parents=True)
        (root / "users").write_text(f"{USER}:{PASSWORD}\n")
        self.port = free_port()
        config = root / "config"
        config.write_text(
            "[server]\n"
            f"hosts = {HOST}:{self.port}\n"
            "[auth]\n"
            "type = htpasswd\n"
            f"htpasswd_filename = {root / 'users'}\n"
            "htpasswd_encryption = plain\n"
            "delay = 0\n"
            "[rights]\ntype = owner_only\n"
            f"[storage]\nfilesystem_folder = {storage}\n"
            "[web]\ntype = none\n"
            "[logging]\nlevel = warning\n")
        self.log = open(root / "radicale.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen([sys.executable, "-m", "radicale", "-C", str(config)],
                                        stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=subprocess.STDOUT, cwd=root)
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError):
                if direct(self.port, "PROPFIND", "/", headers={"Depth": "0"})[0] < 500:
                    break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("Radicale did not start:\n"
                                 + (root / "radicale.log").read_text(errors="replace")[-2000:])
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def cpu_seconds(self) -> float:
        """Radicale's own CPU so far (from /proc), to show where the time goes."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def make_calendar(self, name: str) -> str:
        """A new calendar under the principal; its absolute path."""
        direct(self.port, "PROPFIND", f"/{USER}/", headers={"Depth": "0"})  # creates principal
        path = f"/{USER}/{uuid.uuid4().hex}/"
        body = ('<?xml version="1.0" encoding="utf-8"?>'
                '<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
                f'<d:set><d:prop><d:displayname>{name}</d:displayname>'
                '<c:supported-calendar-component-set><c:comp name="VEVENT"/>'
                '<c:comp name="VTODO"/></c:supported-calendar-component-set>'
                '</d:prop></d:set></c:mkcalendar>')
        status, data = direct(self.port, "MKCALENDAR", path, body,
                              {"Content-Type": "application/xml"})
        if status != 201:
            raise SystemExit(f"MKCALENDAR {path}: HTTP {status} {data[:200]!r}")
        return path

    def count_items(self, path: str) -> int:
        body = ('<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:">'
                '<d:prop><d:getetag/></d:prop></d:propfind>')
        status, data = direct(self.port, "PROPFIND", path, body,
                              {"Depth": "1", "Content-Type": "application/xml"})
        return data.count(b".ics</") if status == 207 else -1

    def calendar_named(self, name: str) -> str | None:
        body = ('<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:">'
                '<d:prop><d:displayname/></d:prop></d:propfind>')
        _, data = direct(self.port, "PROPFIND", f"/{USER}/", body,
                              {"Depth": "1", "Content-Type": "application/xml"})
        for block in re.findall(rb"<(?:\w+:)?response\b.*?</(?:\w+:)?response>", data, re.S):
            if f">{name}<".encode() in block:
                href = re.search(rb"<(?:\w+:)?href>(.*?)</", block, re.S)
                return href.group(1).decode() if href else None
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


@dataclass
class Measure:
    competitor: str
    step: str
    wall_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    rss_mb: float
    requests: int
    methods: dict[str, int]
    statuses: dict[str, int]
    rc: int
    server_cpu_s: float
    load_1m: float = 0.0  # the machine's load average when the step ended (noise marker)
    output: str = ""
    client_side_s: float = 0.0  # wall minus the time the proxy waited on Radicale
    log: list[str] = field(default_factory=list)  # the proxy's request log (small steps)


class Runner:
    def __init__(self, server: Radicale, proxy: TimingProxy, verbose: bool) -> None:
        self.server, self.proxy, self.verbose = server, proxy, verbose

    def run(self, competitor: str, step: str, argv: list[str], cwd: Path,
            env: dict[str, str] | None = None, timeout: float = 3600.0) -> Measure:
        """Run argv as a fresh process; wall around it, CPU and peak RSS via os.wait4."""
        before = len(self.proxy.seen())
        server_before = self.server.cpu_seconds()
        upstream_before = self.proxy.upstream_s
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("FOLLOWSYNC_", "VDIRSYNCER_"))}
        full_env.update(env or {})
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            started = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, env=full_env)
            deadline = started + timeout
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.001)
            wall = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            text = (out.read() + err.read()).decode("utf-8", "replace").strip()
        time.sleep(0.05)  # let the proxy record the last answer
        seen = self.proxy.seen()[before:]
        measure = Measure(
            competitor, step, wall, usage.ru_utime + usage.ru_stime, usage.ru_utime,
            usage.ru_stime, usage.ru_maxrss / MB, len(seen),
            dict(Counter(s.method for s in seen)), dict(Counter(str(s.status) for s in seen)),
            proc.returncode, self.server.cpu_seconds() - server_before, os.getloadavg()[0],
            text[-1500:], wall - (self.proxy.upstream_s - upstream_before),
            [f"{s.method} {s.path} {s.status}" for s in seen] if len(seen) <= 60 else [])
        self.say(f"  {competitor:10} {step:9} {wall:7.2f} s wall, {measure.cpu_s:5.2f} s cpu, "
                 f"{len(seen):5} req {dict(measure.methods)}, rc={proc.returncode}, "
                 f"load {measure.load_1m:.1f}")
        if proc.returncode != 0:
            self.say(f"    output: {text[-1500:]}")
        return measure

    def say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


def followsync_cmd() -> list[str]:
    """The console script next to this python (not a pyenv shim), else `python -m`."""
    script = Path(sys.executable).parent / "followsync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "followsync"]


def ensure_vdirsyncer() -> Path:
    exe = VENV / "bin" / "vdirsyncer"
    if not exe.exists():
        print("making bench/.venv-vdirsyncer (pip install vdirsyncer) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "vdirsyncer"], check=True)
    return exe


def vdirsyncer_version(exe: Path) -> str:
    done = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


# ---------------------------------------------------------------------------------------------
# The bench
# ---------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, n: int, work: Path, seed: int, verbose: bool) -> None:
        self.n, self.work, self.verbose = n, work, verbose
        self.today = date.fromisoformat(NOW[:10])
        self.leads = make_leads(n, seed, self.today)
        self.results: list[Measure] = []
        self.notes: dict[str, Any] = {}
        self.server = Radicale(work / "radicale")
        self.proxy = TimingProxy(self.server.url, timeout=300).start()
        self.runner = Runner(self.server, self.proxy, verbose)
        self.fs_dir = work / "followsync"
        self.fs_dir.mkdir()
        self.items_v1 = work / "items-v1"
        self.items_v2 = work / "items-v2"
        self.changed_files: list[str] = []
        self.noop_steps: list[tuple[str, list[str], Path, dict[str, str]]] = []

    def close(self) -> None:
        self.proxy.stop()
        self.server.stop()

    def add(self, m: Measure) -> Measure:
        self.results.append(m)
        return m

    @property
    def purl(self) -> str:
        return self.proxy.url

    # --- shared inputs ---
    def write_followsync_config(self, folder: Path, calendar: str, state: str) -> Path:
        (folder / "leads.yaml").write_text(dump_leads(self.leads), encoding="utf-8")
        cfg = folder / "config.yaml"
        cfg.write_text(CONFIG_YAML.format(zone=TIMEZONE, state=state, url=self.purl,
                                          calendar=calendar, user=USER), encoding="utf-8")
        return cfg

    def render(self, cfg: Path, out: Path, sequence: int) -> int:
        done = subprocess.run([sys.executable, "-c", RENDER_CHILD, str(cfg), NOW, str(out),
                               str(sequence)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"rendering the items failed:\n{done.stderr[-3000:]}")
        return int(done.stdout.strip())

    def change_leads(self) -> list[str]:
        """Ten leads spread over the file get a new "I reached out" log line today."""
        step = max(1, self.n // CHANGED)
        picked = [self.leads[i * step] for i in range(CHANGED)]
        for lead in picked:
            lead["log"].append((self.today, CHANGE_NOTE))
        return [lead["id"] for lead in picked]

    def prepare_items(self, cfg: Path) -> None:
        count = self.render(cfg, self.items_v1, 0)
        if count != self.n:
            raise SystemExit(f"expected {self.n} items, rendered {count}")

    def prepare_changed_items(self, cfg: Path) -> None:
        self.render(cfg, self.items_v2, 1)
        # v2 = v1 with the changed items replaced; the rest byte-identical (same --now)
        for path in sorted(self.items_v1.iterdir()):
            new = (self.items_v2 / path.name).read_bytes()
            old = path.read_bytes()
            if new.replace(b"SEQUENCE:1", b"SEQUENCE:0") != old:
                self.changed_files.append(path.name)
            else:
                (self.items_v2 / path.name).write_bytes(old)
        if len(self.changed_files) != CHANGED:
            raise SystemExit(f"expected {CHANGED} changed items, found {len(self.changed_files)}")

    # --- competitors ---
    def raw(self, label: str) -> None:
        path = self.server.make_calendar(f"Bench raw {label}")
        m = self.runner.run("raw floor", "initial",
                            [sys.executable, "-c", RAW_CHILD, str(self.proxy.port), path,
                             str(self.items_v1), USER, PASSWORD], self.work)
        m.output += f" run={label}"
        self.add(m)
        self.check(f"raw-{label}", path)

    def followsync(self, changed_ids: list[str]) -> None:
        """Initial and no-op; then the 10 leads get their new log line; then sync again."""
        cfg = self.fs_dir / "config.yaml"
        argv = [*followsync_cmd(), "--config", str(cfg), "--now", NOW, "sync"]
        env = {"BENCH_PW": PASSWORD}
        for step in ("initial", "no-op"):
            self.add(self.runner.run("followsync", step, argv, self.fs_dir, env))
        self.noop_steps.append(("followsync", argv, self.fs_dir, env))
        for lead in self.leads:
            if lead["id"] in changed_ids:
                lead["log"].append((self.today, CHANGE_NOTE))
        (self.fs_dir / "leads.yaml").write_text(dump_leads(self.leads), encoding="utf-8")
        self.add(self.runner.run("followsync", "10 changed", argv, self.fs_dir, env))
        path = self.server.calendar_named("Bench followsync")
        self.notes["followsync_calendar"] = path
        if path:
            self.check("followsync", path)
        for lead in self.leads:  # back to the initial lead file (for --profile's first sync)
            if lead["id"] in changed_ids:
                lead["log"].pop()

    def followsync_again(self) -> None:
        """A second first sync, into a calendar of its own, after the last floor run: the
        floor is the faster of two runs, so followsync's initial is too (like with like)."""
        folder = self.work / "followsync-second"
        folder.mkdir()
        cfg = self.write_followsync_config(folder, "Bench followsync second", "./state")
        m = self.runner.run("followsync", "initial",
                            [*followsync_cmd(), "--config", str(cfg), "--now", NOW, "sync"],
                            folder, {"BENCH_PW": PASSWORD})
        m.output += " run=second"
        self.add(m)
        path = self.server.calendar_named("Bench followsync second")
        if path:
            self.check("followsync-second", path)

    def vdirsyncer(self, exe: Path) -> None:
        path = self.server.make_calendar("Bench vdirsyncer")
        vdir = self.work / "vdir"
        shutil.copytree(self.items_v1, vdir)
        status = self.work / "vdirsyncer-status"
        cfg = self.work / "vdirsyncer.conf"
        cfg.write_text(
            "[general]\n"
            f'status_path = "{status}/"\n\n'
            "[pair bench]\n"
            'a = "bench_local"\nb = "bench_remote"\n'
            "collections = null\n"
            'conflict_resolution = "a wins"\n\n'
            "[storage bench_local]\n"
            'type = "filesystem"\n'
            f'path = "{vdir}/"\n'
            'fileext = ".ics"\n\n'
            "[storage bench_remote]\n"
            'type = "caldav"\n'
            f'url = "{self.proxy.origin}{path}"\n'
            f'username = "{USER}"\n'
            f'password = "{PASSWORD}"\n', encoding="utf-8")
        base = [str(exe), "-c", str(cfg)]
        # discover asks before creating collections; with `collections = null` nothing is
        # created, and --no-list keeps it quiet. stdin is /dev/null: any question fails loudly.
        self.add(self.runner.run("vdirsyncer", "discover", [*base, "discover", "--no-list"],
                                 self.work))
        self.add(self.runner.run("vdirsyncer", "initial", [*base, "sync"], self.work))
        self.add(self.runner.run("vdirsyncer", "no-op", [*base, "sync"], self.work))
        self.noop_steps.append(("vdirsyncer", [*base, "sync"], self.work, {}))
        for name in self.changed_files:
            shutil.copyfile(self.items_v2 / name, vdir / name)
        self.add(self.runner.run("vdirsyncer", "10 changed", [*base, "sync"], self.work))
        self.check("vdirsyncer", path)

    def naive(self) -> None:
        name = "Bench naive"
        path = self.server.make_calendar(name)
        for step, mode, folder in (("initial", "initial", self.items_v1),
                                   ("no-op", "compare", self.items_v1),
                                   ("10 changed", "compare", self.items_v2)):
            self.add(self.runner.run("naive", step,
                                     [sys.executable, "-c", NAIVE_CHILD, mode, self.purl, USER,
                                      PASSWORD, name, str(folder)], self.work))
        self.check("naive", path)

    def repeat_noops(self, k: int) -> None:
        """More no-op runs of followsync and vdirsyncer, alternating, once all else is done:
        a no-op takes a second or two, so one run alone is at the mercy of the machine."""
        steps = [step for step in self.noop_steps if step]
        for _ in range(k):
            for competitor, argv, cwd, env in steps:
                self.add(self.runner.run(competitor, "no-op", argv, cwd, env))

    def check(self, label: str, path: str) -> None:
        found = self.server.count_items(path)
        self.notes.setdefault("items_in_calendar", {})[label] = found
        if found != self.n:
            self.runner.say(f"  !! {label}: {found} items in {path}, expected {self.n}")

    # --- profiling (not measured) ---
    def profile(self, out_dir: Path) -> dict[str, str]:
        import pstats

        fs_python = Path(followsync_cmd()[0]).parent / "python"
        python = str(fs_python) if fs_python.exists() else sys.executable
        written: dict[str, str] = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWSYNC_")}
        env["BENCH_PW"] = PASSWORD
        # the no-op of the measured state, then a first sync into a new calendar
        folder = self.work / "followsync-profile"
        folder.mkdir()
        cfg2 = self.write_followsync_config(folder, "Bench followsync profile", "./state")
        jobs = [("no-op", self.fs_dir / "config.yaml", self.fs_dir),
                ("initial", cfg2, folder)]
        for step, cfg, cwd in jobs:
            prof = out_dir / f"caldav-profile-{step}.prof"
            before = len(self.proxy.seen())
            subprocess.run([python, "-m", "cProfile", "-o", str(prof), "-m", "followsync",
                            "--config", str(cfg), "--now", NOW, "sync"], cwd=cwd, env=env,
                           check=False, capture_output=True)
            seen = self.proxy.seen()[before:]
            text_path = out_dir / f"caldav-profile-{step}.txt"
            with open(text_path, "w") as fh:
                fh.write(f"# followsync {step} under cProfile; requests: "
                         f"{dict(Counter(s.method for s in seen))}\n")
                stats = pstats.Stats(str(prof), stream=fh)
                stats.sort_stats("cumulative").print_stats(45)
                stats.sort_stats("tottime").print_stats(30)
            written[step] = str(text_path)
        return written


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

STEPS = ("initial", "no-op", "10 changed")
ORDER = ("followsync", "vdirsyncer", "naive", "raw floor")


def pick(results: list[Measure], competitor: str, step: str) -> list[Measure]:
    return [m for m in results if m.competitor == competitor and m.step == step]


def floor_of(results: list[Measure]) -> Measure | None:
    runs = pick(results, "raw floor", "initial")
    return min(runs, key=lambda m: m.wall_s) if runs else None


def median_of(runs: list[Measure]) -> Measure:
    """Medians of wall, CPU and server CPU; the most requests and the peak RSS of any run."""
    most = max(runs, key=lambda m: m.requests)
    return Measure(runs[0].competitor, runs[0].step,
                   statistics.median(m.wall_s for m in runs),
                   statistics.median(m.cpu_s for m in runs),
                   statistics.median(m.user_s for m in runs),
                   statistics.median(m.sys_s for m in runs), max(m.rss_mb for m in runs),
                   most.requests, most.methods, most.statuses, max(m.rc for m in runs),
                   statistics.median(m.server_cpu_s for m in runs),
                   max(m.load_1m for m in runs), "",
                   statistics.median(m.client_side_s for m in runs))


def methods_text(methods: dict[str, int]) -> str:
    return " ".join(f"{k} {v}" for k, v in sorted(methods.items(), key=lambda kv: -kv[1]))


def report(results: list[Measure], n: int) -> tuple[str, dict[str, Any]]:
    lines = [f"### CalDAV sync, N = {n:,} (Radicale, one server, one fresh calendar each)", "",
             "| competitor | step | wall s | wall − server wait s | client CPU s | requests | "
             "peak RSS MB | server CPU s | by method |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for competitor in ORDER:
        for step in (*STEPS, "discover"):
            runs = pick(results, competitor, step)
            several = competitor == "raw floor" or (competitor == "followsync"
                                                    and step == "initial")
            for m in runs if several else runs[:1]:
                name = competitor
                if competitor == "raw floor":
                    name += f" ({m.output.rsplit('run=', 1)[-1]})"
                elif several and len(runs) > 1:
                    name += " (second)" if "run=second" in m.output else " (first)"
                flag = "" if m.rc == 0 else f" (exit {m.rc})"
                lines.append(f"| {name} | {step}{flag} | {m.wall_s:.2f} | {m.client_side_s:.2f} | "
                             f"{m.cpu_s:.2f} | "
                             f"{m.requests} | {m.rss_mb:.0f} | {m.server_cpu_s:.2f} | "
                             f"{methods_text(m.methods)} |")
            if len(runs) > 1 and not several:
                m = median_of(runs)
                lo, hi = min(r.wall_s for r in runs), max(r.wall_s for r in runs)
                lines.append(f"| {competitor} | {step}, median of {len(runs)} | {m.wall_s:.2f} "
                             f"({lo:.2f}–{hi:.2f}) | {m.client_side_s:.2f} | {m.cpu_s:.2f} | "
                             f"{m.requests} | "
                             f"{m.rss_mb:.0f} | {m.server_cpu_s:.2f} | "
                             f"{methods_text(m.methods)} |")
    goals: dict[str, Any] = {}
    floor = floor_of(results)
    fs: dict[str, Measure | None] = {s: next(iter(pick(results, "followsync", s)), None)
                                     for s in STEPS}
    initials = pick(results, "followsync", "initial")
    fs["initial"] = min(initials, key=lambda m: m.wall_s) if initials else None
    vd_initial = next(iter(pick(results, "vdirsyncer", "initial")), None)
    fs_noops = pick(results, "followsync", "no-op")
    vd_noops = pick(results, "vdirsyncer", "no-op")
    fs["no-op"] = median_of(fs_noops) if fs_noops else None
    vd_noop = median_of(vd_noops) if vd_noops else None
    lines += ["", "| goal | measured | target | result |", "| --- | --- | --- | --- |"]

    def goal(key: str, text: str, value: float | None, target: str, ok: bool | None) -> None:
        shown = "n/a" if value is None else f"{value:.3g}"
        verdict = "n/a" if ok is None else "PASS" if ok else "FAIL"
        goals[key] = {"measured": value, "target": target, "pass": ok}
        lines.append(f"| {text} | {shown} | {target} | {verdict} |")

    init = fs["initial"]
    ratio = init.wall_s / floor.wall_s if init and floor else None
    goal("initial_vs_floor", "followsync initial ÷ raw floor (wall, the faster of two runs "
         "each)", ratio,
         f"≤ {GOAL_INITIAL_RATIO}", None if ratio is None else ratio <= GOAL_INITIAL_RATIO)
    if init and floor:
        # the same comparison with the server's (noisy, shared-machine) time taken out: the
        # floor's own server wait plus each client's side of the wall time
        wait = floor.wall_s - floor.client_side_s
        norm = (wait + init.client_side_s) / (wait + floor.client_side_s)
        goals["initial_vs_floor_server_normalised"] = {"measured": norm,
                                                       "target": f"≤ {GOAL_INITIAL_RATIO}",
                                                       "pass": norm <= GOAL_INITIAL_RATIO}
        lines.append(f"| (same, server wait normalised to the floor's: informative) | "
                     f"{norm:.3g} | ≤ {GOAL_INITIAL_RATIO} | "
                     f"{'pass' if norm <= GOAL_INITIAL_RATIO else 'fail'} |")
    cpu = statistics.median(m.cpu_s for m in initials) if initials else None
    goal("initial_cpu", "followsync initial client CPU s (median of its runs)", cpu,
         f"< {GOAL_INITIAL_CPU}", None if cpu is None else cpu < GOAL_INITIAL_CPU)
    vd_cpu = vd_initial.cpu_s if vd_initial else None
    goal("initial_cpu_vs_vdirsyncer", "followsync initial client CPU ÷ vdirsyncer's",
         None if cpu is None or not vd_cpu else cpu / vd_cpu, "≤ 1",
         None if cpu is None or not vd_cpu else cpu <= vd_cpu)
    noop = fs["no-op"]
    ratio = noop.wall_s / vd_noop.wall_s if noop and vd_noop else None
    goal("noop_vs_vdirsyncer", "followsync no-op ÷ vdirsyncer no-op (wall, medians)", ratio,
         f"≤ {GOAL_NOOP_RATIO}", None if ratio is None else ratio <= GOAL_NOOP_RATIO)
    reqs = noop.requests if noop else None
    goal("noop_requests", "followsync no-op requests", reqs, f"= {GOAL_NOOP_REQUESTS}",
         None if reqs is None else reqs == GOAL_NOOP_REQUESTS)
    changed = fs["10 changed"]
    puts = changed.methods.get("PUT", 0) if changed else None
    goal("changed_puts", "followsync 10 changed: PUTs", puts, f"= {CHANGED}",
         None if puts is None else puts == CHANGED)
    other = changed.requests - changed.methods.get("PUT", 0) if changed else None
    goal("changed_other", "followsync 10 changed: other requests", other,
         f"≤ {GOAL_CHANGED_OTHER}", None if other is None else other <= GOAL_CHANGED_OTHER)
    floors = pick(results, "raw floor", "initial")
    loads = [m.load_1m for m in results]
    if loads and max(loads) > (os.cpu_count() or 1):
        lines += ["", f"Note: the machine's 1-minute load average reached {max(loads):.1f} on "
                  f"{os.cpu_count()} CPUs during the run: other work competed for the CPU, "
                  "so wall times are noisy (see load_1m per step in the JSON)."]
    if len(floors) > 1:
        lines += ["", "Raw floor runs: " + ", ".join(f"{m.wall_s:.2f} s" for m in floors)
                  + " (the faster one is the floor)."]
    if len(initials) > 1:
        lines += ["", "followsync initial runs: " + ", ".join(f"{m.wall_s:.2f} s"
                                                           for m in initials)
                  + " (the faster one is compared with the floor)."]
    return "\n".join(lines), goals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="follow-ups (leads), default 1000")
    parser.add_argument("--out", default=str(HERE / "out" / "caldav.json"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", default="raw,followsync,vdirsyncer,naive",
                        help="comma-separated competitors (default: all)")
    parser.add_argument("--profile", action="store_true",
                        help="also run followsync's no-op and a first sync under cProfile")
    parser.add_argument("--noop-repeat", type=int, default=6, metavar="K",
                        help="run followsync's and vdirsyncer's no-op K more times at the end, "
                             "alternating (medians are compared; default 6)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    only = set(args.only.split(","))
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    exe = ensure_vdirsyncer() if "vdirsyncer" in only else None
    # vdirsyncer's venv holds .pyc files written by pip; an editable followsync has none, and
    # under PYTHONDONTWRITEBYTECODE=1 (as on the machine we measure on) every followsync run
    # would recompile it: compile it once, as `pip install .` does.
    compileall.compile_dir(ROOT / "followsync", quiet=1)

    work = Path(tempfile.mkdtemp(prefix="followsync-caldav-bench-"))
    bench = Bench(args.n, work, args.seed, args.verbose)
    profiles: dict[str, str] = {}
    table, goals = "", {}  # type: tuple[str, dict[str, Any]]
    started = time.monotonic()
    bench.notes["source_digest_start"] = source_digest()
    try:
        print(f"Radicale on {bench.server.url}, proxy on {bench.purl}, work in {work}",
              file=sys.stderr)
        cfg = bench.write_followsync_config(bench.fs_dir, "Bench followsync", "./state")
        bench.prepare_items(cfg)
        changed_ids = bench.change_leads()  # the lead list now holds the change ...
        tmp = work / "changed"
        tmp.mkdir()
        bench.prepare_changed_items(bench.write_followsync_config(tmp, "x", "./state"))
        for lead_id in changed_ids:  # ... undo it for the initial syncs
            next(lead for lead in bench.leads if lead["id"] == lead_id)["log"].pop()
        if "raw" in only:
            bench.raw("first")
        if "followsync" in only:
            bench.followsync(changed_ids)
        if exe is not None:
            bench.vdirsyncer(exe)
        if "naive" in only:
            bench.naive()
        if "raw" in only:
            bench.raw("last")
        if "followsync" in only:
            bench.followsync_again()
        bench.repeat_noops(args.noop_repeat)
        table, goals = report(bench.results, args.n)
        if source_digest() != bench.notes["source_digest_start"]:
            table += ("\n\nWarning: followsync's sources changed during the run (see "
                      "source_digest in the JSON); the steps may have run different code.")
        print(table, flush=True)
        write_json(out, args.n, started, exe, bench, goals, table, profiles)
        if args.profile and "followsync" in only:
            try:
                profiles = bench.profile(out.parent)
            except Exception as exc:  # profiling is a diagnosis aid; never lose the table
                print(f"profiling failed: {exc!r}", file=sys.stderr)
    finally:
        bench.close()
    write_json(out, args.n, started, exe, bench, goals, table, profiles)
    print(f"\nJSON: {out}", file=sys.stderr)
    if args.keep:
        print(f"work folder kept: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    failed = [k for k, g in goals.items() if g["pass"] is False]
    return 1 if failed else 0


def write_json(out: Path, n: int, started: float, exe: Path | None, bench: Bench,
               goals: dict[str, Any], table: str, profiles: dict[str, str]) -> None:
    data = {
        "n": n, "now": NOW, "timezone": TIMEZONE, "seconds": time.monotonic() - started,
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "vdirsyncer": vdirsyncer_version(exe) if exe else None,
        "versions": _versions(), "changed_items": bench.changed_files,
        "results": [asdict(m) for m in bench.results], "goals": goals, "notes": bench.notes,
        "profiles": profiles, "table": table, "git_head": git_head(),
        "source_digest": {"start": bench.notes.get("source_digest_start"),
                          "end": source_digest()},
    }
    out.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def source_digest() -> str:
    """A digest of followsync's sources: the working tree may change under a long run."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "followsync").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def git_head() -> str | None:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=False)  # read-only
    return done.stdout.strip() or None


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("followsync", "radicale", "caldav", "icalendar"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


if __name__ == "__main__":
    sys.exit(main())
