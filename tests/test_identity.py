"""Tokenizer identity where artefacts meet: shards and a model, shards and each other, a model folder
and its copies. Same sizes give the same joint vocabulary, so only content hashes tell tokenizers apart."""

import shutil

import numpy as np
import pytest
import yaml

from opuslm.data.manifest import read_manifest, write_manifest
from opuslm.errors import OpusLMError
from opuslm.tokenize.identity import tokenizer_hash
from opuslm.tokenize.pipeline import TokenizerPaths, tokenize_corpus
from opuslm.tokenize.shards import TokenShards
from opuslm.vocab import JointVocab


@pytest.fixture(scope="module")
def other_shards(small_corpus, tiny_tokenizers, tiny_shards, tmp_path_factory):
    """The tiny shards' utterances through a semantic tokenizer of the same size with other ids."""
    root = tmp_path_factory.mktemp("other")
    shutil.copytree(tiny_tokenizers.semantic, root / "semantic")
    np.save(root / "semantic" / "centroids.npy", np.load(root / "semantic" / "centroids.npy")[::-1].copy())
    other = TokenizerPaths(tiny_tokenizers.text, root / "semantic", tiny_tokenizers.acoustic)
    subset = small_corpus / "first24.jsonl"
    write_manifest(subset, read_manifest(small_corpus)[:24])
    tokenize_corpus(subset, root / "tokens", other, shard_size=10, progress=False)
    assert JointVocab.from_tokens(root / "tokens").hash == JointVocab.from_tokens(tiny_shards).hash
    return root / "tokens"


def test_a_stage_refuses_shards_of_another_same_size_semantic_tokenizer(tmp_path, tiny_shards, other_shards):
    """The model was initialised from `tiny_shards`; a mixture (or a resumed run re-pointed) that
    reads the other shards is refused before any step, naming the dataset and both hashes."""
    from opuslm.train.stages import run_schedule
    from test_training import write_schedule

    path = write_schedule(tmp_path, tiny_shards, tmp_path / "out")
    schedule = yaml.safe_load(path.read_text())
    schedule["datasets"]["text"] = str(other_shards)  # pretrain's text_lm source reads it
    path.write_text(yaml.safe_dump(schedule))
    recorded = lambda shards: TokenShards(shards).info["tokenizers"]["semantic"]["hash"]  # noqa: E731
    assert recorded(tiny_shards) != recorded(other_shards)
    with pytest.raises(OpusLMError, match=rf"datasets.text in {path} \({other_shards}\) was tokenized with another "
                                          rf"semantic tokenizer \(hash {recorded(other_shards)}\) than the model is built "
                                          rf"with \(tokens: speech \({tiny_shards}\)\) \(hash {recorded(tiny_shards)}\)"):
        run_schedule(path, progress=False)
    assert not (tmp_path / "out").exists()  # refused before the first model was built


def test_a_model_folder_with_a_swapped_same_size_semantic_tokenizer_is_refused(tmp_path, tiny_shards, other_shards):
    from opuslm.model.init import init_model
    from opuslm.model.multistream import model_tokenizers

    init_model(tiny_shards, tmp_path / "model", preset="tiny")
    model_tokenizers(tmp_path / "model")  # as saved: accepted
    swapped = tmp_path / "model" / "semantic_tokenizer"
    shutil.rmtree(swapped)
    shutil.copytree(other_shards.parent / "semantic", swapped)
    with pytest.raises(OpusLMError, match=rf"the semantic tokenizer at {swapped} \(hash \w+\) is not the one .* "
                                          r"was trained with \(hash \w+\)"):
        model_tokenizers(tmp_path / "model")


def test_a_text_tokenizer_is_identified_by_its_tokenizer_files_not_its_llms_weights(tmp_path, tiny_tokenizers):
    """An LLM folder is also its text tokenizer: the model folder's copy (weights left out) and the same
    folder with other weights keep the identity the shards recorded."""
    llm = tmp_path / "llm"
    shutil.copytree(tiny_tokenizers.text, llm)
    (llm / "model.safetensors").write_bytes(b"weights")
    (llm / "config.json").write_text("{}")
    before = tokenizer_hash("text", llm)
    assert before == tokenizer_hash("text", tiny_tokenizers.text)
    (llm / "model.safetensors").write_bytes(b"further trained weights")
    assert tokenizer_hash("text", llm) == before
    (llm / "tokenizer_config.json").write_text((llm / "tokenizer_config.json").read_text() + "\n")  # any byte counts
    assert tokenizer_hash("text", llm) != before
    assert tokenizer_hash("acoustic", llm) != tokenizer_hash("acoustic", tiny_tokenizers.text)  # a codec's weights count
