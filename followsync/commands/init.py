"""`followsync init`: a commented starter config and lead file, and the schema for editors."""

from __future__ import annotations

import json
import shlex
from importlib import resources
from pathlib import Path

from followsync.errors import UsageError

LEADS = "leads.yaml"
SCHEMA = "followsync.schema.json"


def write_starter(config: Path, *, looked_up: bool, explicit_dir: bool) -> list[str]:
    """Write `config`, leads.yaml and followsync.schema.json beside it; never overwrite a
    file. `looked_up`: the next command finds `config` without --config, so the lines
    returned (what was written, what to run next) say so."""
    from followsync.leads import schema

    folder = config.parent
    if config.name in (LEADS, SCHEMA):
        raise UsageError(f"the config cannot be called {config.name}: init writes that file "
                         "beside it", "name the config config.yaml")
    templates = resources.files("followsync.templates")
    files = {
        config.name: templates.joinpath("config.yaml").read_text(),
        LEADS: templates.joinpath("leads.yaml").read_text(),
        SCHEMA: json.dumps(schema(), indent=2) + "\n",
    }
    existing = [folder / name for name in (config.name, LEADS) if (folder / name).exists()]
    if existing:
        verb = "exists" if len(existing) == 1 else "exist"
        hint = ("pick an empty folder: followsync init DIR" if explicit_dir else
                f"followsync is already set up there: edit {shlex.quote(str(existing[0]))}, "
                "or start another one elsewhere with `followsync init DIR`")
        raise UsageError(f"{' and '.join(map(str, existing))} already {verb}; nothing was written",
                         hint)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, text in files.items():
        if name == SCHEMA and (folder / name).exists():  # an editor's copy: left as it is
            lines.append(f"kept {folder / name} (already there)")
            continue
        (folder / name).write_text(text, encoding="utf-8")
        lines.append(f"wrote {folder / name}")
    flag = "" if looked_up else f" --config {shlex.quote(str(config))}"
    return [
        *lines,
        "next: add your leads, see what would be written, then write it:",
        f"  $EDITOR {shlex.quote(str(folder / LEADS))}",
        f"  followsync{flag} plan",
        f"  followsync{flag} sync",
    ]
