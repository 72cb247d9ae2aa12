"""Text, semantic and acoustic tokenizers: round trips, determinism, batching, alignment."""

import numpy as np
import torch
import pytest
import soundfile as sf

from opuslm.data.manifest import read_manifest
from opuslm.errors import OpusLMError
from opuslm.tokenize.acoustic import SmallCodecTokenizer, load_acoustic_tokenizer
from opuslm.tokenize.codec_training import si_snr
from opuslm.tokenize.features import CepstralFeatures, LogMelFeatures, build_features
from opuslm.tokenize.semantic import SemanticTokenizer, train_semantic_tokenizer
from opuslm.tokenize.text import load_text_tokenizer


def _wavs(corpus, n=6, split="train"):
    return [sf.read(u.audio_path(corpus), dtype="float32")[0] for u in read_manifest(corpus, split=split)[:n]]


def test_text_tokenizer_round_trips_and_reloads_with_autotokenizer(tiny_tokenizers, small_corpus):
    from transformers import AutoTokenizer

    ours = load_text_tokenizer(tiny_tokenizers.text)
    plain = AutoTokenizer.from_pretrained(str(tiny_tokenizers.text), local_files_only=True)
    for u in read_manifest(small_corpus)[:20]:
        ids = ours(u.text, add_special_tokens=False)["input_ids"]
        assert ids == plain(u.text, add_special_tokens=False)["input_ids"]
        assert ours.decode(ids) == u.text
    assert len(ours) == 300
    assert ours.decode(ours("Zebra? ñ 42!", add_special_tokens=False)["input_ids"]) == "Zebra? ñ 42!"  # byte-level


def test_text_tokenizer_folder_must_exist(tmp_path):
    with pytest.raises(OpusLMError, match="not found"):
        load_text_tokenizer(tmp_path / "nope")


def test_semantic_tokenizer_is_deterministic_and_round_trips(tiny_tokenizers, small_corpus, tmp_path):
    wavs = _wavs(small_corpus, 30)
    loaded = SemanticTokenizer.load(tiny_tokenizers.semantic)
    again = train_semantic_tokenizer(((w, 16000) for w in wavs), CepstralFeatures(), k=16, seed=0)
    other = train_semantic_tokenizer(((w, 16000) for w in wavs), CepstralFeatures(), k=16, seed=1)
    assert np.array_equal(loaded.centroids.numpy(), again.centroids.numpy())
    assert not np.array_equal(loaded.centroids.numpy(), other.centroids.numpy())
    again.save(tmp_path / "sem")
    reloaded = SemanticTokenizer.load(tmp_path / "sem")
    for wav in wavs[:5]:
        ids = loaded.encode(wav, 16000)
        assert ids.shape == (int(np.ceil(len(wav) / 640)),) and ids.min() >= 0 and ids.max() < 16
        assert np.array_equal(ids, reloaded.encode(wav, 16000))
        assert len(set(ids.tolist())) > 3
    # audio at another rate is resampled first: 8 kHz audio gives the same frame count
    assert len(loaded.encode(wavs[0][::2], 8000)) == len(loaded.encode(wavs[0], 16000))


def test_cepstral_frames_align_with_the_codec_ignore_gain_and_stack_sub_frames_in_order():
    features, rng = CepstralFeatures(), np.random.default_rng(0)
    for samples in (1, 639, 640, 641, 16000, 16001):
        wav = rng.standard_normal(samples).astype(np.float32) * 0.1
        assert features(wav).shape == (LogMelFeatures().num_frames(samples), 4 * 13)
    wav = rng.standard_normal(8000).astype(np.float32) * 0.1
    frames = features(wav)
    assert np.allclose(features(wav * 0.25), frames, atol=1e-3)  # a gain is a constant c0 shift, normalised away
    assert np.allclose(frames.reshape(-1, 13).mean(0), 0, atol=0.2)
    # naive reference: sub-frames (10 ms, normalised over the utterance) i*4-2 .. i*4+1, edges repeated
    sub = CepstralFeatures(hop=160)(wav)  # one 10 ms sub-frame per frame
    for i in range(len(frames)):
        rows = [sub[min(max(j, 0), len(sub) - 1)] for j in range(4 * i - 2, 4 * i + 2)]
        assert np.allclose(frames[i], np.concatenate(rows), atol=1e-5), i
    assert build_features(features.config()).config() == features.config()


