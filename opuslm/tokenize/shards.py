"""Token shards: the tokenized corpus on disk, memory-mapped, O(1) random access.

A shard is a folder `shard-NNNNN/` holding, for its utterances in manifest order:
`text.npy` (int32 transcript ids, concatenated), `semantic.npy` (int32 ids, concatenated frames),
`codes.npy` (int16 `[frames, num_codebooks]`, concatenated), `index.npy` (int64 rows
`text_start, text_len, frame_start, num_frames`), `meta.jsonl` (id, text, speaker, split, labels,
words, events, answer) and `rejects.jsonl`; with heard features (`opuslm tokenize --heard-features`),
`features.npy` too (float16 `[frames, dim]`, concatenated): the semantic tokenizer's own features of
each frame, normalised as its k-means reads them, for a model's continuous input path. A shard is written to a temporary folder and renamed,
so a folder named `shard-NNNNN` is always complete. `tokens.json` beside the shards records the
identity (content hash) of each tokenizer; opening shards with other tokenizers is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opuslm.errors import OpusLMError
from opuslm.json_files import json_text
from opuslm.tokenize.identity import tokenizer_hash

SHARD_PREFIX = "shard-"


@dataclass
class TokenizedUtterance:
    text_ids: np.ndarray  # [text_len]
    semantic: np.ndarray  # [frames]
    codes: np.ndarray  # [num_codebooks, frames]
    meta: dict
    features: np.ndarray | None = None  # [frames, dim] float16: the heard features, where tokenized with them


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:05d}"


def write_shard(folder: Path, index: int, items: list[TokenizedUtterance], rejects: list[dict], num_codebooks: int) -> Path:
    """Write one shard atomically (temporary folder, then rename)."""
    final = folder / shard_name(index)
    tmp = folder / f".{shard_name(index)}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    text_lens = [len(it.text_ids) for it in items]
    frames = [len(it.semantic) for it in items]
    index_rows = np.stack([np.cumsum([0] + text_lens)[:-1], text_lens, np.cumsum([0] + frames)[:-1], frames], 1) \
        if items else np.zeros((0, 4))
    np.save(tmp / "index.npy", index_rows.astype(np.int64))
    np.save(tmp / "text.npy", np.concatenate([it.text_ids for it in items]).astype(np.int32) if items else np.zeros(0, np.int32))
    np.save(tmp / "semantic.npy", np.concatenate([it.semantic for it in items]).astype(np.int32) if items else np.zeros(0, np.int32))
    codes = np.concatenate([it.codes.T for it in items]) if items else np.zeros((0, num_codebooks))
    np.save(tmp / "codes.npy", codes.astype(np.int16))
    if items and items[0].features is not None:
        np.save(tmp / "features.npy", np.concatenate([it.features for it in items]).astype(np.float16))
    with open(tmp / "meta.jsonl", "w", encoding="utf-8") as f:
        for it in items:
            f.write(json_text(it.meta, None) + "\n")
    with open(tmp / "rejects.jsonl", "w", encoding="utf-8") as f:
        for reject in rejects:
            f.write(json_text(reject, None) + "\n")
    os.replace(tmp, final)
    return final


def completed_shards(folder: Path) -> dict[int, Path]:
    return {int(p.name[len(SHARD_PREFIX):]): p for p in sorted(folder.glob(f"{SHARD_PREFIX}*")) if p.is_dir()}


class _Shard:
    def __init__(self, path: Path):
        self.path = path
        self.index = np.load(path / "index.npy")
        self._arrays: dict[str, np.ndarray] = {}
        self._meta: list[dict] | None = None

    def array(self, name: str) -> np.ndarray:
        if name not in self._arrays:  # opened on first use, never read whole
            self._arrays[name] = np.load(self.path / f"{name}.npy", mmap_mode="r")
        return self._arrays[name]

    def meta(self, i: int) -> dict:
        if self._meta is None:
            with open(self.path / "meta.jsonl", encoding="utf-8") as f:
                self._meta = [json.loads(line) for line in f]
        return self._meta[i]

    def __len__(self) -> int:
        return len(self.index)


class TokenShards:
    """All shards of a tokenized corpus as one random-access sequence."""

    def __init__(self, folder: str | Path, expect: dict[str, str] | None = None):
        """`expect`: tokenizer hashes (`{"text": ..., "semantic": ..., "acoustic": ...}`) the caller was
        built with; any difference is refused."""
        self.folder = Path(folder)
        info_path = self.folder / "tokens.json"
        if not info_path.is_file():
            raise OpusLMError(f"{self.folder} holds no token shards (no tokens.json); run `opuslm tokenize` first")
        self.info = json.loads(info_path.read_text())
        if expect is not None:
            check_identity(self.info["tokenizers"], expect, str(self.folder))
        found = completed_shards(self.folder)
        expected = self.info["num_shards"]
        if sorted(found) != list(range(expected)):
            raise OpusLMError(f"{self.folder} has {len(found)} of {expected} shards; re-run `opuslm tokenize` to finish")
        self._shards = [_Shard(found[i]) for i in range(expected)]
        sizes = [len(s) for s in self._shards]
        self._shard_of = np.repeat(np.arange(len(sizes)), sizes)
        self._local = np.concatenate([np.arange(n) for n in sizes]) if sizes else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self._shard_of)

    def tokenizer_path(self, name: str, override: str | Path | None = None) -> Path:
        """The folder of tokenizer `name` ("text", "semantic", "acoustic") these shards were made with:
        `override` when given, else the recorded path; refused when its content hash differs."""
        recorded = self.info["tokenizers"][name]
        path = Path(override) if override is not None else Path(recorded["path"])
        if not path.exists():
            raise OpusLMError(f"the {name} tokenizer of {self.folder} is not at {path}; pass its folder explicitly")
        check_identity(self.info["tokenizers"], {name: tokenizer_hash(name, path)}, str(self.folder))
        return path

    def _locate(self, i: int) -> tuple[_Shard, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self._shards[self._shard_of[i]], int(self._local[i])

    def meta(self, i: int) -> dict:
        """The utterance's metadata alone (id, text, speaker, labels, ...), without reading tokens."""
        shard, local = self._locate(i)
        return shard.meta(local)

    def __getitem__(self, i: int) -> TokenizedUtterance:
        shard, local = self._locate(i)
        text_start, text_len, frame_start, frames = (int(v) for v in shard.index[local])
        return TokenizedUtterance(
            text_ids=np.asarray(shard.array("text")[text_start: text_start + text_len], dtype=np.int64),
            semantic=np.asarray(shard.array("semantic")[frame_start: frame_start + frames], dtype=np.int64),
            codes=np.asarray(shard.array("codes")[frame_start: frame_start + frames], dtype=np.int64).T,
            meta=shard.meta(local),
            features=np.asarray(shard.array("features")[frame_start: frame_start + frames])
            if self.feature_dim else None,
        )

    @property
    def feature_dim(self) -> int:
        """The dimension of the heard features these shards hold; 0 when tokenized without them."""
        return int((self.info.get("heard_features") or {}).get("dim", 0))


def check_identity(stored: dict, expected: dict, where: str, expected_is: str = "the one given") -> None:
    """Refuse shards (`stored`: their tokens.json "tokenizers") made with other tokenizers than `expected`
    (name -> content hash)."""
    for name, digest in expected.items():
        have = stored.get(name, {}).get("hash")
        if have != digest:
            raise OpusLMError(
                f"{where} was tokenized with another {name} tokenizer (hash {have}) than {expected_is} "
                f"(hash {digest}); re-tokenize with `opuslm tokenize` or use the tokenizers it was made with"
            )
