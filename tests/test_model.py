"""The multi-stream model: text preservation, restricted heads, the loss, save/load and export."""

import math

import pytest
import torch

from opuslm.errors import OpusLMError
from opuslm.interleave import delay
from opuslm.model.config import MultiStreamConfig
from opuslm.model.loss import chunked_cross_entropy
from opuslm.model.multistream import OpusLM
from opuslm.vocab import PAD_ID, JointVocab

VOCAB = JointVocab(semantic_size=16, num_codebooks=3, codebook_size=8, text_size=300)


def tiny_config(arch: str, tie: bool = False, vocab_size: int = 300):
    from transformers import LlamaConfig, Olmo2Config, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "olmo2": Olmo2Config}[arch]
    return cls(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, tie_word_embeddings=tie, bos_token_id=0, eos_token_id=1, pad_token_id=2)


def saved_llm(tmp_path, arch, tie=False, vocab_size=300, seed=0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    llm = AutoModelForCausalLM.from_config(tiny_config(arch, tie, vocab_size)).eval()
    llm.save_pretrained(tmp_path / arch)
    return llm, tmp_path / arch


def text_frames(ids: torch.Tensor, vocab: JointVocab) -> torch.Tensor:
    frames = torch.full((ids.shape[0], vocab.num_streams, ids.shape[1]), PAD_ID)
    frames[:, 0] = ids + vocab.text_offset
    return frames


ARCHS = [("llama", True), ("llama", False), ("qwen2", False), ("olmo2", False)]


@pytest.mark.parametrize("arch, tie", ARCHS)
def test_text_logits_equal_the_llms_right_after_initialisation(tmp_path, arch, tie):
    llm, folder = saved_llm(tmp_path, arch, tie, vocab_size=320)  # rows beyond the tokenizer, as Qwen pads
    model = OpusLM.from_llm(folder, VOCAB).eval()
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = llm(ids).logits[..., :300]
        hidden = model(text_frames(ids, VOCAB)).last_hidden_state
        got = model.stream_logits(hidden, 0)[..., VOCAB.text_offset:]
    assert (got - expected).abs().max() < 1e-5
    head, embed = model.backbone.get_output_embeddings(), model.backbone.get_input_embeddings()
    assert (head.weight is embed.weight) == tie
    assert model.backbone.config.eos_token_id == 1 + VOCAB.text_offset


def test_new_rows_follow_the_statistics_of_the_pretrained_rows(tmp_path):
    llm, folder = saved_llm(tmp_path, "qwen2")
    with torch.no_grad():
        llm.get_input_embeddings().weight.mul_(3.0).add_(0.5)  # a distinctive mean and std
    llm.save_pretrained(folder)
    model = OpusLM.from_llm(folder, VOCAB)
    table = model.backbone.get_input_embeddings().weight.detach()
    pretrained = llm.get_input_embeddings().weight.detach()[:300]
    new = table[1:VOCAB.text_offset]
    assert torch.equal(table[0], torch.zeros_like(table[0]))  # pad
    assert torch.allclose(new.mean(), pretrained.mean(), atol=0.1)
    # the std, not the variance (the pretrained std is about 0.06: its square would be ~20x smaller)
    assert abs(new.std(0).mean() / pretrained.std(0).mean() - 1) < 0.15


def test_codebook_rows_start_scaled_and_every_other_row_as_before(tmp_path):
    _, folder = saved_llm(tmp_path, "llama")
    table = {scale: OpusLM.from_llm(folder, VOCAB, seed=1, codebook_row_scale=scale).backbone.get_input_embeddings().weight.detach()
             for scale in (1.0, 0.5, 0.0)}
    codebooks = slice(VOCAB.codebook_offset(0), VOCAB.text_offset)
    assert torch.equal(table[0.0][codebooks], torch.zeros_like(table[0.0][codebooks]))
    assert torch.allclose(table[0.5][codebooks], 0.5 * table[1.0][codebooks])
    for scale in (0.5, 0.0):  # specials, semantic and text rows are untouched
        assert torch.equal(table[scale][: VOCAB.codebook_offset(0)], table[1.0][: VOCAB.codebook_offset(0)])
        assert torch.equal(table[scale][VOCAB.text_offset:], table[1.0][VOCAB.text_offset:])


def test_pad_embeds_to_zero_and_streams_sum(tmp_path):
    model = OpusLM.from_llm(tiny_config("llama"), VOCAB)
    table = model.backbone.get_input_embeddings().weight
    with torch.no_grad():
        table[PAD_ID] = 5.0  # even a trained, non-zero pad row contributes nothing
    frames = torch.tensor([[[VOCAB.semantic_offset + 3, PAD_ID], [VOCAB.codebook_offset(0) + 1, PAD_ID],
                            [PAD_ID, PAD_ID], [VOCAB.codebook_offset(2) + 7, PAD_ID]]])
    embedded = model.embed(frames)
    expected = table[VOCAB.semantic_offset + 3] + table[VOCAB.codebook_offset(0) + 1] + table[VOCAB.codebook_offset(2) + 7]
    assert torch.allclose(embedded[0, 0], expected) and torch.equal(embedded[0, 1], torch.zeros_like(embedded[0, 1]))


def test_streams_score_only_their_own_slice():
    model = OpusLM.from_llm(tiny_config("qwen2"), VOCAB)
    with torch.no_grad():
        model.stream_offsets.normal_()
    hidden = torch.randn(2, 5, 32)
    assert model.stream_logits(hidden, 0).shape[-1] == VOCAB.size
    for n in range(1, VOCAB.num_streams):
        logits = model.stream_logits(hidden, n)
        start, end = VOCAB.stream_range(n)
        assert logits.shape[-1] == end - start == VOCAB.codebook_size
        full = torch.nn.functional.linear(hidden + model.stream_offsets[n - 1], model.backbone.get_output_embeddings().weight)
        assert torch.allclose(logits, full[..., start:end], atol=1e-6)
        ids = logits.argmax(-1) + start  # whatever the logits, the id lands in the slice
        assert ((ids >= start) & (ids < end)).all()
        torch.testing.assert_close(model.codebook_logits(hidden)[..., n - 1, :], logits, atol=1e-6, rtol=0)


def modality_mask(inputs, targets):
    """Which stream-0 ids each cell may score under the "modality" softmax, written out: after a semantic
    id the specials and semantic ids, after a text id the specials and text ids, otherwise (or when the
    target is not among them) every id."""
    ids = torch.arange(VOCAB.size)
    after_semantic = ids < VOCAB.codebook_offset(0)
    after_text = (ids < VOCAB.semantic_offset) | (ids >= VOCAB.text_offset)
    allowed = torch.ones(*inputs.shape, VOCAB.size, dtype=torch.bool)
    for b in range(inputs.shape[0]):
        for t in range(inputs.shape[1]):
            kind = VOCAB.describe(int(inputs[b, t]))
            chosen = after_semantic if kind.startswith("s") and kind[1:].isdigit() else \
                after_text if kind.startswith("t") and kind[1:].isdigit() else None
            if chosen is not None and chosen[targets[b, t]]:
                allowed[b, t] = chosen
    return allowed


def naive_loss(model, frames, mask, stream0="full"):
    """Full logits for every cell, weighted by modality, summed and divided by frames with loss; with
    stream0="modality", stream 0's logits outside `modality_mask` are minus infinity."""
    hidden = model(frames[..., :-1]).last_hidden_state
    targets, cells = frames[..., 1:], mask[..., 1:]
    weights = model.config.loss_weights
    total = 0.0
    for n in range(frames.shape[1]):
        logits = model.stream_logits(hidden, n)
        if n == 0 and stream0 == "modality":
            logits = logits.masked_fill(~modality_mask(frames[:, 0, :-1], targets[:, 0]), float("-inf"))
        start = VOCAB.stream_range(n)[0]
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets[:, n] - start * cells[:, n], reduction="none")
        from opuslm.vocab import MODALITIES
        modality = torch.as_tensor(VOCAB.modality(targets[:, n].numpy()))
        w = torch.tensor([weights[m] for m in MODALITIES])[modality]
        total = total + (ce * w * cells[:, n]).sum()
    return total / cells.any(1).sum()


