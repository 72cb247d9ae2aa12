"""The ASR judge that scores generated speech: independent of the model under test.

By default OpenAI's Whisper through CTranslate2 (the embedded tiny.en, or any CTranslate2 Whisper
folder, as faster-whisper uses): greedy, English, each clip padded to Whisper's 30 s window, as
seed-tts-eval scores TTS. Or a local HF ASR folder (Whisper, wav2vec2-CTC, ... through
transformers' ASR pipeline), or `opuslm judge train`: a small character CTC model (log-mel, 2x convolutional subsampling, residual
depthwise-separable convolutions)
trained on a corpus's *real* audio, never on resynthesised or generated audio. Its own WER on the
dev split is measured at the end of training and stored beside it.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from opuslm.errors import OpusLMError
from opuslm.json_files import write_json
from opuslm.tokenize.features import LogMel

CHARACTERS = " abcdefghijklmnopqrstuvwxyz'"  # index + 1; 0 is the CTC blank
SAMPLE_RATE = 16000


class _ConvBlock(nn.Module):
    """Residual depthwise-separable convolution: cheap on CPU, which a recurrent layer is not."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.pointwise = nn.Conv1d(channels, channels, 1)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + nn.functional.gelu(self.norm(self.pointwise(self.depthwise(x))))


def spec_augment(mel: torch.Tensor, bands: int = 2, band_width: int = 10, spans: int = 2, span_share: float = 0.05):
    """SpecAugment's masks: zero random mel bands and time spans of each utterance (training only)."""
    mel = mel.clone()
    batch, frames, mels = mel.shape
    for b in range(batch):
        for _ in range(bands):
            width = int(torch.randint(0, band_width + 1, ()))
            start = int(torch.randint(0, max(mels - width, 1), ()))
            mel[b, :, start:start + width] = 0
        for _ in range(spans):
            width = int(torch.randint(0, max(int(span_share * frames), 1) + 1, ()))
            start = int(torch.randint(0, max(frames - width, 1), ()))
            mel[b, start:start + width] = 0
    return mel


