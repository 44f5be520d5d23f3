"""Run `followsync` commands as real processes that a test can SIGKILL, cheaply.

A runner process imports followsync and its libraries once, then forks one child per command;
each child is a separate process running `followsync.cli.main(argv)`, so a SIGKILL from the
test leaves exactly what a killed `followsync sync` would leave (no atexit, no finally, no
flush). Forking costs milliseconds where starting Python costs seconds, which is what makes
killing a sync at dozens of points affordable.

    with ForkRunner() as runner:
        child = runner.start(["--config", cfg, "sync"], slow_write=True, marker=path)
        ...                       # wait for a proxy to see request k, or for `marker`
        runner.kill(child)        # SIGKILL (sent by the runner); child.killed
        runner.wait(child)        # or let it finish: child.code

`slow_write`: the child's os.fdopen files write in 1 kB pieces, 1 ms apart (a slow disk), and
the first write appends a line to `marker`: the test then knows a file write is under way.
`pause_after_replace`: every os.replace is followed by a note in `marker` and a pause (the
moment after a file is in place and before anything else is saved).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_RUNNER = r"""
import json, os, sys, time
import caldav, icalendar, pydantic, yaml  # noqa: F401  (imported once, shared by every child)
import followsync.backends.caldav, followsync.backends.icsfile, followsync.sync  # noqa: F401
import followsync.leadedit  # noqa: F401
import followsync.configcache
from followsync.cli import main
from followsync.config import load_config

# the children are killed at chosen file writes of a sync: the config cache's own write
# (configcache) would be the first of them, so they validate the config every time
followsync.configcache.load_config_cached = load_config

def slow_disk(marker):
    real = os.fdopen

    class Slow:
        def __init__(self, handle):
            self.handle = handle
            self.told = False

        def write(self, data):
            if not self.told and marker:
                with open(marker, "a") as out:
                    out.write(f"{len(data)}\n")
                self.told = True
            for start in range(0, len(data), 1024):
                self.handle.write(data[start:start + 1024])
                self.handle.flush()
                time.sleep(0.001)
            return len(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

    os.fdopen = lambda fd, *a, **k: Slow(real(fd, *a, **k))

print("ready", flush=True)

def pause_after_replace(seconds, marker):
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        real(src, dst, *args, **kwargs)
        with open(marker, "a") as out:
            out.write(f"replaced {dst}\n")
        time.sleep(seconds)

    os.replace = replace

for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.environ.update(job.get("env", {}))
            if job.get("slow_write"):
                slow_disk(job.get("marker"))
            if job.get("pause_after_replace"):
                pause_after_replace(job["pause_after_replace"], job.get("marker"))
            out = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, 1)
            os.dup2(out, 2)
            code = main(job["argv"])
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            code = 99
        os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    if sys.stdin.readline().strip() == "kill":  # not reaped before: the pid is still ours
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"pid": pid, "status": status}), flush=True)
"""


class Child:
    def __init__(self, pid: int, log: Path) -> None:
        self.pid = pid
        self.log = log
        self.status: int | None = None

    @property
    def killed(self) -> bool:
        return self.status is not None and os.WIFSIGNALED(self.status) and \
            os.WTERMSIG(self.status) == signal.SIGKILL

    @property
    def code(self) -> int | None:
        if self.status is None or not os.WIFEXITED(self.status):
            return None
        return os.WEXITSTATUS(self.status)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class ForkRunner:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.count = 0
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ForkRunner:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _RUNNER], cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready", "the fork runner failed"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def _read(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the fork runner died")
        data: dict[str, Any] = json.loads(line)
        return data

    def start(self, argv: list[str], env: dict[str, str] | None = None,
              slow_write: bool = False, marker: Path | None = None,
              pause_after_replace: float = 0.0) -> Child:
        assert self.process is not None and self.process.stdin is not None
        self.count += 1
        log = self.log_dir / f"child-{self.count}.log"
        self.process.stdin.write(json.dumps({
            "argv": argv, "env": env or {}, "slow_write": slow_write,
            "pause_after_replace": pause_after_replace,
            "marker": str(marker) if marker else None, "log": str(log)}) + "\n")
        self.process.stdin.flush()
        return Child(int(self._read()["pid"]), log)

    def wait(self, child: Child, kill: bool = False) -> Child:
        """Until the child ends (by itself, or SIGKILLed first); the runner reaps it."""
        if child.status is None:
            assert self.process is not None and self.process.stdin is not None
            self.process.stdin.write("kill\n" if kill else "wait\n")
            self.process.stdin.flush()
            done = self._read()
            assert done["pid"] == child.pid, done
            child.status = int(done["status"])
        return child

    def kill(self, child: Child) -> Child:
        """SIGKILL the child (sent by the runner, which has not reaped it: never a reused pid)."""
        return self.wait(child, kill=True)
