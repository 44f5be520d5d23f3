#!/usr/bin/env python3
"""Where one followsync command spends its CPU time, by phase, without a profiler's overhead.

    python bench/sync_phases.py [--no-gc] -- --config CONFIG --now ISO sync

Runs the real CLI in this process with a few engine/state/backend functions wrapped in CPU-time
counters and prints, on stderr, the import time, the total, the peak RSS and one line per
wrapped function (calls, CPU seconds; nested phases are included in their callers).
`--no-gc` disables Python's cyclic garbage collector first, to show what collection costs
with a large heap. Use it on a folder left by `core_sync.py --keep DIR`.
"""

from __future__ import annotations

import functools
import resource
import sys
import time
from typing import Any

WRAP = {
    "followsync.sync.planning": ["make_plans", "wants_for"],
    "followsync.sync.session:Session": ["relist", "completions"],
    "followsync.sync.apply:Apply": ["run", "text"],
    "followsync.sync.apply": ["same"],
    "followsync.leads": ["load_leads"],
    "followsync.sync": ["open_state"],
    "followsync.diff": ["diff"],
    "followsync.config": ["load_config"],
    "followsync.backends.icsfile": ["parse"],
    "followsync.state:State": ["rows", "memories", "remember", "put"],
    "followsync.backends.icsfile:IcsFileBackend": ["listing", "_load", "create", "update",
                                                   "_adopt_text", "commit", "_write"],
}


def main() -> int:
    args = sys.argv[1:]
    no_gc = "--no-gc" in args
    args = [a for a in args if a != "--no-gc"]
    if args and args[0] == "--":
        args = args[1:]
    started, cpu0 = time.perf_counter(), time.process_time()
    import importlib

    import followsync.cli
    import followsync.commands.show  # imported by `sync`: count it as import time

    imported = time.perf_counter() - started
    spent: dict[str, list[float]] = {}

    def wrap(owner: Any, name: str, label: str) -> None:
        func = getattr(owner, name, None)
        if func is None:
            return

        @functools.wraps(func)
        def timed(*a: Any, **k: Any) -> Any:
            c = time.process_time()
            try:
                return func(*a, **k)
            finally:
                entry = spent.setdefault(label, [0, 0.0])
                entry[0] += 1
                entry[1] += time.process_time() - c

        setattr(owner, name, timed)

    for where, names in WRAP.items():
        module_name, _, cls = where.partition(":")
        owner: Any = importlib.import_module(module_name)
        if cls:
            owner = getattr(owner, cls)
        for name in names:
            wrap(owner, name, f"{cls or module_name.rsplit('.', 1)[-1]}.{name}")
    if no_gc:
        import gc

        gc.disable()
    cpu1 = time.process_time()
    code = followsync.cli.main(args)
    cpu2 = time.process_time()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"imports {imported:.2f} s wall; command {cpu2 - cpu1:.2f} s CPU; total "
          f"{cpu2 - cpu0:.2f} s CPU; peak RSS {peak:.0f} MB; gc {'off' if no_gc else 'on'}",
          file=sys.stderr)
    for label, (calls, seconds) in sorted(spent.items(), key=lambda x: -x[1][1]):
        print(f"  {label:34s} {int(calls):7d} calls {seconds:8.3f} s CPU", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
