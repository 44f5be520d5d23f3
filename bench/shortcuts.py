#!/usr/bin/env python3
"""Issue 18's goal table ("one truth: shortcuts that cannot lie"), measured in one run.

    python bench/shortcuts.py [--quick] [--repeat 5] [--out bench/out/shortcuts.json]

Every row is a ratio of two things measured in this same run, so a loaded machine moves both
sides (read the load average under the table all the same):

  no-op ÷ bare      a no-op `followsync sync` of the example (config.example.yaml with
                    examples/job-search.yaml, an .ics target) ÷ a bare `python -c pass`
  one ÷ no-op .ics  `sync` after one lead changed ÷ a no-op `sync`, 10,000 generated leads
  one ÷ no-op DAV   the same against Radicale (started here on 127.0.0.1), ~2,650 items
  read-only cache   the three ratios again with $XDG_CACHE_HOME an empty folder nobody may
                    write to (as under the systemd units: ProtectHome=read-only); each within
                    ±15 % of its writable run
  daemon RSS        `followsync run` (a real process, 5,000 leads, .ics): VmRSS after the
                    resync of the 5th `defaults:` edit ÷ after the 1st
  Digest no-op      requests a no-op sends through tests/digestproxy.py (Digest in front of
                    Radicale), counted by the proxy

Each timed step is its own fresh process, started by bench/core_sync.py's spawner, `--repeat`
times (median; a no-op and a one-change run alternate); the measured followsync is a compiled
copy of followsync/ taken at the start (core_sync.take_snapshot). Every child has its own
$XDG_CACHE_HOME and state in a temporary folder, never the user's. `--quick`: one run of each,
1,000 leads (.ics, daemon) and 500 (CalDAV), a smoke check, not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

import core_sync as core  # noqa: E402  (bench/ sibling: generator, spawner, snapshot)
from core_sync import (  # noqa: E402
    DEFAULTS_YAML,
    NOW,
    Bench,
    Run,
    child_env,
    counts,
    dump_leads,
    followsync_cmd,
    make_leads,
    run_child,
)

SEED = 20261201
PASSWORD_ENV = "BENCH_DAV_PASSWORD"
RO_TOLERANCE = 0.15  # "unchanged": within ±15 % of the writable run
EDITS = 5
EDIT_TIMES = ["09:20", "09:25", "09:30", "09:35", "09:40"]  # `defaults: at:` after each edit
DAV_CONFIG = """\
leads: leads.yaml
timezone: Europe/Berlin
state_dir: state
targets:
  - {{name: dav, type: caldav, url: "{url}", calendar: "{calendar}", username: {user},
     password_env: BENCH_DAV_PASSWORD}}
"""
DAEMON_CONFIG = """\
leads: leads.yaml
timezone: Europe/Berlin
state_dir: state
targets:
  - {name: file, type: ics, path: followups.ics}
