"""Bench: the mail scanner against a real Dovecot (tests/imapserver.py), in one command.

    python bench/mail_scan.py                  # 20,000 messages, 5 runs per step
    python bench/mail_scan.py --messages 5000 --repeat 3

Why these steps (README "Benchmarks"):
- first scan of one folder of N messages, against the floor: a bare imaplib loop that fetches
  the same header fields for every UID in one command (goal: at most 1.5x, under 150 MB);
- a scan with no new mail in 3 folders: one STATUS per folder, under 0.1 s of client time;
- the daemon (`followsync run`, a mailbox with `interval: 1s`, an .ics target): a message
  appended to INBOX → the lead's calendar item rewritten, within the interval plus < 1 s.
Each timed run is a fresh child process (its peak RSS read with os.wait4); the timed part
excludes interpreter start-up. Floor and scan alternate after one warm-up fetch, so Dovecot's
header cache is equally warm for both. The mail is written as maildir files, which Dovecot
indexes on first access (much faster than N APPENDs); the file's mtime is its INTERNALDATE.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from followsync.sources.mail import FETCH_ITEMS, Mailbox, scan_mailbox  # noqa: E402
from tests.imapserver import Account, CountingProxy, Dovecot, message, start_dovecot  # noqa: E402

ME = "me@here.example"
BIG = "Big"
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def leads(n: int = 300) -> dict[str, str]:
    return {f"lead{i}@corp{i % 37}.example": f"lead-{i}" for i in range(n)}


def write_maildir(server: Dovecot, account: Account, folder: str, count: int, seed: int) -> None:
    """`count` messages into `folder` as maildir files: 5% from leads, 5% to leads, 10% lists,
    the rest from strangers; a few KB each like real mail."""
    rng = random.Random(seed)
    lead_addrs = list(leads())
    root = server.base / "home" / account.username / "Maildir"
    box = root if folder == "INBOX" else root / f".{folder}"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 30 + "\r\n") * 2
    for i in range(count):
        when = START + timedelta(minutes=17 * i)
        roll = rng.random()
        extra = {"Received": f"from mx{i % 9}.example by here.example; {format_datetime(when)}",
                 "X-Mailer": "bench"}
        if roll < 0.05:
            frm, to = rng.choice(lead_addrs), ME
        elif roll < 0.10:
            frm, to = ME, rng.choice(lead_addrs)
        elif roll < 0.20:
            frm, to = f"news{i % 50}@lists.example", ME
            extra["List-Id"] = f"<list{i % 50}.lists.example>"
        else:
            frm, to = f"person{rng.randrange(5000)}@else{i % 91}.example", ME
        raw = message(frm=f"Someone {i} <{frm}>", to=to, subject=f"message {i} about things",
                      date=when, message_id=f"<{seed}.{i}@bench.example>", extra=extra,
                      body=body)
        path = box / "cur" / f"{int(when.timestamp())}.{seed}_{i}.bench:2,S"
        path.write_bytes(raw)
        stamp = when.timestamp()
        os.utime(path, (stamp, stamp))
    for dirpath, _dirs, files in os.walk(root):
        os.chown(dirpath, server.uid, server.gid)
        for name in files:
            os.chown(os.path.join(dirpath, name), server.uid, server.gid)


def mailbox(account: Account, folders: tuple[str, ...] | None, port: int | None = None
            ) -> Mailbox:
    return Mailbox(name="bench", host=account.host, port=port or account.port, tls="none",
                   username=account.username, password=account.password, me=(ME,),
                   folders=folders, since=date(2020, 1, 1))


# ------------------------------------------------------------------ children (timed)
def child(kind: str, port: int, user: str, password: str) -> None:
    host = "127.0.0.1"
    started, cpu = time.perf_counter(), time.process_time()
    if kind == "floor":
        imap = imaplib.IMAP4(host, port)
        imap.login(user, password)
        imap.select(f'"{BIG}"', readonly=True)
        _typ, data = imap.uid("FETCH", "1:*", FETCH_ITEMS)
        count = sum(1 for item in data if isinstance(item, tuple))
        imap.logout()
    else:
        box = Mailbox(name="bench", host=host, port=port, tls="none", username=user,
                      password=password, me=(ME,), folders=(BIG,), since=date(2020, 1, 1))
        result = scan_mailbox(box, leads(), {}, (), ZoneInfo("Europe/Berlin"))
        count = result.fetched
    print(json.dumps({"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu,
                      "count": count}))


def run_child(kind: str, account: Account) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, __file__, "--child", kind, str(account.port),
                             account.username, account.password], stdout=subprocess.PIPE,
                            env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{kind} child failed ({status})")
    result: dict[str, float] = json.loads(out)
    result["rss_mb"] = usage.ru_maxrss / 1024
    return result


# ------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", nargs=4, metavar=("KIND", "PORT", "USER", "PASSWORD"))
    parser.add_argument("--daemon-only", action="store_true",
                        help="only the daemon step (append → calendar item moved)")
    args = parser.parse_args()
    if args.child:
        kind, port, user, password = args.child
        child(kind, int(port), user, password)
        return
    print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    server = start_dovecot()
    try:
        rows = [] if args.daemon_only else bench(server, args.messages, args.repeat)
        rows.append(bench_daemon(server, max(args.repeat, 5)))
        print("\n| goal | measured | target | result |\n| --- | --- | --- | --- |")
        for goal, measured, target, ok in rows:
            print(f"| {goal} | {measured} | {target} | {'PASS' if ok else 'FAIL'} |")
    finally:
        server.stop()


DAEMON_INTERVAL = 1.0  # seconds: the mailbox's `interval` in the daemon step


def bench_daemon(server: Dovecot, repeat: int) -> tuple[str, str, str, bool]:
    """`followsync run` on an .ics target and one mailbox polled every second: each time a
    message from the lead is appended, how long until the .ics holds the item it changes
    (a new subject rewrites the item's reply link; the first answer also moves it)."""
    import tempfile
    from urllib.parse import quote

    account = server.new_account()
    folder = Path(tempfile.mkdtemp(prefix="fsbench"))
    (folder / "leads.yaml").write_text(
        "version: 1\nleads:\n  dana: {name: Dana Whitfield, email: dana@acme.example}\n")
    (folder / "config.yaml").write_text(
        "leads: leads.yaml\ntimezone: Europe/Berlin\nstate_dir: state\ntargets:\n"
        "  - {name: file, type: ics, path: out.ics}\nmail:\n"
        f"  - {{name: inbox, host: {account.host}, port: {account.port}, tls: none, "
        f"username: {account.username}, password_env: FS_BENCH_PW, me: [{ME}], "
        f"interval: {DAEMON_INTERVAL:g}s}}\n")
    ics = folder / "out.ics"
    env = {**os.environ, "FS_BENCH_PW": account.password, "PYTHONPATH": str(ROOT)}
    with open(folder / "stderr.txt", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "followsync", "--config",
                                 str(folder / "config.yaml"), "run"], stdout=subprocess.DEVNULL,
                                stderr=err, env=env, cwd=folder)
        try:
            def wait(text: str, timeout: float) -> float:
                started = time.perf_counter()
                while text not in (ics.read_text().replace("\n ", "")
                                   if ics.exists() else ""):
                    if time.perf_counter() - started > timeout or proc.poll() is not None:
                        raise SystemExit((folder / "stderr.txt").read_text())
                    time.sleep(0.01)
                return time.perf_counter() - started

            wait("X-FOLLOWSYNC-LEAD:dana", 30)
            took = []
            for i in range(repeat):
                time.sleep(random.random() * DAEMON_INTERVAL)  # any phase of the polling
                now = datetime.now(ZoneInfo("Europe/Berlin"))
                subject = f"Re: news {i}"
                account.append("INBOX", message(frm="Dana <dana@acme.example>", to=ME,
                                                subject=subject, date=now,
                                                message_id=f"<n{i}@acme.example>"), now)
                took.append(wait(f"subject={quote(subject, safe='')}", DAEMON_INTERVAL + 10))
        finally:
            proc.terminate()
            proc.wait(10)
    shutil.rmtree(folder, ignore_errors=True)
    worst, median = max(took), statistics.median(took)
    print(f"\ndaemon, mailbox interval {DAEMON_INTERVAL:g} s: append → calendar item rewritten "
          f"in {median:.2f} s median, {worst:.2f} s worst of {repeat}")
    return (f"daemon: append → calendar item moved (interval {DAEMON_INTERVAL:g} s; median "
            f"{median:.2f} s)", f"{worst:.2f} s worst", f"< {DAEMON_INTERVAL + 1:g} s",
            worst < DAEMON_INTERVAL + 1)


