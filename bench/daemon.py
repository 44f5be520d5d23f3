#!/usr/bin/env python3
"""Daemon benchmark: save-to-calendar latency, idle CPU and memory of `followsync run`.

    python bench/daemon.py [--leads 1000,10000] [--saves 20] [--idle 60] [--radicale-leads 100]
                           [--no-radicale] [--out bench/out/daemon.json]

Each scenario starts the real daemon (`python -m followsync run`) on a generated, realistic
lead file (bench/core_sync.py's generator, dated from today: the daemon follows the real clock)
plus one probe lead, with $NOTIFY_SOCKET on a datagram socket bound here (as systemd would) and
WATCHDOG_USEC=60 s (as the unit sets it). After the first sync has finished it saves the lead
file `--saves` times — alternately rewritten in place and replaced by rename, as editors do —
each time with a new name for the probe, one save every 0.7 s, and measures:

  latency   from just before the save's write to the moment the new name is in the calendar:
            for .ics, the file read as soon as its mtime changes (stat every 2 ms); for
            Radicale, the STATUS=last sync notification of the sync that followed, checked
            with a GET of the probe's item (followsync's writes are done when it comes)
  idle CPU  CPU time of the whole daemon (all threads, /proc/PID/task/*/schedstat) over `--idle`
            seconds with nothing to do, after the saves, scaled to seconds per minute
  RSS       VmRSS after the first sync and VmHWM (peak) at the end, from /proc/PID/status

Goals: latency median for .ics under 0.3 s with 1,000 leads and under 0.8 s with 10,000
(issue 13), 1 s for Radicale; idle CPU under 0.1 s per minute; RSS under 60 MB with 1,000
leads. Radicale is started on 127.0.0.1 only
(tests/servers.py); its first upload is slow (it checks each new item against all others),
so its lead file is smaller by default (`--radicale-leads`). Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests")]

from core_sync import dump_leads, make_leads  # noqa: E402  (bench/ sibling)

GOAL_ICS_MEDIAN_S = 0.3  # issue 13: with 1,000 leads (and fewer)
GOAL_ICS_MEDIAN_10K_S = 0.8  # issue 13: with 10,000 leads (and more)
GOAL_RADICALE_MEDIAN_S = 1.0
GOAL_IDLE_CPU_S_PER_MIN = 0.1
GOAL_RSS_MB = 60.0
SAVE_EVERY_S = 0.7
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    scenario: str
    leads: int
    first_sync_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    cpu_per_save_s: list[float] = field(default_factory=list)  # the daemon's, save to calendar
    rss_after_first_mb: float = 0.0
    rss_idle_mb: float = 0.0  # at the end, after the saves (and the idle minute)
    hwm_mb: float = 0.0
    idle_cpu_s_per_min: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.latencies_s) if self.latencies_s else float("nan")

    @property
    def worst(self) -> float:
        return max(self.latencies_s) if self.latencies_s else float("nan")


# The probe's item is found by its title, "NAME: follow up" (README, "What appears in the
# calendar"); the old "Follow up: NAME" title made every save time out.
def lead_text(n: int, probe: str) -> str:
    text = dump_leads(make_leads(n, seed=7, today=date.today()))
    return text + f"\n  bench-probe:\n    name: {probe}\n    next: 2099-01-05\n"


def save(path: Path, text: str, by_rename: bool) -> None:
    if by_rename:
        tmp = path.with_name(f".{path.name}.bench-tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        with open(path, "w") as f:
            f.write(text)


class Notifications:
    def __init__(self) -> None:
        self.name = f"@followsync-bench-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.name[1:].encode())

    def drain(self) -> None:
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(65536)
        except BlockingIOError:
            pass

    def wait(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {prefix} within {timeout} s")
            self.sock.settimeout(left)
            for line in self.sock.recv(65536).decode().split("\n"):
                if line.startswith(prefix):
                    return line


class Daemon:
    def __init__(self, config: Path) -> None:
        self.notify = Notifications()
        self.log = config.parent / "daemon.log"
        env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM",)}
        env.update(NOTIFY_SOCKET=self.notify.name, WATCHDOG_USEC="60000000",
                   BENCH_DAV_PASSWORD=os.environ.get("BENCH_DAV_PASSWORD", ""))
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "followsync", "--config", str(config), "run"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                cwd=config.parent)

    def first_sync(self, timeout: float) -> float:
        started = time.monotonic()
        self.notify.wait("READY=1", 30)
        status = self.notify.wait("STATUS=last sync", timeout)
        if "FAILED" in status:
            raise RuntimeError(f"first sync failed: {status}\n{self.log.read_text()}")
        return time.monotonic() - started

    def cpu_seconds(self) -> float:
        """CPU time of all the daemon's threads, in ns precision where schedstat exists."""
        total = 0
        try:
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[0])
            return total / 1e9
        except (OSError, ValueError, IndexError):
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (all threads)

    def memory_mb(self, key: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def setup(folder: Path, n: int, target: str) -> Path:
    (folder / "leads.yaml").write_text(lead_text(n, "Probe Start"))
    config = folder / "config.yaml"
    config.write_text("leads: leads.yaml\ntimezone: Europe/Berlin\nstate_dir: state\n"
                      f"targets:\n{target}daemon: {{interval: 15m, watch: true}}\n")
    return config


def measure_saves(daemon: Daemon, folder: Path, n: int, saves: int,
                  seen: Callable[[str], bool]) -> tuple[list[float], list[float]]:
    """Latency of each save, from just before its write to `seen(probe name)`, and the CPU
    the daemon used meanwhile."""
    latencies, cpu = [], []
    for i in range(saves):
        probe = f"Probe Save{i:02d}"
        text = lead_text(n, probe)  # built before the clock starts
        time.sleep(SAVE_EVERY_S)
        daemon.notify.drain()
        cpu_before = daemon.cpu_seconds()
        started = time.monotonic()
        save(folder / "leads.yaml", text, by_rename=i % 2 == 1)
        deadline = started + 30
        while not seen(probe):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{probe} not in the calendar after 30 s\n"
                                   f"{daemon.log.read_text()[-2000:]}")
        latencies.append(time.monotonic() - started)
        cpu.append(daemon.cpu_seconds() - cpu_before)
    return latencies, cpu