daemon: {interval: 1m, watch: true}
"""


@dataclass
class Row:
    """One line of the goal table."""

    work: str
    before: str  # the "now" column
    value: float
    goal: str
    ok: bool
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        shown = f"{self.value:.2f}×" if "×" in self.goal else f"{self.value:.0f}"
        return (f"| {self.work} | {self.before} | {shown} | {self.goal} | "
                f"{'PASS' if self.ok else 'FAIL'} | {self.detail} |")


@dataclass
class Pair:
    """Alternating runs of two steps (e.g. no-op and one change): medians and their ratio."""

    top: list[Run] = field(default_factory=list)
    bottom: list[Run] = field(default_factory=list)

    def wall(self, runs: list[Run]) -> float:
        return statistics.median(r.wall_s for r in runs)

    def cpu(self, runs: list[Run]) -> float:
        return statistics.median(r.cpu_s for r in runs)

    @property
    def ratio(self) -> float:
        return self.wall(self.top) / self.wall(self.bottom)

    @property
    def cpu_ratio(self) -> float:
        return self.cpu(self.top) / max(self.cpu(self.bottom), 1e-9)

    def detail(self, top: str, bottom: str) -> str:
        return (f"{top} {self.wall(self.top):.3f} s ÷ {bottom} {self.wall(self.bottom):.3f} s; "
                f"CPU {self.cpu_ratio:.2f}× ({self.cpu(self.top):.3f} ÷ "
                f"{self.cpu(self.bottom):.3f} s)")

    def data(self) -> dict[str, Any]:
        def runs(found: list[Run]) -> list[dict[str, float]]:
            return [{"wall_s": round(r.wall_s, 4), "cpu_s": round(r.cpu_s, 4),
                     "maxrss_mb": round(r.maxrss_mb, 1)} for r in found]

        return {"ratio_wall": round(self.ratio, 3), "ratio_cpu": round(self.cpu_ratio, 3),
                "top": runs(self.top), "bottom": runs(self.bottom)}


def say(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def sync(folder: Path, env: dict[str, str] | None = None, want: str | None = None) -> Run:
    """One `followsync sync` of folder/config.yaml (at core_sync.NOW) as a measured child;
    want="noop" checks nothing moved, "one" that something did."""
    run = run_child([*followsync_cmd(), "--config", str(folder / "config.yaml"), "--now", NOW,
                     "sync"], folder, env=env)
    if run.rc != 0:
        raise RuntimeError(f"sync in {folder} failed ({run.rc}): {run.stdout}{run.stderr}")
    got = counts(run.stdout) or {}
    moved = got.get("created", 0) + got.get("updated", 0) + got.get("deleted", 0)
    if (want == "noop" and moved) or (want == "one" and not moved):
        raise RuntimeError(f"expected a {want} sync in {folder}: {run.stdout}")
    return run


def read_only_folder(base: Path) -> Path:
    """An empty folder that this process's children cannot write to, as ~/.cache is under
    ProtectHome=read-only. Mode 0555 stops a user; root ignores modes, so as root the folder
    is also made immutable (chattr +i; `release` undoes it). Checked by trying to write."""
    folder = base / "read-only-cache"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True)
    try:
        (folder / "probe").mkdir()
    except OSError:
        return folder
    (folder / "probe").rmdir()
    release(folder)
    raise SystemExit(f"cannot make a read-only folder at {folder} (chattr +i failed?)")


def release(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=False, capture_output=True)
    with contextlib.suppress(OSError):
        folder.chmod(0o755)


# ---------------------------------------------------------------------------------------------
# The rows
# ---------------------------------------------------------------------------------------------


def noop_vs_bare(folder: Path, repeat: int, env: dict[str, str] | None) -> Pair:
    """No-op `sync` of the example (top) and a bare `python -c pass` (bottom), alternating."""
    pair = Pair()
    sync(folder, env)  # whatever the last run left: after this one, nothing to do
    for _ in range(repeat):
        pair.bottom.append(run_child([sys.executable, "-c", "pass"], folder, env=env))
        pair.top.append(sync(folder, env, "noop"))
    return pair


def one_vs_noop(bench: Bench, repeat: int, env: dict[str, str] | None) -> Pair:
    """`sync` after one lead changed (top) and a no-op `sync` (bottom), alternating; each
    change is a `by: them` reply today on another lead (core_sync's change_one_lead)."""
    pair = Pair()
    for _ in range(repeat):
        pair.bottom.append(sync(bench.folder, env, "noop"))
        lead = bench.change_one_lead()
        pair.top.append(sync(bench.folder, env, "one"))
        say(f"no-op {pair.bottom[-1].wall_s:.3f} s, one ({lead}) {pair.top[-1].wall_s:.3f} s "
            f"{counts(pair.top[-1].stdout)}")
    return pair


def example_folder(base: Path) -> Path:
    """config.example.yaml with examples/job-search.yaml, as the README's first command."""
    folder = base / "example"
    (folder / "examples").mkdir(parents=True)
    shutil.copy(ROOT / "config.example.yaml", folder / "config.yaml")
    shutil.copy(ROOT / "examples" / "job-search.yaml", folder / "examples" / "job-search.yaml")
    return folder


def items_of(run: Run) -> int:
    got = counts(run.stdout) or {}
    return sum(got.values())


def dav_bench(base: Path, n: int, server: Any, calendar: str) -> tuple[Bench, dict[str, str]]:
    """core_sync's lead file of n leads with one CalDAV target, first sync done (slow:
    Radicale takes tens of ms per new item)."""
    bench = Bench(n, base / f"dav-{n}", 1, SEED, verbose=False)
    (bench.folder / "config.yaml").write_text(DAV_CONFIG.format(
        url=server.url, calendar=calendar, user=server.username), encoding="utf-8")
    env = {PASSWORD_ENV: server.password}
    started = time.perf_counter()
    first = sync(bench.folder, env)
    say(f"CalDAV first sync of {n:,} leads: {time.perf_counter() - started:.0f} s, "
        f"{counts(first.stdout)}")
    return bench, env


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_for_sync(log: Path, seen: int, moved: bool, deadline_s: float = 300.0) -> int:
    """Poll the daemon's log until a sync summary after the first `seen` ones reports items
    (`moved`: some created or updated); the number of summaries then."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = core._SUMMARY.findall(log.read_text(errors="replace"))
        for created, updated, _, _ in found[seen:]:
            if not moved or int(created) + int(updated):
                return len(found)
        time.sleep(0.05)
    raise TimeoutError(f"no sync logged within {deadline_s:.0f} s:\n{log.read_text()[-2000:]}")


def daemon_rss(base: Path, n: int) -> list[float]:
    """VmRSS (MB) of a real `followsync run` after its first sync and after the resync of
    each of EDITS `defaults:` edits (`at:` moved: every timed item is updated)."""
    folder = base / f"daemon-{n}"
    folder.mkdir()
    text = dump_leads(make_leads(n, SEED, date.today()))  # the daemon follows the real clock
    leads = folder / "leads.yaml"
    leads.write_text(text, encoding="utf-8")
    (folder / "config.yaml").write_text(DAEMON_CONFIG, encoding="utf-8")
    env = child_env(folder)
    env.pop("JOURNAL_STREAM", None)  # plain lines on stderr
    log = folder / "daemon.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([*followsync_cmd(), "--config", str(folder / "config.yaml"),
                                 "run"], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        seen = wait_for_sync(log, 0, moved=True)
        rss = [vm_rss_mb(proc.pid)]
        for at in EDIT_TIMES[:EDITS]:
            tmp = folder / ".leads.yaml.tmp"
            tmp.write_text(text.replace(DEFAULTS_YAML, DEFAULTS_YAML.replace('"09:15"',
                                                                             f'"{at}"'), 1),
                           encoding="utf-8")
            os.replace(tmp, leads)  # as an editor saves
            seen = wait_for_sync(log, seen, moved=True)
            time.sleep(0.5)  # the sync thread's last bookkeeping after its summary line
            rss.append(vm_rss_mb(proc.pid))
            say(f"daemon: defaults edit → at {at}: VmRSS {rss[-1]:.1f} MB")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return rss


def measure_digest_noop(server: Any, folder: Path) -> tuple[int, str]:
    """Requests of one no-op `sync` through a Digest proxy in front of Radicale (after a first
    sync)."""
    from tests.digestproxy import DIGEST_PASSWORD, DIGEST_USER, start_digest_proxy

    proxy = start_digest_proxy(server)
    try:
        folder.mkdir()
        (folder / "leads.yaml").write_text(dump_leads(make_leads(20, SEED, date(2026, 12, 1))))
        (folder / "config.yaml").write_text(DAV_CONFIG.format(
            url=proxy.url_for(server.url), calendar="Bench digest", user=DIGEST_USER))
        sync(folder, {PASSWORD_ENV: DIGEST_PASSWORD})
        proxy.reset()
        sync(folder, {PASSWORD_ENV: DIGEST_PASSWORD}, "noop")
        return len(proxy.seen()), " ".join(f"{s.method} {s.status}" for s in proxy.seen())
    finally:
        proxy.stop()


def digest_row(server: Any, folder: Path) -> tuple[int, str]:
    """The Digest row (bench/digest_noop.py measures the same with and without the kept
    challenge, as a bench of its own)."""
    return measure_digest_noop(server, folder)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def ratio_row(work: str, before: str, pair: Pair, limit: float, detail: str) -> Row:
    return Row(work, before, pair.ratio, f"≤ {limit:g}×", pair.ratio <= limit, detail,
               pair.data())


def read_only_row(work: str, writable: Pair, read_only: Pair, detail: str) -> Row:
    """The read-only run's ratio against the writable run's: within ±RO_TOLERANCE."""
    change = read_only.ratio / writable.ratio
    return Row(f"{work}, `XDG_CACHE_HOME` read-only", "not measured", read_only.ratio,
               f"{writable.ratio:.2f}× ± {RO_TOLERANCE:.0%}", abs(change - 1) <= RO_TOLERANCE,
               f"{change:.2f}× the writable run's ratio; {detail}", read_only.data())


def measure(base: Path, args: argparse.Namespace) -> list[Row]:
    ro = {"XDG_CACHE_HOME": str(read_only_folder(base))}
    rows: list[Row] = []
    try:
        say("example: no-op vs bare python")
        folder = example_folder(base)
        pairs = [noop_vs_bare(folder, args.repeat, env) for env in (None, ro)]
        work = "no-op `sync` ÷ bare `python -c pass` (example config + job-search.yaml, .ics)"
        rows.append(ratio_row(work, "3.8×", pairs[0], 3.0, pairs[0].detail("no-op", "bare")))
        rows.append(read_only_row("no-op ÷ bare", pairs[0], pairs[1],
                                  pairs[1].detail("no-op", "bare")))
        ro_rows = [rows.pop()]

        say(f".ics: {args.ics_leads:,} leads")
        bench = Bench(args.ics_leads, base / f"ics-{args.ics_leads}", 1, SEED, verbose=False)
        items = items_of(sync(bench.folder))
        pairs = [one_vs_noop(bench, args.repeat, env) for env in (None, ro)]
        what = f"{args.ics_leads:,} leads ({items:,} items), .ics"
        rows.append(ratio_row(f"one lead changed ÷ no-op, {what}", "2.85×", pairs[0], 2.0,
                              pairs[0].detail("one", "no-op")))
        ro_rows.append(read_only_row(f"one ÷ no-op, {what}", pairs[0], pairs[1],
                                     pairs[1].detail("one", "no-op")))

        from tests.servers import start_server

        server = start_server("radicale", base / "radicale")
        try:
            say(f"CalDAV: {args.caldav_leads:,} leads on Radicale (first upload: minutes)")
            bench, env = dav_bench(base, args.caldav_leads, server, "Bench shortcuts")
            items = items_of(sync(bench.folder, env, "noop"))
            pairs = [one_vs_noop(bench, args.repeat, {**env, **extra})
                     for extra in ({}, ro)]
            what = f"{args.caldav_leads:,} leads ({items:,} items), CalDAV (Radicale)"
            rows.append(ratio_row(f"one lead changed ÷ no-op, {what}", "3.0×", pairs[0], 2.0,
                                  pairs[0].detail("one", "no-op")))
            ro_rows.append(read_only_row(f"one ÷ no-op, {what}", pairs[0], pairs[1],
                                         pairs[1].detail("one", "no-op")))
            rows += ro_rows

            say(f"daemon: {args.daemon_leads:,} leads, {EDITS} defaults: edits")
            rss = daemon_rss(base, args.daemon_leads)
            value = rss[-1] / rss[1]
            rows.append(Row(f"daemon RSS after {EDITS} `defaults:` edits ÷ after 1, "
                            f"{args.daemon_leads:,} leads", "2.1×", value, "≤ 1.3×",
                            value <= 1.3, f"{rss[-1]:.0f} MB ÷ {rss[1]:.0f} MB; VmRSS after "
                            "the first sync, then each edit: "
                            + ", ".join(f"{mb:.0f}" for mb in rss) + " MB",
                            {"vmrss_mb": [round(mb, 1) for mb in rss]}))

            say("Digest: requests of a no-op")
            count, how = digest_row(server, base / "digest")
            rows.append(Row("no-op requests to a Digest server", "2", count, "1", count == 1,
                            how, {"requests": count}))
        finally:
            server.stop()
    finally:
        release(Path(ro["XDG_CACHE_HOME"]))
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| work | issue (before) | measured | goal | result | detail |",
             "| --- | ---: | ---: | ---: | --- | --- |"]
    return "\n".join(lines + [row.line() for row in rows])


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of each, small sizes "
                        "(a smoke check)")
    parser.add_argument("--repeat", type=int, help="runs per timed step (default 5; 1 with "
                        "--quick)")
    parser.add_argument("--ics-leads", type=int, help="default 10,000 (1,000 with --quick)")
    parser.add_argument("--caldav-leads", type=int, help="default 2,250, ~2,650 items, the "
                        "issue's 2,667 (500 with --quick)")
    parser.add_argument("--daemon-leads", type=int, help="default 5,000 (1,000 with --quick)")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "shortcuts.json")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR and keep it")
    args = parser.parse_args()
    quick = args.quick
    args.repeat = args.repeat or (1 if quick else 5)
    args.ics_leads = args.ics_leads or (1_000 if quick else 10_000)
    args.caldav_leads = args.caldav_leads or (500 if quick else 2_250)
    args.daemon_leads = args.daemon_leads or (1_000 if quick else 5_000)
    return args


def main() -> int:
    args = parse()
    core.start_spawner()  # before any lead file is made (see core_sync.SPAWNER)
    base = args.keep or Path(tempfile.mkdtemp(prefix="followsync-shortcuts-"))
    base.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    try:
        core.take_snapshot(base)
        code_before = core.code_fingerprint()
        rows = measure(base, args)
        code_after = core.code_fingerprint()
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    load_after = os.getloadavg()
    changed = code_before["working_tree_sha256"] != code_after["working_tree_sha256"]
    text = table(rows) + (
        f"\n\nload average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}"
        f"; after: {', '.join(f'{x:.2f}' for x in load_after)} on {os.cpu_count()} CPUs. "
        f"{args.repeat} run(s) per timed step (median){', --quick' if args.quick else ''}. "
        f"followsync measured: a compiled copy of the working tree at HEAD "
        f"{code_before['head'][:10]}{' + local changes' if code_before['followsync_dirty'] else ''}"
        f", sources digest {code_before['followsync_sha256']}"
        + (" (the working tree CHANGED during the run)" if changed else "") + ".")
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "when": datetime.now().isoformat(timespec="seconds"), "now": NOW,
        "python": sys.version.split()[0], "platform": platform.platform(),
        "cpus": os.cpu_count(), "quick": args.quick, "repeat": args.repeat,
        "sizes": {"ics": args.ics_leads, "caldav": args.caldav_leads,
                  "daemon": args.daemon_leads},
        "loadavg": {"before": load_before, "after": load_after},
        "code": {"before": code_before, "after": code_after},
        "rows": [{"work": r.work, "before": r.before, "value": round(r.value, 3),
                  "goal": r.goal, "result": "PASS" if r.ok else "FAIL", "detail": r.detail,
                  "data": r.data} for r in rows],
    }, indent=2, ensure_ascii=False), encoding="utf-8")
    args.out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    print(f"\nJSON: {args.out} (table: {args.out.with_suffix('.md')})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
