"""The mel-pitch codec: the demo's acoustic tokenizer, fit in a minute with no neural training.

Each 40 ms frame (25 Hz, 1:1 with the semantic stream) gets `num_codebooks` ids of `codebook_size`:

    codebook 0      its pitch: 0 = unvoiced, 1 .. K-1 = log-spaced F0 from f0_floor to f0_ceil
                    (WORLD's dio + stonemask through pyworld, on 10 ms sub-frames; the median of the
                    voiced ones, voiced when at least 2 of 4 are)
    codebooks 1 ..  residual k-means (scikit-learn) over the frame's four 10 ms log-mel sub-frames
                    stacked (80 mel bands each: 320 numbers)

Decoding is a harmonic-plus-noise synthesiser: each voiced 10 ms sub-frame is a sum of harmonics of
its frame's F0 whose amplitudes are read off the spectral envelope that the decoded mel implies (the
mel filter bank's pseudo-inverse), with a fixed random phase per harmonic (zero phases make a buzz:
judge WER 0.58 against 0.50 on 60 test clips in a probe); unvoiced sub-frames are white noise shaped
by the same envelope. Why this and not the small neural codec or Griffin-Lim, measured on the same
60 test clips with the Whisper tiny.en judge (`bench/acoustic_tokenizers.py`, 2026-12-02):

    | tokens, 8 x 256 at 25 Hz                  | judge WER | median-F0 corr | frame log-F0 | V/UV |
    | original audio                            | 0.31      | 1              | 1            | 0    |
    | small neural codec (400 steps)            | 1.11      | 0.51           | 0.03         | 0.60 |
    | mel RVQ x 8, Griffin-Lim 32 it            | 0.46      | 0.79           | 0.33         | 0.24 |
    | pitch + mel RVQ x 7, this synthesiser     | 0.57      | 0.87           | 0.50         | 0.12 |

Griffin-Lim is about as intelligible (its lead is within the +-0.1 of 60 clips) but loses pitch and
decodes whole utterances at 3x real time. The synthesiser carries the pitch the encoder heard and
decodes frame by frame at about 30x: the phase of every harmonic is a running sum of the F0 track,
an unvoiced stretch holds the last voiced F0, and the noise is a fixed seeded sequence, so decoding
a prefix of the codes gives a prefix of the audio up to the last sub-frame and the noise filter's
window. F0 is measured against pyworld's harvest (a different tracker): dio and harvest themselves
agree only to 0.63 frame log-F0 correlation on the original audio, which bounds that figure. No
library fits this decoder: pyworld's `synthesize` wants WORLD's own envelope and aperiodicity, and
librosa's mel inversion is Griffin-Lim.

With `decoder: hifigan` (`train-codec --vocoder DIR`) the mel codebooks quantise a pretrained HiFi-GAN's
own log-mel instead (`opuslm/tokenize/hifigan.py`: its analysis at the same sub-frame centres), and the
vocoder, copied into the codec folder, decodes it; the pitch codebook stays a token the LM reads, and
HiFi-GAN hears the pitch in the mel's harmonics. The judge's WER on resynthesis is 0.418 against this
synthesiser's 0.504 on the demo corpus's 50 dev clips (original 0.298), but 0.486 against 0.501 on its
132 test clips (original 0.340), not a difference those clips can tell; it keeps less pitch and
decodes at 3x real time instead of 30x, so the synthesiser stays the default (docs/results.md).

Encoding is per utterance (batched codes equal single ones by construction), in float64.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from opuslm.audio import resample
from opuslm.errors import OpusLMError
from opuslm.json_files import write_json

CODEC_TYPE = "mel_pitch"
CODEBOOK_FILE = "mel_codebooks.npy"
VOCODER_FOLDER = "vocoder"  # with decoder "hifigan": a copy of the vocoder, so the folder's hash covers it
DECODERS = ("harmonic", "hifigan")


@dataclass(frozen=True)
class MelPitchConfig:
    sample_rate: int = 16000
    hop: int = 640  # samples per frame: 25 Hz
    sub_hop: int = 160  # samples per sub-frame: 10 ms
    n_fft: int = 1024
    window: int = 640
    n_mels: int = 80
    num_codebooks: int = 8  # the pitch codebook and num_codebooks - 1 mel codebooks
    codebook_size: int = 256
    f0_floor: float = 60.0
    f0_ceil: float = 500.0
    seed: int = 0  # k-means and the synthesiser's phases and noise
    output_gain: float = 1.0  # the synthesiser's level, calibrated on training audio by the fit
    decoder: str = "harmonic"  # or "hifigan": the mel is the vocoder's own, which `vocoder/` inverts

    def __post_init__(self):
        if self.decoder not in DECODERS:
            raise OpusLMError(f"mel-pitch codec: decoder {self.decoder!r}; known: {', '.join(DECODERS)}")
        if self.hop % self.sub_hop:
            raise OpusLMError(f"mel-pitch codec: hop {self.hop} must be a multiple of sub_hop {self.sub_hop}")
        if self.num_codebooks < 2 or self.codebook_size < 3:
            raise OpusLMError("mel-pitch codec: needs at least 2 codebooks (pitch + mel) of at least 3 ids")
        if not 0 < self.f0_floor < self.f0_ceil < self.sample_rate / 2:
            raise OpusLMError(f"mel-pitch codec: f0 range {self.f0_floor}..{self.f0_ceil} Hz is not a range")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def sub_frames(self) -> int:
        return self.hop // self.sub_hop

    def to_dict(self) -> dict:
        return asdict(self)


def import_pyworld():
    """pyworld, without the deprecation warning its `import pkg_resources` prints on every import."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import pyworld
    return pyworld


