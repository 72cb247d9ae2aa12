"""`opuslm data import`: real corpora into the project's manifest.

Three sources: a Kaldi data folder (wav.scp, text, utt2spk, optional segments, labels in any
`utt2<key>` file), a local Hugging Face
dataset folder (parquet files or a `save_to_disk` folder), and OSUM's raw JSON Lines (key, wav, txt,
task). Each source yields candidates; every candidate's audio is read and checked; whatever cannot be
used goes to rejects.jsonl with its reason, so accepted + rejected = seen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from opuslm.audio import AudioError, load_audio
from opuslm.data.manifest import SPLITS, Utterance, write_lines_atomic, write_manifest
from opuslm.data.rules import content_problem, duration_problem
from opuslm.errors import OpusLMError
from opuslm.json_files import json_text


@dataclass
class Candidate:
    id: str
    audio: Path | None
    text: str | None
    speaker: str
    offset: float | None = None  # a segment's start; None: the whole file
    duration: float | None = None  # a segment's length
    labels: dict[str, str] = field(default_factory=dict)
    reason: str | None = None  # already known to be unusable


def _read_table(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A Kaldi 'key rest-of-line' file: the table, and the keys whose line is not UTF-8 with the reason
    (one bad line rejects its utterance, not the import)."""
    table, invalid = {}, {}
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as error:
                line = raw.decode("utf-8", errors="replace").strip()
                invalid[line.partition(" ")[0]] = (f"{path.name} line {number} is not UTF-8 (byte "
                                                   f"0x{raw[error.start]:02x} at {error.start}); re-encode the file")
            if not line:
                continue
            key, _, rest = line.partition(" ")
            if key in table:
                raise OpusLMError(f"{path}:{number}: duplicate key {key!r}")
            table[key] = rest.strip()
    return table, invalid


# utt2* files that are not labels: the speaker and Kaldi's own per-utterance measurements
_KALDI_NOT_LABELS = ("utt2spk", "utt2dur", "utt2num_frames", "utt2uniq")


def kaldi_labels(folder: Path) -> dict[str, dict[str, str]]:
    """Label files `utt2<key>` (utt2gender, utt2emotion, utt2accent, ...: a key of your own) -> per
    utterance, {key: value}."""
    labels: dict[str, dict[str, str]] = {}
    for path in sorted(folder.glob("utt2*")):
        if path.name in _KALDI_NOT_LABELS or not path.is_file():
            continue
        table, invalid = _read_table(path)
        if invalid:
            raise OpusLMError(f"{path}: {next(iter(invalid.values()))}")
        for utt, value in table.items():
            labels.setdefault(utt, {})[path.name[len("utt2"):]] = value
    return labels


def kaldi_candidates(folder: Path) -> Iterator[Candidate]:
    """Checks the folder now (a missing file fails before any work), then yields its utterances, with
    the labels of any `utt2<key>` files."""
    for name in ("wav.scp", "text", "utt2spk"):
        if not (folder / name).is_file():
            raise OpusLMError(f"{folder} is not a Kaldi data folder: {name} is missing")
    (wav_scp, bad_wav), (text, bad_text), (utt2spk, bad_spk) = (
        _read_table(folder / n) for n in ("wav.scp", "text", "utt2spk"))
    if (folder / "segments").is_file():
        segments = {}
        table, bad_segments = _read_table(folder / "segments")
        for utt, rest in table.items():
            parts = rest.split()
            if len(parts) != 3:
                raise OpusLMError(f"{folder / 'segments'}: line for {utt!r} needs 'utt recording start end'")
            segments[utt] = (parts[0], float(parts[1]), float(parts[2]))
    else:
        segments, bad_segments = {utt: (utt, None, None) for utt in wav_scp}, {}
    invalid = {**bad_spk, **bad_segments, **bad_text}  # by utterance; wav.scp's by recording
    return _kaldi_iter(folder, wav_scp, text, utt2spk, segments, invalid, bad_wav, kaldi_labels(folder))


def _kaldi_iter(folder, wav_scp, text, utt2spk, segments, invalid, invalid_recordings, labels) -> Iterator[Candidate]:
    for utt in sorted(set(segments) | set(text)):
        speaker = utt2spk.get(utt, "")
        if utt not in segments:
            yield Candidate(utt, None, text[utt], speaker, reason="no audio (not in wav.scp or segments)")
            continue
        recording, start, end = segments[utt]
        location = wav_scp.get(recording)
        candidate = Candidate(utt, None, text.get(utt), speaker, offset=start,
                              duration=None if end is None else end - start, labels=dict(labels.get(utt, {})))
        if utt in invalid or recording in invalid_recordings:
            candidate.reason = invalid.get(utt) or invalid_recordings[recording]
        elif location is None:
            candidate.reason = f"recording {recording!r} is not in wav.scp"
        elif location.endswith("|"):
            candidate.reason = "wav.scp entry is a command pipe; convert the audio to files first"
        elif utt not in text:
            candidate.reason = "no transcript in text"
        elif not speaker:
            candidate.reason = "no speaker in utt2spk"
        elif start is not None and end <= start:
            candidate.reason = f"segment end {end} is not after its start {start}"
        else:
            path = Path(location)
            candidate.audio = path if path.is_absolute() else folder / path
        yield candidate