def random_batch(seed):
    g = torch.Generator().manual_seed(seed)
    frames = torch.zeros(2, VOCAB.num_streams, 14, dtype=torch.long)
    frames[:, 0, :4] = torch.randint(VOCAB.text_offset, VOCAB.size, (2, 4), generator=g)
    frames[:, 0, 4] = VOCAB.special("<audio_start>")
    frames[:, 0, 5:11] = torch.randint(VOCAB.semantic_offset, VOCAB.codebook_offset(0), (2, 6), generator=g)
    for k in range(3):
        frames[:, k + 1, 5:11] = VOCAB.codebook_offset(k) + torch.randint(0, 8, (2, 6), generator=g)
    frames[:, 0, 11] = VOCAB.special("<eos>")
    delayed = delay(frames, [0, 1, 2, 3], PAD_ID)
    mask = delayed != PAD_ID
    mask[1, :, :3] = False  # a shorter loss region in one row
    return delayed, mask


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_chunked_loss_equals_the_naive_full_logits_loss(chunk):
    model = OpusLM.from_llm(tiny_config("llama"), VOCAB, MultiStreamConfig(loss_chunk=chunk))
    frames, mask = random_batch(0)
    out = model.loss(frames, mask)
    expected = naive_loss(model, frames, mask)
    assert torch.allclose(out.loss, expected, atol=1e-5)
    assert set(out.per_stream) == {"stream0", "stream1", "stream2", "stream3"}
    assert set(out.per_modality) == {"special", "semantic", "codec", "text"}
    assert out.frames == int(mask[..., 1:].any(1).sum()) and out.cells == int(mask[..., 1:].sum())
    out.loss.backward()  # gradients flow through the checkpointed chunks
    grads = model.backbone.get_output_embeddings().weight.grad
    assert grads is not None and grads.abs().sum() > 0


