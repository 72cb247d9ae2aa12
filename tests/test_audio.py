"""Reading audio: files cut short are refused, streamed WAVs of unknown length are read whole."""

import struct

import numpy as np
import pytest
import soundfile as sf

from opuslm.audio import AudioError, load_audio


@pytest.fixture()
def wav(tmp_path):
    samples = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    sf.write(tmp_path / "full.wav", samples, 16000, subtype="PCM_16")
    return tmp_path / "full.wav"


def test_a_wav_whose_data_chunk_is_truncated_is_refused(wav, tmp_path):
    data = wav.read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    assert sf.info(str(tmp_path / "cut.wav")).frames < 8000  # what libsndfile alone would read, silently
    with pytest.raises(AudioError, match=r"cut.wav: truncated audio: its data chunk declares 32000 bytes but the "
                                         r"file holds 15978"):
        load_audio(tmp_path / "cut.wav")
    assert len(load_audio(wav)[0]) == 16000


def test_a_streamed_wav_of_unknown_length_is_read_whole(wav, tmp_path):
    data = bytearray(wav.read_bytes())
    data[4:8] = data[40:44] = struct.pack("<I", 0xFFFFFFFF)  # what a writer to a pipe leaves
    (tmp_path / "streamed.wav").write_bytes(bytes(data))
    assert np.array_equal(load_audio(tmp_path / "streamed.wav")[0], load_audio(wav)[0])
