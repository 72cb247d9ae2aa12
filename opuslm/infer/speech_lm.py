"""The Python API behind `opuslm generate`: a trained model folder and its tokenizers, with one verb per
kind of generation. Each verb takes a batch and returns one result per input.

    lm = SpeechLM.load("runs/demo/model")
    lm.transcribe([(wav, 16000)])                       # -> ["what is nine plus eight"]
    lm.synthesize(["hello there"], [(prompt_wav, 16000)])  # -> [waveform at the codec's rate]
    lm.understand("ser", [(wav, 16000)])                # -> ["what is nine plus eight<happy>"]
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from opuslm.audio import AudioError, resample
from opuslm.data.rules import MIN_SECONDS
from opuslm.errors import OpusLMError
from opuslm.infer.beam import beam_search
from opuslm.infer.decode import Generated, Prompt, generate, teacher_forced
from opuslm.infer.encoded_audio import EncodedAudioMemo
from opuslm.infer.sampling import Sampling
from opuslm.infer.outputs import TaskOutput, emitted_words, read_output
from opuslm.infer.paced_words import PacedWords
from opuslm.infer.task_format import FORMATTED_TARGETS, TaskFormat
from opuslm.infer.timed_words import TimedWords, TokenStrings
from opuslm.tasks import TaskTable, trained_labels
from opuslm.templates import PROMPT_SECONDS, TemplateBuilder, word_ids, word_timestamps
from opuslm.tokenize.shards import TokenizedUtterance
from opuslm.tokenize.text import text_ids
from opuslm.vocab import JointVocab

Audio = tuple[np.ndarray, int]  # waveform, sample rate
# Faster than anyone speaks (about 15 characters a second is brisk): text longer than this many characters
# per second of --max-seconds cannot all be said in it
FASTEST_CHARACTERS_PER_SECOND = 20


@dataclass
class Speech:
    audio: np.ndarray  # at the codec's sample rate
    stopped: bool  # the model ended the speech (False: --max-seconds ended it)
    note: str | None  # why the speech may not hold all of the text, or None


class SpeechLM:
    def __init__(self, model, tokenizers, sampling: Sampling | None = None, prompt_seconds: float = PROMPT_SECONDS,
                 tasks: TaskTable | None = None, labels_taught: dict[str, list[str]] | None = None):
        self.model, self.tokenizers = model, tokenizers
        self.tasks = tasks or TaskTable()
        self.labels_taught = labels_taught or {}  # per task, the labels its training data held (the guard's)
        self.sampling = sampling or Sampling()
        self.prompt_seconds = prompt_seconds
        self._token_strings: TokenStrings | None = None
        self._formats: dict[str, TaskFormat] = {}  # per task, the guard's (`_guarded`)
        self._aligner = None  # the word aligner of `sampling.aligner`, loaded when first asked (`_aligned`)
        self.encoded_audio = EncodedAudioMemo(lambda wav: self.tokenizers.encode_audio([wav])[0])  # a clip asked about again
        vocab: JointVocab = model.vocab
        data_vocab = JointVocab(tokenizers.semantic.vocab_size, tokenizers.acoustic.num_codebooks,
                                tokenizers.acoustic.codebook_size, len(tokenizers.text))
        vocab.require_same(data_vocab, "the tokenizers given")
        heard = model.config.heard_features
        if heard and (not tokenizers.heard_features or tokenizers.semantic.feature_dim != heard):
            raise OpusLMError(f"the model reads heard features of dimension {heard} (its continuous input path); give "
                              "it its own semantic tokenizer with heard_features on (SpeechLM.load does)")
        self.vocab = vocab
        self.frame_rate = tokenizers.acoustic.frame_rate
        self.builder = TemplateBuilder.for_model(vocab, tokenizers.text, model.delays, self.frame_rate, prompt_seconds,
                                                 self.tasks)

    @classmethod
    def load(cls, folder: str | Path, codec: str | Path | None = None, device: str = "cpu",
             sampling: Sampling | None = None) -> SpeechLM:
        from opuslm.model.multistream import OpusLM, model_tokenizers
        from opuslm.tokenize.pipeline import SpeechTokenizers

        model = OpusLM.from_pretrained(folder).to(device).eval()
        tokenizers = SpeechTokenizers(model_tokenizers(folder, codec), heard_features=model.config.heard_features > 0)
        broken = next((name for name, value in model.state_dict().items()
                       if value.is_floating_point() and not torch.isfinite(value).all()), None)
        if broken is not None:  # sampling would fail deep inside as "probability tensor contains inf, nan"
            raise OpusLMError(f"{folder}: the weights {broken} hold NaN or infinite values (training diverged, or the "
                              "folder was written from a broken run); use a model saved before it diverged")
        return cls(model, tokenizers, sampling, tasks=TaskTable.of_model(folder), labels_taught=trained_labels(folder))

    @property
    def paced_tts(self) -> bool:
        """The model speaks word-paced (trained on `tts_paced`): each word's text ids before its audio."""
        return self.model.config.paced_tts

    # ---- limits ----
    @property
    def position_limit(self) -> int | None:
        """The most frames a prompt and its continuation may span: the backbone's positions."""
        from opuslm.model.multistream import backbone_positions

        return backbone_positions(self.model.backbone.config)

    def require_clip(self, audio: Audio, name: str, follow: int = 0, limit_flag: str = "--max-tokens") -> None:
        """Refuse a clip too short to hold a word (`opuslm.data.rules.MIN_SECONDS`), or one whose frames and
        the `follow` more that `limit_flag` allows would not fit the model's positions: refused before the
        clip is tokenized (a 5-minute clip took 1.6 GB to go nowhere)."""
        seconds = len(audio[0]) / audio[1]
        if seconds < MIN_SECONDS:
            raise OpusLMError(f"{name}: {seconds:.3f} s of audio is shorter than the {MIN_SECONDS:g} s a word needs "
                              "(given less, a model invents a sentence); give a longer clip")
        if follow:
            self._require_positions(math.ceil(seconds * self.frame_rate), follow, name, limit_flag, "its audio")

    def _require_positions(self, length: int, follow: int, name: str, limit_flag: str, what: str,
                           listening: bool = True) -> None:
        """Refuse `length` frames (`what`) and `follow` more that need more positions than the backbone has."""
        limit = self.position_limit
        needed = length + follow + max(self.model.delays) + 1
        if limit is None or needed <= limit:
            return
        if listening:
            seconds = max(limit - (needed - length), 0) / self.frame_rate
            fix = f"split the clip into pieces of at most about {seconds:.0f} s, or lower {limit_flag}"
        else:
            fix = f"lower {limit_flag} or shorten the input"
        raise OpusLMError(f"{name}: {what} is {length} frames and {limit_flag} lets {follow} more follow, {needed} "
                          f"positions in all, but the model has {limit}: {fix}")

    @staticmethod
    def _names(names: list[str] | None, count: int) -> list[str]:
        return list(names) if names is not None else [f"input {i + 1}" for i in range(count)]

    # ---- inputs ----
    def tokenize_audio(self, audio: Audio, text: str = "", name: str = "input", follow: int = 0,
                       limit_flag: str = "--max-tokens") -> TokenizedUtterance:
        """A clip as the model reads it (`follow`, `limit_flag`: see `require_clip`)."""
        self.require_clip(audio, name, follow, limit_flag)
        wav, rate = audio
        wav = resample(np.asarray(wav, np.float32), rate, self.tokenizers.acoustic.sample_rate)
        encoded = self.encoded_audio(wav)
        if isinstance(encoded, AudioError):
            raise OpusLMError(f"{name}: cannot tokenize this audio: {encoded}")
        semantic, codes, features = encoded
        return TokenizedUtterance(self._text_ids(text), semantic, codes, {"id": "input", "text": text}, features)

    def _prompt(self, task: str, example, target: str, max_frames: int, name: str, limit_flag: str,
                stop: str = "<eos>", **options) -> Prompt:
        if max_frames <= 0:
            raise OpusLMError(f"{limit_flag} must allow at least one {'token' if target == 'text' else 'frame'}, "
                              f"got {max_frames}")
        frames = self.builder.build(task, example, random.Random(self.sampling.seed), prompt_only=True, **options)
        if stop == "<eos>":
            stop_id = self.vocab.special(stop)
        elif self.tokenizers.text.eos_token_id is None:
            raise OpusLMError("the text tokenizer has no eos token, so a text continuation could not end")
        else:
            stop_id = int(self.vocab.text([self.tokenizers.text.eos_token_id])[0])
        self._require_positions(frames.tokens.shape[1], max_frames, name, limit_flag, "its prompt",
                                listening=target == "text" and task != "text_lm")
        heard = frames.heard is not None and self.tasks.hears_features(task)  # only an utterance is heard
        features = example.features if heard else None
        return Prompt(frames.tokens, target, stop_id, max_frames, frames.heard, features)

    # ---- outputs ----
    def _text(self, generated: Generated) -> str:
        return self.tokenizers.text.decode(self.vocab.to_text(generated.frames[0]).tolist(), skip_special_tokens=True)

    def _audio(self, generated: Generated) -> np.ndarray:
        frames = generated.frames
        if frames.shape[1] == 0:
            return np.zeros(0, np.float32)
        semantic = self.vocab.modality_range("semantic")
        frames = frames[:, (frames[0] >= semantic[0]) & (frames[0] < semantic[1])]  # word-paced TTS writes words too
        return self.tokenizers.acoustic.decode(self.vocab.to_codes(frames[1:]))

    def _run(self, prompts: list[Prompt], progress: bool = False) -> list[Generated]:
        ctc = self.sampling.joint_ctc if prompts and all(p.transcribes for p in prompts) else None
        if (self.sampling.beam > 1 or ctc is not None) and all(p.target == "text" for p in prompts):
            return beam_search(self.model, prompts, self.sampling.beam, ctc)
        return generate(self.model, prompts, self.sampling, progress)

    def read(self, task: str, text: str, audio: Audio | None = None) -> TaskOutput:
        """`text` read as `task`'s format: one label per label key, from the labels the model was taught
        when its folder records them; timestamps within `audio`."""
        spec = self.tasks.require(task)
        taught = self.labels_taught.get(task)
        seconds = len(audio[0]) / audio[1] if audio is not None else None
        return read_output(spec.target, text, len(spec.labels), set(taught) if taught else None, seconds)

    def _answers(self, task: str, generated: list[Generated], audios: list[Audio]) -> list[str]:
        texts = [self._text(g) for g in generated]
        if not self.sampling.guard:
            return texts
        return [self.read(task, text, audio).well_formed for text, audio in zip(texts, audios)]

    # ---- verbs ----
    def transcribe(self, audios: list[Audio], max_tokens: int = 200, names: list[str] | None = None) -> list[str]:
        names = self._names(names, len(audios))
        examples = [self.tokenize_audio(a, "", n, max_tokens) for a, n in zip(audios, names)]
        return self._transcripts(examples, audios, names, max_tokens)

    def _transcripts(self, examples: list[TokenizedUtterance], audios: list[Audio], names: list[str],
                     max_tokens: int) -> list[str]:
        prompts = [self._prompt("asr", e, "text", max_tokens, n, "--max-tokens") for e, n in zip(examples, names)]
        for prompt in prompts:
            prompt.transcribes, prompt.constraint = True, self._guarded("asr")
        return self._answers("asr", self._run(prompts), audios)

    def understand(self, task: str, audios: list[Audio], instruction: str | None = None, max_tokens: int = 200,
                   names: list[str] | None = None) -> list[str]:
        """The task's text output per clip. A timestamp task is written after ASR unless the sampling says
        "free" (`opuslm.infer.timed_words`): the clip's transcript first, then that task's format with those
        words and the times the model chooses, or ("aligned") the times the word aligner places them at;
        a clip whose transcript has no words gets no output.
        `max_tokens` bounds the transcript; its timed form is as long as its words need."""
        spec = self.tasks.require(task)
        names = self._names(names, len(audios))
        examples = [self.tokenize_audio(a, "", n, max_tokens) for a, n in zip(audios, names)]  # once for both passes
        words: list[list[str] | None] = [None] * len(audios)
        if spec.target == "timestamps" and self.sampling.timestamps != "free":
            words = [emitted_words(text).split() for text in self._transcripts(examples, audios, names, max_tokens)]
            if self.sampling.timestamps == "aligned":
                return [self._aligned(audio, forced) for audio, forced in zip(audios, words)]
        prompts, asked = [], []
        for i, (audio, example, name, forced) in enumerate(zip(audios, examples, names, words)):
            if forced == []:
                continue
            constraint = self._guarded(task) if forced is None else \
                TimedWords(forced, self.token_strings, len(audio[0]) / audio[1])
            length = constraint.most_characters if forced is not None else max_tokens  # it ends within that
            prompt = self._prompt(task, example, "text", length, name, "--max-tokens", instruct=True,
                                  instruction=instruction)
            prompt.constraint = constraint
            prompts.append(prompt)
            asked.append(i)
        answers = [""] * len(audios)
        for i, answer in zip(asked, self._answers(task, self._run(prompts), [audios[i] for i in asked])):
            answers[i] = answer
        return answers

    def _aligned(self, audio: Audio, words: list[str]) -> str:
        """SRWT's format of `words` at the times the word aligner places them in `audio` ("" for no words)."""
        if self._aligner is None:
            from opuslm.infer.word_aligner import WordAligner

            self._aligner = WordAligner.load(self.sampling.aligner)
        times = self._aligner.align(audio[0], audio[1], words)
        return word_timestamps({"words": [(w, start, end) for w, (start, end) in zip(words, times)]}) if words else ""

    def _guarded(self, task: str) -> TaskFormat | None:
        """With the guard, the format `task`'s output is decoded within (`opuslm.infer.task_format`; one per
        task, reused: it remembers what it has read); None without the guard, or for free timestamps."""
        spec = self.tasks.require(task)
        if not self.sampling.guard or spec.target not in FORMATTED_TARGETS:
            return None
        if task not in self._formats:
            taught = self.labels_taught.get(task)
            self._formats[task] = TaskFormat.for_target(spec.target, self.token_strings, len(spec.labels),
                                                        set(taught) if taught else None)
        return self._formats[task]

    @property
    def token_strings(self) -> TokenStrings:
        """What each text id writes (built once, on first use)."""
        if self._token_strings is None:
            self._token_strings = TokenStrings(self.tokenizers.text)
        return self._token_strings

    def speak(self, texts: list[str], speaker_prompts: list[Audio | None] | None = None, max_seconds: float = 20.0,
              names: list[str] | None = None) -> list[Speech]:
        """TTS with what a caller should be told: per text, the audio and a note when the speech may not
        hold all of the text. Empty text, and text that takes longer to say than `max_seconds` even at
        FASTEST_CHARACTERS_PER_SECOND, are refused; a speaker prompt is cropped to the length training
        prompts have (`prompt_seconds`)."""
        speaker_prompts = speaker_prompts or [None] * len(texts)
        if len(speaker_prompts) != len(texts):
            raise OpusLMError(f"{len(texts)} texts but {len(speaker_prompts)} speaker prompts")
        prompts, shortest = [], []
        for text, speaker, name in zip(texts, speaker_prompts, self._names(names, len(texts))):
            if not text.strip():
                raise OpusLMError(f"{name}: the text to speak is empty; give the words to say")
            shortest.append(len(text.strip()) / FASTEST_CHARACTERS_PER_SECOND)
            if shortest[-1] > max_seconds:
                raise OpusLMError(f"{name}: {len(text.strip())} characters take at least {shortest[-1]:.0f} s to say "
                                  f"(at {FASTEST_CHARACTERS_PER_SECOND} characters a second), more than --max-seconds "
                                  f"{max_seconds:g}: split the text or raise --max-seconds")
            no_audio = (np.zeros(0, np.int64), np.zeros((self.vocab.num_codebooks, 0), np.int64))
            example = TokenizedUtterance(self._text_ids(text), *no_audio, {"text": text})
            prompt = self._prompt("tts", example, "audio", round(max_seconds * self.frame_rate), name,
                                  "--max-seconds", speaker_prompt=self._speaker_prompt(speaker, name))
            if self.paced_tts:
                prompt.constraint = PacedWords(word_ids(self.tokenizers.text, text), self.vocab)
            prompts.append(prompt)
        spoken = []
        for generated, least in zip(self._run(prompts), shortest):
            audio = self._audio(generated)
            seconds = len(audio) / self.tokenizers.acoustic.sample_rate
            note = None
            if not generated.stopped:
                note = (f"the speech reached --max-seconds {max_seconds:g} before the model ended it: the end of the "
                        "text may be missing; raise --max-seconds")
            elif seconds < least:
                note = (f"{seconds:.1f} s of speech for text that takes at least {least:.1f} s to say: part of the text "
                        "was likely not spoken")
            spoken.append(Speech(audio, generated.stopped, note))
        return spoken

    def _speaker_prompt(self, speaker: Audio | None, name: str) -> TokenizedUtterance | None:
        """A speaker prompt cut to the length training prompts have, tokenized."""
        if speaker is None:
            return None
        wav, rate = speaker
        return self.tokenize_audio((wav[:round(self.prompt_seconds * rate)], rate), name=f"{name}'s speaker prompt")

    def speak_teacher_forced(self, recordings: list[tuple[str, Audio]], speaker_prompts: list[Audio | None],
                             names: list[str] | None = None, word_times: list[list] | None = None
                             ) -> list[tuple[np.ndarray, np.ndarray]]:
        """TTS of each (text, a recording of it) with the recording's earlier frames given: per recording, the
        audio decoded from the model's greedy choice of each of its frames (`decode.teacher_forced`) and
        `[N streams, frames]`, True where that choice is the recording's own id. Where TTS is not understood,
        this tells a model that predicts frames wrongly even from a right past from one that goes wrong
        only when it feeds itself its own choices. A word-paced model reads each recording's words where
        `word_times` (`[[word, start, end], ...]` per recording) places them."""
        paced = self.paced_tts
        if paced and (word_times is None or any(not times for times in word_times)):
            raise OpusLMError("this model speaks word-paced (tts_paced): teacher-forcing it needs each recording's "
                              "word times")
        out = []
        for i, ((text, audio), speaker, name) in enumerate(zip(recordings, speaker_prompts,
                                                              self._names(names, len(recordings)))):
            example = self.tokenize_audio(audio, text, name)
            if paced:
                example.meta["words"] = word_times[i]
            frames = self.builder.build("tts_paced" if paced else "tts", example, random.Random(self.sampling.seed),
                                        speaker_prompt=self._speaker_prompt(speaker, name))
            audio_frames = np.flatnonzero(frames.target[1])  # the target frames that hold codes (not <eos>)
            chosen = teacher_forced(self.model, frames.tokens)[:, audio_frames]
            codes = self.vocab.to_codes(chosen[1:])
            out.append((self.tokenizers.acoustic.decode(codes), chosen == frames.tokens[:, audio_frames]))
        return out

    def synthesize(self, texts: list[str], speaker_prompts: list[Audio | None] | None = None,
                   max_seconds: float = 20.0) -> list[np.ndarray]:
        """The audio of `speak`, without its notes."""
        return [s.audio for s in self.speak(texts, speaker_prompts, max_seconds)]

    def continue_audio(self, audios: list[Audio], max_seconds: float = 10.0, names: list[str] | None = None) -> list[np.ndarray]:
        prompts = [self._prompt("audio_lm", self.tokenize_audio(a, "", n, round(max_seconds * self.frame_rate), "--max-seconds"),
                                "audio", round(max_seconds * self.frame_rate),
                                n, "--max-seconds") for a, n in zip(audios, self._names(names, len(audios)))]
        return [self._audio(g) for g in self._run(prompts)]

    def continue_text(self, texts: list[str], max_tokens: int = 100, names: list[str] | None = None) -> list[str]:
        prompts = [self._prompt("text_lm", text, "text", max_tokens, n, "--max-tokens", stop="llm_eos")
                   for text, n in zip(texts, self._names(names, len(texts)))]
        return [self._text(g) for g in self._run(prompts)]

    def _text_ids(self, text: str) -> np.ndarray:
        return text_ids(self.tokenizers.text, text)

