"""Content hashes that identify a tokenizer (or any artefact folder) by what is in it."""

from __future__ import annotations

import hashlib
from pathlib import Path


def folder_hash(path: str | Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted order; 16 hex digits."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
