"""Reading, checking and resampling audio (soundfile + soxr). Every corpus and tokenizer reads here."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from opuslm.errors import OpusLMError


# what soundfile reads that a user is likely to pass
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")


class AudioError(OpusLMError):
    """Audio that cannot be used; the message is the reason a rejects file records."""


def check_samples(samples: np.ndarray, source: str) -> None:
    if samples.size == 0:
        raise AudioError(f"{source}: empty audio (0 samples)")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{source}: audio contains NaN or infinite samples")
    if not np.any(samples):
        raise AudioError(f"{source}: audio is all zeros")


# libsndfile's header log: "data : 32000 (should be 15978)" when a WAV's (or an AIFF's SSND) sample
# chunk declares more bytes than the file holds; it then reads what is there without an error.
_SHORT_CHUNK = re.compile(r"^(data|SSND)\s*:\s*(\d+) \(should be (\d+)\)", re.MULTILINE)
_STREAMED = 0xFFFFFFFF  # the size a writer to a pipe leaves: length unknown, not truncated


CANCELLED_DB = -40.0


def check_complete(info, source: str) -> None:
    """Refuse a file cut short (an interrupted copy or download), which would otherwise be read at
    part of its length without a word."""
    for chunk, declared, present in _SHORT_CHUNK.findall(info.extra_info or ""):
        if int(declared) != _STREAMED and int(declared) > int(present):
            raise AudioError(f"{source}: truncated audio: its {chunk} chunk declares {int(declared)} bytes but the "
                             f"file holds {int(present)}; copy or export the file again")


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return samples
    return soxr.resample(samples, from_rate, to_rate, quality="HQ").astype(np.float32)


def load_audio(
    path: str | Path,
    offset: float = 0.0,
    duration: float | None = None,
    target_rate: int | None = None,
) -> tuple[np.ndarray, int]:
    """Mono float32 samples of `path` (from `offset` seconds, for `duration` seconds), checked.

    Multi-channel audio is averaged to mono. With `target_rate`, the audio is resampled to it.
    """
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path} is a folder, not an audio file; give the WAV (or FLAC, ...) files in it")
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
        check_complete(info, str(path))
        start = int(round(offset * info.samplerate))
        frames = -1 if duration is None else int(round(duration * info.samplerate))
        samples, rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioError(f"{path}: unreadable audio ({error})") from error
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if samples.shape[1] > 1 and _cancels(samples, mono):
        raise AudioError(f"{path}: its {samples.shape[1]} channels cancel out (one is the other inverted), so their "
                         "mono mix is silence; export one channel (e.g. `sox in.wav out.wav remix 1`)")
    samples = mono
    check_samples(samples, str(path))
    if target_rate is not None:
        samples, rate = resample(samples, rate, target_rate), target_rate
    return samples, rate


def _cancels(channels: np.ndarray, mono: np.ndarray) -> bool:
    """Channels whose mix is silence (below CANCELLED_DB of the channels themselves: one channel is the
    other inverted, up to the odd 16-bit rounding step)."""
    if not np.all(np.isfinite(channels)):
        return False
    level = float(np.sqrt(np.mean(channels.astype(np.float64) ** 2)))
    mixed = float(np.sqrt(np.mean(mono.astype(np.float64) ** 2)))
    return level > 0 and mixed < level * 10 ** (CANCELLED_DB / 20)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV; the same samples always give the same bytes."""
    sf.write(str(path), samples, sample_rate, subtype="PCM_16", format="WAV")
