"""The memo of tokenized clips: one encode per distinct waveform, bounded, read-only, errors not kept."""

import numpy as np
import pytest

from opuslm.audio import AudioError
from opuslm.infer.encoded_audio import EncodedAudioMemo, waveform_digest


class CountingEncoder:
    """Stands in for `SpeechTokenizers.encode_audio` on one clip: ids, codes and features from the samples."""

    def __init__(self, feature_dim: int = 4):
        self.calls, self.feature_dim = 0, feature_dim

    def __call__(self, wav):
        self.calls += 1
        if not np.isfinite(wav).all():
            return AudioError("nan", "the audio holds NaN")
        frames = max(len(wav) // 10, 1)
        semantic = (np.abs(wav[: frames * 10]).reshape(frames, 10).sum(1) * 100).astype(np.int64)
        return semantic, np.stack([semantic, semantic + 1]), np.ones((frames, self.feature_dim), np.float32)


def clip(seed: int, samples: int = 200) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(samples).astype(np.float32)


def test_the_same_samples_are_encoded_once_and_given_back_equal():
    encoder = CountingEncoder()
    memo = EncodedAudioMemo(encoder)
    first = memo(clip(0))
    again = memo(clip(0).copy())  # another array with the same samples
    assert encoder.calls == 1 and (memo.hits, memo.misses) == (1, 1)
    for a, b, fresh in zip(first, again, encoder(clip(0))):
        np.testing.assert_array_equal(a, fresh)
        assert a is b
    memo(clip(1))
    assert encoder.calls == 3 and len(memo) == 2  # one more encode for the memo, one above for `fresh`


def test_the_digest_tells_apart_values_length_and_dtype():
    wav = clip(0)
    changed = wav.copy()
    changed[57] += 1e-6
    digests = {waveform_digest(w) for w in (wav, changed, wav[:-1], wav.astype(np.float64))}
    assert len(digests) == 4
    assert waveform_digest(wav) == waveform_digest(wav.copy())


def test_handed_out_arrays_are_read_only():
    memo = EncodedAudioMemo(CountingEncoder())
    semantic, codes, features = memo(clip(0))
    for part in (semantic, codes, features):
        with pytest.raises(ValueError, match="read-only"):
            part[0] = 0


def test_an_audio_error_is_returned_and_not_kept():
    encoder = CountingEncoder()
    memo = EncodedAudioMemo(encoder)
    bad = clip(0)
    bad[3] = np.nan
    assert isinstance(memo(bad), AudioError) and isinstance(memo(bad), AudioError)
    assert encoder.calls == 2 and len(memo) == 0 and memo.held_bytes == 0


def test_the_least_recently_used_are_forgotten_within_the_byte_bound():
    encoder = CountingEncoder()
    size = sum(part.nbytes for part in encoder(clip(0)))  # every clip of 200 samples encodes to this many bytes
    memo = EncodedAudioMemo(encoder, max_bytes=3 * size)
    for seed in range(3):
        memo(clip(seed))
    memo(clip(0))  # now the most recently used
    memo(clip(3))  # pushes out clip 1, the least recently used
    assert len(memo) == 3 and memo.held_bytes == 3 * size
    calls = encoder.calls
    memo(clip(0)), memo(clip(2)), memo(clip(3))
    assert encoder.calls == calls
    memo(clip(1))
    assert encoder.calls == calls + 1
    held = sum(part.nbytes for kept in memo._kept.values() for part in kept)
    assert held == memo.held_bytes <= memo.max_bytes


def test_an_encoding_larger_than_the_bound_is_returned_and_not_kept():
    memo = EncodedAudioMemo(CountingEncoder(feature_dim=1000), max_bytes=1000)
    assert memo(clip(0))[2].shape == (20, 1000)
    assert len(memo) == 0 and memo.held_bytes == 0
