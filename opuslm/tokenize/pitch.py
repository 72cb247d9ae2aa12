"""Pitch ids: a codec plus one codebook that says how high the voice is, frame by frame.

A small codec trained for minutes keeps the spectral envelope (which word, which voice) and loses
the fundamental frequency: the demo's codec resynthesises every voice at one pitch (the median F0 of
its output does not follow the input's; correlation -0.1 over 40 test clips). Semantic units drop
pitch by design. So age (a pitch band) and emotion (an intonation range) were in no stream the model
reads, and stayed near chance at every training budget. Expressive speech LMs carry pitch as tokens
of its own (SpiritLM Expressive's pitch tokens); this is that, as one more codebook:

    codes of `PitchCodebook`   row 0: pitch id per frame (0 = unvoiced or silent, 1..bins-1 = log-F0
                                      from `fmin` to `fmax`, evenly spaced in semitones)
                               rows 1..Q: the wrapped codec's own codebooks, unchanged

Row 0 comes first so that, under the delay pattern, pitch is generated right after the semantic unit
and before the acoustic detail. Decoding drops it: the codec makes the waveform. Any codec can be
wrapped (`opuslm tokenizers add-pitch`), the small one or an HF EnCodec/DAC/Mimi folder.

The tracker is a normalised autocorrelation per frame, written here rather than taken from librosa
(`yin`/`pyin`): that would add librosa and numba to the install for about thirty lines, and the ids
must be a pure function of the clip (float64, no state), so that batched and single encodes agree.

A folder holds `pitch.json`: the wrapped codec's path (relative to the folder, or absolute) and its
content hash, so the folder's own hash, which names the acoustic tokenizer in shards and model folders,
changes with the codec, and a different codec at that path is refused naming both hashes.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from opuslm.audio import resample
from opuslm.errors import OpusLMError
from opuslm.tokenize.acoustic import AcousticTokenizer, load_acoustic_tokenizer

PITCH_FILE = "pitch.json"
VOICED_PEAK = 0.5  # normalised autocorrelation a periodic frame reaches
QUIET = 0.1  # a frame below this share of the clip's loudest frame's RMS counts as silence


def pitch_track(wav: np.ndarray, sample_rate: int, frame_rate: float, frames: int,
                fmin: float = 60.0, fmax: float = 500.0) -> np.ndarray:
    """F0 in Hz of each of `frames` frames at `frame_rate` (0 where unvoiced or silent). Frame t is a
    window centred on the middle of its hop, one hop long or two periods of `fmin` if that is longer."""
    hop = sample_rate / frame_rate
    width = 2 * int(math.ceil(max(hop, 2 * sample_rate / fmin) / 2))
    shortest, longest = int(sample_rate // fmax), int(math.ceil(sample_rate / fmin))
    if longest >= width:
        raise OpusLMError(f"pitch: a window of {width} samples cannot hold a {fmin:g} Hz period")
    padded = np.concatenate([np.zeros(width), np.asarray(wav, np.float64), np.zeros(width + int(hop) + 1)])
    starts = width + np.round((np.arange(frames) + 0.5) * hop).astype(np.int64) - width // 2
    windows = padded[starts[:, None] + np.arange(width)]
    windows = windows - windows.mean(1, keepdims=True)
    spectrum = np.fft.rfft(windows, n=2 * width)
    correlation = np.fft.irfft(spectrum.real ** 2 + spectrum.imag ** 2, n=2 * width)[:, : longest + 1]
    energy = correlation[:, 0]
    normalised = correlation / np.maximum(energy, 1e-12)[:, None]
    # the overlap shrinks with the lag: undo that bias so a period and its double compare fairly
    normalised *= width / (width - np.arange(longest + 1))
    lags = normalised[:, shortest:longest + 1]
    best = lags.max(1)
    # the peak of the first run of lags close to the best one: a period's multiples correlate almost
    # as well as the period itself, and the run's first lag may lie on the peak's rising slope
    close = lags >= 0.9 * best[:, None]
    index = np.arange(lags.shape[1])
    first = np.argmax(close, axis=1)[:, None]
    after = index >= first
    run_end = np.where((after & ~close).any(1), np.argmax(after & ~close, axis=1), lags.shape[1])[:, None]
    period = shortest + np.argmax(np.where(after & (index < run_end), lags, -np.inf), axis=1)
    rms = np.sqrt(energy / width)
    voiced = (best >= VOICED_PEAK) & (rms >= QUIET * max(rms.max(initial=0.0), 1e-12))
    return np.where(voiced, sample_rate / period, 0.0)


def pitch_ids(f0: np.ndarray, bins: int, fmin: float, fmax: float) -> np.ndarray:
    """Hz -> 0 (unvoiced) or 1..bins-1, evenly spaced in log-frequency between `fmin` and `fmax`."""
    voiced = f0 > 0
    position = np.log2(np.where(voiced, f0, fmin) / fmin) / math.log2(fmax / fmin)
    return np.where(voiced, 1 + np.clip(np.round(position * (bins - 2)), 0, bins - 2), 0).astype(np.int64)


class PitchCodebook(AcousticTokenizer):
    """A codec with a pitch codebook in front (see the module docstring)."""

    def __init__(self, folder: str | Path, **codec_options):
        from opuslm.tokenize.identity import tokenizer_hash

        folder = Path(folder)
        spec = json.loads((folder / PITCH_FILE).read_text())
        codec_path = Path(spec["codec"])
        codec_path = codec_path if codec_path.is_absolute() else folder / codec_path
        if not codec_path.exists():
            raise OpusLMError(f"{folder}: its codec is not at {codec_path}; put it back or write the folder again "
                              "with `opuslm tokenizers add-pitch`")
        found = tokenizer_hash("acoustic", codec_path)
        if found != spec["codec_hash"]:
            raise OpusLMError(f"{folder}: the codec at {codec_path} (hash {found}) is not the one it was made for "
                              f"(hash {spec['codec_hash']}); restore that codec or run `opuslm tokenizers add-pitch` again")
        self.codec = load_acoustic_tokenizer(codec_path, **codec_options)
        self.bins, self.fmin, self.fmax = int(spec["bins"]), float(spec["fmin"]), float(spec["fmax"])
        self.sample_rate, self.frame_rate = self.codec.sample_rate, self.codec.frame_rate
        self.num_codebooks, self.codebook_size = self.codec.num_codebooks + 1, self.codec.codebook_size

    def num_frames(self, num_samples: int) -> int:
        return self.codec.num_frames(num_samples)

    def encode_batch(self, wavs, sample_rate):
        codes = self.codec.encode_batch(wavs, sample_rate)
        out = []
        for wav, rows in zip(wavs, codes):
            wav = resample(np.asarray(wav, np.float32), sample_rate, self.sample_rate)
            f0 = pitch_track(wav, self.sample_rate, self.frame_rate, rows.shape[1], self.fmin, self.fmax)
            out.append(np.concatenate([pitch_ids(f0, self.bins, self.fmin, self.fmax)[None], rows]))
        return out

    def decode(self, codes):
        return self.codec.decode(self._check_codes(codes)[1:].numpy())

    def describe(self) -> dict:
        return {**super().describe(), "pitch": {"bins": self.bins, "fmin": self.fmin, "fmax": self.fmax},
                "codec": self.codec.describe()}


def add_pitch(codec: str | Path, out: str | Path, bins: int = 64, fmin: float = 60.0, fmax: float = 500.0) -> Path:
    """Write a `PitchCodebook` folder at `out` around the codec at `codec` (recorded relative to `out`
    when the codec lies beside or inside it, so the pair moves together; otherwise absolute)."""
    from opuslm.tokenize.identity import tokenizer_hash

    codec, out = Path(codec), Path(out)
    inner = load_acoustic_tokenizer(codec)
    if not 3 <= bins <= inner.codebook_size:
        raise OpusLMError(f"--bins must be between 3 and the codec's codebook size {inner.codebook_size}, got {bins}")
    if not 0 < fmin < fmax < inner.sample_rate / 2:
        raise OpusLMError(f"need 0 < fmin < fmax < {inner.sample_rate / 2:g} Hz, got {fmin:g} and {fmax:g}")
    out.mkdir(parents=True, exist_ok=True)
    together = codec.resolve().is_relative_to(out.resolve().parent)
    recorded = Path(os.path.relpath(codec.resolve(), out.resolve())) if together else codec.resolve()
    spec = {"codec": str(recorded), "codec_hash": tokenizer_hash("acoustic", codec), "bins": bins, "fmin": fmin, "fmax": fmax}
    (out / PITCH_FILE).write_text(json.dumps(spec, indent=1) + "\n")
    return out