def dio_f0(wav: np.ndarray, sample_rate: int, f0_floor: float, f0_ceil: float, frame_period_ms: float) -> np.ndarray:
    """F0 in Hz of each frame of a float64 waveform (0: unvoiced): WORLD's dio refined by stonemask."""
    pyworld = import_pyworld()
    coarse, times = pyworld.dio(wav, sample_rate, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period_ms)
    return pyworld.stonemask(wav, coarse, times, sample_rate)


class MelPitchCodec:
    """Encode and decode with fitted mel codebooks `[num_codebooks - 1, codebook_size, sub_frames * n_mels]`."""

    def __init__(self, config: MelPitchConfig, mel_codebooks: np.ndarray, vocoder: str | Path | None = None):
        from transformers.audio_utils import mel_filter_bank

        expected = (config.num_codebooks - 1, config.codebook_size, config.sub_frames * config.n_mels)
        if mel_codebooks.shape != expected:
            raise OpusLMError(f"mel-pitch codec: codebooks of shape {mel_codebooks.shape}, config wants {expected}")
        self.config, self.mel_codebooks = config, np.asarray(mel_codebooks, np.float64)
        self.vocoder = None
        if config.decoder == "hifigan":
            from opuslm.tokenize.hifigan import HifiGanVocoder

            if vocoder is None:
                raise OpusLMError("mel-pitch codec: decoder hifigan needs a vocoder folder (`opuslm assets import "
                                  "hifigan-universal --out DIR`, then --vocoder DIR)")
            self.vocoder = HifiGanVocoder(vocoder, config.sample_rate)
            if self.vocoder.mel.n_mels != config.n_mels:
                raise OpusLMError(f"mel-pitch codec: {config.n_mels} mel bands, the vocoder {vocoder} reads "
                                  f"{self.vocoder.mel.n_mels}")
            self.vocoder_filters = self.vocoder.mel.filters()
        self.filters = mel_filter_bank(num_frequency_bins=config.n_fft // 2 + 1, num_mel_filters=config.n_mels,
                                       min_frequency=0.0, max_frequency=config.sample_rate / 2,
                                       sampling_rate=config.sample_rate, norm="slaney", mel_scale="slaney")  # [bins, mels]
        self.inverse_filters = np.linalg.pinv(self.filters)  # [mels, bins]
        self.window = torch.hann_window(config.window, dtype=torch.float64)
        self.window_power = float((self.window**2).sum())
        self.f0_levels = np.exp(np.linspace(math.log(config.f0_floor), math.log(config.f0_ceil), config.codebook_size - 1))

    # ---- analysis ----
    def _padded(self, wav: np.ndarray) -> np.ndarray:
        frames = max(1, math.ceil(len(wav) / self.config.hop))
        return np.pad(np.asarray(wav, np.float64), (0, frames * self.config.hop - len(wav)))

    def log_mel(self, wav: np.ndarray) -> np.ndarray:
        """Natural-log mel of 10 ms sub-frames `[len(wav) / sub_hop, n_mels]` (`wav` padded to frames): the
        power through the codec's own filter bank, or with decoder hifigan the vocoder's own analysis
        at the same sub-frame centres."""
        c = self.config
        if self.vocoder is not None:
            mel = self.vocoder.mel
            centres = np.round(np.arange(len(wav) // c.sub_hop) * c.sub_hop * mel.sample_rate / c.sample_rate)
            return mel.log_mel(resample(wav, c.sample_rate, mel.sample_rate), centres, self.vocoder_filters)
        spec = torch.stft(torch.from_numpy(wav), c.n_fft, c.sub_hop, c.window, self.window, center=True,
                          pad_mode="constant", return_complex=True)
        power = spec.abs().pow(2).T.numpy()[: len(wav) // c.sub_hop]
        return np.log(np.maximum(power @ self.filters, 1e-8))

    def f0(self, wav: np.ndarray) -> np.ndarray:
        """F0 in Hz of each 10 ms sub-frame (0: unvoiced), dio refined by stonemask."""
        c = self.config
        period = 1000.0 * c.sub_hop / c.sample_rate
        return dio_f0(wav, c.sample_rate, c.f0_floor, c.f0_ceil, period)[: len(wav) // c.sub_hop]

    def stacked_mel(self, wav: np.ndarray) -> np.ndarray:
        """`[frames, sub_frames * n_mels]`: what the mel codebooks quantise."""
        wav = self._padded(wav)
        return self.log_mel(wav).reshape(-1, self.config.sub_frames * self.config.n_mels)

    def pitch_codes(self, f0: np.ndarray) -> np.ndarray:
        groups = f0.reshape(-1, self.config.sub_frames)
        voiced = (groups > 0).sum(1) >= 2
        median = np.array([np.median(g[g > 0]) if v else self.config.f0_floor for g, v in zip(groups, voiced)])
        level = np.abs(np.log(median)[:, None] - np.log(self.f0_levels)[None]).argmin(1)
        return np.where(voiced, level + 1, 0)

    def encode(self, wav: np.ndarray) -> np.ndarray:
        """int64 codes `[num_codebooks, ceil(len(wav) / hop)]` of a mono waveform at `sample_rate`."""
        codes = [self.pitch_codes(self.f0(self._padded(wav)))]
        residual = self.stacked_mel(wav)
        for codebook in self.mel_codebooks:
            index = ((codebook**2).sum(-1)[None] - 2 * residual @ codebook.T).argmin(-1)
            residual = residual - codebook[index]
            codes.append(index)
        return np.stack(codes).astype(np.int64)

    # ---- synthesis ----
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """float32 waveform `[frames * hop]` at `sample_rate` for codes `[num_codebooks, frames]`. HiFi-GAN
        hears the pitch in the mel's harmonics and reads no pitch code."""
        if self.vocoder is not None:
            sub_frames = self.stacked_mel_of(codes[1:]).reshape(-1, self.config.n_mels)
            return self.vocoder.vocode(sub_frames, self.config.sample_rate / self.config.sub_hop)
        return self.synthesise(self.stacked_mel_of(codes[1:]), codes[0])

    def stacked_mel_of(self, mel_codes: np.ndarray) -> np.ndarray:
        """The stacked log-mel `[frames, sub_frames * n_mels]` that mel codes `[num_codebooks - 1, frames]` stand for."""
        if not mel_codes.shape[1]:
            return np.zeros((0, self.config.sub_frames * self.config.n_mels))
        return np.asarray(sum(book[index] for book, index in zip(self.mel_codebooks, mel_codes)), np.float64)

    def synthesise(self, stacked_mel: np.ndarray, pitch_codes: np.ndarray) -> np.ndarray:
        """float32 waveform `[frames * hop]` for a stacked log-mel `[frames, sub_frames * n_mels]` and the
        frames' pitch codes `[frames]` (codebook 0's ids)."""
        c = self.config
        frames = len(pitch_codes)
        n = frames * c.hop
        log_mel = np.asarray(stacked_mel, np.float64).reshape(frames * c.sub_frames, c.n_mels)
        power = np.maximum(np.exp(log_mel) @ self.inverse_filters, 0.0) + 1e-10  # [sub, bins]: the envelope
        f0 = np.repeat(np.where(pitch_codes > 0, self.f0_levels[np.maximum(pitch_codes - 1, 0)], 0.0), c.sub_frames)
        rng = np.random.default_rng(c.seed)
        offsets = rng.uniform(0, 2 * np.pi, int(c.sample_rate / 2 / c.f0_floor) + 1)
        noise = rng.standard_normal(n)  # drawn after the offsets: a fixed sequence, a prefix for a prefix
        wav = self._harmonics(power, f0, offsets, n) + self._noise(power, f0 <= 0, noise)
        return (c.output_gain * wav).astype(np.float32)

    def _harmonics(self, power: np.ndarray, f0: np.ndarray, offsets: np.ndarray, n: int) -> np.ndarray:
        c = self.config
        centres, samples = np.arange(len(f0)) * c.sub_hop, np.arange(n)
        # an unvoiced sub-frame holds the last voiced F0 (f0_floor before the first), so the phase is causal
        last_voiced = np.maximum.accumulate(np.where(f0 > 0, np.arange(len(f0)), -1)) if len(f0) else np.zeros(0, int)
        held = np.where(last_voiced >= 0, f0[np.maximum(last_voiced, 0)], c.f0_floor)
        phase = np.cumsum(2 * np.pi * np.interp(samples, centres, held) / c.sample_rate) if n else np.zeros(0)
        bin_width = c.sample_rate / c.n_fft
        log_power = np.log(power)
        rows = np.arange(len(f0))
        out = np.zeros(n)
        for k in range(1, len(offsets)):
            frequency = k * f0
            sounding = (f0 > 0) & (frequency < 0.49 * c.sample_rate)
            if not sounding.any():
                break
            position = np.clip(frequency / bin_width, 0, power.shape[1] - 1.001)
            low = position.astype(int)
            frac = position - low
            level = np.exp(log_power[rows, low] * (1 - frac) + log_power[rows, low + 1] * frac)
            # a sinusoid of amplitude A carries n_fft * A^2 * sum(w^2) / 4 over its bins; the envelope's
            # power per bin times the harmonics' spacing in bins is what one harmonic must carry
            amplitude = np.sqrt(4 * level * (f0 / bin_width) / (c.n_fft * self.window_power)) * sounding
            out += np.interp(samples, centres, amplitude) * np.cos(k * phase + offsets[k])
        return out

    def _noise(self, power: np.ndarray, unvoiced: np.ndarray, noise: np.ndarray) -> np.ndarray:
        c = self.config
        if not len(noise):
            return noise
        spec = torch.stft(torch.from_numpy(noise), c.n_fft, c.sub_hop, c.window, self.window, center=True,
                          pad_mode="constant", return_complex=True)[:, : len(power)]
        gain = np.sqrt(power / self.window_power) * unvoiced[:, None]  # white noise: E|X|^2 = sum(w^2)
        spec = spec * torch.from_numpy(gain.T)
        if spec.shape[1] < len(power) + 1:  # istft wants the frame past the end; it adds nothing there
            spec = torch.nn.functional.pad(spec, (0, len(power) + 1 - spec.shape[1]))
        return torch.istft(spec, c.n_fft, c.sub_hop, c.window, self.window, center=True, length=len(noise)).numpy()

    # ---- folders ----
    def save(self, folder: str | Path, training: dict) -> Path:
        import shutil

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / CODEBOOK_FILE, self.mel_codebooks)
        if self.vocoder is not None and self.vocoder.folder.resolve() != (folder / VOCODER_FOLDER).resolve():
            shutil.copytree(self.vocoder.folder, folder / VOCODER_FOLDER, dirs_exist_ok=True)
        meta = {"type": CODEC_TYPE, "config": self.config.to_dict(), "training": training}
        write_json(folder / "codec.json", meta, indent=2)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> MelPitchCodec:
        folder = Path(folder)
        meta = json.loads((folder / "codec.json").read_text())
        return cls(MelPitchConfig(**meta["config"]), np.load(folder / CODEBOOK_FILE), folder / VOCODER_FOLDER)


def fit_mel_pitch_codec(train_wavs: list[np.ndarray], out: str | Path, config: MelPitchConfig | None = None,
                        max_frames: int = 30000, progress: bool = True, vocoder: str | Path | None = None) -> MelPitchCodec:
    """Fit the mel codebooks by residual k-means on frames of `train_wavs` (mono at config.sample_rate),
    `max_frames` of them drawn with the config's seed; save the codec to `out`. With a `vocoder` folder
    the decoder is HiFi-GAN (config.decoder "hifigan"), and the codec keeps a copy of the vocoder."""
    from sklearn.cluster import KMeans
    from opuslm.progress import progress_bar

    config = config or MelPitchConfig()
    if vocoder is not None:
        config = replace(config, decoder="hifigan")
    codec = MelPitchCodec(config, np.zeros((config.num_codebooks - 1, config.codebook_size,
                                            config.sub_frames * config.n_mels)), vocoder)
    frames = np.concatenate([codec.stacked_mel(w) for w in train_wavs if len(w)]) if train_wavs else np.zeros((0, 1))
    if len(frames) < config.codebook_size:
        raise OpusLMError(f"mel-pitch codec: {len(frames)} frames of training audio, fewer than the "
                          f"{config.codebook_size} codewords of a codebook; give more audio or a smaller --codebook-size")
    rng = np.random.default_rng(config.seed)
    residual = frames[np.sort(rng.choice(len(frames), min(max_frames, len(frames)), replace=False))]
    books = []
    for q in progress_bar(range(config.num_codebooks - 1), desc="fitting mel codebooks", disable=not progress):
        kmeans = KMeans(config.codebook_size, n_init=1, max_iter=30, random_state=config.seed + q).fit(residual)
        books.append(kmeans.cluster_centers_.astype(np.float64))
        residual = residual - books[-1][kmeans.labels_]
    codec = MelPitchCodec(config, np.stack(books), vocoder)
    if config.decoder == "harmonic":
        # the envelope's peaks at resolved low harmonics make the synthesiser louder than its input (about
        # 2x); one gain, the median level ratio over training clips, puts it back
        calibration = [w for w in train_wavs if len(w)][:: max(1, len(train_wavs) // 20)][:20]
        ratios = [np.sqrt(np.mean(np.square(w, dtype=np.float64)) / max(np.mean(np.square(codec.decode(codec.encode(w))[: len(w)],
                  dtype=np.float64)), 1e-20)) for w in calibration]
        config = replace(config, output_gain=round(float(np.median(ratios)), 4))
        codec = MelPitchCodec(config, codec.mel_codebooks)
    codec.save(out, {"frames": len(residual), "utterances": len(train_wavs), "kmeans": "scikit-learn KMeans, n_init 1, "
                     "30 iterations"})
    return codec
