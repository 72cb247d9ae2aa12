"""Whisper as the semantic tokenizer's encoder and as the TTS judge.

The embedded Whisper tiny.en (CTranslate2) is real; the transformers-format Whisper is a tiny random
one that the tests make, so weight changes and layers can be checked without a download.
"""

import os

import numpy as np
import pytest

from opuslm.errors import OpusLMError
from opuslm.tokenize.features import WhisperFeatures, build_features
from opuslm.tokenize.identity import folder_hash
from opuslm.tokenize.semantic import SemanticTokenizer, train_semantic_tokenizer


def _wavs(corpus, n):
    from opuslm.audio import load_audio
    from opuslm.data.manifest import read_manifest

    return [load_audio(u.audio_path(corpus))[0] for u in read_manifest(corpus, split="train")[:n]]


def _tiny_whisper(folder, seed: int):
    import torch
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(seed)
    config = WhisperConfig(d_model=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=64,
                           num_mel_bins=80, max_source_positions=1500, max_target_positions=32, pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)
    WhisperModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def embedded():
    return WhisperFeatures()


def test_embedded_whisper_frames_fall_on_the_codec_grid_and_are_deterministic(embedded, small_corpus):
    wav = _wavs(small_corpus, 1)[0]
    first = embedded(wav)
    assert first.shape == (int(np.ceil(len(wav) / 640)), 384) and first.dtype == np.float32
    assert np.array_equal(first, WhisperFeatures()(wav))  # a fresh load gives the same bits
    assert embedded.frame_rate == 25 and embedded.config()["path"] == "embedded"


def test_int8_whisper_is_its_own_configuration_close_to_float32_and_refused_for_transformers(embedded, small_corpus,
                                                                                           tmp_path):
    from opuslm.tokenize.features import build_features

    wav = _wavs(small_corpus, 1)[0]
    int8 = WhisperFeatures(compute_type="int8")
    quantised, exact = int8(wav), embedded(wav)
    assert np.array_equal(quantised, int8(wav)) and not np.array_equal(quantised, exact)
    cosine = (quantised * exact).sum(1) / np.linalg.norm(quantised, axis=1) / np.linalg.norm(exact, axis=1)
    assert cosine.min() > 0.9  # the same encoder, its weights rounded
    assert int8.config()["compute_type"] == "int8" and "compute_type" not in embedded.config()
    assert np.array_equal(build_features(int8.config())(wav), quantised)
    with pytest.raises(OpusLMError, match="transformers Whisper, which runs in float32"):
        WhisperFeatures(_tiny_whisper(tmp_path / "whisper", seed=0), layer=1, compute_type="int8")


def test_loading_ctranslate2_whisper_leaves_torchs_thread_count_alone():
    import torch

    from opuslm.eval.judge import WhisperJudge

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        WhisperFeatures()
        WhisperJudge()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_whisper_features_do_not_depend_on_what_was_encoded_before(embedded, small_corpus):
    a, b = _wavs(small_corpus, 2)
    alone = embedded(a)
    embedded(b)
    assert np.array_equal(embedded(a), alone)


def test_whisper_features_are_the_mean_of_encoder_frame_pairs_over_30_s_windows(embedded, small_corpus):
    """A naive reference: the encoder's own output for each 30 s window, frames averaged in pairs."""
    import ctranslate2
    from transformers import WhisperFeatureExtractor

    wav = np.concatenate(_wavs(small_corpus, 12))[: 16000 * 33]  # past one window
    padded = np.pad(wav, (0, -len(wav) % 640))
    extractor = WhisperFeatureExtractor()
    expected = []
    for start in range(0, len(padded), 16000 * 30):
        mel = extractor(padded[start:start + 16000 * 30], sampling_rate=16000, return_tensors="np",
                        padding="longest", truncation=False)["input_features"]
        hidden = np.array(embedded._model.encode(ctranslate2.StorageView.from_array(mel.astype(np.float32))))[0]
        expected += [hidden[i:i + 2].mean(0) for i in range(0, len(hidden), 2)]
    np.testing.assert_allclose(embedded(wav), np.stack(expected), rtol=0, atol=1e-6)