@pytest.mark.parametrize("chunk", [2, 4096])
def test_the_modality_softmax_equals_the_full_one_with_the_other_logits_at_minus_infinity(chunk):
    """In float64, to the last bits: only the order of the sums differs."""
    torch.manual_seed(0)
    model = OpusLM.from_llm(tiny_config("llama"), VOCAB, MultiStreamConfig(loss_chunk=chunk, stream0_softmax="modality"))
    model = model.double()
    frames, mask = random_batch(4)
    frames[0, 0, 3] = VOCAB.semantic_offset + 1  # a text frame followed by a semantic target: scored over everything
    out = model.loss(frames, mask)
    expected = naive_loss(model, frames, mask, stream0="modality")
    torch.testing.assert_close(out.loss, expected.to(out.loss.dtype), rtol=1e-13, atol=0)
    full = OpusLM.from_llm(tiny_config("llama"), VOCAB, MultiStreamConfig(loss_chunk=chunk)).double()
    full.load_state_dict(model.state_dict())
    other = full.loss(frames, mask)
    assert other.loss > out.loss  # the excluded logits held probability mass
    assert all(other.per_stream[f"stream{n}"] == out.per_stream[f"stream{n}"] for n in (1, 2, 3))
    out.loss.backward()
    head = model.backbone.get_output_embeddings().weight.grad
    assert head[VOCAB.semantic_offset:VOCAB.codebook_offset(0)].abs().sum() > 0
    with pytest.raises(OpusLMError, match="stream0_softmax must be one of full, modality"):
        MultiStreamConfig(stream0_softmax="text")


