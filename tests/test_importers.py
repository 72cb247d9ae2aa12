"""Importers on tiny fixtures the tests write, including broken audio that must land in rejects."""

import io
import json

import numpy as np
import pytest
import soundfile as sf

from opuslm.data import importers
from opuslm.data.manifest import read_manifest
from opuslm.errors import OpusLMError

SR = 16000


def _tone(seconds=0.5, freq=220.0):
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def _write_broken_set(folder):
    """Good and bad audio files; returns {name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, samples in (("good1", _tone()), ("good2", _tone(1.0, 330)), ("empty", np.zeros(0, np.float32)),
                          ("silent", np.zeros(SR // 4, np.float32))):
        files[name] = folder / f"{name}.wav"
        sf.write(files[name], samples, SR, subtype="PCM_16")
    nan = _tone()
    nan[100] = np.nan
    files["nan"] = folder / "nan.wav"
    sf.write(files["nan"], nan, SR, subtype="FLOAT")
    files["corrupt"] = folder / "corrupt.wav"
    files["corrupt"].write_bytes(b"RIFF\x00\x00not really audio")
    files["missing"] = folder / "missing.wav"
    return files


def _reasons(out):
    return {json.loads(l)["id"]: json.loads(l)["reason"] for l in (out / "rejects.jsonl").read_text().splitlines()}


def test_kaldi_import_accepts_good_audio_and_rejects_the_rest_with_reasons(tmp_path):
    files = _write_broken_set(tmp_path / "wavs")
    data = tmp_path / "kaldi"
    data.mkdir()
    names = list(files)
    (data / "wav.scp").write_text("".join(f"{n} {files[n]}\n" for n in names) + "piped sox in.flac -t wav - |\n")
    (data / "text").write_text("".join(f"{n} HELLO {n.upper()}\n" for n in names if n != "good2") + "piped A B\norphan NO AUDIO\n")
    (data / "utt2spk").write_text("".join(f"{n} spk1\n" for n in names) + "piped spk2\norphan spk2\n")
    for name, transcript in (("latin1", "CAF\xc9 AU LAIT".encode("latin-1")), ("blank", b"  ")):  # good audio both
        for table, line in (("wav.scp", f"{name} {files['good1']}".encode()), ("utt2spk", f"{name} spk1".encode()),
                            ("text", name.encode() + b" " + transcript)):
            with open(data / table, "ab") as f:
                f.write(line + b"\n")
    summary = importers.import_corpus(importers.kaldi_candidates(data), tmp_path / "out", "train", progress=False)
    assert (summary.seen, summary.accepted, summary.rejected) == (11, 1, 10)
    [good] = read_manifest(tmp_path / "out")
    assert (good.id, good.text, good.speaker, good.sample_rate, good.duration) == ("good1", "HELLO GOOD1", "spk1", SR, 0.5)
    reasons = _reasons(tmp_path / "out")
    assert reasons["good2"] == "no transcript in text"
    assert "empty audio" in reasons["empty"]
    assert "all zeros" in reasons["silent"]
    assert "NaN" in reasons["nan"]
    assert "unreadable" in reasons["corrupt"]
    assert "not found" in reasons["missing"]
    assert "pipe" in reasons["piped"]
    assert "no audio" in reasons["orphan"]
    assert reasons["latin1"] == "text line 9 is not UTF-8 (byte 0xc9 at 10); re-encode the file"
    assert reasons["blank"] == "empty transcript and no labels: nothing to learn from it"  # every importer's rule


def _segmented_kaldi_folder(tmp_path, audio, segments: str, text: str):
    """A Kaldi folder over one recording `rec` of `audio`, every segment spoken by speaker `s`."""
    recording = tmp_path / "rec.wav"
    sf.write(recording, audio, SR, subtype="PCM_16")
    data = tmp_path / "kaldi"
    data.mkdir()
    (data / "wav.scp").write_text(f"rec {recording}\n")
    (data / "segments").write_text(segments)
    (data / "text").write_text(text)
    (data / "utt2spk").write_text("".join(f"{line.split()[0]} s\n" for line in segments.splitlines()))
    return data


def test_kaldi_segments_cut_the_recording(tmp_path):
    data = _segmented_kaldi_folder(tmp_path, np.concatenate([_tone(1.0), _tone(2.0, 440)]),
                                   "a rec 0.0 1.0\nb rec 1.0 2.5\nc rec 2.0 1.5\n", "a first\nb second\nc backwards\n")
    summary = importers.import_corpus(importers.kaldi_candidates(data), tmp_path / "out", "dev", progress=False)
    assert (summary.accepted, summary.rejected) == (2, 1)
    a, b = read_manifest(tmp_path / "out")
    assert (a.offset, a.duration, b.offset, b.duration, b.split) == (0.0, 1.0, 1.0, 1.5, "dev")
    # a segment starting at 0.0 is still a segment: it reads 1 s, not the 3 s recording
    assert [len(u.load_audio(tmp_path / "out")[0]) for u in (a, b)] == [SR, int(1.5 * SR)]
    assert "not after its start" in _reasons(tmp_path / "out")["c"]


def test_kaldi_label_files_of_any_key_become_labels(tmp_path):
    """utt2<key> files are labels (a key of your own included); Kaldi's utt2dur and the speaker are not."""
    data = _segmented_kaldi_folder(tmp_path, _tone(2.0), "a rec 0.0 1.0\nb rec 1.0 2.0\n",
                                   "a is it raining\nb it is raining\n")
    (data / "utt2dur").write_text("a 1.0\nb 1.0\n")
    (data / "utt2gender").write_text("a female\nb female\n")
    (data / "utt2sentence_type").write_text("a question\n")
    importers.import_corpus(importers.kaldi_candidates(data), tmp_path / "out", "train", progress=False)
    a, b = read_manifest(tmp_path / "out")
    assert a.labels == {"gender": "female", "sentence_type": "question"} and b.labels == {"gender": "female"}
    (data / "utt2emotion").write_bytes(b"a caf\xe9\n")
    with pytest.raises(OpusLMError, match="utt2emotion: utt2emotion line 1 is not UTF-8"):
        importers.kaldi_candidates(data)