def test_semantic_tokenizer_hash_follows_the_encoder_weights_and_loads_from_another_directory(small_corpus, tmp_path):
    wavs = _wavs(small_corpus, 4)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:  # a relative path as a user types it
        _tiny_whisper(tmp_path / "whisper", seed=0)
        features = WhisperFeatures("whisper", layer=1)
        train_semantic_tokenizer(((w, 16000) for w in wavs), features, k=4, seed=0).save("sem_a")
    finally:
        os.chdir(cwd)
    assert build_features(SemanticTokenizer.load(tmp_path / "sem_a").features.config()).folder == tmp_path / "whisper"
    ids = SemanticTokenizer.load(tmp_path / "sem_a").encode(wavs[0], 16000)
    assert len(ids) == int(np.ceil(len(wavs[0]) / 640))

    before = folder_hash(tmp_path / "sem_a")
    _tiny_whisper(tmp_path / "whisper", seed=1)  # same architecture, other weights
    with pytest.raises(OpusLMError, match="has hash .* trained with hash"):
        SemanticTokenizer.load(tmp_path / "sem_a")
    features = WhisperFeatures(tmp_path / "whisper", layer=1)
    train_semantic_tokenizer(((w, 16000) for w in wavs), features, k=4, seed=0).save(tmp_path / "sem_b")
    assert folder_hash(tmp_path / "sem_b") != before


def test_whisper_layers_are_checked(tmp_path):
    _tiny_whisper(tmp_path / "whisper", seed=0)
    with pytest.raises(OpusLMError, match="layers 0..2"):
        WhisperFeatures(tmp_path / "whisper", layer=3)
    with pytest.raises(OpusLMError, match="only its last encoder layer"):
        WhisperFeatures(None, layer=2)
    with pytest.raises(OpusLMError, match="not a Whisper model"):
        WhisperFeatures(tmp_path)


def test_the_judge_transcript_equals_ctranslate2s_own_whisper_api(small_corpus):
    """Reference: each clip alone through ctranslate2's generate with the prompt as token ids and no
    length limit of ours, the mel from transformers' Whisper extractor padded to 30 s, the ids cut at
    the judge's documented cap and read back through the model's own vocabulary file. (A length limit
    of prompt + cap gave half the cap, and different transcripts in different batches.)"""
    import ctranslate2
    from transformers import WhisperFeatureExtractor

    from opuslm.eval.judge import load_judge
    from opuslm.tokenize.features import whisper_folder

    judge = load_judge(None)
    wavs = _wavs(small_corpus, 3)
    folder = whisper_folder(None)
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    vocabulary = (folder / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    byte_of = {c: b for b, c in _bytes_to_unicode().items()}
    prompt = [vocabulary.index("<|startoftranscript|>"), vocabulary.index("<|notimestamps|>")]
    expected = []
    for wav in wavs:
        mel = WhisperFeatureExtractor()(wav, sampling_rate=16000, return_tensors="np")["input_features"]
        limit = 4 + int(np.ceil(6 * len(wav) / 16000))  # the judge's documented cap on looping output
        ids = model.generate(ctranslate2.StorageView.from_array(mel.astype(np.float32)), [prompt],
                             beam_size=1)[0].sequences_ids[0][:limit]
        text = "".join(vocabulary[i] for i in ids if not vocabulary[i].startswith("<|"))
        expected.append(bytes(byte_of[c] for c in text).decode("utf-8").strip())
    assert judge.transcribe(wavs, batch_size=2) == expected == judge.transcribe(wavs[::-1], batch_size=3)[::-1]
    assert judge.info["kind"] == "whisper" and judge.info["path"] == "embedded"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet, which Whisper's vocabulary file is written in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return dict(zip(range(256), chars))


def test_the_judge_hears_a_plain_espeak_sentence():
    from opuslm.audio import resample
    from opuslm.data.synth import espeak
    from opuslm.eval.judge import load_judge
    from opuslm.eval.metrics import normalise

    text = "olivia went to the museum last week"
    out = espeak.synthesize(text + ".", espeak.VoiceSettings(voice="en-us+m3", rate=160, pitch=50, pitch_range=50, volume=100))
    wav = resample(out.samples.astype(np.float32) / 32768, out.sample_rate, 16000)
    assert normalise(load_judge(None).transcribe([wav])[0]) == text
