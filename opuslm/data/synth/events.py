"""Synthetic non-speech vocal events inserted into utterances (the VED proxy classes).

Each class has a distinct acoustic signature: laugh = voiced harmonic 'ha' bursts; cough = sharp
noise bursts with fast decay; beep = a steady pure tone; click = trains of very short impulses.
"""

from __future__ import annotations

import numpy as np

EVENT_CLASSES = ("laugh", "cough", "beep", "click")
NO_EVENT = "none"
POSITIONS = ("before", "between", "after")


def _fade(signal: np.ndarray, sample_rate: int, seconds: float = 0.005) -> np.ndarray:
    n = min(len(signal) // 2, int(seconds * sample_rate))
    ramp = np.linspace(0.0, 1.0, n, endpoint=False)
    signal[:n] *= ramp
    signal[len(signal) - n:] *= ramp[::-1]
    return signal


def _laugh(rng: np.random.Generator, sr: int) -> np.ndarray:
    f0 = rng.uniform(180, 320)
    parts = []
    for _ in range(rng.integers(3, 6)):
        n = int(rng.uniform(0.08, 0.13) * sr)
        t = np.arange(n) / sr
        glide = f0 * (1 - 0.15 * t / t[-1])  # each 'ha' falls in pitch
        phase = 2 * np.pi * np.cumsum(glide) / sr
        voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
        breath = 0.3 * rng.standard_normal(n)
        parts.append((voiced + breath) * np.hanning(n))
        parts.append(np.zeros(int(rng.uniform(0.05, 0.09) * sr)))
    return np.concatenate(parts)


def _cough(rng: np.random.Generator, sr: int) -> np.ndarray:
    parts = []
    for _ in range(rng.integers(1, 3)):
        n = int(rng.uniform(0.15, 0.25) * sr)
        noise = rng.standard_normal(n)
        smooth = np.convolve(noise, np.ones(4) / 4, mode="same")  # darker than white noise
        envelope = np.exp(-np.arange(n) / (0.045 * sr))
        envelope[: int(0.004 * sr)] = np.linspace(0, 1, int(0.004 * sr))
        parts.append(smooth * envelope * 2.0)
        parts.append(np.zeros(int(rng.uniform(0.08, 0.15) * sr)))
    return np.concatenate(parts)


def _beep(rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(rng.uniform(0.25, 0.4) * sr)
    return _fade(np.sin(2 * np.pi * rng.uniform(800, 1200) * np.arange(n) / sr), sr)


def _click(rng: np.random.Generator, sr: int) -> np.ndarray:
    gap = int(rng.uniform(0.04, 0.08) * sr)
    click_len = int(0.003 * sr)
    out = np.zeros(gap * int(rng.integers(4, 9)))
    shape = np.exp(-np.arange(click_len) / (0.0005 * sr)) * np.sign(rng.standard_normal(click_len))
    for start in range(0, len(out) - click_len, gap):
        out[start:start + click_len] += shape
    return out


_GENERATORS = {"laugh": _laugh, "cough": _cough, "beep": _beep, "click": _click}


def make_event(label: str, rng: np.random.Generator, sample_rate: int, peak: float) -> np.ndarray:
    """A float32 signal of class `label` scaled to `peak` (the caller matches it to the speech level)."""
    signal = _GENERATORS[label](rng, sample_rate)
    return (signal * (peak / max(np.abs(signal).max(), 1e-9))).astype(np.float32)
