"""The embedded eSpeak corpus: determinism, held-out speakers and text, labels, timestamps, pitch."""

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from opuslm.data.manifest import read_manifest
from opuslm.data.synth import speakers
from opuslm.data.synth.corpus import SynthConfig, label_classes, synthesize_corpus


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_whatever_the_workers(tmp_path):
    config = SynthConfig(hours=0.02, seed=3)
    synthesize_corpus(tmp_path / "a", config, workers=1, progress=False)
    synthesize_corpus(tmp_path / "b", config, workers=2, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len([f for f in a if f.endswith(".wav")]) >= 20
    assert a == b


def test_another_seed_gives_other_audio(tmp_path):
    synthesize_corpus(tmp_path / "a", SynthConfig(hours=0.01, seed=1), progress=False)
    synthesize_corpus(tmp_path / "b", SynthConfig(hours=0.01, seed=2), progress=False)
    assert (tmp_path / "a/manifest.jsonl").read_bytes() != (tmp_path / "b/manifest.jsonl").read_bytes()


def test_test_speakers_and_heldout_sentences_never_in_train(small_corpus):
    utts = read_manifest(small_corpus)
    by_split = defaultdict(list)
    for u in utts:
        by_split[u.split].append(u)
    assert all(by_split[s] for s in ("train", "dev", "test"))
    train_speakers = {u.speaker for u in by_split["train"]}
    train_texts = {u.text for u in by_split["train"]}
    roster = json.loads((small_corpus / "corpus.json").read_text())["speakers"]
    held_out = {s["id"] for s in roster if s["split"] == "test"}
    assert len(roster) >= 24 and len(held_out) >= 6
    assert {u.speaker for u in by_split["test"]} <= held_out
    assert not held_out & train_speakers
    assert {u.speaker for u in by_split["dev"]} <= {s["id"] for s in roster if s["split"] == "train"}
    for split in ("dev", "test"):
        assert not {u.text for u in by_split[split]} & train_texts


def test_counts_add_up_and_audio_matches_manifest(small_corpus):
    summary = json.loads((small_corpus / "corpus.json").read_text())
    utts = read_manifest(small_corpus)
    rejects = (small_corpus / "rejects.jsonl").read_text().splitlines()
    assert sum(c["utterances"] for c in summary["counts"].values()) == len(utts)
    assert summary["rejected"] == len(rejects)
    assert len(list((small_corpus / "audio").rglob("*.wav"))) == len(utts)
    for u in utts[:20]:
        info = sf.info(str(u.audio_path(small_corpus)))
        assert info.samplerate == u.sample_rate == 16000 and info.channels == 1
        assert abs(info.frames / 16000 - u.duration) < 1e-3


def test_word_timestamps_increase_and_lie_inside_the_audio(small_corpus):
    for u in read_manifest(small_corpus):
        assert " ".join(w for w, _, _ in u.words) == u.text
        previous_end = 0.0
        for _, start, end in u.words:
            assert previous_end <= start < end <= u.duration
            previous_end = end
        for _, start, end in u.events or []:  # inserted sounds sit between words, never on one
            assert all(end <= ws or start >= we for _, ws, we in u.words)
            assert 0 <= start < end <= u.duration


def test_every_label_class_is_present(small_corpus):
    utts = read_manifest(small_corpus, split="train")
    for key, classes in label_classes().items():
        assert {u.labels[key] for u in utts} == set(classes), key
    with_events = [u for u in utts if u.labels["event"] != "none"]
    assert all(u.events and u.events[0][0] == u.labels["event"] for u in with_events)
    assert all(not u.events for u in utts if u.labels["event"] == "none")
    answered = [u for u in utts if u.answer]
    assert answered and all(u.text.startswith(("what", "how", "which", "tell")) for u in answered)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def test_events_are_audible_where_the_manifest_says(small_corpus):
    checked = 0
    for u in read_manifest(small_corpus):
        if not u.events:
            continue
        audio, sr = sf.read(str(u.audio_path(small_corpus)))
        _, start, end = u.events[0]
        event = audio[int(start * sr): int(end * sr)]
        gap = audio[int((start - 0.09) * sr): int((start - 0.01) * sr)]  # the silence inserted before it
        assert _rms(event) > 20 * max(_rms(gap), 1e-5)
        checked += 1
    assert checked >= 20


def _median_f0(audio: np.ndarray, sr: int, spans) -> float | None:
    """Median F0 over voiced 40 ms frames inside word spans, by autocorrelation (60-500 Hz)."""
    frame, hop = int(0.04 * sr), int(0.01 * sr)
    lo_lag, hi_lag = sr // 500, sr // 60
    peak = np.abs(audio).max()
    f0s = []
    for _, start, end in spans:
        segment = audio[int(start * sr): int(end * sr)]
        for i in range(0, len(segment) - frame, hop):
            x = segment[i:i + frame] - segment[i:i + frame].mean()
            if np.sqrt(np.mean(x ** 2)) < 0.1 * peak:
                continue
            ac = np.correlate(x, x, mode="full")[frame - 1:]
            lag = lo_lag + int(np.argmax(ac[lo_lag:hi_lag]))
            if ac[lag] > 0.5 * ac[0]:  # clearly periodic: voiced
                f0s.append(sr / lag)
    return float(np.median(f0s)) if f0s else None


def test_female_voices_are_higher_and_children_higher_than_old(small_corpus):
    by_gender, by_age = defaultdict(list), defaultdict(list)
    for u in read_manifest(small_corpus):
        if u.labels["style"] == "whisper":
            continue
        audio, sr = sf.read(str(u.audio_path(small_corpus)))
        f0 = _median_f0(audio, sr, u.words)
        if f0:
            by_gender[u.labels["gender"]].append(f0)
            by_age[(u.labels["gender"], u.labels["age"])].append(f0)
    female, male = np.median(by_gender["female"]), np.median(by_gender["male"])
    assert len(by_gender["female"]) >= 20 and len(by_gender["male"]) >= 20
    assert female > 1.25 * male, (female, male)
    for gender in ("female", "male"):  # within a gender: the corpus's gender mix per age group varies
        medians = [np.median(by_age[(gender, age)]) for age in ("child", "adult", "old")]
        assert medians[0] > medians[1] > medians[2], (gender, medians)


def test_voice_settings_follow_the_documented_presets():
    speaker = speakers.Speaker("s", "female", "adult", "en-us", "f2", pitch=50, rate=160, split="train")
    assert speaker.voice_for("neutral", "normal").voice == "en-us+f2"
    assert speaker.voice_for("neutral", "whisper").voice == "en-us+whisperf"
    assert speaker.voice_for("neutral", "fast").rate == int(160 * 1.4)
    sad = speaker.voice_for("sad", "slow")
    assert (sad.pitch, sad.pitch_range, sad.rate, sad.volume) == (46, 3, int(160 * 0.7), 70)
    assert [speaker.voice_for(e, "normal").pitch_range for e in ("neutral", "happy", "anger")] == [30, 95, 60]
    assert speaker.voice_for("happy", "loud").volume == 160
    assert speaker.voice_for("anger", "loud").volume == 200  # 216, clipped to eSpeak's range


def test_no_emotion_moves_a_voice_across_an_age_band():
    """Age is the base-pitch band: the widest emotion shift leaves every band apart from the next."""
    shifts = [p.pitch_shift for p in speakers.EMOTION_PRESETS.values()]
    bands = sorted(band for band, _ in speakers.AGE_PRESETS.values())
    for (_, top), (bottom, _) in zip(bands[:-1], bands[1:]):
        assert top + max(shifts) < bottom + min(shifts), (top, bottom, shifts)