def test_kaldi_folder_without_text_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "wav.scp").write_text("")
    with pytest.raises(OpusLMError, match="text is missing"):
        importers.kaldi_candidates(tmp_path)


def _flac_bytes(samples):
    buffer = io.BytesIO()
    sf.write(buffer, samples, SR, format="FLAC")
    return buffer.getvalue()


def test_hf_parquet_import_reads_audio_bytes_with_soundfile(tmp_path):
    import datasets

    rows = {
        "id": ["84-121123-0000", "84-121123-0001", "84-121123-0002", "84-121123-0003"],
        "audio": [{"bytes": _flac_bytes(_tone()), "path": "a.flac"}, {"bytes": b"garbage", "path": "b.flac"},
                  {"bytes": _flac_bytes(_tone(0.25)), "path": "c.flac"}, {"bytes": _flac_bytes(_tone(1.0)), "path": "d.flac"}],
        "text": ["GO DO YOU HEAR", "BROKEN", "", "BUT IN LESS THAN FIVE MINUTES"],
        "speaker_id": [84, 84, 84, 85],
        "gender": ["f", "f", "f", "m"],
    }
    ds = datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio(sampling_rate=SR))
    (tmp_path / "ls" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "ls" / "data" / "test.clean-00000-of-00001.parquet"))
    candidates = importers.hf_candidates(tmp_path / "ls", tmp_path / "out" / "audio", label_columns=("gender",))
    summary = importers.import_corpus(candidates, tmp_path / "out", "test", progress=False)
    assert (summary.seen, summary.accepted, summary.rejected) == (4, 3, 1)
    first, label_only, last = read_manifest(tmp_path / "out")
    assert (label_only.text, label_only.labels) == ("", {"gender": "f"})  # no words, a label: kept for tag tasks
    assert (first.id, first.speaker, first.text, first.labels) == ("84-121123-0000", "84", "GO DO YOU HEAR", {"gender": "f"})
    assert (last.speaker, last.duration) == ("85", 1.0)
    samples, _ = sf.read(first.audio_path(tmp_path / "out"))
    assert np.allclose(samples, _tone(), atol=1e-3)
    reasons = _reasons(tmp_path / "out")
    assert list(reasons) == ["84-121123-0001"] and "unreadable" in reasons["84-121123-0001"]


def test_hf_import_names_a_missing_column(tmp_path):
    import datasets

    (tmp_path / "d").mkdir()
    datasets.Dataset.from_dict({"audio": ["x.wav"], "words": ["hi"]}).to_parquet(str(tmp_path / "d" / "x.parquet"))
    with pytest.raises(OpusLMError, match="text-column"):
        importers.hf_candidates(tmp_path / "d", tmp_path / "out")


def test_osum_jsonl_labels_come_from_trailing_tags(tmp_path):
    files = _write_broken_set(tmp_path / "wavs")
    lines = [
        {"key": "u1", "wav": str(files["good1"]), "txt": "i am so happy<HAPPY>", "task": "<TRANSCRIBE><EMOTION>"},
        {"key": "u2", "wav": "wavs/good2.wav", "txt": "hello there<ADULT><FEMALE>", "task": "<AGE><GENDER>"},
        {"key": "u3", "wav": str(files["good1"]), "txt": "plain words", "task": "<TRANSCRIBE>"},
        {"key": "u4", "wav": str(files["good1"]), "txt": "two tags<A><B>", "task": "<EMOTION>"},
        {"key": "u5", "wav": str(files["good1"]), "txt": "<0.00>hi<0.30>", "task": "<TRANSCRIBE><TIMESTAMP>"},
        {"key": "u6", "wav": str(files["nan"]), "txt": "nan audio", "task": "<TRANSCRIBE>"},
        {"key": "u7", "txt": "no wav", "task": "<TRANSCRIBE>"},
    ]
    path = tmp_path / "osum.jsonl"
    path.write_text("\n".join(json.dumps(l) for l in lines) + "\n{broken json\n")
    summary = importers.import_corpus(importers.osum_candidates(path), tmp_path / "out", "train", progress=False)
    assert (summary.seen, summary.accepted, summary.rejected) == (8, 3, 5)
    u1, u2, u3 = read_manifest(tmp_path / "out")
    assert (u1.text, u1.labels["emotion"]) == ("i am so happy", "happy")
    assert (u2.text, u2.labels["age"], u2.labels["gender"]) == ("hello there", "adult", "female")
    assert u3.labels == {"osum_task": "<TRANSCRIBE>"}
    reasons = _reasons(tmp_path / "out")
    assert "names 1 label" in reasons["u4"] and "inside the transcript" in reasons["u5"]
    assert "NaN" in reasons["u6"] and reasons["u7"] == "missing wav" and "JSON" in reasons["line8"]
