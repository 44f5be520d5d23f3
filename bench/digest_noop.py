#!/usr/bin/env python3
"""Requests of a no-op `followsync sync` to a Digest server (issue 18's goal: 1, was 2).

    python bench/digest_noop.py [--runs 5]

Radicale is started as the tests start it (tests/servers.py), behind the Digest proxy of the
tests (tests/digestproxy.py, which counts the requests it gets); a calendar of 3 leads is
synced once, then `python -m followsync sync` runs RUNS times with nothing to do, each in a
process of its own:

- "without the kept challenge": `http-auth.json` is deleted from the state folder before
  each run, which is what every run cost before followsync kept it (a 401, then the retry);
- "with it": as a user runs it.

It prints the requests per no-op (the most of the runs) and "PASS/FAIL goal" for the row of
the issue's table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NOW = "2026-11-12T10:00"
GOAL = 1


def sync(config: Path, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "followsync", "--config", str(config),
                           "--now", NOW, "sync"], capture_output=True, text=True, env=env,
                          check=False, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"sync failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    from tests.digestproxy import DIGEST_PASSWORD, DIGEST_USER, start_digest_proxy
    from tests.servers import drop_calendar, fresh_calendar, running_server

    with tempfile.TemporaryDirectory(prefix="fs-digest-") as tmp, \
            running_server("radicale", Path(tmp) / "radicale") as server:
        base = Path(tmp)
        proxy = start_digest_proxy(server)
        cal = fresh_calendar(server)
        try:
            (base / "leads.yaml").write_text(
                "version: 1\nleads:\n" + "".join(
                    f"  p{i}: {{name: Person {i}, last_contact: 2026-11-0{i + 1}}}\n"
                    for i in range(3)))
            config = base / "config.yaml"
            config.write_text(
                "leads: leads.yaml\ntimezone: Europe/Berlin\nstate_dir: state\ntargets:\n"
                f"  - name: dav\n    type: caldav\n    url: {proxy.url_for(cal.url)}\n"
                f"    calendar: {cal.calendar_name}\n    as: event\n"
                f"    username: {DIGEST_USER}\n    password_env: FS_BENCH_PASSWORD\n")
            config.chmod(0o600)
            env = {**os.environ, "FS_BENCH_PASSWORD": DIGEST_PASSWORD,
                   "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(base / "cache")}
            sync(config, env)
            sync(config, env)
            kept = base / "state" / "http-auth.json"
            counts: dict[str, list[int]] = {"without the kept challenge": [], "with it": []}
            for _ in range(runs):
                for label, forget in (("without the kept challenge", True), ("with it", False)):
                    if forget:
                        kept.unlink(missing_ok=True)
                    proxy.reset()
                    sync(config, env)
                    counts[label].append(len(proxy.seen()))
        finally:
            drop_calendar(cal)
            proxy.stop()
    print(f"no-op `sync` to Radicale behind a Digest proxy, {runs} runs each\n")
    print("| requests per no-op | most | all runs |")
    print("| --- | ---: | --- |")
    for label, seen in counts.items():
        print(f"| {label} | {max(seen)} | {seen} |")
    after = max(counts["with it"])
    verdict = "PASS" if after <= GOAL else "FAIL"
    print(f"\n{verdict} goal 1: no-op requests to a Digest server "
          f"{max(counts['without the kept challenge'])} -> {after} (goal <= {GOAL})")


if __name__ == "__main__":
    main()
