from pathlib import Path

import pytest

from opuslm.backends import register_backends
from opuslm.data.synth.corpus import SynthConfig, synthesize_corpus

register_backends()  # as the CLI does before it runs a stage


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """A 0.1-hour eSpeak corpus (about 130 utterances), made once per test process."""
    out = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(out, SynthConfig(hours=0.1, seed=7), workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_tokenizers(small_corpus, tmp_path_factory):
    """Text BPE, cepstral k-means (K=16) and a 2-step small codec, trained on the small corpus."""
    from opuslm.audio import load_audio
    from opuslm.data.manifest import read_manifest
    from opuslm.tokenize.codec_training import train_small_codec
    from opuslm.tokenize.features import CepstralFeatures
    from opuslm.tokenize.pipeline import TokenizerPaths
    from opuslm.tokenize.semantic import train_semantic_tokenizer
    from opuslm.tokenize.text import train_text_tokenizer

    root = tmp_path_factory.mktemp("tokenizers")
    utts = read_manifest(small_corpus, split="train")
    train_text_tokenizer([u.text for u in utts], root / "text", vocab_size=300)
    wavs = [load_audio(u.audio_path(small_corpus))[0] for u in utts[:30]]
    train_semantic_tokenizer(((w, 16000) for w in wavs), CepstralFeatures(), k=16, seed=0).save(root / "semantic")
    train_small_codec(wavs, root / "codec", TINY_CODEC, steps=2, batch_size=4, progress=False)
    return TokenizerPaths(root / "text", root / "semantic", root / "codec")


def _tiny_codec_config():
    from opuslm.tokenize.small_codec import SmallCodecConfig

    return SmallCodecConfig(channels=16, latent_dim=8, num_codebooks=4, codebook_size=32)


TINY_CODEC = _tiny_codec_config()


def _first24_shards(small_corpus, tiny_tokenizers, tmp_path_factory, heard_features: bool) -> Path:
    from opuslm.data.manifest import read_manifest, write_manifest
    from opuslm.tokenize.pipeline import tokenize_corpus

    name = "first24-heard" if heard_features else "first24"
    subset = small_corpus / f"{name}.jsonl"  # beside the corpus: its audio paths are relative to it
    write_manifest(subset, read_manifest(small_corpus)[:24])
    out = tmp_path_factory.mktemp(name) / "tokens"
    tokenize_corpus(subset, out, tiny_tokenizers, shard_size=10, progress=False, heard_features=heard_features)
    return out


@pytest.fixture(scope="session")
def tiny_shards(small_corpus, tiny_tokenizers, tmp_path_factory) -> Path:
    """Token shards of the first 24 utterances of the small corpus (shards of 10)."""
    return _first24_shards(small_corpus, tiny_tokenizers, tmp_path_factory, heard_features=False)


@pytest.fixture(scope="session")
def heard_shards(small_corpus, tiny_tokenizers, tmp_path_factory) -> Path:
    """The same utterances tokenized with heard features (the continuous input path's)."""
    return _first24_shards(small_corpus, tiny_tokenizers, tmp_path_factory, heard_features=True)


@pytest.fixture(scope="session")
def char_tokenizer():
    """A character-level HF tokenizer over printable ASCII: ids are fixed by construction, so golden
    tests do not depend on how a BPE happens to merge."""
    import string

    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbols = ["<|eos|>", "<unk>"] + [c for c in string.printable if c.isprintable()]
    model = Tokenizer(models.WordLevel({s: i for i, s in enumerate(symbols)}, unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    model.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=model, eos_token="<|eos|>", unk_token="<unk>")
