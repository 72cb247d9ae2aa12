"""Task templates: one tokenized example becomes multi-stream frames `[N streams, T]` and a loss mask.

A frame holds one joint id per stream. Audio frames put the semantic id in stream 0 and codebook k
in stream k+1; text, special, task and marker tokens go in stream 0 with pad in the other streams.
A template is a list of segments, each opened by a modality marker; every segment is followed by
max(delays) all-pad frames, so after the delay interleave no stream of one segment spills into the
frames of the next. The layouts (OpusLM's, extended with OSUM's tasks and instructions):

    text_lm     text <eos>                                     (exactly the LLM's own sequence)
    asr         <sos> <task:asr> [<text_start> instruction pad*] <audio_start> audio pad*
                <text_start> TEXT <eos> pad*
    tts         <sos> <task:tts> <text_start> text pad* [<spk_start> prompt audio pad*]
                <audio_start> AUDIO <eos> pad*
    tts_paced   <sos> <task:tts> <text_start> text pad* [<spk_start> prompt audio pad*]
                <audio_start> (WORD AUDIO)* <eos> pad*     (each word's text ids before its audio)
    audio_lm    <sos> <task:audio_lm> <audio_start> AUDIO <eos> pad*
    OSUM tasks  <sos> <task:X> <text_start> instruction pad* <audio_start> audio pad*
                <text_start> TARGET <eos> pad*
    declared    <sos> <text_start> instruction pad* <audio_start> audio pad*
                <text_start> TARGET <eos> pad*          (a user's task: see opuslm/tasks.py)

Capitals mark the targets (the cells a `loss_region="target"` mask keeps). OSUM targets (plain text,
see `opuslm.vocab` for why): ASR + X = `transcript<label>` (several labels in the task's key
order), label-only = `<label>`, SRWT = `<0.00>word<0.34>` per word, STTC = `transcript<answer>answer`.
Instructions are paraphrases chosen by the caller's random generator, so a user can ask in words.

Word-paced TTS (`tts_paced`, ELLA-V's alignment-guided order) puts each word's text ids in stream 0
just before the frames where it is spoken, from the corpus's word times: the model writes the audio of
the word it has just read, and decides when the next word begins by writing its first id
(`opuslm.infer.paced_words` forces the rest). Plain TTS must find its place in the text by attention
alone, which a small model trained briefly does not learn. A word's audio runs from its start to the
next word's start, so the pauses between words belong to the word before them; no pad separates the
words, so the codebooks' delayed cells of one word's last frames fall on the next word's text frames.
"""

from __future__ import annotations

import bisect
import random
import re
from dataclasses import dataclass, field

import numpy as np

from opuslm.errors import OpusLMError
from opuslm.tokenize.shards import TokenizedUtterance
from opuslm.tokenize.text import text_ids
from opuslm.tasks import GENERATIVE_TASKS, TaskTable
from opuslm.vocab import PAD_ID, JointVocab

ANSWER_MARKER = "<answer>"
PROMPT_SECONDS = 3.0  # the TTS speaker prompt cropped from another utterance of the speaker
LOSS_REGIONS = ("whole", "target")


class TemplateError(OpusLMError):
    """An example cannot be used for a task (a label or timestamps missing); the loader skips it with
    this reason and counts it."""


# ---------------------------------------------------------------- target text
def label_values(meta: dict, keys: tuple[str, ...]) -> list[str]:
    """The labels of `keys`, in key order, lowercase; a key whose value is a list (several events) gives
    several labels in the list's order."""
    labels = meta.get("labels") or {}
    out = []
    for key in keys:
        if key not in labels:
            raise TemplateError(f"utterance {meta.get('id')} has no {key!r} label")
        values = labels[key] if isinstance(labels[key], list) else [labels[key]]
        for value in values:
            value = str(value).strip().lower()
            if not value or "<" in value or ">" in value:
                raise TemplateError(f"utterance {meta.get('id')} has an unusable {key!r} label {value!r}")
            out.append(value)
    return out


def label_tags(meta: dict, keys: tuple[str, ...]) -> str:
    """`<label>` per label of `label_values`, without spaces between them."""
    return "".join(f"<{value}>" for value in label_values(meta, keys))


def word_timestamps(meta: dict) -> str:
    """SRWT: `<start>word<end>` per word, seconds with two decimals."""
    return "".join(f"<{float(start):.2f}>{word}<{float(end):.2f}>" for word, start, end in _word_times(meta))


def _word_times(meta: dict) -> list:
    if not meta.get("words"):
        raise TemplateError(f"utterance {meta.get('id')} has no word timestamps")
    return meta["words"]


def spoken_words(meta: dict) -> list:
    """The `(word, start, end)` times of an utterance's transcript, word for word."""
    words = _word_times(meta)
    if [w for w, _, _ in words] != str(meta.get("text") or "").split():
        raise TemplateError(f"utterance {meta.get('id')} has word timestamps for other words than its transcript")
    return words