def ics_watcher(path: Path) -> Callable[[str], bool]:
    last = [0]

    def seen(probe: str) -> bool:
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        if mtime == last[0]:
            time.sleep(0.002)
            return False
        last[0] = mtime
        return f"SUMMARY:{probe}: " in path.read_text().replace("\r\n ", "")

    return seen


def run_ics(n: int, saves: int, idle: float) -> Result:
    result = Result("ics", n)
    with tempfile.TemporaryDirectory(prefix="followsync-bench-") as tmp:
        folder = Path(tmp)
        config = setup(folder, n, "  - {name: file, type: ics, path: followups.ics}\n")
        daemon = Daemon(config)
        try:
            result.first_sync_s = daemon.first_sync(300)
            result.rss_after_first_mb = daemon.memory_mb("VmRSS")
            result.latencies_s, result.cpu_per_save_s = measure_saves(
                daemon, folder, n, saves, ics_watcher(folder / "followups.ics"))
            if idle > 0:
                time.sleep(2)  # the last sync's logging and bookkeeping
                before = daemon.cpu_seconds()
                time.sleep(idle)
                result.idle_cpu_s_per_min = (daemon.cpu_seconds() - before) * 60 / idle
            result.rss_idle_mb = daemon.memory_mb("VmRSS")
            result.hwm_mb = daemon.memory_mb("VmHWM")
        finally:
            code = daemon.stop()
            if code != 0:
                print(f"daemon exited {code}:\n{daemon.log.read_text()[-2000:]}", file=sys.stderr)
    return result


def run_radicale(n: int, saves: int) -> Result:
    from servers import running_server

    result = Result("radicale", n)
    with tempfile.TemporaryDirectory(prefix="followsync-bench-") as tmp:
        folder = Path(tmp)
        with running_server("radicale", folder / "radicale") as server:
            os.environ["BENCH_DAV_PASSWORD"] = server.password or ""
            target = (f"  - {{name: dav, type: caldav, url: '{server.url}', calendar: Bench, "
                      f"username: {server.username}, password_env: BENCH_DAV_PASSWORD}}\n")
            config = setup(folder, n, target)
            daemon = Daemon(config)
            try:
                result.first_sync_s = daemon.first_sync(900)
                result.rss_after_first_mb = daemon.memory_mb("VmRSS")

                def seen(probe: str) -> bool:
                    status = daemon.notify.wait("STATUS=", 30)
                    return "last sync" in status and probe_on_server(server, probe)

                result.latencies_s, result.cpu_per_save_s = measure_saves(
                    daemon, folder, n, saves, seen)
                result.rss_idle_mb = daemon.memory_mb("VmRSS")
                result.hwm_mb = daemon.memory_mb("VmHWM")
            finally:
                daemon.stop()
    return result