_TEXT_COLUMNS = ("text", "sentence", "transcription", "transcript", "normalized_text")
_SPEAKER_COLUMNS = ("speaker_id", "speaker", "client_id")
_ID_COLUMNS = ("id", "key", "utt_id", "file")


def _pick(columns, wanted: str | None, candidates: tuple[str, ...], what: str, folder: Path, required: bool):
    if wanted:
        if wanted not in columns:
            raise OpusLMError(f"{folder}: no column {wanted!r} for the {what}; columns: {', '.join(columns)}")
        return wanted
    found = next((c for c in candidates if c in columns), None)
    if found is None and required:
        raise OpusLMError(f"{folder}: no {what} column among {', '.join(columns)}; name it with --{what}-column")
    return found


def _load_hf_dataset(folder: Path, pattern: str | None):
    import datasets

    if (folder / "dataset_info.json").is_file() or (folder / "state.json").is_file():
        return datasets.load_from_disk(str(folder))
    files = sorted(str(p) for p in folder.rglob(pattern or "*.parquet"))
    if not files:
        raise OpusLMError(f"{folder}: no parquet files (matching {pattern or '*.parquet'}) and not a save_to_disk folder")
    return datasets.load_dataset("parquet", data_files=files, split="train")


def hf_candidates(folder: Path, audio_dir: Path, pattern: str | None = None, text_column: str | None = None,
                  speaker_column: str | None = None, id_column: str | None = None,
                  label_columns: tuple[str, ...] = ()) -> Iterator[Candidate]:
    """Rows of a local HF dataset; audio bytes are written under `audio_dir` in their own format.

    The `Audio` feature is cast to `decode=False`: decoding through datasets needs torchcodec, so the
    bytes are read with soundfile instead.
    """
    import datasets

    ds = _load_hf_dataset(folder, pattern)
    if isinstance(ds, datasets.DatasetDict):
        raise OpusLMError(f"{folder} holds several splits ({', '.join(ds)}); point at one split's folder")
    columns = list(ds.column_names)
    audio_column = next((c for c, f in ds.features.items() if isinstance(f, datasets.Audio)), None)
    if audio_column is None:
        audio_column = _pick(columns, None, ("audio",), "audio", folder, required=True)
    else:
        ds = ds.cast_column(audio_column, datasets.Audio(decode=False))
    text_col = _pick(columns, text_column, _TEXT_COLUMNS, "text", folder, required=True)
    speaker_col = _pick(columns, speaker_column, _SPEAKER_COLUMNS, "speaker", folder, required=False)
    id_col = _pick(columns, id_column, _ID_COLUMNS, "id", folder, required=False)
    for name in label_columns:
        _pick(columns, name, (), "label", folder, required=True)
    audio_dir.mkdir(parents=True, exist_ok=True)
    return _hf_iter(ds, folder, audio_dir, audio_column, text_col, speaker_col, id_col, label_columns)


def _hf_iter(ds, folder, audio_dir, audio_column, text_col, speaker_col, id_col, label_columns) -> Iterator[Candidate]:
    for index, row in enumerate(ds):
        utt = str(row[id_col]) if id_col else f"{folder.name}-{index:08d}"
        utt = re.sub(r"[^\w.-]", "_", Path(utt).stem if id_col == "file" else utt)
        candidate = Candidate(utt, None, row[text_col], str(row[speaker_col]) if speaker_col else "unknown",
                              labels={n: str(row[n]) for n in label_columns if row[n] is not None})
        audio = row[audio_column]
        if isinstance(audio, dict) and audio.get("bytes"):
            suffix = Path(audio.get("path") or "x.flac").suffix or ".flac"
            candidate.audio = audio_dir / f"{index:08d}-{utt}{suffix}"
            candidate.audio.write_bytes(audio["bytes"])
        elif isinstance(audio, dict) and audio.get("path"):
            path = Path(audio["path"])
            candidate.audio = path if path.is_absolute() else folder / path
        elif isinstance(audio, str):
            candidate.audio = Path(audio) if Path(audio).is_absolute() else folder / audio
        else:
            candidate.reason = "row has no audio bytes or path"
        yield candidate


