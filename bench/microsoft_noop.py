#!/usr/bin/env python3
"""A no-op `followsync sync` to a Microsoft target against the same to Radicale.

    python bench/microsoft_noop.py [--n 50] [--runs 15]

The goal (issue 19): a no-op sync to Outlook within 1.2x the no-op to Radicale, import cost
included. Radicale is started as the tests start it (tests/servers.py); the Microsoft side
is the local emulation of Graph (tests/msemu.py, HTTPS with its test CA) in its own process,
so neither server shares the bench's CPU. The emulation runs with Nagle's algorithm off: as
http.server writes an answer in pieces, each answer otherwise waits ~40 ms for a delayed ACK
(`--as-is` measures it that way). The sign-in is kept as `followsync auth` keeps it
(msauth's token file, an access token valid for a day). Each side gets N leads, a first sync
and a second one (which sees the first's own writes); then `python -m followsync sync` runs
RUNS times per side, alternating, and the median wall times are compared. Also measured:
what importing msal (with requests and cryptography) would add to a no-op (the reason the
no-op never imports it), and the first upload of N events, one request each (the case
`$batch` would serve; the emulation answers on this machine, so its latency is not
Microsoft's: see bench/README.md).
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.google_noop import project, radicale_project, sync, timed_python  # noqa: E402  the same runs

EMU_CHILD = """
import json, sys
import tests.msemu
from tests.msemu import MsEmu
# http.server answers in several small writes; with Nagle on, each answer waits ~40 ms for
# the client's delayed ACK: the emulation's own cost, not Graph's (--as-is keeps it)
tests.msemu._Handler.disable_nagle_algorithm = sys.argv[1] != "as-is"
emu = MsEmu(token_lifetime=86400).start()
access, refresh = emu.issue_tokens(["Calendars.ReadWrite"])
print(json.dumps({"url": emu.url, "ca": emu.ca_path, "id": emu.client_id,
                  "access": access, "refresh": refresh}), flush=True)
sys.stdin.read()
print(json.dumps({"api": len(emu.api_requests()), "token": len(emu.token_requests())}),
      flush=True)
"""


class Bearer:
    def __init__(self, token: str) -> None:
        self.token = token

    def access(self) -> str:
        return self.token

    def refresh(self) -> str:
        return self.token


def first_upload(info: dict[str, str], n: int) -> tuple[float, float]:
    """N events created one request each, against N/20 `$batch` requests of 20 (seconds),
    each into a calendar of its own, over one keep-alive connection."""
    from followsync.backends.apisession import ApiSession, microsoft_retryable
    from followsync.backends.microsoft import to_event
    from tests.test_backend_contract import new_uid, rendered_item

    session = ApiSession(info["url"] + "/v1.0/", Bearer(info["access"]), verify=info["ca"],
                         service="Microsoft", retryable=microsoft_retryable)
    bodies = []
    for _ in range(n):
        uid = new_uid()
        bodies.append(to_event(uid, rendered_item(uid))[0])
    took = []
    for way in ("one by one", "batch"):
        made = session.call("POST", "me/calendars", {"name": f"Upload {way}"})
        path = f"me/calendars/{json.loads(made.body)['id']}/events"
        started = time.perf_counter()
        if way == "one by one":
            for body in bodies:
                assert session.call("POST", path, body).status == 201
        else:
            for at in range(0, n, 20):
                requests = [{"id": str(i), "method": "POST", "url": "/" + path, "body": body,
                             "headers": {"Content-Type": "application/json"}}
                            for i, body in enumerate(bodies[at:at + 20])]
                answer = session.call("POST", "$batch", {"requests": requests})
                assert all(r["status"] == 201 for r in json.loads(answer.body)["responses"])
        took.append(time.perf_counter() - started)
    session.close()
    return took[0], took[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--as-is", action="store_true",
                        help="keep the emulation's ~40 ms Nagle stall on every answer")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FOLLOWSYNC_NO_KEYRING": "1",
           "NO_PROXY": "127.0.0.1,localhost"}
    from followsync.msauth import MicrosoftSettings, store_for
    from tests.servers import start_server

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        server = start_server("radicale", base / "radicale")
        emu = subprocess.Popen([sys.executable, "-c", EMU_CHILD,
                                "as-is" if args.as_is else "fast"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        try:
            assert emu.stdout is not None and emu.stdin is not None
            info = json.loads(emu.stdout.readline())
            dav = radicale_project(server, base / "dav", args.n, env)
            folder = base / "microsoft"
            outlook = project(folder, args.n, (
                "  - name: work\n    type: microsoft\n    calendar: Follow-ups\n"
                f"    client_id: {info['id']}\n    endpoint: {info['url']}\n"
                f"    verify: {info['ca']}\n"))
            os.environ["FOLLOWSYNC_NO_KEYRING"] = "1"
            store_for(MicrosoftSettings("work", info["id"], folder / "state",
                                        endpoint=info["url"])).keep(
                info["refresh"], {"graph_": (info["access"], 86400.0)})
            first = {"radicale": sync(dav, env), "microsoft": sync(outlook, env)}
            sync(dav, env)
            sync(outlook, env)
            times: dict[str, list[float]] = {"radicale": [], "microsoft": []}
            for _ in range(args.runs):
                times["radicale"].append(sync(dav, env))
                times["microsoft"].append(sync(outlook, env))
            upload = first_upload(info, args.n)
            msal_import = timed_python("import msal", env)
            bare = timed_python("pass", env)
            emu.stdin.close()
            counted = json.loads(emu.stdout.readline())
        finally:
            emu.kill()
            server.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["microsoft"] / med["radicale"]
    load = os.getloadavg()
    print(f"N = {args.n} leads, {args.runs} no-op runs per side (median / min, seconds); "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; the emulation "
          f"{'as is (a ~40 ms Nagle stall per answer)' if args.as_is else 'without Nagle'}\n")
    print("| step | Radicale | Microsoft (emulation) |")
    print("| --- | --- | --- |")
    print(f"| first sync (calendar made, N items) | {first['radicale']:.3f} | "
          f"{first['microsoft']:.3f} |")
    print(f"| no-op sync, median | {med['radicale']:.3f} | {med['microsoft']:.3f} |")
    print(f"| no-op sync, min | {min(times['radicale']):.3f} | "
          f"{min(times['microsoft']):.3f} |")
    print(f"\nratio microsoft / radicale (median): {ratio:.2f} -> "
          f"{'PASS' if ratio <= 1.2 else 'FAIL'} (goal <= 1.2)")
    print(f"importing msal (requests, cryptography): {msal_import - bare:.3f} s over a bare "
          f"interpreter ({bare:.3f} s): {(msal_import - bare) / med['microsoft'] * 100:.0f}% "
          "of the whole Microsoft no-op, had it been on the hot path")
    print(f"first upload of N events: one request each {upload[0]:.3f} s, $batch of 20 "
          f"{upload[1]:.3f} s (the emulation on this machine: no network latency)")
    print(f"Graph requests the emulation saw in all: {counted['api']}; token requests: "
          f"{counted['token']}")


if __name__ == "__main__":
    main()
