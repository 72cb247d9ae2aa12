"""The continuous input path: the semantic tokenizer's features of the audio a task listens to, cached in
the shards and added through an adapter. Cached features equal a fresh encode; they sit where stream 0
puts its frames, in training and in decoding alike; the path adds exactly nothing until trained and
nothing where no audio is heard; a model with it trains, saves, loads and listens through it."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from opuslm.batch_stream import HeardFeatures, heard_steps
from opuslm.errors import OpusLMError
from opuslm.infer.decode import Prompt, prompt_features
from opuslm.interleave import delay
from opuslm.model.config import MultiStreamConfig
from opuslm.model.multistream import OpusLM, reads_heard_features
from opuslm.tokenize import pipeline
from opuslm.tokenize.shards import TokenShards
from opuslm.vocab import PAD_ID, JointVocab

from test_model import VOCAB, saved_llm

STAGES = Path(__file__).resolve().parents[1] / "stages"


def test_cached_features_equal_a_fresh_encode_and_leave_the_ids_as_they_were(heard_shards, tiny_shards, tiny_tokenizers,
                                                                              small_corpus):
    from opuslm.audio import resample
    from opuslm.data.manifest import read_manifest

    heard, plain = TokenShards(heard_shards), TokenShards(tiny_shards)
    dim = pipeline.SpeechTokenizers(tiny_tokenizers).semantic.feature_dim
    assert heard.feature_dim == dim > 0 and plain.feature_dim == 0 and plain[0].features is None
    fresh = pipeline.SpeechTokenizers(tiny_tokenizers, heard_features=True)
    utterances = read_manifest(small_corpus)[:24]
    for i in (0, 9, 10, 23):  # both sides of a shard boundary
        u = utterances[i]
        wav, _ = u.load_audio(small_corpus, target_rate=fresh.acoustic.sample_rate)
        semantic, codes, features = fresh.encode_audio([wav])[0]
        got = heard[i]
        assert got.features.dtype == np.float16 and got.features.shape == (len(got.semantic), dim)
        assert np.array_equal(got.features, features)
        assert np.array_equal(got.semantic, semantic) and np.array_equal(got.codes, codes)
        assert np.array_equal(got.semantic, plain[i].semantic) and np.array_equal(got.codes, plain[i].codes)
        raw = fresh.semantic.features(resample(wav, fresh.acoustic.sample_rate, fresh.semantic.sample_rate))
        mean, std = fresh.semantic.normalization
        aligned = pipeline.align_to_frames((raw - mean) / std, fresh.semantic.frame_rate, fresh.acoustic.frame_rate,
                                           len(semantic))
        assert np.allclose(got.features, aligned, atol=2e-2, rtol=1e-2)  # float16's rounding


def test_tokenizing_into_shards_of_the_other_kind_is_refused(heard_shards, small_corpus, tiny_tokenizers):
    info = TokenShards(heard_shards).info
    with pytest.raises(OpusLMError, match="holds shards with heard features; this run tokenizes without them"):
        pipeline.tokenize_corpus(info["manifest"], heard_shards, tiny_tokenizers, shard_size=10, progress=False)


@pytest.mark.parametrize("delays", [[0, 1, 2, 3], [1, 1, 2, 3], [2, 2, 2, 2]])
def test_heard_features_sit_in_stream_0s_delayed_steps_and_masked_frames_hide_theirs(delays):
    rng = np.random.default_rng(0)
    frames, start, end = 20, 5, 14
    tokens = rng.integers(10, 50, (4, frames))
    tokens[:, 8:10] = PAD_ID  # an audio mask's span
    features = rng.normal(size=(end - start, 3)).astype(np.float16)
    steps = frames + max(delays)
    values, present = heard_steps(tokens, (start, end), features, delays[0], steps)
    delayed = delay(torch.from_numpy(tokens), delays, PAD_ID)
    for s in range(steps):  # naive: step s holds stream 0's frame s - delays[0]
        t = s - delays[0]
        heard = start <= t < end and tokens[0, t] != PAD_ID
        assert present[s] == heard
        assert np.array_equal(values[s], features[t - start] if heard else np.zeros(3, np.float16))
        if heard:
            assert delayed[0, s] == tokens[0, t]
    with pytest.raises(OpusLMError, match="8 frames of heard features beside 9 heard audio frames"):
        heard_steps(tokens, (start, end), features[:8], delays[0], steps)


def test_decoding_puts_a_prompts_features_where_training_puts_them():
    rng = np.random.default_rng(1)
    features = [rng.normal(size=(n, 3)).astype(np.float16) for n in (6, 9)]
    prompts = [Prompt(np.full((4, 3 + len(f)), 7), "text", 1, 5, (2, 2 + len(f)), f) for f in features]
    d0 = 1
    known = [p.frames.shape[1] + d0 for p in prompts]
    got = prompt_features(prompts, known, max(known), d0)
    for b, prompt in enumerate(prompts):  # naive: right-aligned (left padding), frame t at column t + d0
        pad = max(known) - known[b]
        for column in range(max(known)):
            t = column - pad - d0
            heard = prompt.heard[0] <= t < prompt.heard[1]
            assert bool(got.present[b, column]) == heard
            expected = prompt.features[t - prompt.heard[0]].astype(np.float32) if heard else np.zeros(3, np.float32)
            assert torch.equal(got.values[b, column], torch.from_numpy(expected))
    assert prompt_features([Prompt(np.zeros((4, 3)), "text", 1, 5)], [4], 4, d0) is None


def grown(tmp_path, heard: int):
    _, folder = saved_llm(tmp_path, "llama")
    return OpusLM.from_llm(folder, VOCAB, MultiStreamConfig(heard_features=heard)).eval()


def random_heard(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    present = torch.zeros(shape, dtype=torch.bool)
    present[:, 3:7] = True
    values = torch.randn(*shape, 5, generator=generator) * present.unsqueeze(-1)
    return HeardFeatures(values, present)


def test_the_path_adds_nothing_until_trained_and_nothing_where_no_audio_is_heard(tmp_path):
    plain, with_path = grown(tmp_path / "a", 0), grown(tmp_path / "b", 5)
    assert not hasattr(plain, "heard_adapter")
    frames = torch.randint(0, VOCAB.size, (2, VOCAB.num_streams, 10), generator=torch.Generator().manual_seed(0))
    heard = random_heard((2, 10), 1)
    with torch.no_grad():
        assert torch.equal(with_path(frames, heard=heard).last_hidden_state, plain(frames).last_hidden_state)
        torch.nn.init.normal_(with_path.heard_adapter[2].weight)
        changed = with_path.embed(frames, heard) - plain.embed(frames)
    assert changed[heard.present].abs().min() > 0 and torch.equal(changed[~heard.present], torch.zeros_like(changed[~heard.present]))
    with pytest.raises(OpusLMError, match="heard features were given to a model without the continuous input path"):
        plain.embed(frames, heard)


def test_the_adapter_is_drawn_from_the_init_seed_whatever_the_process_drew_before(tmp_path):
    """Its first layer was drawn from the global generator, so the same schedule gave other gradients
    from step 1 on in another process (`opuslm demo` against `opuslm stages run`)."""
    _, folder = saved_llm(tmp_path, "llama")
    adapters = []
    for global_seed, seed in ((1, 0), (2, 0), (1, 3)):
        torch.manual_seed(global_seed)
        model = OpusLM.from_llm(folder, VOCAB, MultiStreamConfig(heard_features=5), seed=seed)
        adapters.append([p.detach().clone() for p in model.heard_adapter[0].parameters()])
    assert all(torch.equal(a, b) for a, b in zip(adapters[0], adapters[1]))
    assert not any(torch.equal(a, b) for a, b in zip(adapters[0], adapters[2]))
    weight, bias = adapters[0]
    assert weight.shape[1] == 5 and weight.abs().max() <= 5 ** -0.5 and bias.abs().max() <= 5 ** -0.5
    assert weight.std() > 0.5 * 5 ** -0.5 / 3 ** 0.5  # uniform over the bound, as nn.Linear draws it, not shrunk


def test_a_model_with_the_path_saves_and_loads_its_adapter(tmp_path):
    model = grown(tmp_path, 5)
    with torch.no_grad():
        for p in model.heard_adapter.parameters():
            p.normal_()
    model.save_pretrained(tmp_path / "saved")
    loaded = OpusLM.from_pretrained(tmp_path / "saved").eval()
    assert reads_heard_features(tmp_path / "saved") == 5 and loaded.config.heard_features == 5
    frames = torch.randint(0, VOCAB.size, (2, VOCAB.num_streams, 10), generator=torch.Generator().manual_seed(0))
    heard = random_heard((2, 10), 2)
    with torch.no_grad():
        assert torch.equal(loaded(frames, heard=heard).last_hidden_state, model(frames, heard=heard).last_hidden_state)
    from safetensors.torch import load_file, save_file

    state = load_file(tmp_path / "saved" / "streams.safetensors")
    save_file({"stream_offsets": state["stream_offsets"]}, tmp_path / "saved" / "streams.safetensors")
    (tmp_path / "saved" / "checksums.json").unlink()
    with pytest.raises(OpusLMError, match="streams.safetensors holds stream_offsets but the model's config needs"):
        OpusLM.from_pretrained(tmp_path / "saved")


def schedule_file(folder, shards, heard: bool):
    schedule = {
        "out": str(folder / "out"), "tokens": "speech", "datasets": {"speech": str(shards), "text": str(shards)},
        "init": {"preset": "tiny", "heard_features": heard},
        "stages": [{"file": str(STAGES / "pretrain.yaml"), "overrides": {
            "steps": 3, "lr": {"peak": 3e-3, "warmup": 1}, "checkpoint_every": 3,
            "data": {"row_frames": 512, "rows": 2, "sources": [{"name": "asr", "dataset": "speech", "task": "asr"}]},
            "validation": {"every": 3, "batches": 1, "split": "train"}}}],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "schedule.yaml").write_text(yaml.safe_dump(schedule))
    return folder / "schedule.yaml"


def test_a_schedule_with_the_path_trains_its_adapter_and_the_model_listens_through_it(heard_shards, tiny_shards,
                                                                                      small_corpus, tmp_path):
    from opuslm.audio import load_audio
    from opuslm.data.manifest import read_manifest
    from opuslm.infer.sampling import Sampling
    from opuslm.infer.speech_lm import SpeechLM
    from opuslm.train.stages import run_schedule, stage_model

    with pytest.raises(OpusLMError, match=r"has no heard features to size the continuous input path by.*--heard-features"):
        run_schedule(schedule_file(tmp_path / "plain", tiny_shards, heard=True), progress=False)
    run_schedule(schedule_file(tmp_path / "heard", heard_shards, heard=True), progress=False)
    folder = stage_model(tmp_path / "heard" / "out", "pretrain")
    model = OpusLM.from_pretrained(folder)
    assert model.heard_adapter[2].weight.abs().sum() > 0  # it learned from the features
    lm = SpeechLM.load(folder, sampling=Sampling(greedy_audio=True))
    assert lm.tokenizers.heard_features
    audios = [load_audio(u.audio_path(small_corpus)) for u in read_manifest(small_corpus)[:3]]
    batched = lm.transcribe(audios, max_tokens=5)
    assert batched == [lm.transcribe([a], max_tokens=5)[0] for a in audios]
    prompt = lm._prompt("asr", lm.tokenize_audio(audios[0]), "text", 5, "clip", "--max-tokens")
    assert prompt.features is not None and prompt.heard[1] - prompt.heard[0] == len(prompt.features)
    assert lm._prompt("sgc", lm.tokenize_audio(audios[0]), "text", 5, "clip", "--max-tokens", instruct=True).features is None
    with pytest.raises(OpusLMError, match="tokenize it again with `opuslm tokenize --heard-features`"):
        reused = yaml.safe_load(schedule_file(tmp_path / "again", tiny_shards, heard=False).read_text())
        reused["init"] = {"model": str(folder)}
        (tmp_path / "again" / "schedule.yaml").write_text(yaml.safe_dump(reused))
        run_schedule(tmp_path / "again" / "schedule.yaml", progress=False)


def test_heard_dropout_withholds_whole_examples_features_and_nothing_else(heard_shards, tiny_tokenizers):
    import random

    from opuslm.batch_stream import PackedLoader
    from opuslm.templates import TemplateBuilder
    from opuslm.tokenize.text import load_text_tokenizer
    from opuslm.train.config import DataConfig

    shards = TokenShards(heard_shards)
    vocab = JointVocab.from_tokens(heard_shards)
    delays = list(range(vocab.num_streams))
    builder = TemplateBuilder(vocab, load_text_tokenizer(shards.tokenizer_path("text")), max_delay=delays[-1])

    def examples(dropout: float, task: str = "asr"):
        config = DataConfig.model_validate({"sources": [{"name": "a", "dataset": "s", "task": task}],
                                            "audio_mask": 0.2, "heard_dropout": dropout})
        source = PackedLoader(config, {"s": str(heard_shards)}, builder, delays, heard_features=shards.feature_dim).sources[0]
        return [source.example(item, random.Random(item)) for item in source.items]

    kept, dropped, half = examples(0.0), examples(1.0), examples(0.5)
    assert all(values.any() for _, _, _, (values, _) in kept)
    withheld = 0
    for full, none, either in zip(kept, dropped, half):
        for built in (none, either):
            assert np.array_equal(built[0], full[0]) and np.array_equal(built[1], full[1])  # ids and loss mask
        assert not none[3][0].any() and not none[3][1].any()
        same = np.array_equal(either[3][0], full[3][0]) and np.array_equal(either[3][1], full[3][1])
        assert same or (not either[3][0].any() and not either[3][1].any())
        withheld += not same
    assert 0 < withheld < len(kept)
    # a task of the voice (`heard_features: false` in tasks.yaml) never reads them, dropout or not
    voice = examples(0.0, "sgc")
    assert voice and all(features is None for _, _, heard, features in voice)


def test_ctc_on_the_adapter_scores_its_output_by_pad_and_the_text_rows_and_trains_it_alone(tmp_path):
    """`data.ctc_layer: adapter` and the `heard_ctc` objective: the same naive CTC as the decoder's, over
    the adapter's output instead of the last hidden states; the objective moves the adapter and nothing else."""
    from opuslm.batch_stream import HeardTranscripts
    from opuslm.train.tuning import train_only_heard_adapter

    from test_model import naive_ctc, random_batch

    model = grown(tmp_path, 5).train()
    with torch.no_grad():
        torch.nn.init.normal_(model.heard_adapter[2].weight)
    features = random_heard((2, 12), 3)
    heard = HeardTranscripts(rows=[0, 1], spans=[(3, 7), (3, 9)], transcripts=[torch.tensor([4, 9]), torch.tensor([0])],
                             weight=0.5, layer="adapter")
    out = model.adapter_ctc_loss(heard, features)
    head = model.backbone.get_output_embeddings().weight.double()
    allowed = [PAD_ID] + list(range(VOCAB.text_offset, VOCAB.size))
    added = model.heard_input(features, torch.float32).double()
    expected = sum(naive_ctc((added[row, start:end] @ head[allowed].T).log_softmax(-1), [int(i) + 1 for i in transcript])
                   for row, (start, end), transcript in zip(heard.rows, heard.spans, heard.transcripts))
    assert out.frames == int(features.present.sum()) == 8
    assert np.isclose(out.weighted_sum.item(), 0.5 * expected.item(), rtol=1e-4)
    assert np.isclose(out.per_stream["ctc"], expected.item() / 3, rtol=1e-4)
    frames, mask = random_batch(2)  # the next-frame loss asks the same of the adapter (its steps cut by one)
    assert np.isclose((model.loss(frames[..., :12], mask[..., :12], heard=heard, features=features).weighted_sum
                       - model.loss(frames[..., :12], mask[..., :12], features=features).weighted_sum).item(),
                      0.5 * expected.item(), rtol=1e-4)
    train_only_heard_adapter(model)
    model.adapter_ctc_loss(heard, features).loss.backward()
    trained = {name for name, p in model.named_parameters() if p.grad is not None}
    assert trained == {f"heard_adapter.{k}" for k in ("0.weight", "0.bias", "2.weight", "2.bias")}
    with pytest.raises(OpusLMError, match="objective heard_ctc trains the continuous input path's adapter, but the model has none"):
        train_only_heard_adapter(grown(tmp_path / "plain", 0))


