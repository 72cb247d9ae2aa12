"""The mel-pitch codec: determinism, frame-by-frame decoding, the pitch it carries, its identity, and
the codec report against the judge's own transcripts of the files it wrote."""

import json

import numpy as np
import pytest
import soundfile as sf

from opuslm.data.manifest import read_manifest
from opuslm.errors import OpusLMError
from opuslm.tokenize.acoustic import MelPitchTokenizer, load_acoustic_tokenizer
from opuslm.tokenize.identity import tokenizer_hash
from opuslm.tokenize.mel_pitch import MelPitchCodec, MelPitchConfig, fit_mel_pitch_codec

SMALL = MelPitchConfig(num_codebooks=3, codebook_size=16)


def _wavs(corpus, n, split="train"):
    return [sf.read(u.audio_path(corpus), dtype="float32")[0] for u in read_manifest(corpus, split=split)[:n]]


@pytest.fixture(scope="module")
def mel_pitch_codec(small_corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mel_pitch") / "codec"
    fit_mel_pitch_codec(_wavs(small_corpus, 12), folder, SMALL, max_frames=3000, progress=False)
    return folder


def test_encoding_is_deterministic_per_utterance_and_on_the_frame_grid(mel_pitch_codec, small_corpus):
    codec = load_acoustic_tokenizer(mel_pitch_codec)
    assert isinstance(codec, MelPitchTokenizer) and codec.frame_rate == 25.0
    wavs = _wavs(small_corpus, 4, "dev")
    batch = codec.encode_batch(wavs, 16000)
    for wav, codes in zip(wavs, batch):
        assert codes.shape == (3, codec.num_frames(len(wav))) and codes.dtype == np.int64
        assert codes.min() >= 0 and codes.max() < 16
        assert np.array_equal(codes, load_acoustic_tokenizer(mel_pitch_codec).encode(wav, 16000))
        assert len(codec.decode(codes)) == codes.shape[1] * 640
    for samples in (1, 639, 640, 641):
        assert codec.encode(wavs[0][:samples], 16000).shape[1] == codec.num_frames(samples)


def test_a_prefix_of_the_codes_decodes_to_a_prefix_of_the_audio(mel_pitch_codec, small_corpus):
    codec = load_acoustic_tokenizer(mel_pitch_codec)
    codes = codec.encode(_wavs(small_corpus, 1, "dev")[0], 16000)
    whole = codec.decode(codes)
    for frames in (1, 7, codes.shape[1] // 2):
        part = codec.decode(codes[:, :frames])
        settled = frames * 640 - 1024  # the last 10 ms sub-frame and the noise filter's window are not yet final
        assert len(part) == frames * 640
        np.testing.assert_allclose(part[:max(settled, 0)], whole[:max(settled, 0)], atol=1e-6)
    assert np.array_equal(codec.decode(codes), whole)


def test_the_pitch_codebook_hears_a_tone_and_the_synthesiser_speaks_it_back():
    codec = MelPitchCodec(SMALL, np.zeros((2, 16, 320)))
    t = np.arange(16000) / 16000
    tone = 0.3 * sum(np.sin(2 * np.pi * 200 * k * t) / k for k in range(1, 6))  # a 200 Hz buzz
    codes = codec.encode(tone)
    pitch = codec.f0_levels[codes[0][2:-2] - 1]  # edges see the zero padding
    assert (codes[0][2:-2] > 0).all() and np.all(np.abs(np.log(pitch / 200)) < np.log(500 / 60) / 14 / 2 + 1e-9)
    codes[1:] = 0  # a flat envelope of codeword 0 (zeros: log-mel 0) is enough to carry the pitch
    heard = codec.f0(codec.decode(codes).astype(np.float64))
    assert np.median(heard[heard > 0]) == pytest.approx(pitch.mean(), rel=0.03)
    silence = codec.encode(np.zeros(6400))
    assert (silence[0] == 0).all()  # unvoiced


def test_the_identity_hash_follows_the_parameters(mel_pitch_codec, small_corpus, tmp_path):
    wavs = _wavs(small_corpus, 12)
    again = fit_mel_pitch_codec(wavs, tmp_path / "again", SMALL, max_frames=3000, progress=False)
    assert tokenizer_hash("acoustic", tmp_path / "again") == tokenizer_hash("acoustic", mel_pitch_codec)
    assert np.array_equal(again.mel_codebooks, MelPitchCodec.load(mel_pitch_codec).mel_codebooks)
    fit_mel_pitch_codec(wavs, tmp_path / "seed", MelPitchConfig(num_codebooks=3, codebook_size=16, seed=1),
                        max_frames=3000, progress=False)
    fit_mel_pitch_codec(wavs, tmp_path / "ceil", MelPitchConfig(num_codebooks=3, codebook_size=16, f0_ceil=400),
                        max_frames=3000, progress=False)
    hashes = {tokenizer_hash("acoustic", tmp_path / name) for name in ("again", "seed", "ceil")}
    assert len(hashes) == 3
    assert json.loads((tmp_path / "ceil" / "codec.json").read_text())["config"]["f0_ceil"] == 400


def test_bad_settings_and_too_little_audio_are_refused(small_corpus, tmp_path):
    with pytest.raises(OpusLMError, match="multiple of sub_hop"):
        MelPitchConfig(hop=600, sub_hop=160)
    with pytest.raises(OpusLMError, match="fewer than the 256 codewords"):
        fit_mel_pitch_codec([np.zeros(6400, np.float32)], tmp_path / "c", progress=False)
    with pytest.raises(OpusLMError, match="codebooks of shape"):
        MelPitchCodec(SMALL, np.zeros((3, 16, 320)))


def test_the_codec_report_scores_the_files_it_wrote_with_the_judge(mel_pitch_codec, small_corpus, tmp_path):
    from opuslm.eval.judge import WhisperJudge
    from opuslm.eval.metrics import corpus_wer
    from opuslm.eval.codec_report import codec_report

    utterances = read_manifest(small_corpus, split="dev")[:3]
    clips = [(u.id, u.load_audio(small_corpus, target_rate=16000)[0], u.text) for u in utterances]
    judge = WhisperJudge()
    figures = codec_report(load_acoustic_tokenizer(mel_pitch_codec), clips, judge, tmp_path / "report", workers=1)
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    heard = judge.transcribe([sf.read(tmp_path / "report" / f"resynthesis-{u.id}.wav", dtype="float32")[0]
                              for u in utterances])
    assert [c["judge_resynthesis"] for c in saved["clips_heard"]] == heard
    assert figures["judge_wer_resynthesis"] == corpus_wer([u.text for u in utterances], heard)
    originals = judge.transcribe([w for _, w, _ in clips])
    assert figures["judge_wer_original"] == corpus_wer([u.text for u in utterances], originals)
    assert figures["bitrate_bps"] == 3 * 4 * 25
    assert 0 <= figures["f0"]["vuv_error"] <= 1


def test_f0_agreement_of_a_track_with_itself_is_perfect_and_counts_voicing_errors():
    from opuslm.eval.codec_report import f0_agreement

    rng = np.random.default_rng(0)
    tracks = [np.where(rng.random(100) < 0.7, rng.uniform(80, 300, 100), 0.0) for _ in range(5)]
    same = f0_agreement(tracks, tracks)
    assert same["median_f0_corr"] == pytest.approx(1) and same["frame_log_f0_corr"] == pytest.approx(1)
    assert same["vuv_error"] == 0
    flipped = [t.copy() for t in tracks]
    for t in flipped:
        t[:10] = np.where(t[:10] > 0, 0.0, 150.0)  # the voicing of 10 of 100 frames flipped
    assert f0_agreement(tracks, flipped)["vuv_error"] == pytest.approx(0.1)