# OSUM task tokens -> the manifest label they carry; TRANSCRIBE carries none.
OSUM_TASK_LABELS = {"EMOTION": "emotion", "GENDER": "gender", "AGE": "age", "STYLE": "style",
                    "CAPTION": "event", "EVENT": "event"}
_TRAILING_TAGS = re.compile(r"((?:<[^<>]+>)+)\s*$")


def osum_candidates(path: Path) -> Iterator[Candidate]:
    """OSUM raw lines: {"key", "wav", "txt", "task"}; labels are the tags that end `txt`.

    `task` is a string of tokens like '<TRANSCRIBE><EMOTION>'; the i-th non-TRANSCRIBE token names
    the label key of the i-th trailing tag (EMOTION -> emotion, ...; see OSUM_TASK_LABELS).
    """
    if not path.is_file():
        raise OpusLMError(f"OSUM JSON Lines file not found: {path}")
    return _osum_iter(path)


def _osum_iter(path: Path) -> Iterator[Candidate]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield Candidate(f"line{number}", None, None, "", reason=f"not valid JSON ({error.msg})")
                continue
            key = str(record.get("key") or f"line{number}")
            candidate = Candidate(key, None, None, str(record.get("speaker", "unknown")))
            missing = [k for k in ("wav", "txt", "task") if not record.get(k)]
            if missing:
                candidate.reason = f"missing {', '.join(missing)}"
                yield candidate
                continue
            txt = str(record["txt"])
            match = _TRAILING_TAGS.search(txt)
            tags = re.findall(r"<([^<>]+)>", match.group(1)) if match else []
            candidate.text = txt[: match.start()].strip() if match else txt.strip()
            keys = [t for t in re.findall(r"<([^<>]+)>", str(record["task"])) if t.upper() != "TRANSCRIBE"]
            if "<" in candidate.text:
                candidate.reason = "txt has tags inside the transcript (timestamps?); only trailing label tags are read"
            elif len(tags) != len(keys):
                candidate.reason = f"txt ends with {len(tags)} tag(s) but task {record['task']!r} names {len(keys)} label(s)"
            else:
                candidate.labels = {OSUM_TASK_LABELS.get(k.upper(), k.lower()): t.lower() for k, t in zip(keys, tags)}
                candidate.labels["osum_task"] = str(record["task"])
                wav = Path(record["wav"])
                candidate.audio = wav if wav.is_absolute() else path.parent / wav
            yield candidate


def _check(candidate: Candidate, split: str, manifest_dir: Path) -> Utterance:
    """Read the candidate's audio; raises AudioError with the reason when it cannot be used."""
    if candidate.reason:
        raise AudioError(candidate.reason)
    problem = content_problem(candidate.text, candidate.labels)  # one rule for every source
    if problem:
        raise AudioError(problem)
    samples, rate = load_audio(candidate.audio, offset=candidate.offset or 0.0, duration=candidate.duration)
    problem = duration_problem(len(samples) / rate, candidate.text)
    if problem:
        raise AudioError(problem)
    try:
        audio = str(candidate.audio.resolve().relative_to(manifest_dir.resolve()))
    except ValueError:
        audio = str(candidate.audio.resolve())
    return Utterance(
        id=candidate.id, audio=audio, duration=round(len(samples) / rate, 4), sample_rate=rate,
        text=candidate.text, speaker=candidate.speaker, split=split, labels=candidate.labels,
        offset=candidate.offset,
    )


@dataclass
class ImportSummary:
    seen: int
    accepted: int
    rejected: int
    hours: float

    def line(self) -> str:
        return (f"seen {self.seen} = accepted {self.accepted} + rejected {self.rejected} "
                f"({self.hours:.2f} h of audio accepted)")


def import_corpus(candidates: Iterator[Candidate], out: Path, split: str, progress: bool = True) -> ImportSummary:
    """Check every candidate and write manifest.jsonl and rejects.jsonl under `out`."""
    from opuslm.progress import progress_bar

    if split not in SPLITS:
        raise OpusLMError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    out.mkdir(parents=True, exist_ok=True)
    accepted, rejects, seen_ids = [], [], set()
    for candidate in progress_bar(candidates, desc="checking audio", unit="utt", disable=not progress):
        if candidate.id in seen_ids:
            candidate.reason = candidate.reason or "duplicate id"
        seen_ids.add(candidate.id)
        try:
            accepted.append(_check(candidate, split, out))
        except AudioError as error:
            rejects.append(json_text({"id": candidate.id, "audio": str(candidate.audio or ""), "reason": str(error)}, None))
    write_manifest(out / "manifest.jsonl", accepted)
    write_lines_atomic(out / "rejects.jsonl", rejects)
    return ImportSummary(len(accepted) + len(rejects), len(accepted), len(rejects),
                         sum(u.duration for u in accepted) / 3600)