def test_adapter_ctc_asks_only_for_audio_whose_features_the_batch_holds(heard_shards, tiny_tokenizers):
    """Without features (heard_dropout) the adapter outputs zero, so its CTC would be a constant: left out."""
    from opuslm.batch_stream import PackedLoader
    from opuslm.templates import TemplateBuilder
    from opuslm.tokenize.text import load_text_tokenizer
    from opuslm.train.config import DataConfig

    shards = TokenShards(heard_shards)
    vocab = JointVocab.from_tokens(heard_shards)
    delays = list(range(vocab.num_streams))
    builder = TemplateBuilder(vocab, load_text_tokenizer(shards.tokenizer_path("text")), max_delay=delays[-1])

    def batch(layer: str, dropout: float):
        config = DataConfig.model_validate({"sources": [{"name": "a", "dataset": "s", "task": "asr"}], "rows": 2,
                                            "row_frames": 512, "ctc_weight": 1.0, "ctc_layer": layer,
                                            "heard_dropout": dropout})
        batch = PackedLoader(config, {"s": str(heard_shards)}, builder, delays, heard_features=shards.feature_dim).next_batch()
        assert batch.heard.layer == layer
        return batch

    def heard_segments(layer: str, dropout: float) -> int:
        return len(batch(layer, dropout).heard.rows)

    assert heard_segments("adapter", 0.0) == heard_segments("output", 0.0) == heard_segments("output", 1.0) > 0
    assert heard_segments("adapter", 1.0) == 0
    # the adapter is asked over exactly its steps with features (it outputs zero on the trailer, where any
    # token would cost what the blank does); the output over the audio and the trailer of the delays
    adapter, output = batch("adapter", 0.0), batch("output", 0.0)
    present = adapter.features.present
    for row, (start, end), (same_start, later_end) in zip(adapter.heard.rows, adapter.heard.spans, output.heard.spans):
        assert present[row, start:end].all() and not present[row, start - 1] and not present[row, end]
        assert (same_start, later_end) == (start, end + delays[-1])
    assert int(present.sum()) == sum(end - start for start, end in adapter.heard.spans)


