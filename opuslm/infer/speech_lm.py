"""The Python API behind `opuslm generate`: a trained model folder and its tokenizers, with one verb per
kind of generation. Each verb takes a batch and returns one result per input.

    lm = SpeechLM.load("runs/demo/model")
    lm.transcribe([(wav, 16000)])                       # -> ["what is nine plus eight"]
    lm.synthesize(["hello there"], [(prompt_wav, 16000)])  # -> [waveform at the codec's rate]
    lm.understand("ser", [(wav, 16000)])                # -> ["what is nine plus eight<happy>"]
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from opuslm.audio import AudioError, resample
from opuslm.errors import OpusLMError
from opuslm.infer.beam import beam_search
from opuslm.infer.decode import Generated, Prompt, generate
from opuslm.infer.sampling import Sampling
from opuslm.infer.outputs import TaskOutput, read_output
from opuslm.tasks import TaskTable, trained_labels
from opuslm.templates import PROMPT_SECONDS, TemplateBuilder
from opuslm.tokenize.shards import TokenizedUtterance
from opuslm.tokenize.text import text_ids
from opuslm.vocab import JointVocab

Audio = tuple[np.ndarray, int]  # waveform, sample rate


class SpeechLM:
    def __init__(self, model, tokenizers, sampling: Sampling | None = None, prompt_seconds: float = PROMPT_SECONDS,
                 tasks: TaskTable | None = None, labels_taught: dict[str, list[str]] | None = None):
        self.model, self.tokenizers = model, tokenizers
        self.tasks = tasks or TaskTable()
        self.labels_taught = labels_taught or {}  # per task, the labels its training data held (the guard's)
        self.sampling = sampling or Sampling()
        vocab: JointVocab = model.vocab
        data_vocab = JointVocab(tokenizers.semantic.vocab_size, tokenizers.acoustic.num_codebooks,
                                tokenizers.acoustic.codebook_size, len(tokenizers.text))
        vocab.require_same(data_vocab, "the tokenizers given")
        self.vocab = vocab
        self.frame_rate = tokenizers.acoustic.frame_rate
        self.builder = TemplateBuilder.for_model(vocab, tokenizers.text, model.delays, self.frame_rate, prompt_seconds,
                                                 self.tasks)

    @classmethod
    def load(cls, folder: str | Path, codec: str | Path | None = None, device: str = "cpu",
             sampling: Sampling | None = None) -> SpeechLM:
        from opuslm.model.multistream import OpusLM, model_tokenizers
        from opuslm.tokenize.pipeline import SpeechTokenizers

        tokenizers = SpeechTokenizers(model_tokenizers(folder, codec))
        model = OpusLM.from_pretrained(folder).to(device).eval()
        return cls(model, tokenizers, sampling, tasks=TaskTable.of_model(folder), labels_taught=trained_labels(folder))

    # ---- inputs ----
    def tokenize_audio(self, audio: Audio, text: str = "") -> TokenizedUtterance:
        wav, rate = audio
        wav = resample(np.asarray(wav, np.float32), rate, self.tokenizers.acoustic.sample_rate)
        encoded = self.tokenizers.encode_audio([wav])[0]
        if isinstance(encoded, AudioError):
            raise OpusLMError(f"cannot tokenize this audio: {encoded}")
        return TokenizedUtterance(self._text_ids(text), *encoded, {"id": "input", "text": text})

    def _prompt(self, task: str, example, target: str, max_frames: int, stop: str = "<eos>", **options) -> Prompt:
        frames = self.builder.build(task, example, random.Random(self.sampling.seed), prompt_only=True, **options)
        if stop == "<eos>":
            stop_id = self.vocab.special(stop)
        elif self.tokenizers.text.eos_token_id is None:
            raise OpusLMError("the text tokenizer has no eos token, so a text continuation could not end")
        else:
            stop_id = int(self.vocab.text([self.tokenizers.text.eos_token_id])[0])
        return Prompt(frames.tokens, target, stop_id, max_frames)

    # ---- outputs ----
    def _text(self, generated: Generated) -> str:
        return self.tokenizers.text.decode(self.vocab.to_text(generated.frames[0]).tolist(), skip_special_tokens=True)

    def _audio(self, generated: Generated) -> np.ndarray:
        frames = generated.frames
        if frames.shape[1] == 0:
            return np.zeros(0, np.float32)
        return self.tokenizers.acoustic.decode(self.vocab.to_codes(frames[1:]))

    def _run(self, prompts: list[Prompt], progress: bool = False) -> list[Generated]:
        if self.sampling.beam > 1 and all(p.target == "text" for p in prompts):
            return beam_search(self.model, prompts, self.sampling.beam)
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
    def transcribe(self, audios: list[Audio], max_tokens: int = 200) -> list[str]:
        prompts = [self._prompt("asr", self.tokenize_audio(a), "text", max_tokens) for a in audios]
        return self._answers("asr", self._run(prompts), audios)

    def understand(self, task: str, audios: list[Audio], instruction: str | None = None, max_tokens: int = 200) -> list[str]:
        self.tasks.require(task)
        prompts = [self._prompt(task, self.tokenize_audio(a), "text", max_tokens, instruct=True, instruction=instruction)
                   for a in audios]
        return self._answers(task, self._run(prompts), audios)

    def synthesize(self, texts: list[str], speaker_prompts: list[Audio | None] | None = None,
                   max_seconds: float = 20.0) -> list[np.ndarray]:
        speaker_prompts = speaker_prompts or [None] * len(texts)
        if len(speaker_prompts) != len(texts):
            raise OpusLMError(f"{len(texts)} texts but {len(speaker_prompts)} speaker prompts")
        prompts = []
        for text, speaker in zip(texts, speaker_prompts):
            no_audio = (np.zeros(0, np.int64), np.zeros((self.vocab.num_codebooks, 0), np.int64))
            example = TokenizedUtterance(self._text_ids(text), *no_audio, {"text": text})
            prompt = self.tokenize_audio(speaker) if speaker is not None else None
            prompts.append(self._prompt("tts", example, "audio", round(max_seconds * self.frame_rate), speaker_prompt=prompt))
        return [self._audio(g) for g in self._run(prompts)]

    def continue_audio(self, audios: list[Audio], max_seconds: float = 10.0) -> list[np.ndarray]:
        prompts = [self._prompt("audio_lm", self.tokenize_audio(a), "audio", round(max_seconds * self.frame_rate))
                   for a in audios]
        return [self._audio(g) for g in self._run(prompts)]

    def continue_text(self, texts: list[str], max_tokens: int = 100) -> list[str]:
        prompts = [self._prompt("text_lm", text, "text", max_tokens, stop="llm_eos") for text in texts]
        return [self._text(g) for g in self._run(prompts)]

    def _text_ids(self, text: str) -> np.ndarray:
        return text_ids(self.tokenizers.text, text)

