"""Results as JSON files (benchmarks, fuzzing, fault runs): written one way by every tool."""
from __future__ import annotations

import json
from pathlib import Path


def write_json(path: str | Path | None, document: dict) -> None:
    """`document` as indented JSON at `path`, its folder made; nothing when no path is given."""
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(document, indent=1))