class CTCJudgeModel(nn.Module):
    """Log-mel at 100 Hz -> a strided convolution to 50 Hz -> residual convolution blocks -> characters."""

    def __init__(self, hidden: int = 256, layers: int = 6, n_mels: int = 80, kernel: int = 11):
        super().__init__()
        self.features = LogMel(SAMPLE_RATE, 400, 160, n_mels)
        self.subsample = nn.Sequential(nn.Conv1d(n_mels, hidden, 5, stride=2, padding=2), nn.GELU())
        self.blocks = nn.Sequential(*(_ConvBlock(hidden, kernel) for _ in range(layers)))
        self.out = nn.Conv1d(hidden, len(CHARACTERS) + 1, 1)

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`[B, samples]` -> log-probs `[B, T, C]` and frame lengths `[B]`."""
        mel = self.features(wavs)  # [B, frames, mels]
        frames = ((lengths // 160) + 1 + 1) // 2
        valid = (torch.arange(mel.shape[1])[None] < (lengths // 160 + 1)[:, None]).unsqueeze(-1)
        mean = (mel * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True)
        std = (((mel - mean) * valid) ** 2).sum(1, keepdim=True).div(valid.sum(1, keepdim=True)).sqrt()
        mel = ((mel - mean) / (std + 1e-5)) * valid  # per-utterance normalisation over its own frames
        if self.training:
            mel = spec_augment(mel)
        hidden = self.blocks(self.subsample(mel.transpose(1, 2)))
        return self.out(hidden).transpose(1, 2).log_softmax(-1), frames


def encode_text(text: str) -> list[int]:
    return [CHARACTERS.index(c) + 1 for c in text.lower() if c in CHARACTERS]


def greedy_decode(log_probs: torch.Tensor, frames: torch.Tensor) -> list[str]:
    out = []
    for row, length in zip(log_probs.argmax(-1), frames):
        ids = torch.unique_consecutive(row[: int(length)]).tolist()
        out.append(" ".join("".join(CHARACTERS[i - 1] for i in ids if i > 0).split()))
    return out


def _batch(wavs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in wavs])
    padded = torch.zeros(len(wavs), int(lengths.max()))
    for i, w in enumerate(wavs):
        padded[i, : len(w)] = torch.from_numpy(np.asarray(w, np.float32))
    return padded, lengths


class CTCJudge:
    """`info["lexicon"]`: the words of the training transcripts. Each decoded word outside it is
    replaced by its closest lexicon word (difflib ratio >= 0.6), the role a lexicon plays in a
    classic ASR decoder: the character model alone misspells words it hears right."""

    def __init__(self, model: CTCJudgeModel, info: dict):
        self.model, self.info = model.eval(), info
        self.lexicon = sorted(info.get("lexicon", []))
        self._snapped: dict[str, str] = {}

    def _snap(self, text: str) -> str:
        import difflib

        if not self.lexicon:
            return text
        known = set(self.lexicon)
        words = []
        for word in text.split():
            if word not in known and word not in self._snapped:
                close = difflib.get_close_matches(word, self.lexicon, n=1, cutoff=0.6)
                self._snapped[word] = close[0] if close else word
            words.append(word if word in known else self._snapped[word])
        return " ".join(words)

    @classmethod
    def load(cls, folder: str | Path) -> CTCJudge:
        folder = Path(folder)
        info = json.loads((folder / "judge.json").read_text())
        model = CTCJudgeModel(**info["config"])
        model.load_state_dict(torch.load(folder / "judge.pt", weights_only=True))
        return cls(model, info)

    @torch.no_grad()
    def transcribe(self, wavs: list[np.ndarray], batch_size: int = 16) -> list[str]:
        """Waveforms at 16 kHz -> lowercase transcripts."""
        order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))  # similar lengths batch together
        results = {}
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            wav, lengths = _batch([wavs[i] if len(wavs[i]) >= 400 else np.pad(wavs[i], (0, 400 - len(wavs[i])))
                                   for i in chosen])
            log_probs, frames = self.model(wav, lengths)
            for i, text in zip(chosen, greedy_decode(log_probs, frames)):
                results[i] = self._snap(text)
        return [results[i] for i in range(len(wavs))]


class HFJudge:
    """A local HF ASR model folder through transformers' pipeline (greedy, English)."""

    def __init__(self, folder: str | Path):
        from transformers import pipeline

        self.info = {"kind": "hf", "path": str(folder)}
        self.pipe = pipeline("automatic-speech-recognition", model=str(folder), device=-1)

    def transcribe(self, wavs: list[np.ndarray], batch_size: int = 8) -> list[str]:
        inputs = [{"raw": np.asarray(w, np.float32), "sampling_rate": SAMPLE_RATE} for w in wavs]
        return [r["text"].strip().lower() for r in self.pipe(inputs, batch_size=batch_size)]


WHISPER_MAX_LENGTH = 448  # Whisper's text context


class WhisperJudge:
    """Whisper in CTranslate2 format, greedy (beam 1), English, no timestamps; clips of at most 30 s
    (longer ones are cut to Whisper's window, so judge clips of a single utterance).

    A clip of d seconds keeps at most `4 + 6 d` tokens: no speech is faster than that, and tiny.en's
    greedy decoding sometimes loops ("dirty-y-y-y..." to the 448-token limit), which turned one
    utterance into 100 insertions and half of a 64-clip test set's errors. Greedy decoding is a prefix
    of itself, so the cut gives each clip what decoding it alone with its own limit gives.
    """

    MAX_TOKENS_PER_SECOND = 6

    def __init__(self, folder: str | Path | None = None, threads: int = 2):
        from tokenizers import Tokenizer
        from transformers import WhisperFeatureExtractor

        from opuslm.tokenize.features import EMBEDDED_WHISPER, load_ctranslate2_whisper, whisper_folder, whisper_format
        from opuslm.tokenize.identity import folder_hash

        self.folder = whisper_folder(folder)
        if whisper_format(self.folder) != "ctranslate2":
            raise OpusLMError(f"{self.folder} is a transformers Whisper: pass it as a HF judge folder "
                              "(`--judge DIR` loads it through transformers' pipeline)")
        self.model = load_ctranslate2_whisper(self.folder, threads)
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.extractor = WhisperFeatureExtractor(feature_size=self.model.n_mels)
        language = ["<|en|>", "<|transcribe|>"] if self.model.is_multilingual else []
        self.prompt = ["<|startoftranscript|>", *language, "<|notimestamps|>"]
        name = EMBEDDED_WHISPER if folder is None or str(folder) == EMBEDDED_WHISPER else str(self.folder)
        self.info = {"kind": "whisper", "path": name, "hash": folder_hash(self.folder), "decoding": "greedy"}

    def transcribe(self, wavs: list[np.ndarray], batch_size: int = 8) -> list[str]:
        """Waveforms at 16 kHz -> transcripts as Whisper writes them (normalise before scoring)."""
        import ctranslate2

        order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))  # similar lengths share a token limit
        out = {}
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            batch = [np.asarray(wavs[i], np.float32) for i in chosen]
            limits = [self.token_limit(len(w)) for w in batch]
            mel = self.extractor(batch, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_features"]
            # CTranslate2 (4.8) generates at most max_length // 2 tokens for Whisper, prompt or not (12 -> 6,
            # 448 -> 224, measured), so a length of prompt + cap silently cut transcripts at half the cap,
            # at a point that moved with the batch's longest clip
            results = self.model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel, np.float32)),
                                          [self.prompt] * len(batch), beam_size=1,
                                          max_length=min(2 * (max(limits) + 1), WHISPER_MAX_LENGTH))
            for i, limit, result in zip(chosen, limits, results):
                out[i] = self.tokenizer.decode(result.sequences_ids[0][:limit], skip_special_tokens=True).strip()
        return [out[i] for i in range(len(wavs))]

    def token_limit(self, samples: int) -> int:
        return 4 + math.ceil(self.MAX_TOKENS_PER_SECOND * samples / SAMPLE_RATE)


