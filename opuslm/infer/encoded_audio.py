"""Clips the model has already tokenized, kept so that asking it again about one costs nothing.

An evaluation asks the same model about the same clip many times: ASR, then each ASR + X task and its
tag-only twin, then SRWT and STTC. Tokenizing a clip (the semantic tokenizer's encoder, k-means, the
codec's F0 and codes, the heard features) cost three quarters of each of those passes, and its result
depends on the waveform alone: on the demo, 17.6 of a classification pass's 23 seconds.

The memo maps a digest of the waveform (at the codec's rate, as it is encoded) to its encoding. It holds
at most `max_bytes` of encodings and forgets the least recently used first. The arrays it hands out are
read-only: a caller that wrote into one would change what every later caller is given.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable

import numpy as np

from opuslm.audio import AudioError

# About 2,000 demo clips with their heard features (120 KB each), or 250 clips of 10 s with 1,024-wide
# SSL features
DEFAULT_MAX_BYTES = 256 * 2 ** 20


def waveform_digest(wav: np.ndarray) -> bytes:
    """The same samples (dtype, length and values) give the same digest."""
    wav = np.ascontiguousarray(wav)
    return hashlib.blake2b(wav.tobytes(), digest_size=16, person=str(wav.dtype).encode()[:16]).digest()


class EncodedAudioMemo:
    def __init__(self, encode: Callable[[np.ndarray], object], max_bytes: int = DEFAULT_MAX_BYTES):
        """`encode`: a waveform -> its encoding (a tuple of arrays) or an `AudioError`, which is not kept."""
        self.encode, self.max_bytes = encode, max_bytes
        self._kept: OrderedDict[bytes, tuple] = OrderedDict()
        self.held_bytes = 0
        self.hits = self.misses = 0

    def __call__(self, wav: np.ndarray):
        key = waveform_digest(wav)
        if key in self._kept:
            self.hits += 1
            self._kept.move_to_end(key)
            return self._kept[key]
        self.misses += 1
        encoded = self.encode(wav)
        if isinstance(encoded, AudioError):
            return encoded
        encoded = tuple(_read_only(part) for part in encoded)
        size = _nbytes(encoded)
        if size <= self.max_bytes:
            self._kept[key] = encoded
            self.held_bytes += size
            while self.held_bytes > self.max_bytes:
                _, forgotten = self._kept.popitem(last=False)
                self.held_bytes -= _nbytes(forgotten)
        return encoded

    def __len__(self) -> int:
        return len(self._kept)


def _read_only(part):
    if part is None:
        return None
    part = np.asarray(part)
    part.flags.writeable = False
    return part


def _nbytes(encoded: tuple) -> int:
    return sum(part.nbytes for part in encoded if part is not None)
