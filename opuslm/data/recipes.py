"""Recipes for public corpora in their published layouts: each yields import candidates with the labels
OSUM's tasks need. Mappings from a corpus's classes to OSUM's are tables here, documented in
`data_recipes/README.md`; a class without a mapping becomes `other`, never dropped.

Every recipe reads a local copy; nothing is downloaded.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from opuslm.data.importers import Candidate
from opuslm.errors import OpusLMError

MELD_EMOTIONS = {"neutral": "neutral", "joy": "happy", "sadness": "sad", "anger": "anger", "surprise": "surprise",
                 "fear": "fear", "disgust": "disgust"}
VOCALSOUND_EVENTS = {"laughter": "laugh", "sigh": "sigh", "cough": "cough", "throatclearing": "throat clearing",
                     "sneeze": "sneeze", "sniff": "other"}
ESC50_EVENTS = {"laughing": "laugh", "coughing": "cough", "crying_baby": "cry", "sneezing": "sneeze"}
# Common Voice age groups -> OSUM's SAP classes. Common Voice has no class below "teens"; teens are the
# closest to child. Decades 20-59 are adult, 60 and above old.
COMMON_VOICE_AGES = {"teens": "child", "twenties": "adult", "thirties": "adult", "fourties": "adult",
                     "forties": "adult", "fifties": "adult", "sixties": "old", "seventies": "old", "eighties": "old",
                     "nineties": "old"}
COMMON_VOICE_GENDERS = {"male": "male", "female": "female", "male_masculine": "male", "female_feminine": "female"}
GENDERS = {"m": "male", "f": "female"}


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise OpusLMError(f"{path} not found: {what}")
    return path


def librispeech(root: Path, subset: str) -> Iterator[Candidate]:
    """`LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac` with
    `<speaker>-<chapter>.trans.txt`; gender from `SPEAKERS.TXT`. Transcripts are lowercased."""
    folder = _require(root / subset, f"the LibriSpeech subset folder (e.g. {root}/test-clean)")
    genders = {}
    speakers = root / "SPEAKERS.TXT"
    if speakers.is_file():
        for line in speakers.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(";") or "|" not in line:
                continue
            fields = [f.strip() for f in line.split("|")]
            genders[fields[0]] = GENDERS.get(fields[1].lower())
    for transcript in sorted(folder.glob("*/*/*.trans.txt")):
        for line in transcript.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            utt, _, text = line.partition(" ")
            speaker = utt.split("-")[0]
            candidate = Candidate(utt, transcript.parent / f"{utt}.flac", text.strip().lower(), speaker)
            if genders.get(speaker):
                candidate.labels["gender"] = genders[speaker]
            yield candidate


def meld(root: Path, split: str, audio_dir: Path) -> Iterator[Candidate]:
    """MELD's `<split>_sent_emo.csv` (train, dev, test); audio as `dia<D>_utt<U>.wav` in `audio_dir`
    (MELD ships video: extract with `ffmpeg -i diaD_uttU.mp4 -ac 1 -ar 16000 diaD_uttU.wav`)."""
    table = _require(root / f"{split}_sent_emo.csv", "MELD's csv for this split")
    with open(table, encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.DictReader(f):
            key = f"dia{row['Dialogue_ID']}_utt{row['Utterance_ID']}"
            emotion = MELD_EMOTIONS.get(row["Emotion"].strip().lower(), "other")
            text = re.sub(r"\s+", " ", row["Utterance"].replace("\x92", "'")).strip()
            yield Candidate(f"meld-{split}-{key}", audio_dir / f"{key}.wav", text, row["Speaker"].strip(),
                            labels={"emotion": emotion})


def vocalsound(root: Path, split: str) -> Iterator[Candidate]:
    """VocalSound: `audio_16k/<speaker>_<n>_<class>.wav`; the speaker id starts with f/m (gender); the
    split's speakers are listed in `meta/{tr,val,te}_meta.csv`. No transcript (label-only tasks)."""
    lists = {"train": "tr_meta.csv", "dev": "val_meta.csv", "test": "te_meta.csv"}
    meta = _require(root / "meta" / lists[split], "VocalSound's speaker list for this split")
    speakers = {line.split(",")[0].strip() for line in meta.read_text().splitlines() if line.strip()}
    for wav in sorted((root / "audio_16k").glob("*.wav")):
        speaker, _, rest = wav.stem.partition("_")
        if speaker not in speakers:
            continue
        kind = rest.split("_", 1)[-1].lower()
        labels = {"event": VOCALSOUND_EVENTS.get(kind, "other")}
        if speaker[:1].lower() in GENDERS:
            labels["gender"] = GENDERS[speaker[:1].lower()]
        yield Candidate(f"vocalsound-{wav.stem}", wav, "", speaker, labels=labels)


