"""`opuslm data synth`: plan, synthesise and write the embedded corpus.

Determinism: utterance i of split s is planned from its own random stream `(seed, s, i)` and
synthesised independently, so the output is byte-identical for a seed whatever the number of workers.
Each split is filled until it holds its share of `hours`.

Held-out text: a sentence belongs to dev, test or train by a hash of its transcript, so dev/test
sentences never occur in train. Speakers: dev uses train speakers (seen), test only held-out ones.
"""

from __future__ import annotations

import hashlib
import math
import json
import multiprocessing
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from opuslm.audio import resample, write_wav
from opuslm.data.manifest import Utterance, write_lines_atomic, write_manifest
from opuslm.data.synth import events as ev
from opuslm.data.synth import sentences, speakers, world
from opuslm.data.synth import espeak
from opuslm.errors import OpusLMError
from opuslm.json_files import json_text, write_json

GENERATOR_VERSION = 2
SAMPLE_RATE = 16000
SPLIT_SHARES = {"train": 0.9, "dev": 0.05, "test": 0.05}
FRAME_SECONDS = 0.01  # energy frames used to trim word boundaries
SILENCE_RATIO = 0.03  # a frame is silent below this fraction of the loudest frame's RMS
EVENT_GAP_SECONDS = 0.1  # silence on each side of an inserted event