def test_chunked_cross_entropy_gradients_equal_the_direct_ones():
    g = torch.Generator().manual_seed(3)
    rows = torch.randn(10, 6, generator=g, requires_grad=True)
    weight = torch.randn(7, 6, generator=g, requires_grad=True)
    targets = torch.randint(0, 7, (10,), generator=g)
    chunked = chunked_cross_entropy(rows, weight, None, targets, chunk=3)
    direct = torch.nn.functional.cross_entropy(rows @ weight.T, targets, reduction="none")
    assert torch.allclose(chunked, direct, atol=1e-6)
    grad_chunked = torch.autograd.grad(chunked.sum(), (rows, weight))
    grad_direct = torch.autograd.grad(direct.sum(), (rows, weight))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grad_chunked, grad_direct))


def test_loss_weights_scale_their_modality():
    frames, mask = random_batch(1)
    base = OpusLM.from_llm(tiny_config("llama"), VOCAB)
    heavier = OpusLM.from_llm(tiny_config("llama"), VOCAB, MultiStreamConfig(
        loss_weights={"special": 10.0, "semantic": 0.5, "codec": 0.125, "text": 1.0}))
    a, b = base.loss(frames, mask), heavier.loss(frames, mask)
    codec_cells = int(mask[:, 1:, 1:].sum())
    codec_part = a.per_modality["codec"] * codec_cells * 0.0625 / a.frames
    assert math.isclose(b.loss.item() - a.loss.item(), codec_part, rel_tol=1e-4)
    with pytest.raises(OpusLMError, match="unknown \\['speech'\\]"):
        MultiStreamConfig(loss_weights={"special": 1, "semantic": 1, "codec": 1, "text": 1, "speech": 1})


