"""Reading, checking and resampling audio (soundfile + soxr). Every corpus and tokenizer reads here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from opuslm.errors import OpusLMError


class AudioError(OpusLMError):
    """Audio that cannot be used; the message is the reason a rejects file records."""


def check_samples(samples: np.ndarray, source: str) -> None:
    if samples.size == 0:
        raise AudioError(f"{source}: empty audio (0 samples)")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{source}: audio contains NaN or infinite samples")
    if not np.any(samples):
        raise AudioError(f"{source}: audio is all zeros")


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
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
        start = int(round(offset * info.samplerate))
        frames = -1 if duration is None else int(round(duration * info.samplerate))
        samples, rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioError(f"{path}: unreadable audio ({error})") from error
    samples = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    check_samples(samples, str(path))
    if target_rate is not None:
        samples, rate = resample(samples, rate, target_rate), target_rate
    return samples, rate


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV; the same samples always give the same bytes."""
    sf.write(str(path), samples, sample_rate, subtype="PCM_16", format="WAV")
