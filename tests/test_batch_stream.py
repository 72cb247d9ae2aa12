"""The packed multi-task loader: packing, isolation of examples, determinism, state, rank split."""

import numpy as np
import pytest
import torch

from opuslm.batch_stream import PackedLoader
from opuslm.errors import OpusLMError
from opuslm.interleave import default_delays
from opuslm.templates import TemplateBuilder
from opuslm.tokenize.shards import TokenShards
from opuslm.tokenize.text import load_text_tokenizer
from opuslm.train.config import DataConfig
from opuslm.vocab import PAD_ID, JointVocab


@pytest.fixture(scope="module")
def setting(tiny_shards):
    vocab = JointVocab.from_tokens(tiny_shards)
    tokenizer = load_text_tokenizer(TokenShards(tiny_shards).tokenizer_path("text"))
    delays = default_delays(vocab.num_streams)
    return vocab, TemplateBuilder(vocab, tokenizer, max(delays), prompt_frames=20), delays, {"c": str(tiny_shards)}


def data_config(**overrides):
    sources = [{"name": "asr", "dataset": "c", "task": "asr", "weight": 2.0},
               {"name": "tts", "dataset": "c", "task": "tts"},
               {"name": "text", "dataset": "c", "task": "text_lm", "weight": 0.5},
               {"name": "ser", "dataset": "c", "task": "ser"}]
    return DataConfig.model_validate({"sources": sources, "row_frames": 400, "rows": 4, **overrides})


def loader(setting, rank=0, world=1, **overrides):
    _, builder, delays, datasets = setting
    return PackedLoader(data_config(**overrides), datasets, builder, delays, rank, world)


def test_packing_fills_rows(setting):
    stream = loader(setting, row_frames=1024)  # the demo's row length
    batches = [stream.next_batch() for _ in range(20)]
    efficiency = sum(b.real_frames for b in batches) / sum(b.frames.shape[0] * b.frames.shape[2] for b in batches)
    assert efficiency >= 0.97
    for b in batches:  # padding is pad everywhere, with no loss and document -1
        padding = b.document_ids == -1
        assert (b.frames.permute(1, 0, 2)[:, padding] == PAD_ID).all()
        assert not b.loss_mask.permute(1, 0, 2)[:, padding].any()


def test_each_packed_example_is_exactly_its_own_delayed_frames(setting):
    stream = loader(setting)
    stream._fill()
    built = {entry.key: (entry.tokens, entry.mask) for entry in stream.buffer}
    batch = stream.next_batch()
    for r in range(batch.frames.shape[0]):
        for document in batch.document_ids[r].unique().tolist():
            if document < 0:
                continue
            cols = (batch.document_ids[r] == document).nonzero()[:, 0]
            assert torch.equal(cols, torch.arange(cols[0], cols[-1] + 1))  # contiguous
            frames = batch.frames[r][:, cols].numpy()
            matches = [key for key, (tokens, _) in built.items() if np.array_equal(tokens, frames)]
            assert matches, "a packed example differs from every example built for this batch"
            assert torch.equal(batch.position_ids[r, cols], torch.arange(len(cols)))


