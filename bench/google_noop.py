#!/usr/bin/env python3
"""A no-op `followsync sync` to a Google target against the same to Radicale.

    python bench/google_noop.py [--n 50] [--runs 15]

The goal (issue 12): a no-op sync to Google within 1.2x the no-op to Radicale, import cost
included. Radicale is started as the tests start it (tests/servers.py); the Google side is
the local emulation (tests/googleemu.py) in its own process, so neither server shares the
bench's CPU. Each side gets N leads, a first sync and a second one (which sees the first's
own writes); then `python -m followsync sync` runs RUNS times per side, alternating, and the
median wall times are compared. Also measured: what importing google-api-python-client and
building the Calendar service would add (the reason followsync speaks plain HTTP), and the
first upload of N events one request each (the case batching would serve).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NOW = "2026-03-02T10:00"

EMU_CHILD = """
import json, sys, time
from tests.googleemu import GoogleEmu
emu = GoogleEmu(token_lifetime=86400).start()
refresh, _ = emu.issue_tokens()
print(json.dumps({"url": emu.url, "refresh": refresh, "id": emu.client_id,
                  "secret": emu.client_secret}), flush=True)
sys.stdin.read()
print(json.dumps({"api": len(emu.api_requests())}), flush=True)
"""


def leads(n: int) -> str:
    lines = ["version: 1", "leads:"]
    for i in range(n):
        lines.append(f"  lead{i}: {{name: Person {i}, last_contact: 2026-0{1 + i % 2}-"
                     f"{1 + i % 27:02d}}}")
    return "\n".join(lines) + "\n"


def project(folder: Path, n: int, target: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "leads.yaml").write_text(leads(n))
    config = folder / "config.yaml"
    config.write_text("leads: leads.yaml\ntimezone: Europe/Berlin\nstate_dir: state\n"
                      f"targets:\n{target}")
    config.chmod(0o600)
    return config


def sync(config: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "followsync", "--config", str(config),
                           "--now", NOW, "sync"], capture_output=True, text=True, env=env,
                          check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sync failed ({done.returncode}): {done.stderr}{done.stdout}")
    return took


def radicale_project(server: Any, folder: Path, n: int, env: dict[str, str]) -> Path:
    """A project of N leads syncing to a fresh calendar of the Radicale `server` (its
    password in `env`): the side each no-op is compared with."""
    from tests.servers import fresh_calendar

    cal = fresh_calendar(server)
    env["BENCH_DAV_PASSWORD"] = cal.password or ""
    return project(folder, n, (
        f"  - name: dav\n    type: caldav\n    url: {cal.url}\n"
        f"    calendar: {cal.calendar_name}\n    username: {cal.username}\n"
        "    password_env: BENCH_DAV_PASSWORD\n"))


def timed_python(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FOLLOWSYNC_NO_KEYRING": "1",
           "NO_PROXY": "127.0.0.1,localhost"}
    from followsync.googleauth import GoogleSettings, TokenStore
    from tests.servers import start_server

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        server = start_server("radicale", base / "radicale")
        emu = subprocess.Popen([sys.executable, "-c", EMU_CHILD], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        try:
            assert emu.stdout is not None and emu.stdin is not None
            info = json.loads(emu.stdout.readline())
            dav = radicale_project(server, base / "dav", args.n, env)
            gfolder = base / "google"
            gfolder.mkdir()
            (gfolder / "client.json").write_text(json.dumps({"installed": {
                "client_id": info["id"], "client_secret": info["secret"]}}))
            google = project(gfolder, args.n, (
                "  - name: work\n    type: google\n    calendar: Follow-ups\n"
                f"    client_secret: client.json\n    endpoint: {info['url']}\n"))
            os.environ["FOLLOWSYNC_NO_KEYRING"] = "1"
            TokenStore(GoogleSettings("work", "Follow-ups", gfolder / "client.json",
                                      gfolder / "state"), info["id"]).keep_refresh(
                info["refresh"])
            first = {"radicale": sync(dav, env), "google": sync(google, env)}
            sync(dav, env)
            sync(google, env)
            times: dict[str, list[float]] = {"radicale": [], "google": []}
            for _ in range(args.runs):
                times["radicale"].append(sync(dav, env))
                times["google"].append(sync(google, env))
            api_import = timed_python(
                "import googleapiclient.discovery as d; d.build('calendar', 'v3', "
                "developerKey='x', static_discovery=True, cache_discovery=False)", env)
            bare = timed_python("pass", env)
            emu.stdin.close()
            counted = json.loads(emu.stdout.readline())
        finally:
            emu.kill()
            server.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["google"] / med["radicale"]
    print(f"N = {args.n} leads, {args.runs} no-op runs per side (median / min, seconds)\n")
    print("| step | Radicale | Google (emulation) |")
    print("| --- | --- | --- |")
    print(f"| first sync (calendar made, N items) | {first['radicale']:.3f} | "
          f"{first['google']:.3f} |")
    print(f"| no-op sync, median | {med['radicale']:.3f} | {med['google']:.3f} |")
    print(f"| no-op sync, min | {min(times['radicale']):.3f} | {min(times['google']):.3f} |")
    print(f"\nratio google / radicale (median): {ratio:.2f} -> "
          f"{'PASS' if ratio <= 1.2 else 'FAIL'} (goal <= 1.2)")
    print(f"google-api-python-client import + build(): {api_import - bare:.3f} s over a bare "
          f"interpreter ({bare:.3f} s): "
          f"{(api_import - bare) / med['google'] * 100:.0f}% of the whole Google no-op")
    print(f"API requests the emulation saw in all: {counted['api']}")


if __name__ == "__main__":
    main()