def test_a_heard_ctc_stage_trains_the_adapter_alone_and_the_next_stage_starts_from_it(heard_shards, tiny_shards, tmp_path):
    from safetensors.torch import load_file

    from opuslm.train.config import StageConfig
    from opuslm.train.stages import run_schedule, stage_model

    path = schedule_file(tmp_path, heard_shards, heard=True)
    schedule = yaml.safe_load(path.read_text())
    listen = {"file": str(STAGES / "listen.yaml"), "overrides": {  # the shipped warm-up, shrunk
        "steps": 3, "lr": {"warmup": 1}, "checkpoint_every": 3, "data": {"row_frames": 512, "rows": 2},
        "validation": {"every": 3, "batches": 1, "split": "train"}}}
    schedule["stages"][0]["overrides"].update({"from": "listen"})
    schedule["stages"].insert(0, listen)
    schedule["init"]["heard_mix"] = "text_posterior"
    path.write_text(yaml.safe_dump(schedule))
    run_schedule(path, progress=False)
    out = tmp_path / "out"
    init, warmed = (OpusLM.from_pretrained(stage_model(out, s)) for s in ("init", "listen"))
    assert all(torch.equal(a, b) for a, b in zip(init.backbone.state_dict().values(), warmed.backbone.state_dict().values()))
    assert torch.equal(init.stream_offsets, warmed.stream_offsets)
    assert not torch.equal(init.heard_adapter[2].weight, warmed.heard_adapter[2].weight)
    assert init.config.heard_mix == warmed.config.heard_mix == "text_posterior"
    assert (stage_model(out, "pretrain").parent / "summary.json").is_file()
    records = [yaml.safe_load(line) for line in (out / "listen" / "log.jsonl").read_text().splitlines()]
    logged = [r for r in records if "per_stream" in r]
    assert logged and all(set(r["per_stream"]) == {"ctc"} for r in logged)
    # the untrained adapter outputs zero, so any batch's CTC per loss frame is about the same: validation at
    # step 0 and step 1's training loss (before its update) agree when both divide by the same frames
    assert 0.67 < records[0]["validation"]["asr"] / logged[0]["loss"] < 1.5
    trained = load_file(stage_model(out, "listen") / "streams.safetensors")
    assert torch.equal(trained["heard_adapter.2.weight"], warmed.heard_adapter[2].weight)

    base = {"name": "s", "steps": 1, "objective": "heard_ctc", "data": {"sources": [{"name": "a", "dataset": "s", "task": "asr"}]}}
    with pytest.raises(ValueError, match="set data.ctc_weight above 0 and data.ctc_layer: adapter"):
        StageConfig.model_validate(base)
    base["data"].update({"ctc_weight": 1.0, "ctc_layer": "adapter"})
    with pytest.raises(ValueError, match="drop tune.lora"):
        StageConfig.model_validate({**base, "tune": {"lora": {"rank": 2}}})
    schedule = yaml.safe_load(schedule_file(tmp_path / "plain", tiny_shards, heard=False).read_text())
    schedule["stages"][0]["overrides"]["data"].update({"ctc_weight": 1.0, "ctc_layer": "adapter"})
    (tmp_path / "plain" / "schedule.yaml").write_text(yaml.safe_dump(schedule))
    with pytest.raises(OpusLMError, match="data.ctc_layer adapter asks the continuous input path's adapter"):
        run_schedule(tmp_path / "plain" / "schedule.yaml", progress=False)


