from pathlib import Path

import pytest

from opuslm.data.synth.corpus import SynthConfig, synthesize_corpus


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """A 0.1-hour eSpeak corpus (about 130 utterances), made once per test process."""
    out = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(out, SynthConfig(hours=0.1, seed=7), workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_tokenizers(small_corpus, tmp_path_factory):
    """Text BPE, log-mel k-means (K=16) and a 2-step small codec, trained on the small corpus."""
    from opuslm.audio import load_audio
    from opuslm.data.manifest import read_manifest
    from opuslm.tokenize.codec_training import train_small_codec
    from opuslm.tokenize.features import LogMelFeatures
    from opuslm.tokenize.pipeline import TokenizerPaths
    from opuslm.tokenize.semantic import train_semantic_tokenizer
    from opuslm.tokenize.text import train_text_tokenizer

    root = tmp_path_factory.mktemp("tokenizers")
    utts = read_manifest(small_corpus, split="train")
    train_text_tokenizer([u.text for u in utts], root / "text", vocab_size=300)
    wavs = [load_audio(u.audio_path(small_corpus))[0] for u in utts[:30]]
    train_semantic_tokenizer(((w, 16000) for w in wavs), LogMelFeatures(), k=16, seed=0).save(root / "semantic")
    train_small_codec(wavs, root / "codec", TINY_CODEC, steps=2, batch_size=4, progress=False)
    return TokenizerPaths(root / "text", root / "semantic", root / "codec")


def _tiny_codec_config():
    from opuslm.tokenize.small_codec import SmallCodecConfig

    return SmallCodecConfig(channels=16, latent_dim=8, num_codebooks=4, codebook_size=32)


TINY_CODEC = _tiny_codec_config()
