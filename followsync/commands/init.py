"""`followsync init`: a commented starter config and lead file, and the schema for editors."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from followsync.errors import UsageError


def write_starter(folder: Path) -> list[str]:
    """Write config.yaml, leads.yaml and followsync.schema.json; never overwrite a file."""
    from followsync.leads import schema

    files = {
        "config.yaml": resources.files("followsync.templates").joinpath("config.yaml").read_text(),
        "leads.yaml": resources.files("followsync.templates").joinpath("leads.yaml").read_text(),
        "followsync.schema.json": json.dumps(schema(), indent=2) + "\n",
    }
    existing = [name for name in ("config.yaml", "leads.yaml") if (folder / name).exists()]
    if existing:
        verb = "exists" if len(existing) == 1 else "exist"
        raise UsageError(f"{' and '.join(str(folder / n) for n in existing)} already {verb}; "
                         "nothing was written", "pick an empty folder: followsync init DIR")
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    config = folder / "config.yaml"
    return [f"wrote {folder / name}" for name in files] + [
        "next: edit leads.yaml, then run",
        f"  followsync --config {config} plan    # see what would be written",
        f"  followsync --config {config} sync    # write followups.ics",
    ]