@dataclass(frozen=True)
class SynthConfig:
    hours: float = 0.5
    seed: int = 0
    question_share: float = 0.15  # spoken questions with an exact text answer (STTC)
    event_share: float = 0.5  # utterances with one inserted vocal event
    world_share: float = 0.0  # statements about the wider world (synth/world.py): the words of factual questions

    def __post_init__(self):
        if not self.hours > 0:
            raise OpusLMError(f"--hours must be positive, got {self.hours}")
        for name in ("question_share", "event_share", "world_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise OpusLMError(f"{name} must be within [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class Plan:
    id: str
    split: str
    speaker: speakers.Speaker
    sentence: sentences.Sentence
    emotion: str
    style: str
    event: str
    event_position: str
    event_seed: int


def text_split(text: str) -> str:
    """Which split a transcript belongs to: 1/20 of sentences each for dev and test."""
    bucket = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") % 20
    return {0: "dev", 1: "test"}.get(bucket, "train")


def plan_utterance(config: SynthConfig, roster: list[speakers.Speaker], split: str, index: int) -> Plan:
    rng = random.Random(f"{config.seed}-{split}-{index}")
    voices = [s for s in roster if s.split == ("test" if split == "test" else "train")]
    speaker = rng.choice(voices)
    while True:  # draw until the sentence's hash puts it in this split
        if rng.random() < config.question_share:
            sentence = sentences.random_question_with_answer(rng)
        elif config.world_share and rng.random() < config.world_share:  # no draw at 0: the default corpus stays as it was
            sentence = world.world_sentence(rng)
        else:
            sentence = sentences.random_sentence(rng)
        if text_split(sentence.text) == split:
            break
    event = rng.choice(ev.EVENT_CLASSES) if rng.random() < config.event_share else ev.NO_EVENT
    return Plan(
        id=f"espeak-{split}-{index:06d}",
        split=split,
        speaker=speaker,
        sentence=sentence,
        emotion=rng.choice(speakers.EMOTIONS),
        style=rng.choice(speakers.STYLES),
        event=event,
        event_position=rng.choice(ev.POSITIONS),
        event_seed=rng.getrandbits(32),
    )


class SynthesisError(Exception):
    """eSpeak's output could not be aligned with the transcript; the utterance is rejected."""


def _word_spans(samples: np.ndarray, starts: list[int]) -> list[tuple[int, int]]:
    """Trim each word's window [start_i, start_i+1) to its first and last non-silent frame."""
    frame = int(FRAME_SECONDS * SAMPLE_RATE)
    n_frames = len(samples) // frame
    rms = np.sqrt(np.mean(samples[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1))
    active = rms > SILENCE_RATIO * rms.max()
    bounds = starts + [len(samples)]
    spans = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        frames = np.flatnonzero(active[lo // frame: max(hi // frame, lo // frame + 1)])
        if frames.size:
            spans.append((lo // frame * frame + frames[0] * frame, lo // frame * frame + (frames[-1] + 1) * frame))
        else:
            spans.append((lo, hi))
    return spans


def _align_words(text: str, word_starts, from_rate: int, total_samples: int) -> list[int]:
    """The start sample (at SAMPLE_RATE) of each transcript word, from eSpeak's word events.

    eSpeak speaks some pairs of short words as one unit ('in the', 'there are') with a single event;
    the unit's time, up to the next event, is shared among its words by character count.
    """
    offsets, position = [], 0
    for word in text.split(" "):
        offsets.append((position, position + len(word)))
        position += len(word) + 1
    starts: list[int | None] = [None] * len(offsets)
    for event in word_starts:
        for i, (lo, hi) in enumerate(offsets):
            if lo <= event.char_offset < hi and starts[i] is None:
                starts[i] = round(event.sample * SAMPLE_RATE / from_rate)
    known = [s for s in starts if s is not None]
    if starts[0] is None or known != sorted(known):
        raise SynthesisError(f"eSpeak word events do not match the words of {text!r}")
    i = 0
    while i < len(starts):
        j = i + 1
        while j < len(starts) and starts[j] is None:
            j += 1
        if j > i + 1:  # words i+1..j-1 were spoken inside word i's unit
            end = starts[j] if j < len(starts) else total_samples
            lengths = [offsets[k][1] - offsets[k][0] + 1 for k in range(i, j)]
            cumulative = np.cumsum([0] + lengths)
            for k in range(i + 1, j):
                starts[k] = starts[i] + round((end - starts[i]) * cumulative[k - i] / cumulative[-1])
        i = j
    return starts


def synthesize(plan: Plan) -> tuple[Plan, np.ndarray | None, list, list, str | None]:
    """Audio (int16 at SAMPLE_RATE), word times and event times for one plan, or a reject reason."""
    synthesis = espeak.synthesize(plan.sentence.spoken_text, plan.speaker.voice_for(plan.emotion, plan.style))
    audio = resample(synthesis.samples.astype(np.float32) / 32768.0, synthesis.sample_rate, SAMPLE_RATE)
    try:
        starts = _align_words(plan.sentence.text, synthesis.word_starts, synthesis.sample_rate, len(audio))
    except SynthesisError as error:
        return plan, None, [], [], str(error)
    spans = _word_spans(audio, starts)
    event_times = []
    if plan.event != ev.NO_EVENT:
        rng = np.random.default_rng(plan.event_seed)
        sound = ev.make_event(plan.event, rng, SAMPLE_RATE, peak=0.6 * float(np.abs(audio).max()))
        gap = np.zeros(int(EVENT_GAP_SECONDS * SAMPLE_RATE), np.float32)
        if plan.event_position == "before":
            at = 0
        elif plan.event_position == "after":
            at = len(audio)
        else:
            k = int(rng.integers(1, len(spans)))  # between word k-1 and word k, in the pause
            at = (spans[k - 1][1] + spans[k][0]) // 2
        audio = np.concatenate([audio[:at], gap, sound, gap, audio[at:]])
        shift = 2 * len(gap) + len(sound)
        spans = [(s + shift, e + shift) if s >= at else (s, e) for s, e in spans]
        event_times = [[plan.event, round((at + len(gap)) / SAMPLE_RATE, 3),
                        round((at + len(gap) + len(sound)) / SAMPLE_RATE, 3)]]
    peak = float(np.abs(audio).max())
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    pcm = np.round(audio * 32767).astype(np.int16)
    # milliseconds, the last word's end rounded down so it never passes the duration (kept to 0.1 ms)
    words = [[w, round(s / SAMPLE_RATE, 3), min(round(e / SAMPLE_RATE, 3), math.floor(len(pcm) / SAMPLE_RATE * 1000) / 1000)]
             for w, (s, e) in zip(plan.sentence.text.split(" "), spans)]
    return plan, pcm, words, event_times, None


def _utterance(plan: Plan, pcm: np.ndarray, words: list, event_times: list) -> Utterance:
    return Utterance(
        id=plan.id,
        audio=f"audio/{plan.split}/{plan.id}.wav",
        duration=round(len(pcm) / SAMPLE_RATE, 4),
        sample_rate=SAMPLE_RATE,
        text=plan.sentence.text,
        speaker=plan.speaker.id,
        split=plan.split,
        labels={
            "gender": plan.speaker.gender,
            "age": plan.speaker.age,
            "emotion": plan.emotion,
            "style": plan.style,
            "event": plan.event,
        },
        words=words,
        events=event_times or None,
        answer=plan.sentence.answer,
    )


def label_classes() -> dict[str, list[str]]:
    return {
        "gender": list(speakers.GENDERS),
        "age": list(speakers.AGE_GROUPS),
        "emotion": list(speakers.EMOTIONS),
        "style": list(speakers.STYLES),
        "event": [ev.NO_EVENT, *ev.EVENT_CLASSES],
    }


def _describe(config: SynthConfig) -> dict:
    described = asdict(config)
    if not config.world_share:
        del described["world_share"]  # a corpus without world statements keeps the description it had before them
    return {"generator_version": GENERATOR_VERSION, "sample_rate": SAMPLE_RATE, **described}


def synthesize_corpus(out: Path, config: SynthConfig, workers: int = 1, force: bool = False, progress: bool = True) -> dict:
    """Write audio/, manifest.jsonl, rejects.jsonl and corpus.json under `out`; returns corpus.json's content.

    A folder that already holds this exact corpus is left as it is; one holding another corpus is
    refused unless `force`.
    """
    from opuslm.progress import progress_bar

    out = Path(out)
    summary_path = out / "corpus.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("config") == _describe(config) and not force:
            return summary
        if not force:
            raise OpusLMError(
                f"{out} holds another corpus ({summary_path} has a different config); "
                "use --force to replace it or choose another --out"
            )
    elif (out / "manifest.jsonl").exists() and not force:
        raise OpusLMError(f"{out} already has a manifest.jsonl; use --force to replace it or choose another --out")
    for stale in ("audio", "manifest.jsonl", "rejects.jsonl", "corpus.json"):
        path = out / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    roster = speakers.roster(config.seed)
    utterances, rejects, counts = [], [], {}
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    chunk = 16 * max(workers, 1)
    bar = progress_bar(total=round(config.hours * 3600), unit="s", desc="synthesising audio", disable=not progress)
    done = 0.0  # seconds of the splits already finished, for the progress bar
    try:
        for split, share in SPLIT_SHARES.items():
            (out / "audio" / split).mkdir(parents=True, exist_ok=True)
            target, seconds, index, kept = config.hours * 3600 * share, 0.0, 0, 0
            while seconds < target:
                plans = [plan_utterance(config, roster, split, i) for i in range(index, index + chunk)]
                index += chunk
                results = pool.map(synthesize, plans) if pool else map(synthesize, plans)
                for plan, pcm, words, event_times, reason in results:
                    if seconds >= target:
                        break
                    if reason is not None:
                        rejects.append(json_text({"id": plan.id, "reason": reason}, None))
                        continue
                    utterance = _utterance(plan, pcm, words, event_times)
                    write_wav(out / utterance.audio, pcm, SAMPLE_RATE)
                    utterances.append(utterance)
                    seconds += utterance.duration
                    kept += 1
                    bar.update(int(done + min(seconds, target)) - bar.n)
            done += target
            counts[split] = {"utterances": kept, "seconds": round(seconds, 2)}
    finally:
        bar.close()
        if pool:
            pool.close()
            pool.join()

    write_manifest(out / "manifest.jsonl", utterances)
    write_lines_atomic(out / "rejects.jsonl", rejects)
    summary = {
        "config": _describe(config),
        "counts": counts,
        "rejected": len(rejects),
        "label_classes": label_classes(),
        "speakers": [asdict(s) for s in roster],
    }
    # corpus.json is written last: its presence marks a complete corpus.
    write_json(summary_path, summary, indent=2)
    return summary
