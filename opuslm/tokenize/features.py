"""Frame features for the semantic tokenizer: speaker-normalised cepstra (the embedded default),
log-mel, or an HF SSL encoder layer.

All return `[frames, dim]` float32 for 16 kHz mono audio at a known frame rate. Spectral frames are
centred on multiples of the hop, so `frames = ceil(samples / hop)`: the same count as the small codec
with the same hop, which keeps semantic and acoustic frames aligned 1:1.

Why cepstra by default: on the 2 h demo corpus, matching a word's k-means ids to other speakers'
(nearest neighbour by edit distance, 150 frequent words, unseen test speakers) finds the right word
47% of the time with them and 33% with K=256 log-mel frames.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from opuslm.errors import OpusLMError


class LogMel:
    """Differentiable log10 mel spectrogram `[..., samples] -> [..., 1 + samples // hop, n_mels]`."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int):
        from transformers.audio_utils import mel_filter_bank

        self.n_fft, self.hop = n_fft, hop
        self.filters = torch.from_numpy(mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=20.0,
            max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm="slaney", mel_scale="slaney",
        )).float()
        self.window = torch.hann_window(n_fft)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x.reshape(-1, x.shape[-1]), self.n_fft, self.hop, window=self.window.to(x),
                          center=True, pad_mode="constant", return_complex=True)
        mel = torch.clamp(spec.abs().pow(2).transpose(-1, -2) @ self.filters.to(x), min=1e-5)
        return torch.log10(mel).reshape(*x.shape[:-1], *mel.shape[-2:])


class LogMelFeatures:
    kind = "logmel"

    def __init__(self, sample_rate: int = 16000, hop: int = 640, n_mels: int = 80, n_fft: int = 1280):
        self.sample_rate, self.hop, self.n_mels, self.n_fft = sample_rate, hop, n_mels, n_fft
        self.frame_rate = sample_rate / hop
        self._log_mel = LogMel(sample_rate, n_fft, hop, n_mels)

    def config(self) -> dict:
        return {"kind": self.kind, "sample_rate": self.sample_rate, "hop": self.hop, "n_mels": self.n_mels, "n_fft": self.n_fft}

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.hop)

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        logmel = self._log_mel(torch.from_numpy(np.asarray(wav, dtype=np.float32)))
        return logmel[: self.num_frames(len(wav))].contiguous().numpy()


class CepstralFeatures:
    """Speaker-normalised cepstra (MFCC: HuBERT's first-iteration k-means target) of 10 ms frames,
    `hop / sub_hop` of them stacked per frame so the codec's frame rate keeps the detail within a frame.

    Mean and variance are normalised per utterance, which removes most of the voice and channel that
    log-mel frames keep; the acoustic stream still carries the voice. Frame i stacks the sub-frames
    centred on samples `i * hop - hop / 2 ... i * hop + hop / 2` (edges repeated), so the frame count
    matches the codec's, like log-mel's."""

    kind = "cepstral"

    def __init__(self, sample_rate: int = 16000, hop: int = 640, sub_hop: int = 160, n_fft: int = 400,
                 n_mels: int = 80, n_ceps: int = 13):
        if hop % sub_hop:
            raise OpusLMError(f"cepstral features: hop {hop} is not a multiple of sub_hop {sub_hop}")
        self.sample_rate, self.hop, self.sub_hop, self.n_fft, self.n_mels, self.n_ceps = sample_rate, hop, sub_hop, n_fft, n_mels, n_ceps
        self.frame_rate = sample_rate / hop
        self.stack = hop // sub_hop
        self._log_mel = LogMel(sample_rate, n_fft, sub_hop, n_mels)
        mels, ceps = np.arange(n_mels), np.arange(n_ceps)
        self._dct = torch.from_numpy(np.cos(np.pi / n_mels * (mels[:, None] + 0.5) * ceps[None])).float()  # DCT-II

    def config(self) -> dict:
        return {"kind": self.kind, "sample_rate": self.sample_rate, "hop": self.hop, "sub_hop": self.sub_hop,
                "n_fft": self.n_fft, "n_mels": self.n_mels, "n_ceps": self.n_ceps}

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.hop)

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        ceps = self._log_mel(torch.from_numpy(np.asarray(wav, dtype=np.float32))) @ self._dct
        ceps = (ceps - ceps.mean(0)) / (ceps.std(0, unbiased=False) + 1e-5)
        centres = torch.arange(self.num_frames(len(wav)))[:, None] * self.stack
        window = (centres + torch.arange(self.stack) - self.stack // 2).clamp(0, len(ceps) - 1)
        return ceps[window].reshape(len(centres), -1).contiguous().numpy()


class SSLFeatures:
    """Hidden states of one layer of a local HF speech encoder (HuBERT, WavLM, wav2vec2, ...)."""

    kind = "ssl"

    def __init__(self, path: str | Path, layer: int, device: str = "cpu"):
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        path = Path(path)
        if not (path / "config.json").is_file():
            raise OpusLMError(f"SSL model folder not found or has no config.json: {path}")
        self.path, self.layer, self.device = path, layer, device
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        if not 0 <= layer <= config.num_hidden_layers:
            raise OpusLMError(f"{path} has layers 0..{config.num_hidden_layers}; got layer {layer}")
        try:
            self.extractor = AutoFeatureExtractor.from_pretrained(str(path), local_files_only=True)
        except OSError:
            self.extractor = None  # raw waveform in, as HuBERT/WavLM/wav2vec2 take it
        self.sample_rate = 16000 if self.extractor is None else self.extractor.sampling_rate
        self.hop = int(np.prod(config.conv_stride))
        self.frame_rate = self.sample_rate / self.hop

    def config(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "layer": self.layer, "sample_rate": self.sample_rate, "hop": self.hop}

    @torch.no_grad()
    def __call__(self, wav: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(wav, dtype=np.float32))[None].to(self.device)
        if self.extractor is not None and getattr(self.extractor, "do_normalize", False):
            x = (x - x.mean()) / torch.sqrt(x.var() + 1e-7)
        hidden = self.model(x, output_hidden_states=True).hidden_states[self.layer]
        return hidden[0].float().cpu().numpy()


SPECTRAL_FEATURES = {"cepstral": CepstralFeatures, "logmel": LogMelFeatures}


def build_features(config: dict):
    config = dict(config)
    kind = config.pop("kind")
    if kind in SPECTRAL_FEATURES:
        return SPECTRAL_FEATURES[kind](**config)
    if kind == "ssl":
        config.pop("hop", None)
        config.pop("sample_rate", None)
        return SSLFeatures(**config)
    raise OpusLMError(f"unknown semantic feature kind {kind!r}; use 'logmel', 'cepstral' or 'ssl'")
