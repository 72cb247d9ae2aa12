"""JSON as the project writes it: keys sorted, so two runs that compute the same values write the same
bytes (model folders, shards and results can be compared with `cmp` or hashed)."""

from __future__ import annotations

import json
from pathlib import Path


def json_text(value, indent: int | None = 1) -> str:
    """`value` as JSON text with sorted keys (one line when `indent` is None, for .jsonl files)."""
    return json.dumps(value, indent=indent, sort_keys=True, ensure_ascii=False) + ("\n" if indent is not None else "")


def write_json(path: str | Path, value, indent: int = 1) -> Path:
    path = Path(path)
    path.write_text(json_text(value, indent), encoding="utf-8")
    return path