def test_training_options_checkpointing_and_bf16_autocast():
    model = OpusLM.from_llm(tiny_config("qwen2"), VOCAB, attn_implementation="sdpa")
    frames, mask = random_batch(2)
    reference = model.loss(frames, mask).loss
    model.enable_activation_checkpointing()
    assert model.backbone.is_activation_checkpointing
    model.train()
    checkpointed = model.loss(frames, mask).loss
    checkpointed.backward()
    assert torch.allclose(reference, checkpointed, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model.loss(frames, mask).loss
    assert torch.isfinite(low) and abs(low.item() - reference.item()) < 0.05 * reference.item()


@pytest.mark.parametrize("arch, tie", ARCHS)
def test_save_load_gives_identical_logits_and_export_loads_as_a_plain_llm(tmp_path, arch, tie):
    from transformers import AutoModelForCausalLM

    llm, folder = saved_llm(tmp_path, arch, tie)
    model = OpusLM.from_llm(folder, VOCAB, MultiStreamConfig(delays=[0, 1, 1, 1])).eval()
    with torch.no_grad():
        model.stream_offsets.normal_()
        model.backbone.get_input_embeddings().weight.add_(0.01)  # "trained": differs from the LLM
    model.save_pretrained(tmp_path / "saved")
    loaded = OpusLM.from_pretrained(tmp_path / "saved").eval()
    assert loaded.delays == [0, 1, 1, 1] and loaded.vocab == VOCAB
    frames, _ = random_batch(4)
    with torch.no_grad():
        a, b = model(frames).last_hidden_state, loaded(frames).last_hidden_state
        for n in range(VOCAB.num_streams):
            assert torch.equal(model.stream_logits(a, n), loaded.stream_logits(b, n))

    model.export_text_lm(tmp_path / "text")
    text = AutoModelForCausalLM.from_pretrained(tmp_path / "text").eval()
    assert text.config.vocab_size == 300 and text.config.eos_token_id == 1
    ids = torch.randint(0, 300, (2, 9), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model.stream_logits(model(text_frames(ids, VOCAB)).last_hidden_state, 0)[..., VOCAB.text_offset:]
        assert (text(ids).logits - expected).abs().max() < 1e-5


def test_loading_with_another_vocabulary_is_refused(tmp_path):
    model = OpusLM.from_llm(tiny_config("llama"), VOCAB)
    model.save_pretrained(tmp_path / "m")
    other = JointVocab(semantic_size=32, num_codebooks=3, codebook_size=8, text_size=300)
    with pytest.raises(OpusLMError) as error:
        OpusLM.from_pretrained(tmp_path / "m", expect_vocab=other)
    assert VOCAB.hash in str(error.value) and other.hash in str(error.value)
    with pytest.raises(OpusLMError, match="not an OpusLM model folder"):
        OpusLM.from_pretrained(tmp_path)


def test_a_tokenizer_larger_than_the_llm_is_refused(tmp_path):
    _, folder = saved_llm(tmp_path, "llama", vocab_size=200)
    with pytest.raises(OpusLMError, match="has 200 embedding rows but its tokenizer 300"):
        OpusLM.from_llm(folder, VOCAB)


def test_a_text_only_batch_still_gives_every_parameter_a_gradient():
    """DDP and FSDP2 need the same gradients on every rank, whatever rows a rank received."""
    model = OpusLM.from_llm(tiny_config("llama"), VOCAB)
    frames = text_frames(torch.randint(0, 300, (2, 8)), VOCAB)
    model.loss(frames, frames != PAD_ID).loss.backward()
    assert model.stream_offsets.grad is not None and not model.stream_offsets.grad.any()
    assert all(p.grad is not None for p in model.parameters())


def naive_ctc(log_probs: torch.Tensor, target: list[int]) -> torch.Tensor:
    """-log p(target) by the CTC forward recursion over the blank-extended label sequence (blank 0)."""
    extended = [0]
    for label in target:
        extended += [label, 0]
    alpha = torch.full((len(extended),), -math.inf, dtype=torch.float64)
    alpha[0], alpha[1] = log_probs[0, 0], log_probs[0, extended[1]]
    for t in range(1, log_probs.shape[0]):
        previous = alpha.clone()
        for s, label in enumerate(extended):
            paths = [previous[s]] + ([previous[s - 1]] if s >= 1 else [])
            if s >= 2 and label != 0 and label != extended[s - 2]:
                paths.append(previous[s - 2])
            alpha[s] = torch.logsumexp(torch.stack(paths), 0) + log_probs[t, label]
    return -torch.logsumexp(alpha[-2:], 0)


def test_heard_ctc_loss_equals_a_naive_forward_algorithm_over_pad_and_the_text_rows():
    from opuslm.batch_stream import HeardTranscripts

    model = OpusLM.from_llm(tiny_config("llama"), VOCAB)
    frames, mask = random_batch(2)
    heard = HeardTranscripts(rows=[0, 1], spans=[(5, 14), (6, 12)],
                             transcripts=[torch.tensor([3, 7, 7]), torch.tensor([0, 299])], weight=0.5)
    plain, with_ctc = model.loss(frames, mask), model.loss(frames, mask, heard=heard)
    hidden = model(frames[..., :-1]).last_hidden_state.double()
    logits = model.stream_logits(hidden.float(), 0).double()
    allowed = [PAD_ID] + list(range(VOCAB.text_offset, VOCAB.size))  # blank first, then text id j at j + 1
    expected = 0.0
    for row, (start, end), transcript in zip(heard.rows, heard.spans, heard.transcripts):
        log_probs = logits[row, start:min(end, hidden.shape[1])][:, allowed].log_softmax(-1)
        expected += naive_ctc(log_probs, [int(i) + 1 for i in transcript])
    assert math.isclose(with_ctc.weighted_sum.item() - plain.weighted_sum.item(), 0.5 * expected.item(), rel_tol=1e-4)
    assert math.isclose(with_ctc.per_stream["ctc"], expected.item() / 5, rel_tol=1e-4)
    with_ctc.loss.backward()
    head = model.backbone.get_output_embeddings().weight.grad
    assert head[PAD_ID].abs().sum() > 0  # the blank's row learns


def granite_config(**scaling):
    from transformers import GraniteConfig

    return GraniteConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, bos_token_id=0, eos_token_id=1, pad_token_id=2, **scaling)


def gemma2_config(**scaling):
    from transformers import Gemma2Config

    return Gemma2Config(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=8, bos_token_id=0, eos_token_id=1, pad_token_id=2, **scaling)


@pytest.mark.parametrize("config, named", [
    (lambda: granite_config(logits_scaling=4.0), "logits_scaling=4.0"),  # on no list: caught by comparing logits
    (lambda: gemma2_config(final_logit_softcapping=2.0), "final_logit_softcapping=2.0"),
])
def test_an_llm_whose_forward_rescales_its_logits_is_refused_by_name(tmp_path, config, named):
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_config(config()).save_pretrained(tmp_path / "llm")
    with pytest.raises(OpusLMError, match=rf"\w+ForCausalLM: the grown model's text logits differ.*{named}"):
        OpusLM.from_llm(tmp_path / "llm", VOCAB)
    with pytest.raises(OpusLMError, match=named):  # a model trained from scratch is held to the same
        OpusLM.from_llm(config(), VOCAB)


def test_a_scaling_the_multi_stream_path_also_applies_is_accepted(tmp_path):
    """Granite multiplies `inputs_embeds` too, so its embedding and residual multipliers keep the text
    logits equal: the check compares logits, not config keys."""
    from transformers import AutoModelForCausalLM

    llm = AutoModelForCausalLM.from_config(granite_config(embedding_multiplier=12.0, residual_multiplier=0.22)).eval()
    llm.save_pretrained(tmp_path / "llm")
    model = OpusLM.from_llm(tmp_path / "llm", VOCAB).eval()
    ids = torch.randint(0, 300, (1, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = model.stream_logits(model(text_frames(ids, VOCAB)).last_hidden_state, 0)[..., VOCAB.text_offset:]
        assert (got - llm(ids).logits).abs().max() < 1e-5


def test_an_incomplete_model_folder_is_refused_naming_what_is_wrong(tmp_path):
    import shutil

    model = OpusLM.from_llm(tiny_config("llama"), VOCAB)
    model.save_pretrained(tmp_path / "m")
    shutil.copytree(tmp_path / "m", tmp_path / "no_streams")
    (tmp_path / "no_streams" / "streams.safetensors").unlink()
    with pytest.raises(OpusLMError, match=r"no_streams: streams.safetensors is missing \(checksums.json lists it\): the "
                                          "folder is incomplete; copy it again"):
        OpusLM.from_pretrained(tmp_path / "no_streams")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short
    with pytest.raises(OpusLMError, match=r"m: model.safetensors does not match the checksum recorded when it was saved"):
        OpusLM.from_pretrained(tmp_path / "m")
    for folder in ("no_streams", "m"):  # a folder saved before checksums were recorded: the same faults, named
        (tmp_path / folder / "checksums.json").unlink()
    with pytest.raises(OpusLMError, match="no_streams has no streams.safetensors"):
        OpusLM.from_pretrained(tmp_path / "no_streams")
    with pytest.raises(OpusLMError, match=r"m: its weights cannot be read \(SafetensorError: .*incomplete or damaged"):
        OpusLM.from_pretrained(tmp_path / "m")


def test_frames_beyond_a_learned_position_table_are_refused_before_the_lookup():
    from transformers import GPT2Config

    config = GPT2Config(vocab_size=300, n_positions=16, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=1)
    model = OpusLM.from_llm(config, VOCAB).eval()
    assert model.position_limit == 16 and OpusLM.from_llm(tiny_config("llama"), VOCAB).position_limit is None
    ids = torch.randint(0, 300, (1, 17))
    with torch.no_grad():
        assert model(text_frames(ids[:, :16], VOCAB)).last_hidden_state.shape == (1, 16, 32)
        with pytest.raises(OpusLMError, match="17 frames need more positions than the 16 of GPT2LMHeadModel's learned"):
            model(text_frames(ids, VOCAB))
        cache = model(text_frames(ids[:, :10], VOCAB), use_cache=True).past_key_values
        with pytest.raises(OpusLMError, match="17 frames"):  # decoding step by step counts the cache
            model(text_frames(ids[:, 10:], VOCAB), past_key_values=cache, use_cache=True)
