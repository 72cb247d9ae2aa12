"""transformers codecs (EnCodec, DAC, Mimi) behind the acoustic-tokenizer interface, on tiny random models."""

import numpy as np
import pytest
import torch

from opuslm.errors import OpusLMError
from opuslm.tokenize.acoustic import HFCodecTokenizer, load_acoustic_tokenizer


def _tiny(kind):
    from transformers import DacConfig, DacModel, EncodecConfig, EncodecModel, MimiConfig, MimiModel

    if kind == "encodec":
        return EncodecModel(EncodecConfig(num_filters=4, hidden_size=16, codebook_size=32, upsampling_ratios=[8, 4],
                                          target_bandwidths=[5.0], sampling_rate=16000, num_lstm_layers=1)), 2, 500
    if kind == "dac":
        return DacModel(DacConfig(encoder_hidden_size=4, downsampling_ratios=[2, 4], decoder_hidden_size=16, n_codebooks=3,
                                  codebook_size=32, codebook_dim=4, hidden_size=16, upsampling_ratios=[4, 2],
                                  sampling_rate=16000)), 3, 2000
    return MimiModel(MimiConfig(hidden_size=16, num_filters=4, codebook_size=32, num_quantizers=4,
                                num_semantic_quantizers=1, upsampling_ratios=[8, 4], num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, head_dim=8, intermediate_size=32,
                                sampling_rate=16000, codebook_dim=16, vector_quantization_hidden_dimension=16,
                                sliding_window=16, upsample_groups=16, frame_rate=250)), 4, 250


@pytest.mark.parametrize("kind", ["encodec", "dac", "mimi"])
def test_hf_codec_batched_equals_single_and_decodes(kind, tmp_path):
    torch.manual_seed(0)
    model, codebooks, frame_rate = _tiny(kind)
    model.save_pretrained(str(tmp_path / kind))
    codec = load_acoustic_tokenizer(tmp_path / kind)
    assert isinstance(codec, HFCodecTokenizer)
    assert (codec.num_codebooks, codec.codebook_size, codec.frame_rate, codec.sample_rate) == (codebooks, 32, frame_rate, 16000)
    rng = np.random.default_rng(0)
    wavs = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (1600, 3200, 1600, 2400)]
    batched = codec.encode_batch(wavs, 16000)
    for wav, codes in zip(wavs, batched):
        single = codec.encode(wav, 16000)
        assert np.array_equal(single, codes)
        assert single.shape == (codebooks, codec.num_frames(len(wav)))
        assert 0 <= single.min() and single.max() < 32
        out = codec.decode(single)
        hop = codec.sample_rate // codec.frame_rate
        assert len(out) == single.shape[1] * hop and len(wav) <= len(out) < len(wav) + hop
        assert np.all(np.isfinite(out))
    # audio at another rate is resampled to the codec's
    assert codec.encode(wavs[1][::2], 8000).shape == (codebooks, codec.num_frames(len(wavs[1])))


def test_hf_codec_cannot_use_more_codebooks_than_it_has(tmp_path):
    model, _, _ = _tiny("dac")
    model.save_pretrained(str(tmp_path / "dac"))
    with pytest.raises(OpusLMError, match="has 3 codebooks; cannot use 5"):
        HFCodecTokenizer(tmp_path / "dac", num_codebooks=5)
    assert HFCodecTokenizer(tmp_path / "dac", num_codebooks=2).encode(np.ones(800, np.float32) * 0.1, 16000).shape[0] == 2


def test_dac_frames_for_any_length_are_what_it_encodes(tmp_path):
    """DAC drops a partial last hop (1601 samples at hop 8: 200 frames, not 201), and with an odd stride
    its count is not a floor either."""
    from transformers import DacConfig, DacModel

    for ratios in ([2, 4], [3, 2]):
        torch.manual_seed(0)
        DacModel(DacConfig(encoder_hidden_size=4, downsampling_ratios=ratios, decoder_hidden_size=16, n_codebooks=2,
                           codebook_size=32, codebook_dim=4, hidden_size=16, upsampling_ratios=ratios[::-1],
                           sampling_rate=16000)).save_pretrained(str(tmp_path / f"dac{ratios}"))
        codec = HFCodecTokenizer(tmp_path / f"dac{ratios}")
        for n in range(1600, 1610):
            wav = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
            assert codec.encode(wav, 16000).shape[1] == codec.num_frames(n), (ratios, n)


@pytest.mark.parametrize("setting", [{"chunk_length_s": 0.1, "overlap": 0.01}, {"audio_channels": 2}])
def test_chunked_or_stereo_encodec_is_refused_by_name(tmp_path, setting):
    from transformers import EncodecConfig, EncodecModel

    EncodecModel(EncodecConfig(num_filters=4, hidden_size=16, codebook_size=32, upsampling_ratios=[8, 4],
                               target_bandwidths=[5.0], sampling_rate=16000, num_lstm_layers=1,
                               **setting)).save_pretrained(str(tmp_path / "encodec"))
    with pytest.raises(OpusLMError, match="is a chunked or stereo EnCodec .* use the 24 kHz EnCodec, DAC or Mimi"):
        load_acoustic_tokenizer(tmp_path / "encodec")