def probe_on_server(server: Any, probe: str) -> bool:
    """The probe's item, fetched from the server (its UID is followsync-<lead>-<rule>-<target>)."""
    import http.client
    from base64 import b64encode

    token = b64encode(f"{server.username}:{server.password}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("PROPFIND", f"/{server.username}/", headers={
            "Authorization": f"Basic {token}", "Depth": "1"})
        listing = conn.getresponse().read().decode()
        for href in sorted(set(_hrefs(listing))):
            conn.request("GET", f"{href}followsync-bench-probe-cadence-dav.ics",
                         headers={"Authorization": f"Basic {token}"})
            response = conn.getresponse()
            body = response.read().decode(errors="replace").replace("\r\n ", "")
            if response.status == 200:
                return f"SUMMARY:{probe}: " in body
        return False
    finally:
        conn.close()


def _hrefs(xml: str) -> list[str]:
    import re

    return [h for h in re.findall(r"<(?:\w+:)?href>([^<]+)</(?:\w+:)?href>", xml)
            if h.count("/") == 3]


def report(results: list[Result]) -> str:
    lines = ["| scenario | leads | first sync | latency median | latency max "
             "| daemon CPU per save (median) | idle CPU | RSS after first sync | RSS at the end "
             "| peak RSS |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        idle = f"{r.idle_cpu_s_per_min * 1000:.1f} ms/min" if r.idle_cpu_s_per_min is not None else "-"
        cpu = statistics.median(r.cpu_per_save_s) if r.cpu_per_save_s else float("nan")
        lines.append(f"| {r.scenario} | {r.leads} | {r.first_sync_s:.2f} s | {r.median:.3f} s "
                     f"| {r.worst:.3f} s | {cpu:.2f} s | {idle} | {r.rss_after_first_mb:.1f} MB "
                     f"| {r.rss_idle_mb:.1f} MB | {r.hwm_mb:.1f} MB |")
    lines.append(f"\n(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end)")
    for r in results:
        goal = (GOAL_RADICALE_MEDIAN_S if r.scenario != "ics" else
                GOAL_ICS_MEDIAN_10K_S if r.leads >= 10_000 else GOAL_ICS_MEDIAN_S)
        lines.append(f"- {r.scenario} latency median with {r.leads} leads {r.median:.3f} s "
                     f"< {goal} s: "
                     f"{'PASS' if r.median < goal else 'FAIL'}")
        if r.idle_cpu_s_per_min is not None:
            ok = r.idle_cpu_s_per_min < GOAL_IDLE_CPU_S_PER_MIN
            lines.append(f"- idle CPU {r.idle_cpu_s_per_min:.4f} s/min < "
                         f"{GOAL_IDLE_CPU_S_PER_MIN} s/min: {'PASS' if ok else 'FAIL'}")
        if r.scenario == "ics" and 1000 <= r.leads < 10_000:
            for what, value in (("RSS at the end", r.rss_idle_mb), ("peak RSS", r.hwm_mb)):
                ok = value < GOAL_RSS_MB
                lines.append(f"- {what} with {r.leads} leads {value:.1f} MB < {GOAL_RSS_MB} MB: "
                             f"{'PASS' if ok else 'FAIL'}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", default="1000", help="comma-separated lead counts of the "
                        ".ics scenario (e.g. 1000,10000)")
    parser.add_argument("--small", type=int, default=10, help="also a small lead file (0: no)")
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--radicale-leads", type=int, default=100)
    parser.add_argument("--no-radicale", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "daemon.json")
    args = parser.parse_args()

    results = []
    if args.small:
        results.append(run_ics(args.small, args.saves, idle=0))
        print(f"ics, {args.small} leads: done", file=sys.stderr)
    for count in (int(n) for n in args.leads.split(",") if n.strip()):
        results.append(run_ics(count, args.saves, idle=args.idle))
        print(f"ics, {count} leads: done", file=sys.stderr)
    if not args.no_radicale:
        results.append(run_radicale(args.radicale_leads, args.saves))
        print(f"radicale, {args.radicale_leads} leads: done", file=sys.stderr)
    text = report(results)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "results": [{**asdict(r), "median_s": r.median, "max_s": r.worst} for r in results],
        "report": text,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
