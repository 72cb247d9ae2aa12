"""The joint vocabulary: where every token id of every modality gets its one place.

Tokenizers give *local* ids (a semantic cluster 0..K-1, a code 0..C-1 of codebook k, an LLM text id);
the model reads and writes *joint* ids. The layout, in this fixed order:

    [0, 256)                       specials: pad = 0, eos, unk, sos, modality markers, task ids,
                                   then reserved room (<reserved_N>) for growth
    [256, 256 + K)                 semantic clusters
    then Q slices of C             codebook 0, codebook 1, ... of the acoustic tokenizer
    then V                         the LLM's text vocabulary, V == len(text tokenizer) exactly

Example (the demo: K=256, 8 codebooks of 256, a 1024-token BPE):

    >>> v = JointVocab(semantic_size=256, num_codebooks=8, codebook_size=256, text_size=1024)
    >>> v.semantic_offset, v.codebook_offset(0), v.codebook_offset(7), v.text_offset, v.size
    (256, 512, 2304, 2560, 3584)
    >>> v.special("<pad>"), v.special("<task:asr>") == SPECIALS.index("<task:asr>")
    (0, True)

The layout is derived only from these four sizes and the versioned SPECIALS list — never from the
order of keys in a config file (a peer's resumed runs were silently corrupted that way). Its content
hash names it: checkpoints and data record the hash, and loading with another layout is refused with
both hashes in the message.

OSUM labels (`<anger>`), word timestamps (`<0.34>`) and the STTC answer marker are *plain text*,
written by the LLM's own tokenizer, not added specials: the LLM already reads and writes text; a
user's corpus brings label sets of its own, which must not change the layout (and so invalidate
checkpoints); timestamps as specials would need one id per 10 ms step; and scoring parses the text,
as OSUM does. The price is a few text tokens per label instead of one id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opuslm.errors import OpusLMError
from opuslm.json_files import write_json

LAYOUT_VERSION = 1
SPECIALS_SIZE = 256

TASKS = (
    "text_lm", "asr", "tts", "audio_lm",
    # OSUM understanding tasks: ASR + X targets, then their label-only variants
    "srwt", "ved", "ser", "ssr", "sgc", "sap", "sttc", "tags",
    "ved_label", "ser_label", "ssr_label", "sgc_label", "sap_label", "sttc_answer", "tags_label",
)

# Append only: an id once given never moves (version 1). Removing or reordering needs a new version.
_NAMED_SPECIALS = (
    "<pad>", "<eos>", "<unk>", "<sos>",
    # modality markers: what the frames after them hold
    "<text_start>", "<audio_start>", "<semantic_start>", "<spk_start>",
    *(f"<task:{task}>" for task in TASKS),
)
SPECIALS = _NAMED_SPECIALS + tuple(f"<reserved_{i}>" for i in range(SPECIALS_SIZE - len(_NAMED_SPECIALS)))
PAD_ID = 0

MODALITIES = ("special", "semantic", "codec", "text")


@dataclass(frozen=True)
class JointVocab:
    semantic_size: int
    num_codebooks: int
    codebook_size: int
    text_size: int

    def __post_init__(self):
        for name in ("semantic_size", "num_codebooks", "codebook_size", "text_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise OpusLMError(f"joint vocabulary: {name} must be a positive integer, got {getattr(self, name)!r}")

    # ---- the layout ----
    @property
    def semantic_offset(self) -> int:
        return SPECIALS_SIZE

    def codebook_offset(self, k: int) -> int:
        if not 0 <= k < self.num_codebooks:
            raise IndexError(f"codebook {k} of {self.num_codebooks}")
        return SPECIALS_SIZE + self.semantic_size + k * self.codebook_size

    @property
    def text_offset(self) -> int:
        return SPECIALS_SIZE + self.semantic_size + self.num_codebooks * self.codebook_size

    @property
    def size(self) -> int:
        return self.text_offset + self.text_size

    def ranges(self) -> dict[str, tuple[int, int]]:
        """Name -> [start, end) of every range, in layout order."""
        out = {"special": (0, SPECIALS_SIZE), "semantic": (self.semantic_offset, self.semantic_offset + self.semantic_size)}
        for k in range(self.num_codebooks):
            out[f"codebook_{k}"] = (self.codebook_offset(k), self.codebook_offset(k) + self.codebook_size)
        out["text"] = (self.text_offset, self.size)
        return out

    def modality_range(self, modality: str) -> tuple[int, int]:
        """[start, end) of a modality of MODALITIES ("codec" spans every codebook's slice)."""
        starts = (0, self.semantic_offset, self.codebook_offset(0), self.text_offset, self.size)
        if modality not in MODALITIES:
            raise OpusLMError(f"unknown modality {modality!r}; modalities: {', '.join(MODALITIES)}")
        index = MODALITIES.index(modality)
        return starts[index], starts[index + 1]

    @property
    def num_streams(self) -> int:
        """Stream 0 (semantic, text, specials) plus one stream per codebook."""
        return 1 + self.num_codebooks

    def stream_range(self, stream: int) -> tuple[int, int]:
        """The ids stream `stream` may predict: the whole vocabulary for stream 0, its codebook's slice
        for stream k >= 1 (pad there is forced by the delay pattern, never predicted)."""
        if stream == 0:
            return 0, self.size
        start = self.codebook_offset(stream - 1)
        return start, start + self.codebook_size

    # ---- local -> joint ----
    def special(self, name: str) -> int:
        try:
            return SPECIALS.index(name)
        except ValueError:
            raise OpusLMError(f"{name!r} is not a special token of layout version {LAYOUT_VERSION}") from None

    def task(self, name: str) -> int:
        if name not in TASKS:
            raise OpusLMError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
        return self.special(f"<task:{name}>")

    def semantic(self, ids) -> np.ndarray:
        return self.semantic_offset + _checked(ids, self.semantic_size, "semantic id")

    def codes(self, codes) -> np.ndarray:
        """Local codes `[Q, T]` -> joint ids, codebook k shifted into its own slice."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] != self.num_codebooks:
            raise OpusLMError(f"codes must be [{self.num_codebooks} codebooks, frames], got shape {codes.shape}")
        offsets = np.array([self.codebook_offset(k) for k in range(self.num_codebooks)])[:, None]
        return offsets + _checked(codes, self.codebook_size, "codec code")

    def text(self, ids) -> np.ndarray:
        return self.text_offset + _checked(ids, self.text_size, "text id")

    # ---- joint -> local ----
    def modality_starts(self) -> list[int]:
        """The first joint id of every modality after the specials: `modality` buckets ids by them."""
        return [self.modality_range(m)[0] for m in MODALITIES[1:]]

    def modality(self, ids) -> np.ndarray:
        """Index into MODALITIES for every joint id (for per-modality loss weights and reports)."""
        return np.searchsorted(self.modality_starts(), np.asarray(ids), side="right")

    def to_text(self, ids) -> np.ndarray:
        """Joint ids of the text range -> the text tokenizer's own ids."""
        return _local(ids, self.text_offset, self.text_size, "text")

    def to_codes(self, ids) -> np.ndarray:
        """Joint ids `[Q, T]`, row k in codebook k's slice -> the codec's own codes (inverse of `codes`)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[0] != self.num_codebooks:
            raise OpusLMError(f"codebook frames must be [{self.num_codebooks} codebooks, frames], got shape {ids.shape}")
        return np.stack([_local(row, self.codebook_offset(k), self.codebook_size, f"codebook {k}")
                         for k, row in enumerate(ids)]) if ids.size else ids

    def describe(self, joint_id: int) -> str:
        """A short human name: `<asr>`-style specials, `s17` (semantic), `c3:45` (codebook 3, code 45),
        `t812` (text id 812)."""
        joint_id = int(joint_id)
        if 0 <= joint_id < SPECIALS_SIZE:
            return SPECIALS[joint_id]
        if joint_id < self.codebook_offset(0):
            return f"s{joint_id - self.semantic_offset}"
        if joint_id < self.text_offset:
            local = joint_id - self.codebook_offset(0)
            return f"c{local // self.codebook_size}:{local % self.codebook_size}"
        if joint_id < self.size:
            return f"t{joint_id - self.text_offset}"
        raise OpusLMError(f"id {joint_id} is outside the joint vocabulary of size {self.size}")

    # ---- identity ----
    def to_dict(self) -> dict:
        return {
            "format": "opuslm-joint-vocab",
            "version": LAYOUT_VERSION,
            "sizes": {"semantic": self.semantic_size, "num_codebooks": self.num_codebooks,
                      "codebook": self.codebook_size, "text": self.text_size},
            "specials": list(SPECIALS),
            "ranges": {name: list(span) for name, span in self.ranges().items()},
            "size": self.size,
        }

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {**self.to_dict(), "hash": self.hash}, indent=1)
        return path

    @classmethod
    def load(cls, path: str | Path) -> JointVocab:
        path = Path(path)
        if not path.is_file():
            raise OpusLMError(f"joint vocabulary file not found: {path}")
        stored = json.loads(path.read_text())
        if stored.get("format") != "opuslm-joint-vocab":
            raise OpusLMError(f"{path} is not an OpusLM joint vocabulary")
        if stored.get("version") != LAYOUT_VERSION:
            raise OpusLMError(f"{path} has layout version {stored.get('version')}; this opuslm reads version {LAYOUT_VERSION}")
        sizes = stored["sizes"]
        vocab = cls(sizes["semantic"], sizes["num_codebooks"], sizes["codebook"], sizes["text"])
        derived = {**vocab.to_dict(), "hash": vocab.hash}
        edited = sorted(key for key in derived.keys() | stored.keys() if derived.get(key) != stored.get(key))
        if edited:  # the hash follows the sizes, so an edit elsewhere can leave it as it was: name the keys
            raise OpusLMError(f"{path} does not match the layout its sizes give ({vocab.summary()}, hash {vocab.hash}): "
                              f"these keys differ: {', '.join(edited)}; was it edited by hand? Rebuild it with `opuslm vocab show --save`")
        return vocab

    @classmethod
    def from_tokens(cls, tokens_dir: str | Path) -> JointVocab:
        """The layout of a tokenized corpus, from the sizes its `tokens.json` records."""
        info_path = Path(tokens_dir) / "tokens.json"
        if not info_path.is_file():
            raise OpusLMError(f"{tokens_dir} holds no token shards (no tokens.json); run `opuslm tokenize` first")
        tok = json.loads(info_path.read_text())["tokenizers"]
        return cls(tok["semantic"]["vocab_size"], tok["acoustic"]["num_codebooks"],
                   tok["acoustic"]["codebook_size"], tok["text"]["vocab_size"])

    def require_same(self, other: JointVocab, what: str) -> None:
        """Refuse to combine parts built with different layouts; the message names both hashes."""
        if other.hash != self.hash:
            raise OpusLMError(
                f"{what} uses joint vocabulary {other.hash} ({other.summary()}) but this run uses {self.hash} "
                f"({self.summary()}); use the tokenizers it was built with, or rebuild it with these"
            )

    def summary(self) -> str:
        return (f"semantic {self.semantic_size}, {self.num_codebooks} x {self.codebook_size} codes, "
                f"text {self.text_size}")


def _local(ids, start: int, size: int, what: str) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    outside = (ids < start) | (ids >= start + size)
    if outside.any():
        raise OpusLMError(f"joint id {ids[outside].flat[0]} is not a {what} id (those are [{start}, {start + size}))")
    return ids - start


def _checked(ids, size: int, what: str) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= size):
        bad = ids[(ids < 0) | (ids >= size)].flat[0]
        raise OpusLMError(f"{what} {bad} is outside [0, {size}); the data and the vocabulary come from different tokenizers")
    return ids