def test_attention_never_crosses_examples_and_no_first_frame_is_a_target(setting):
    from transformers import LlamaConfig

    from opuslm.model.loss import next_frame_mask
    from opuslm.model.multistream import OpusLM

    vocab = setting[0]
    config = LlamaConfig(vocab_size=vocab.text_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    model = OpusLM.from_llm(config, vocab).eval()
    batch = loader(setting).next_batch()
    with torch.no_grad():
        packed = model(batch.frames, position_ids=batch.position_ids, document_ids=batch.document_ids).last_hidden_state
        row = batch.document_ids[0]
        for document in row.unique().tolist():
            if document < 0:
                continue
            cols = (row == document).nonzero()[:, 0]
            alone = model(batch.frames[:1, :, cols]).last_hidden_state
            assert (packed[0, cols] - alone[0]).abs().max() < 1e-5
    targets = next_frame_mask(batch.loss_mask, batch.document_ids)
    starts = (batch.document_ids[:, 1:] != batch.document_ids[:, :-1])
    assert not targets.permute(1, 0, 2)[:, starts].any()


def test_the_stream_is_deterministic_and_the_seed_matters(setting):
    a, b, c = loader(setting), loader(setting), loader(setting, seed=1)
    for _ in range(5):
        x, y, z = a.next_batch(), b.next_batch(), c.next_batch()
        assert torch.equal(x.frames, y.frames) and torch.equal(x.loss_mask, y.loss_mask)
    assert not torch.equal(x.frames, z.frames)


def test_restoring_the_state_continues_the_same_stream(setting):
    original = loader(setting)
    for _ in range(3):
        original.next_batch()
    state = original.state()
    assert state["buffer"], "the test needs a partly consumed buffer"
    expected = [original.next_batch() for _ in range(4)]
    resumed = loader(setting)
    resumed.load_state(state)
    for want in expected:
        got = resumed.next_batch()
        assert torch.equal(got.frames, want.frames) and torch.equal(got.document_ids, want.document_ids)


def test_ranks_split_the_rows_of_one_global_batch(setting):
    alone, first, second = loader(setting), loader(setting, rank=0, world=2), loader(setting, rank=1, world=2)
    for _ in range(3):
        whole, a, b = alone.next_batch(), first.next_batch(), second.next_batch()
        assert torch.equal(whole.frames[0::2], a.frames) and torch.equal(whole.frames[1::2], b.frames)
    with pytest.raises(OpusLMError, match="multiple of the number of ranks"):
        loader(setting, rank=0, world=3)


def test_sources_are_drawn_in_proportion_to_their_weights(setting):
    stream = loader(setting)
    for _ in range(2000):
        stream._draw()
    drawn = np.array(stream.counters) / 2000
    assert np.allclose(drawn, [2 / 4.5, 1 / 4.5, 0.5 / 4.5, 1 / 4.5], atol=0.03)


def test_every_item_is_seen_once_per_epoch(setting):
    stream = loader(setting)
    source = stream.sources[0]
    seen = [stream._item(0, draw) for draw in range(len(source.items))]
    assert sorted(seen) == sorted(source.items)


def test_items_a_task_cannot_use_are_counted_with_their_reason(setting):
    _, builder, delays, datasets = setting
    config = DataConfig.model_validate({"sources": [{"name": "q", "dataset": "c", "task": "sttc"}], "row_frames": 400, "rows": 2})
    try:
        stream = PackedLoader(config, datasets, builder, delays)
    except OpusLMError as error:  # the tiny corpus may hold no train question at all
        assert "no usable train items" in str(error) and "not a question" in str(error)
        return
    source = stream.sources[0]
    train = sum(1 for i in range(len(source.shards)) if source.shards.meta(i)["split"] == "train")
    assert len(source.items) + sum(source.skipped.values()) == train
    assert "not a question" in stream.describe()


def test_a_text_file_source_feeds_text_lm(setting, tmp_path):
    _, builder, delays, _ = setting
    text = tmp_path / "text.txt"
    text.write_text("the first document\n\nthe second one\n")
    config = DataConfig.model_validate({"sources": [{"name": "t", "dataset": "t", "task": "text_lm"}], "row_frames": 64, "rows": 1})
    stream = PackedLoader(config, {"t": str(text)}, builder, delays)
    assert len(stream.sources[0].items) == 2  # the blank line is not a document
    with pytest.raises(OpusLMError, match="serves only the text_lm task"):
        PackedLoader(DataConfig.model_validate({"sources": [{"name": "t", "dataset": "t", "task": "asr"}]}),
                     {"t": str(text)}, builder, delays)


def test_a_text_folder_gives_each_split_its_own_file(setting, tmp_path):
    _, builder, delays, _ = setting
    (tmp_path / "train.txt").write_text("one two\nthree four\nfive six\n")
    (tmp_path / "dev.txt").write_text("held out\n")
    config = {"sources": [{"name": "t", "dataset": "t", "task": "text_lm"}], "row_frames": 64, "rows": 1}
    train = PackedLoader(DataConfig.model_validate(config), {"t": str(tmp_path)}, builder, delays).sources[0]
    config["sources"][0]["split"] = "dev"
    dev = PackedLoader(DataConfig.model_validate(config), {"t": str(tmp_path)}, builder, delays).sources[0]
    assert (train.texts, dev.texts) == (["one two", "three four", "five six"], ["held out"])
    config["sources"][0]["split"] = "test"
    with pytest.raises(OpusLMError, match="text file not found: .*test.txt"):
        PackedLoader(DataConfig.model_validate(config), {"t": str(tmp_path)}, builder, delays)


def test_ctc_spans_cover_exactly_the_heard_audio_and_carry_its_transcript(setting):
    vocab, _, delays, datasets = setting
    shards = TokenShards(datasets["c"])
    by_text = {tuple(shards[i].text_ids): shards[i] for i in range(len(shards))}
    stream = loader(setting, ctc_weight=0.3)
    assert loader(setting).next_batch().heard is None  # off unless asked
    heard_tasks = 0
    for _ in range(3):
        batch = stream.next_batch()
        assert batch.heard.weight == 0.3
        for row, (start, end), transcript in zip(batch.heard.rows, batch.heard.spans, batch.heard.transcripts):
            utterance = by_text[tuple(transcript.tolist())]
            semantic = batch.frames[row, 0, start:start + len(utterance.semantic)]
            assert torch.equal(semantic, torch.as_tensor(vocab.semantic(utterance.semantic)))  # stream 0: the audio
            last_code = batch.frames[row, -1, end - 1]  # the last codebook's last frame, max(delays) later
            assert last_code == vocab.codes(utterance.codes)[-1, -1]
            assert end - start == len(utterance.semantic) + max(delays)
            assert set(batch.document_ids[row, start:end].tolist()) == {batch.document_ids[row, start].item()}
            heard_tasks += 1
        listening = {vocab.task("asr"), vocab.task("ser")}  # the mixture's tasks that hear audio
        examples_heard = sum(1 for r in range(batch.frames.shape[0]) for d in batch.document_ids[r].unique().tolist()
                             if d >= 0 and set(batch.frames[r, 0][batch.document_ids[r] == d].tolist()) & listening)
        assert len(batch.heard.rows) == examples_heard
    assert heard_tasks > 0


def test_audio_masking_pads_spans_of_the_heard_audio_only_and_is_deterministic(setting):
    import random

    from opuslm.batch_stream import mask_heard_audio

    tokens = np.arange(1, 3 * 40 + 1).reshape(3, 40)
    mask_heard_audio(tokens, (10, 30), share=0.5, span=4, rng=random.Random(0))
    padded = np.flatnonzero((tokens == PAD_ID).all(0))
    assert len(padded) > 0 and padded.min() >= 10 and padded.max() < 30  # inside the heard frames
    assert (tokens[:, :10] != PAD_ID).all() and (tokens[:, 30:] != PAD_ID).all()
    assert len(padded) <= round(0.5 * 20 / 4) * 4

    plain, masked, again = (loader(setting, **kw).next_batch() for kw in ({}, {"audio_mask": 0.3}, {"audio_mask": 0.3}))
    assert torch.equal(masked.frames, again.frames)
    dropped = (plain.frames != PAD_ID) & (masked.frames == PAD_ID)
    assert dropped.any() and not ((plain.frames == PAD_ID) & (masked.frames != PAD_ID)).any()
    vocab = setting[0]
    assert (plain.frames[dropped] >= vocab.semantic_offset).all() and (plain.frames[dropped] < vocab.text_offset).all()