def word_frames(meta: dict, frame_rate: float, frames: int) -> list[tuple[int, int]]:
    """Word-paced TTS: each word's frames `[start, end)` of an utterance's `frames` at `frame_rate`, from its
    word times; the first word starts at frame 0 and each word ends where the next starts, the last at the
    end. The words must be the transcript's, in order."""
    words = spoken_words(meta)
    starts = [0] + [min(max(round(float(start) * frame_rate), 0), frames) for _, start, _ in words[1:]]
    starts = list(np.maximum.accumulate(starts))
    return list(zip(starts, starts[1:] + [frames]))


def word_ids(tokenizer, text: str) -> list[np.ndarray]:
    """The text ids of `text` (`text_ids`'s) grouped by the whitespace-separated word each belongs to: a
    token goes to the word of its first non-space character, a token of spaces alone to the next word."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [match.start() for match in re.finditer(r"\S+", text)]
    if not starts:
        return []
    groups: list[list[int]] = [[] for _ in starts]
    for token, (begin, end) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        piece = text[begin:end]
        at = begin + (len(piece) - len(piece.lstrip())) if piece.strip() else end
        groups[max(bisect.bisect_right(starts, at) - 1, 0)].append(token)
    return [np.asarray(g, np.int64) for g in groups]


def transcript(meta: dict) -> str:
    """The words of an utterance; a label-only one (VocalSound, ESC-50) has none to learn from."""
    if not str(meta.get("text") or "").strip():
        raise TemplateError(f"utterance {meta.get('id')} has no transcript (label-only)")
    return meta["text"]


def _answer(meta: dict) -> str:
    if not meta.get("answer"):
        raise TemplateError(f"utterance {meta.get('id')} is not a question with an answer")
    return str(meta["answer"])


TARGET_WRITERS = {
    "transcript": lambda meta, spec: transcript(meta),
    "transcript+labels": lambda meta, spec: transcript(meta) + label_tags(meta, tuple(spec.labels)),
    "labels": lambda meta, spec: label_tags(meta, tuple(spec.labels)),
    "timestamps": lambda meta, spec: word_timestamps(meta),
    "transcript+answer": lambda meta, spec: transcript(meta) + ANSWER_MARKER + _answer(meta),
    "answer": lambda meta, spec: _answer(meta),
}


# ---------------------------------------------------------------- frames
@dataclass(frozen=True)
class Segment:
    kind: str  # "text" | "audio" | "prompt_audio"
    start: int  # first frame, the marker's
    end: int  # one past the last content frame; the pad trailer follows


@dataclass
class Frames:
    """One example's frames before the delay interleave.

    tokens: `[N, T]` joint ids; target: `[N, T]` True on the real (non-pad) cells of the targets;
    target_start: the first target frame, where generation takes over from the prompt.
    heard: `(start, end)` frames of the audio the task listens to (ASR and the understanding tasks),
    and transcript: the text ids (the tokenizer's own) of what is said in it: what an auxiliary CTC
    loss on those frames' hidden states aligns them with.
    """

    task: str
    tokens: np.ndarray
    target: np.ndarray
    target_start: int
    segments: list[Segment] = field(default_factory=list)
    heard: tuple[int, int] | None = None
    transcript: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return self.tokens.shape[1]

    def loss_mask(self, region: str = "target") -> np.ndarray:
        """Cells that carry loss: the non-pad cells of the whole sequence, or of the targets only."""
        if region not in LOSS_REGIONS:
            raise OpusLMError(f"loss_region must be one of {LOSS_REGIONS}, got {region!r}")
        return self.target if region == "target" else self.tokens != PAD_ID


class _FrameWriter:
    """Appends frames column by column, segment by segment; `end` adds the all-pad trailer."""

    def __init__(self, vocab: JointVocab, trailer: int):
        self.vocab, self.trailer = vocab, trailer
        self.columns: list[np.ndarray] = []
        self.targets: list[bool] = []
        self.segments: list[Segment] = []
        self.heard: tuple[int, int] | None = None
        self._open: tuple[str, int] | None = None

    def begin(self, kind: str) -> None:
        self._open = (kind, len(self.columns))

    def end(self) -> None:
        kind, start = self._open
        self.segments.append(Segment(kind, start, len(self.columns)))
        self.tokens([PAD_ID] * self.trailer)
        self._open = None

    def specials(self, *names: str, target: bool = False) -> None:
        self.tokens([self.vocab.special(name) for name in names], target)

    def tokens(self, ids, target: bool = False) -> None:
        """Joint ids into stream 0, pad in the other streams."""
        for i in np.asarray(ids, dtype=np.int64).ravel():
            column = np.full(self.vocab.num_streams, PAD_ID, np.int64)
            column[0] = i
            self.columns.append(column)
            self.targets.append(target)

    def audio(self, semantic, codes, target: bool = False) -> None:
        if codes.shape[1] != len(semantic):
            raise TemplateError(f"{len(semantic)} semantic frames beside {codes.shape[1]} codec frames")
        frames = np.concatenate([self.vocab.semantic(semantic)[None], self.vocab.codes(codes)], 0)
        if not target and self._open is not None and self._open[0] == "audio":  # the audio a task listens to
            self.heard = (len(self.columns), len(self.columns) + frames.shape[1])
        self.columns.extend(frames.T)
        self.targets.extend([target] * frames.shape[1])

    def frames(self, task: str, transcript=None) -> Frames:
        tokens = np.stack(self.columns, 1) if self.columns else np.zeros((self.vocab.num_streams, 0), np.int64)
        target = np.array(self.targets, bool)[None, :] & (tokens != PAD_ID)
        target_start = self.targets.index(True) if True in self.targets else len(self.targets)
        heard = None if transcript is None else self.heard
        return Frames(task, tokens, target, target_start, self.segments, heard,
                      None if transcript is None else np.asarray(transcript, np.int64))


def prompt_frames(frame_rate: float, seconds: float = PROMPT_SECONDS) -> int:
    """Frames of a TTS speaker prompt at the codec's frame rate."""
    return round(seconds * frame_rate)


class TemplateBuilder:
    """Builds every task's frames for one vocabulary, text tokenizer and delay pattern.

    `text_tokenizer`: the HF tokenizer whose ids fill the text range; `max_delay`: max(delays), the
    trailer after each segment; `prompt_frames`: the length of a TTS speaker prompt; `frame_rate`: the
    codec's frames a second, which word-paced TTS places word times by.
    """

    def __init__(self, vocab: JointVocab, text_tokenizer, max_delay: int, prompt_frames: int = 75,
                 tasks: TaskTable | None = None, frame_rate: float | None = None):
        if len(text_tokenizer) != vocab.text_size:
            raise OpusLMError(f"the text tokenizer has {len(text_tokenizer)} tokens but the joint vocabulary's "
                              f"text range has {vocab.text_size}; use the tokenizer the data was built with")
        self.vocab, self.tokenizer = vocab, text_tokenizer
        self.max_delay, self.prompt_frames = max_delay, prompt_frames
        self.tasks = tasks or TaskTable()
        self.frame_rate = frame_rate

    @classmethod
    def for_model(cls, vocab: JointVocab, text_tokenizer, delays, frame_rate: float,
                  prompt_seconds: float = PROMPT_SECONDS, tasks: TaskTable | None = None) -> TemplateBuilder:
        """The builder for a model with these stream delays, speaker prompts timed at the codec's frame rate."""
        return cls(vocab, text_tokenizer, max(delays), prompt_frames(frame_rate, prompt_seconds), tasks, frame_rate)

    def encode_text(self, text: str) -> np.ndarray:
        return self.vocab.text(text_ids(self.tokenizer, text))

    def build(self, task: str, example: TokenizedUtterance | str, rng: random.Random | None = None,
              instruct: bool = False, speaker_prompt: TokenizedUtterance | None = None,
              instruction: str | None = None, prompt_only: bool = False) -> Frames:
        """`example` is a string for text_lm, a TokenizedUtterance otherwise. `instruct`: put an
        instruction before the audio (always for OSUM tasks; for ASR when asked); `instruction`: its
        words, else a paraphrase drawn from `rng`. `speaker_prompt`: another utterance of the same
        speaker, for TTS. `prompt_only`: stop where the target begins (what generation continues;
        for text_lm and audio_lm the example itself is the prompt, without its end)."""
        if task not in GENERATIVE_TASKS:
            self.tasks.require(task)
        rng = rng or random.Random(0)
        if task == "text_lm":
            return self.text_lm(example, prompt_only)
        if isinstance(example, str):
            raise OpusLMError(f"task {task} needs a tokenized utterance, got text")
        if task in ("tts", "tts_paced"):
            return self.tts(example, speaker_prompt, rng, prompt_only, paced=task == "tts_paced")
        if task == "audio_lm":
            return self.audio_lm(example, prompt_only)
        if task == "asr" and not (instruct or instruction):
            return self.asr(example, prompt_only)
        return self.understanding(task, example, rng, instruction, prompt_only)

    def text_lm(self, text: str, prompt_only: bool = False) -> Frames:
        """Exactly what the LLM trains on: its own tokenization (with its own specials) and its eos."""
        ids = list(self.tokenizer(text)["input_ids"])
        eos = self.tokenizer.eos_token_id
        if eos is not None and (not ids or ids[-1] != eos) and not prompt_only:
            ids.append(eos)
        writer = _FrameWriter(self.vocab, self.max_delay)
        writer.tokens(self.vocab.text(ids), target=True)
        return writer.frames("text_lm")

    def asr(self, example: TokenizedUtterance, prompt_only: bool = False) -> Frames:
        writer = _FrameWriter(self.vocab, self.max_delay)
        writer.begin("audio")
        writer.specials("<sos>", "<task:asr>", "<audio_start>")
        writer.audio(example.semantic, example.codes)
        writer.end()
        self._text_target(writer, None if prompt_only else self.vocab.text(example.text_ids))
        return writer.frames("asr", example.text_ids)

    def tts(self, example: TokenizedUtterance, speaker_prompt: TokenizedUtterance | None, rng: random.Random,
            prompt_only: bool = False, paced: bool = False) -> Frames:
        """Plain TTS, or word-paced (`paced`, the module docstring): the same prompt, each word's ids
        before its audio in the target."""
        writer = _FrameWriter(self.vocab, self.max_delay)
        writer.begin("text")
        writer.specials("<sos>", "<task:tts>", "<text_start>")
        writer.tokens(self.vocab.text(example.text_ids))
        writer.end()
        if speaker_prompt is not None:
            frames = len(speaker_prompt.semantic)
            length = min(self.prompt_frames, frames)
            start = rng.randrange(frames - length + 1)
            writer.begin("prompt_audio")
            writer.specials("<spk_start>")
            writer.audio(speaker_prompt.semantic[start:start + length], speaker_prompt.codes[:, start:start + length])
            writer.end()
        writer.begin("audio")
        writer.specials("<audio_start>")
        if not prompt_only:
            if paced:
                self._paced_audio(writer, example)
            else:
                writer.audio(example.semantic, example.codes, target=True)
            writer.specials("<eos>", target=True)
            writer.end()
        return writer.frames("tts_paced" if paced else "tts")

    def _paced_audio(self, writer: _FrameWriter, example: TokenizedUtterance) -> None:
        if self.frame_rate is None:
            raise OpusLMError("word-paced TTS places words by the codec's frame rate: build the templates with "
                              "TemplateBuilder.for_model (or frame_rate=)")
        spans = word_frames(example.meta, self.frame_rate, len(example.semantic))
        for ids, (start, end) in zip(word_ids(self.tokenizer, example.meta["text"]), spans):
            writer.tokens(self.vocab.text(ids), target=True)
            writer.audio(example.semantic[start:end], example.codes[:, start:end], target=True)

    def audio_lm(self, example: TokenizedUtterance, prompt_only: bool = False) -> Frames:
        writer = _FrameWriter(self.vocab, self.max_delay)
        writer.begin("audio")
        writer.specials("<sos>", "<task:audio_lm>", "<audio_start>")
        writer.audio(example.semantic, example.codes, target=not prompt_only)
        if not prompt_only:
            writer.specials("<eos>", target=True)
            writer.end()
        return writer.frames("audio_lm")

    def understanding(self, task: str, example: TokenizedUtterance, rng: random.Random,
                      instruction: str | None = None, prompt_only: bool = False) -> Frames:
        """An understanding task (OSUM's or a declared one): instruction, audio, then the task's target text."""
        spec = self.tasks.require(task)
        target = None if prompt_only else self.encode_text(TARGET_WRITERS[spec.target](example.meta, spec))
        writer = _FrameWriter(self.vocab, self.max_delay)
        writer.begin("text")
        writer.specials("<sos>", *spec.marker)
        writer.tokens(self.encode_text(instruction or rng.choice(spec.instructions)))
        writer.end()
        writer.begin("audio")
        writer.specials("<audio_start>")
        writer.audio(example.semantic, example.codes)
        writer.end()
        self._text_target(writer, target)
        return writer.frames(task, example.text_ids)

    def _text_target(self, writer: _FrameWriter, ids: np.ndarray | None) -> None:
        """`<text_start> ids <eos>`; with ids None, only the marker: the prompt for generating them."""
        writer.begin("text")
        writer.specials("<text_start>")
        if ids is None:
            return
        writer.tokens(ids, target=True)
        writer.specials("<eos>", target=True)
        writer.end()


class SpeakerPrompts:
    """Chooses the TTS speaker prompt of an utterance: another utterance of the same speaker."""

    def __init__(self, speakers: list[str]):
        self._speakers = list(speakers)
        self._by_speaker: dict[str, list[int]] = {}
        for index, speaker in enumerate(self._speakers):
            self._by_speaker.setdefault(speaker, []).append(index)

    def choose(self, index: int, rng: random.Random) -> int | None:
        """Another utterance of `index`'s speaker, or None when the speaker has only this one."""
        others = [i for i in self._by_speaker[self._speakers[index]] if i != index]
        return rng.choice(others) if others else None
