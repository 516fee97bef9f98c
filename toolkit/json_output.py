"""How every tool hands back its JSON report: on standard output, and in a file when asked for one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def print_and_save(
    report: dict, path: Path | None, *, default: Callable[[object], object] | None = None
) -> None:
    """Print the report as indented JSON and write the same text to `path` (folders made as needed)."""
    text = json.dumps(report, indent=2, default=default)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    print(text)