def bench(server: Dovecot, count: int, repeat: int) -> list[tuple[str, str, str, bool]]:
    account = server.new_account()
    account.create_folder(BIG)
    begun = time.perf_counter()
    write_maildir(server, account, BIG, count, seed=1)
    warm = imaplib.IMAP4(account.host, account.port)
    warm.login(account.username, account.password)
    warm.select(f'"{BIG}"', readonly=True)
    warm.uid("FETCH", "1:*", FETCH_ITEMS)
    warm.logout()
    print(f"{count} messages written and indexed in {time.perf_counter() - begun:.1f} s",
          flush=True)

    floors, scans = [], []
    for _ in range(repeat):
        floors.append(run_child("floor", account))
        scans.append(run_child("scan", account))
    if {r["count"] for r in floors + scans} != {count}:
        raise SystemExit(f"counts differ: {floors} {scans}")
    floor = statistics.median(r["wall"] for r in floors)
    scan = statistics.median(r["wall"] for r in scans)
    rss = max(r["rss_mb"] for r in scans)
    print(f"\nfirst scan of {count} messages (median of {repeat}, wall):")
    print(f"  floor (bare imaplib UID FETCH 1:*): {floor:6.2f} s  cpu "
          f"{statistics.median(r['cpu'] for r in floors):.2f} s  peak RSS "
          f"{max(r['rss_mb'] for r in floors):.0f} MB")
    print(f"  followsync scan:                    {scan:6.2f} s  cpu "
          f"{statistics.median(r['cpu'] for r in scans):.2f} s  peak RSS {rss:.0f} MB")
    print(f"  ratio {scan / floor:.2f}x (goal <= 1.5x), peak RSS {rss:.0f} MB (goal < 150 MB)")

    # no new mail in 3 folders
    idle = server.new_account()
    idle.create_folder("Sent")
    idle.create_folder("All Mail")
    for folder, seed in (("INBOX", 2), ("Sent", 3), ("All Mail", 4)):
        write_maildir(server, idle, folder, 500, seed=seed)
    tz = ZoneInfo("Europe/Berlin")
    first = scan_mailbox(mailbox(idle, None), leads(), {}, (), tz)
    known = {t.key for t in first.touches}
    walls, cpus = [], []
    for _ in range(max(repeat, 5)):
        started, cpu = time.perf_counter(), time.thread_time()
        again = scan_mailbox(mailbox(idle, None), leads(), first.bookmarks, known, tz)
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - started)
        assert again.touches == () and again.fetched == 0
    proxy = CountingProxy(idle.host, idle.port).start()
    try:
        scan_mailbox(mailbox(idle, None, proxy.port), leads(), first.bookmarks, known, tz)
        verbs = proxy.verbs()
    finally:
        proxy.stop()
    print(f"\nno new mail in 3 folders ({len(first.touches)} touches known, median of "
          f"{len(walls)}):")
    print(f"  wall {statistics.median(walls) * 1000:.1f} ms, client cpu "
          f"{statistics.median(cpus) * 1000:.1f} ms (goal < 100 ms)")
    print(f"  commands: {' '.join(verbs)}  ({verbs.count('STATUS')} STATUS for 3 folders)")

    folder_commands = [v for v in verbs if v not in ("CAPABILITY", "LOGIN", "LIST", "LOGOUT")]
    idle_cpu = statistics.median(cpus)
    return [
        ("first scan ÷ bare imaplib floor (wall)", f"{scan / floor:.2f}", "≤ 1.5",
         scan / floor <= 1.5),
        ("first scan peak RSS", f"{rss:.0f} MB", "< 150 MB", rss < 150),
        ("no new mail: commands per folder", f"{len(folder_commands) / 3:g} (STATUS)", "= 1",
         folder_commands == ["STATUS"] * 3),
        ("no new mail: client CPU", f"{idle_cpu * 1000:.1f} ms", "< 100 ms", idle_cpu < 0.1),
    ]


if __name__ == "__main__":
    main()