def load_judge(folder: str | Path | None):
    """None or "embedded": the embedded Whisper tiny.en; else a folder of any judge kind above."""
    from opuslm.tokenize.features import EMBEDDED_WHISPER

    if folder is None or str(folder) == EMBEDDED_WHISPER:
        return WhisperJudge()
    folder = Path(folder)
    if (folder / "judge.json").is_file():
        return CTCJudge.load(folder)
    if (folder / "model.bin").is_file():
        return WhisperJudge(folder)
    if (folder / "config.json").is_file():
        return HFJudge(folder)
    raise OpusLMError(f"{folder} is neither a judge from `opuslm judge train`, a CTranslate2 Whisper folder, "
                      "nor a local HF ASR model folder")


def judge_data(corpus: Path, split: str) -> list[tuple[np.ndarray, str]]:
    """(16 kHz audio, transcript) of every utterance of a corpus split: what `train_judge` learns from."""
    from opuslm.data.manifest import read_manifest

    return [(u.load_audio(corpus, target_rate=16000)[0], u.text) for u in read_manifest(corpus, split=split)]


def train_judge(train: list[tuple[np.ndarray, str]], dev: list[tuple[np.ndarray, str]], out: str | Path,
                steps: int = 1500, batch_size: int = 16, lr: float = 2e-3, seed: int = 0, progress: bool = True) -> dict:
    """Train the CTC judge on (16 kHz waveform, transcript) pairs; save it with its dev WER."""
    from opuslm.progress import progress_bar

    from opuslm.eval.metrics import corpus_wer

    if not train:
        raise OpusLMError("the judge needs training utterances")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    config = {"hidden": 256, "layers": 6, "n_mels": 80, "kernel": 11}
    model = CTCJudgeModel(**config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    ctc = nn.CTCLoss(zero_infinity=True)
    bar = progress_bar(range(steps), desc="judge", unit="step", disable=not progress)
    for step in bar:
        chosen = rng.sample(train, min(batch_size, len(train)))
        wav, lengths = _batch([w for w, _ in chosen])
        wav = wav * torch.empty(len(chosen), 1).uniform_(0.5, 1.5)  # level augmentation
        log_probs, frames = model(wav, lengths)
        targets = [torch.tensor(encode_text(t)) for _, t in chosen]
        loss = ctc(log_probs.transpose(0, 1), torch.cat(targets), frames, torch.tensor([len(t) for t in targets]))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 20 == 0:
            bar.set_postfix(ctc=f"{loss.item():.3f}", refresh=False)  # tqdm draws it with the count
    lexicon = sorted({word for _, text in train for word in text.lower().split()})
    judge = CTCJudge(model, {"lexicon": lexicon})
    dev_wer = corpus_wer([t for _, t in dev], judge.transcribe([w for w, _ in dev])) if dev else None
    info = {"kind": "ctc", "config": config, "steps": steps, "train_utterances": len(train), "dev_wer": dev_wer,
            "lexicon": lexicon}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "judge.pt")
    write_json(out / "judge.json", info, indent=1)
    return info