def esc50(root: Path, split: str) -> Iterator[Candidate]:
    """ESC-50: `meta/esc50.csv` and `audio/`. Folds 1-3 train, 4 dev, 5 test. Its human vocal classes
    map to OSUM's events; every other class is `other`."""
    folds = {"train": {"1", "2", "3"}, "dev": {"4"}, "test": {"5"}}[split]
    with open(_require(root / "meta" / "esc50.csv", "ESC-50's metadata"), newline="") as f:
        for row in csv.DictReader(f):
            if row["fold"] in folds:
                yield Candidate(f"esc50-{Path(row['filename']).stem}", root / "audio" / row["filename"], "",
                                row["src_file"], labels={"event": ESC50_EVENTS.get(row["category"], "other")})


def common_voice(root: Path, split: str) -> Iterator[Candidate]:
    """A Common Voice language folder: `<split>.tsv` (train, dev, test) and `clips/`; age and gender
    become SAP and SGC labels where the speaker gave them."""
    table = _require(root / f"{split}.tsv", "Common Voice's tsv for this split")
    with open(table, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            labels = {}
            if COMMON_VOICE_AGES.get((row.get("age") or "").strip()):
                labels["age"] = COMMON_VOICE_AGES[row["age"].strip()]
            if COMMON_VOICE_GENDERS.get((row.get("gender") or "").strip()):
                labels["gender"] = COMMON_VOICE_GENDERS[row["gender"].strip()]
            yield Candidate(f"cv-{Path(row['path']).stem}", root / "clips" / row["path"], row["sentence"].strip(),
                            row["client_id"][:16], labels=labels)


def aishell1(root: Path, split: str) -> Iterator[Candidate]:
    """AISHELL-1: `data_aishell/wav/<split>/<speaker>/<id>.wav`, the transcript file, and
    `resource_aishell/speaker.info` (gender). Transcripts lose their word-segmentation spaces."""
    folder = {"train": "train", "dev": "dev", "test": "test"}[split]
    transcript = _require(root / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt", "AISHELL-1's transcripts")
    texts = {}
    for line in transcript.read_text(encoding="utf-8").splitlines():
        key, _, text = line.strip().partition(" ")
        if key:
            texts[key] = "".join(text.split())
    genders = {}
    info = root / "resource_aishell" / "speaker.info"
    if info.is_file():
        for line in info.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                genders[parts[0]] = GENDERS.get(parts[1].lower())
    for wav in sorted((root / "data_aishell" / "wav" / folder).glob("*/*.wav")):
        speaker = wav.parent.name
        candidate = Candidate(wav.stem, wav, texts.get(wav.stem), speaker)
        if wav.stem not in texts:
            candidate.reason = "no transcript for this recording"
        if genders.get(speaker.lstrip("S")):
            candidate.labels["gender"] = genders[speaker.lstrip("S")]
        yield candidate


def text_corpus(source: Path, out: Path, column: str = "text") -> tuple[int, int]:
    """Plain text (one document per line) or parquet files with a text column -> `out` as one document
    per line (what a text_lm source reads). Returns (documents written, empty ones skipped)."""
    files = sorted(source.rglob("*.parquet")) if source.is_dir() else [source]
    if not files:
        raise OpusLMError(f"no text found at {source} (a .txt file, or a folder of parquet files)")
    written = skipped = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as sink:
        for file in files:
            if file.suffix == ".parquet":
                import pyarrow.parquet as pq

                table = pq.read_table(file)
                if column not in table.column_names:
                    raise OpusLMError(f"{file} has no column {column!r} (columns: {', '.join(table.column_names)})")
                documents = table.column(column).to_pylist()
            else:
                documents = _require(file, "the text file").read_text(encoding="utf-8").splitlines()
            for document in documents:
                line = " ".join(str(document or "").split())
                if line:
                    sink.write(line + "\n")
                    written += 1
                else:
                    skipped += 1
    return written, skipped


RECIPES = {"librispeech": librispeech, "meld": meld, "vocalsound": vocalsound, "esc50": esc50,
           "common-voice": common_voice, "aishell1": aishell1}
