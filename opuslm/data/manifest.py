"""The corpus manifest: one JSON object per utterance, one file per corpus (`manifest.jsonl`).

Every corpus, synthetic or imported, ends up in this form, and everything downstream (tokenization,
templates, evaluation) reads only this. Audio paths are relative to the manifest's folder unless
absolute. `offset` marks a segment of a longer recording (Kaldi `segments`): the utterance is
`duration` seconds from `offset` (0.0 included); without it the utterance is the whole file.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from opuslm.errors import OpusLMError
from opuslm.json_files import json_text

SPLITS = ("train", "dev", "test")


@dataclass
class Utterance:
    id: str
    audio: str
    duration: float  # seconds
    sample_rate: int
    text: str
    speaker: str
    split: str
    labels: dict[str, str] = field(default_factory=dict)  # gender, age, emotion, style, event, ...
    words: list[list] | None = None  # [[word, start_s, end_s], ...]
    events: list[list] | None = None  # [[label, start_s, end_s], ...] non-speech sounds
    answer: str | None = None  # text answer to a spoken question (STTC)
    offset: float | None = None  # a segment's start in seconds; None: the whole file

    def to_json(self) -> str:
        record = {k: v for k, v in asdict(self).items() if v is not None}
        return json_text(record, None)

    def audio_path(self, manifest_dir: Path) -> Path:
        path = Path(self.audio)
        return path if path.is_absolute() else manifest_dir / path

    def load_audio(self, manifest_dir: Path, target_rate: int | None = None):
        """This utterance's checked mono samples and their rate (see `opuslm.audio.load_audio`)."""
        from opuslm.audio import load_audio

        if self.offset is None:
            return load_audio(self.audio_path(manifest_dir), target_rate=target_rate)
        return load_audio(self.audio_path(manifest_dir), self.offset, self.duration, target_rate=target_rate)


_REQUIRED = [f.name for f in fields(Utterance) if f.default is MISSING and f.default_factory is MISSING]
_KNOWN = {f.name for f in fields(Utterance)}


def parse_line(line: str, where: str) -> Utterance:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise OpusLMError(f"{where}: not valid JSON ({error.msg})") from error
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise OpusLMError(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(record) - _KNOWN)
    if unknown:
        raise OpusLMError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN))}")
    return Utterance(**record)


def read_manifest(path: str | Path, split: str | None = None) -> list[Utterance]:
    """All utterances of a manifest (or those of one split), in file order."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.jsonl"
    if not path.is_file():
        raise OpusLMError(f"manifest not found: {path} (create one with `opuslm data synth` or `opuslm data import`)")
    utterances = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                utterance = parse_line(line, f"{path}:{number}")
                if split is None or utterance.split == split:
                    utterances.append(utterance)
    return utterances


def write_lines_atomic(path: str | Path, lines: list[str]) -> None:
    """Write lines to `path` through a temporary file, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    os.replace(tmp, path)


def write_manifest(path: str | Path, utterances: list[Utterance]) -> None:
    write_lines_atomic(path, [u.to_json() for u in utterances])