def test_the_text_posterior_mix_adds_the_heard_words_as_the_llms_own_rows(tmp_path):
    """heard_mix text_posterior: at each heard step the softmax of the adapter's output over the blank and
    the text rows, times the text rows (the blank adds nothing); zero where nothing is heard; a confident
    output adds its word's row itself."""
    folder = saved_llm(tmp_path, "llama")[1]
    model = OpusLM.from_llm(folder, VOCAB, MultiStreamConfig(heard_features=5, heard_mix="text_posterior")).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.heard_adapter[2].weight)
        features = random_heard((2, 10), 4)
        added = model.heard_input(features, torch.float32)
        head = model.backbone.get_output_embeddings().weight  # this LLM's head is not tied to its embeddings
        text = model.backbone.get_input_embeddings().weight[VOCAB.text_offset:]
        logits = model.heard_adapter(features.values) @ torch.cat([head[PAD_ID:PAD_ID + 1], head[VOCAB.text_offset:]]).T
        naive = logits.softmax(-1)[..., 1:] @ text
        assert torch.allclose(added[features.present], naive[features.present], atol=1e-6)
        assert not added[~features.present].any()
        word = 17  # an adapter whose output is a large multiple of one word's row adds that row
        model.heard_adapter[2].weight.zero_()
        model.heard_adapter[2].bias.copy_(500 * head[VOCAB.text_offset + word] / head[VOCAB.text_offset + word].norm())
        confident = model.heard_input(features, torch.float32)[features.present]
        assert torch.allclose(confident, text[word].expand_as(confident), atol=1e-3)
    with pytest.raises(OpusLMError, match="heard_mix must be one of adapter, text_posterior"):
        MultiStreamConfig(heard_features=5, heard_mix="words")


def test_a_heard_mix_without_the_path_is_refused(heard_shards, tmp_path):
    from opuslm.model.init import init_model

    with pytest.raises(OpusLMError, match="heard_mix text_posterior shapes the continuous input path: turn on heard_features"):
        init_model(heard_shards, tmp_path / "m", preset="tiny", heard_mix="text_posterior")