def test_semantic_tokenizer_needs_enough_frames():
    with pytest.raises(OpusLMError, match="at least 16 frames"):
        train_semantic_tokenizer([(np.random.default_rng(0).standard_normal(1600).astype(np.float32), 16000)],
                                 LogMelFeatures(), k=16)


def test_small_codec_batched_codes_equal_single_codes(tiny_tokenizers, small_corpus):
    codec = load_acoustic_tokenizer(tiny_tokenizers.acoustic)
    assert isinstance(codec, SmallCodecTokenizer)
    wavs = _wavs(small_corpus, 6) + [np.random.default_rng(1).uniform(-0.5, 0.5, 641).astype(np.float32)]
    batched = codec.encode_batch(wavs, 16000)
    for wav, codes in zip(wavs, batched):
        single = codec.encode(wav, 16000)
        assert single.shape == (4, codec.num_frames(len(wav)))
        assert np.array_equal(single, codes)
        assert single.min() >= 0 and single.max() < 32


def test_small_codec_save_load_same_codes_and_decode_length(tiny_tokenizers, small_corpus):
    first, second = SmallCodecTokenizer(tiny_tokenizers.acoustic), SmallCodecTokenizer(tiny_tokenizers.acoustic)
    for wav in _wavs(small_corpus, 3, split="dev"):
        codes = first.encode(wav, 16000)
        assert np.array_equal(codes, second.encode(wav, 16000))
        out = first.decode(codes)
        assert len(out) == codes.shape[1] * 640 and len(wav) <= len(out) < len(wav) + 640
        assert np.all(np.isfinite(out))


def test_small_codec_decode_equals_vector_quantize_pytorchs_own_lookup_in_float64(tiny_tokenizers, small_corpus):
    """Decoding looks codewords up itself (see `SmallCodec.decode`) and runs in float32: the same codes
    through `ResidualVQ.get_output_from_indices` and the float64 decoder give the same audio."""
    codec = SmallCodecTokenizer(tiny_tokenizers.acoustic)
    for wav in _wavs(small_corpus, 2, split="dev"):
        codes = torch.as_tensor(codec.encode(wav, 16000))[None]
        with torch.no_grad():
            quantized = codec.model.quantizer.get_output_from_indices(codes.transpose(1, 2))
            expected = codec.model.decoder(quantized.transpose(1, 2).double())[0, 0]
        got = codec.decode(codes[0].numpy())
        assert got.dtype == np.float32 and len(got) == len(expected)
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5 * float(expected.abs().max()), rtol=0)


def test_codec_rejects_codes_out_of_range(tiny_tokenizers):
    codec = SmallCodecTokenizer(tiny_tokenizers.acoustic)
    with pytest.raises(OpusLMError, match=r"\[0, 32\)"):
        codec.decode(np.full((4, 3), 32))
    with pytest.raises(OpusLMError, match=r"\[4, frames\]"):
        codec.decode(np.zeros((3, 3)))


def test_semantic_and_acoustic_frames_align(tiny_tokenizers, small_corpus):
    codec, semantic = SmallCodecTokenizer(tiny_tokenizers.acoustic), SemanticTokenizer.load(tiny_tokenizers.semantic)
    assert codec.frame_rate == semantic.frame_rate == 25
    for wav in _wavs(small_corpus, 5) + [np.ones(1, np.float32), np.ones(640, np.float32), np.ones(641, np.float32)]:
        assert codec.encode(wav, 16000).shape[1] == len(semantic.encode(wav, 16000))


