"""Does a trained model listen? A tiny model is trained for ASR on a small synthetic corpus and must
transcribe unseen speakers far better than its own text prior: the same model given each test
utterance's audio swapped for another test utterance's (so it can only write what it expects) is the
baseline. Minutes of CPU: `make test-slow`."""

from pathlib import Path

import pytest
import yaml

from opuslm.data.manifest import read_manifest

pytestmark = pytest.mark.slow
STAGES = Path(__file__).resolve().parents[1] / "stages"


def test_a_tiny_model_trained_with_ctc_transcribes_unseen_speakers_far_below_its_text_prior(tmp_path):
    """The demo's listening aids (CTC, time masks, codebook rows from zero) on a random preset model:
    at 8 rows x 250 steps without the last two it reached WER 0.67 against a prior of 1.05; as written,
    0.596 against 1.051.

    The acoustic streams come from the demo's own codec, the mel-pitch one (seeded scikit-learn
    k-means). With the small neural codec trained for 2 steps, the result moved with the installed
    vector-quantize-pytorch: 0.571 against 1.043 with 1.32.0, 0.666 against 1.075 with 1.34.1, which
    failed the bound; the mel-pitch codec gives 0.596 against 1.051 with either."""
    from opuslm.data.synth.corpus import SynthConfig, synthesize_corpus
    from opuslm.eval.metrics import corpus_wer
    from opuslm.infer.speech_lm import SpeechLM
    from opuslm.tokenize.features import WhisperFeatures
    from opuslm.tokenize.mel_pitch import MelPitchConfig, fit_mel_pitch_codec
    from opuslm.tokenize.pipeline import TokenizerPaths, tokenize_corpus
    from opuslm.tokenize.semantic import train_semantic_tokenizer
    from opuslm.tokenize.text import train_text_tokenizer
    from opuslm.train.stages import run_schedule

    corpus, root = tmp_path / "corpus", tmp_path / "tokenizers"
    synthesize_corpus(corpus, SynthConfig(hours=0.6, seed=1, event_share=0.0), workers=2, progress=False)
    train = read_manifest(corpus, split="train")
    wavs = [u.load_audio(corpus, target_rate=16000)[0] for u in train]
    train_text_tokenizer([u.text for u in train], root / "text", 400)
    train_semantic_tokenizer(((w, 16000) for w in wavs), WhisperFeatures(), k=128, seed=0).save(root / "semantic")
    fit_mel_pitch_codec(wavs[:32], root / "codec", MelPitchConfig(num_codebooks=2, codebook_size=32), max_frames=3000,
                        progress=False)
    paths = TokenizerPaths(root / "text", root / "semantic", root / "codec")
    tokenize_corpus(corpus, tmp_path / "tokens", paths, workers=1, progress=False)
    schedule = {"out": str(tmp_path / "run"), "tokens": "speech", "datasets": {"speech": str(tmp_path / "tokens")},
                "init": {"preset": "small", "seed": 0, "codebook_row_scale": 0.0},
                "stages": [{"file": str(STAGES / "pretrain.yaml"), "overrides": {
                    "steps": 500, "lr": {"peak": 1.5e-3, "warmup": 20}, "validation": {"every": 500, "batches": 1},
                    "checkpoint_every": 500,
                    "data": {"row_frames": 512, "rows": 4, "loss_region": "target", "ctc_weight": 0.5, "audio_mask": 0.2,
                             "sources": [{"name": "asr", "dataset": "speech", "task": "asr"}]}}}]}
    (tmp_path / "schedule.yaml").write_text(yaml.safe_dump(schedule))
    run_schedule(tmp_path / "schedule.yaml", progress=False)

    lm = SpeechLM.load(tmp_path / "run" / "pretrain" / "model")
    test = read_manifest(corpus, split="test")
    audio = [u.load_audio(corpus, target_rate=16000) for u in test]
    references = [u.text for u in test]
    heard = corpus_wer(references, lm.transcribe(audio))
    swapped = audio[1:] + audio[:1]  # each utterance's transcript against another's audio
    prior = corpus_wer(references, lm.transcribe(swapped))
    assert len({u.speaker for u in test} & {u.speaker for u in train}) == 0
    assert prior > 0.8, prior
    assert heard < 0.6 * prior, (heard, prior)

