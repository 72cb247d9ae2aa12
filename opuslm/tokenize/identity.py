"""Content hashes that identify a tokenizer (or any artefact folder) by what is in it.

A tokenizer's identity is what decides its ids: a codec's or a semantic tokenizer's whole folder, but
only the tokenizer files of a text tokenizer, which often lives in its LLM's folder beside weights
that change no id. So a model folder's copy of the text tokenizer has the identity of its source.
"""

from __future__ import annotations

import fnmatch
import hashlib
from pathlib import Path

# Files of an LLM folder that are not its tokenizer (a model folder copies the tokenizer without them).
NOT_TEXT_TOKENIZER = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf", "*.h5", "*.msgpack", "*.index.json",
                      "config.json", "generation_config.json")
TOKENIZER_NAMES = ("text", "semantic", "acoustic")


def folder_hash(path: str | Path, ignore: tuple[str, ...] = ()) -> str:
    """sha256 over every file's relative path and bytes, in sorted order, leaving out file names that
    match a pattern of `ignore`; 16 hex digits."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if any(fnmatch.fnmatch(file.name, pattern) for pattern in ignore):
            continue
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def tokenizer_hash(name: str, path: str | Path) -> str:
    """The identity of tokenizer `name` ("text", "semantic", "acoustic") in folder `path`."""
    return folder_hash(path, NOT_TEXT_TOKENIZER if name == "text" else ())