def test_si_snr_hand_cases():
    x = np.sin(np.arange(1000) / 7.0)
    assert si_snr(3 * x, x) > 100  # scale does not matter
    noise = np.cos(np.arange(1000) / 3.0)
    noise -= (noise @ x) / (x @ x) * x  # orthogonal to x
    noise *= np.linalg.norm(x - x.mean()) / np.linalg.norm(noise - noise.mean())
    assert si_snr(x + noise, x) == pytest.approx(0.0, abs=0.05)  # equal energies: 0 dB


def test_unknown_codec_path_is_a_clear_error(tmp_path):
    with pytest.raises(OpusLMError, match="is not a codec"):
        load_acoustic_tokenizer(tmp_path)


def test_ssl_semantic_tokenizer_from_a_local_hubert_folder(small_corpus, tmp_path):
    import torch
    from transformers import HubertConfig, HubertModel

    from opuslm.tokenize.features import SSLFeatures
    from opuslm.tokenize.pipeline import align_to_frames

    torch.manual_seed(0)
    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          conv_dim=(16, 16), conv_stride=(5, 64), conv_kernel=(10, 64), num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=2)
    HubertModel(config).save_pretrained(str(tmp_path / "hubert"))
    features = SSLFeatures(tmp_path / "hubert", layer=2)
    assert (features.hop, features.frame_rate) == (320, 50)
    wavs = _wavs(small_corpus, 8)
    tokenizer = train_semantic_tokenizer(((w, 16000) for w in wavs), features, k=8, seed=0)
    tokenizer.save(tmp_path / "sem")
    reloaded = SemanticTokenizer.load(tmp_path / "sem")
    for wav in wavs[:3]:
        ids = tokenizer.encode(wav, 16000)
        assert np.array_equal(ids, reloaded.encode(wav, 16000))
        assert abs(len(ids) - len(wav) / 320) <= 1
        aligned = align_to_frames(ids, 50, 25, int(np.ceil(len(wav) / 640)))  # onto the small codec's frames
        assert np.array_equal(aligned[: len(ids) // 2], ids[1::2][: len(ids) // 2])
    with pytest.raises(OpusLMError, match="layers 0..2"):
        SSLFeatures(tmp_path / "hubert", layer=3)


def test_a_codec_folder_passed_as_the_ssl_encoder_is_refused_by_name(tmp_path):
    from transformers import EncodecConfig, EncodecModel

    from opuslm.tokenize.features import SSLFeatures

    EncodecModel(EncodecConfig(num_filters=4, hidden_size=16, codebook_size=32, upsampling_ratios=[8, 4],
                               num_residual_layers=1, target_bandwidths=[1.5])).save_pretrained(tmp_path / "codec")
    with pytest.raises(OpusLMError, match=r"holds a 'encodec' model, not a speech encoder .* acoustic tokenizer"):
        SSLFeatures(tmp_path / "codec", layer=1)


def test_word_probe_finds_the_nearest_occurrence_by_other_speakers_only():
    from types import SimpleNamespace

    from opuslm.eval.units import Occurrence, occurrences, word_probe

    utterance = SimpleNamespace(speaker="a", words=[["cat", 0.0, 0.2], ["dog", 0.2, 0.4]])
    found = occurrences([utterance], [np.array([5, 5, 6, 7, 7, 8, 9, 9, 9, 9])], frame_rate=25)
    assert found == [Occurrence("cat", "a", (5, 6, 7)), Occurrence("dog", "a", (8, 9))]  # frames 0-4, 5-9
    reference = [Occurrence("cat", "x", (1, 2, 3)), Occurrence("dog", "x", (7, 8, 9)), Occurrence("cat", "q", (7, 8, 9))]
    query = [Occurrence("cat", "q", (1, 2, 4)),  # nearest: x's cat (distance 1)
             Occurrence("dog", "q", (7, 8)),  # nearest: x's dog; q's own cat (7, 8, 9) is never a reference
             Occurrence("dog", "y", (1, 2, 3))]  # nearest: x's cat (distance 0): wrong
    result = word_probe(reference, query, words=2, per_word=5)
    assert result == {"accuracy": 2 / 3, "queries": 3, "words": 2, "references": 3, "chance": 0.5}
