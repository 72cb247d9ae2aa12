"""Batched decoding: an oracle model must reproduce its targets exactly (ramp, tail and all); a real
tiny model must give batched == single (greedy) and only valid ids per stream."""

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from opuslm.infer.decode import Prompt, generate, teacher_forced
from opuslm.infer.sampling import Sampling
from opuslm.interleave import delay, undelay
from opuslm.model.multistream import OpusLM
from opuslm.templates import TemplateBuilder
from opuslm.tokenize.shards import TokenizedUtterance
from opuslm.vocab import PAD_ID, JointVocab

VOCAB = JointVocab(semantic_size=16, num_codebooks=3, codebook_size=8, text_size=120)


class OracleModel(torch.nn.Module):
    """Knows each sequence's full delayed frames; at position p it predicts delayed frame p+1. The
    hidden state carries (batch row, position) so `stream_logits` can look the answer up."""

    def __init__(self, sequences: list[torch.Tensor], delays, vocab):
        super().__init__()
        self.vocab, self.delays = vocab, delays
        self.sequences = sequences  # delayed [N, S] per batch row
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls = []

    def forward(self, frames, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False):
        batch, _, steps = frames.shape
        self.calls.append(steps)
        rows = torch.arange(batch)[:, None].expand(batch, steps)
        hidden = torch.stack([rows.float(), position_ids.float()], -1)
        return SimpleNamespace(last_hidden_state=hidden, past_key_values=None)

    def stream_logits(self, hidden, stream):
        start, end = self.vocab.stream_range(stream)
        logits = torch.full((*hidden.shape[:-1], end - start), -10.0)
        for index in np.ndindex(*hidden.shape[:-1]):
            row, position = int(hidden[index][0]), int(hidden[index][1])
            sequence = self.sequences[row]
            if position + 1 < sequence.shape[1]:
                target = int(sequence[stream, position + 1])
                if start <= target < end:
                    logits[index + (target - start,)] = 10.0
        return logits

    def codebook_logits(self, hidden):
        return torch.stack([self.stream_logits(hidden, n) for n in range(1, self.vocab.num_streams)], -2)


def example(rng: random.Random, frames: int, text_len: int) -> TokenizedUtterance:
    return TokenizedUtterance(
        np.array([rng.randrange(2, 120) for _ in range(text_len)]),  # 0/1 are the tokenizer's specials
        np.array([rng.randrange(16) for _ in range(frames)]),
        np.array([[rng.randrange(8) for _ in range(frames)] for _ in range(3)]), {"id": "x", "text": ""})


class DigitTokenizer:
    """Just enough of a tokenizer for asr/tts/audio_lm templates: they use the stored text ids."""

    eos_token_id = 1

    def __len__(self):
        return 120


@pytest.mark.parametrize("delays", [[0, 1, 2, 3], [0, 1, 1, 1], [0, 2, 3, 5], [1, 1, 2, 2]])
def test_an_oracle_is_reproduced_exactly_ramp_and_tail_included(delays):
    """Prompts of different lengths and both target kinds in one batch; each sequence's generated
    frames must equal its template's target frames, every stream to its last frame."""
    builder = TemplateBuilder(VOCAB, DigitTokenizer(), max_delay=max(delays))
    rng = random.Random(sum(delays))
    cases = [("asr", example(rng, 7, 5)), ("tts", example(rng, 9, 3)), ("asr", example(rng, 2, 9)),
             ("tts", example(rng, 4, 8)), ("audio_lm", example(rng, 6, 1))]
    built = [builder.build(task, ex, rng, speaker_prompt=example(rng, 5, 1)) for task, ex in cases]
    prompts, targets, sequences = [], [], []
    for (task, _), frames in zip(cases, built):
        start = frames.target_start if task != "audio_lm" else 3 + 2  # continue after 2 audio frames
        eos = int(np.nonzero(frames.tokens[0] == VOCAB.special("<eos>"))[0][-1])
        prompts.append(Prompt(frames.tokens[:, :start], "text" if task == "asr" else "audio", VOCAB.special("<eos>"), 50))
        targets.append(frames.tokens[:, start:eos])
        sequences.append(delay(torch.from_numpy(frames.tokens), delays, PAD_ID))
    oracle = OracleModel(sequences, delays, VOCAB)
    results = generate(oracle, prompts, Sampling(greedy_audio=True))
    for result, target in zip(results, targets):
        assert result.stopped
        assert np.array_equal(result.frames, target)
    # O(T): one prompt pass, then one frame per call
    assert oracle.calls[0] == max(p.frames.shape[1] for p in prompts) + delays[0] and set(oracle.calls[1:]) == {1}


def test_max_frames_stops_a_sequence_without_a_stop_id():
    builder = TemplateBuilder(VOCAB, DigitTokenizer(), max_delay=3)
    frames = builder.build("tts", example(random.Random(0), 9, 3), random.Random(0))
    never_stops = OracleModel([delay(torch.from_numpy(frames.tokens[:, :-5]), [0, 1, 2, 3], PAD_ID)], [0, 1, 2, 3], VOCAB)
    start = frames.target_start
    result = generate(never_stops, [Prompt(frames.tokens[:, :start], "audio", VOCAB.special("<eos>"), 4)],
                      Sampling(greedy_audio=True))[0]
    assert not result.stopped and result.frames.shape == (4, 4)
    assert np.array_equal(result.frames, frames.tokens[:, start:start + 4])


def tiny_model(delays=None):
    from transformers import LlamaConfig

    from opuslm.model.config import MultiStreamConfig

    config = LlamaConfig(vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    model = OpusLM.from_llm(config, VOCAB, MultiStreamConfig(delays=delays), seed=3).eval()
    with torch.no_grad():
        model.stream_offsets.normal_()
    return model


def random_prompts(seed: int, count: int) -> list[Prompt]:
    rng = np.random.default_rng(seed)
    prompts = []
    for i in range(count):
        length = int(rng.integers(1, 12))
        frames = np.zeros((VOCAB.num_streams, length), np.int64)
        frames[0] = rng.integers(VOCAB.text_offset, VOCAB.size, length)
        prompts.append(Prompt(frames, "text" if i % 2 else "audio", VOCAB.special("<eos>"), int(rng.integers(3, 15))))
    return prompts


@pytest.mark.parametrize("delays", [None, [0, 1, 1, 1]])
def test_greedy_batched_generation_equals_single_generations(delays):
    model = tiny_model(delays)
    prompts = random_prompts(0, 6)
    sampling = Sampling(greedy_audio=True)
    batched = generate(model, prompts, sampling)
    for prompt, result in zip(prompts, batched):
        single = generate(model, [prompt], sampling)[0]
        assert np.array_equal(result.frames, single.frames) and result.stopped == single.stopped


def test_generated_ids_are_always_valid_for_their_stream_and_target():
    model = tiny_model()
    for seed in range(3):
        prompts = random_prompts(seed, 5)
        for prompt, result in zip(prompts, generate(model, prompts, Sampling(seed=seed, temperature=1.5, top_k=0))):
            frames = result.frames
            assert frames.shape[1] <= prompt.max_frames
            head = frames[0]
            if prompt.target == "text":
                assert ((head >= VOCAB.text_offset) & (head < VOCAB.size)).all()
                assert (frames[1:] == PAD_ID).all()
            else:
                assert ((head >= VOCAB.semantic_offset) & (head < VOCAB.codebook_offset(0))).all()
                for n in range(1, VOCAB.num_streams):
                    start, end = VOCAB.stream_range(n)
                    assert ((frames[n] >= start) & (frames[n] < end)).all()


def test_sampling_is_seeded():
    model = tiny_model()
    prompts = [p for p in random_prompts(1, 4) if p.target == "audio"]
    a = generate(model, prompts, Sampling(seed=7))
    b = generate(model, prompts, Sampling(seed=7))
    c = generate(model, prompts, Sampling(seed=8))
    assert all(np.array_equal(x.frames, y.frames) for x, y in zip(a, b))
    assert not all(np.array_equal(x.frames, y.frames) for x, y in zip(a, c))


@pytest.mark.parametrize("delays", [None, [0, 1, 1, 1], [1, 1, 2, 2]])
def test_teacher_forced_choices_equal_a_naive_loop_over_prefixes(delays):
    """Each delayed cell is the argmax of its stream's own ids after the model read the true prefix alone."""
    model = tiny_model(delays)
    rng = random.Random(5)
    frames = TemplateBuilder(VOCAB, DigitTokenizer(), max_delay=max(model.delays)).build(
        "tts", example(rng, 9, 3), rng, speaker_prompt=example(rng, 5, 1)).tokens
    delayed = delay(torch.from_numpy(frames), model.delays, PAD_ID)
    naive = delayed.clone()
    with torch.no_grad():
        for step in range(1, delayed.shape[1]):
            hidden = model.hidden_states(delayed[None, :, :step])[0, -1]
            for n in range(VOCAB.num_streams):
                naive[n, step] = int(model.stream_logits(hidden, n).argmax()) + VOCAB.stream_range(n)[0]
    chosen = teacher_forced(model, frames)
    assert chosen.shape == frames.shape
    assert np.array_equal(chosen, undelay(naive, model.delays).numpy())
    for n in range(1, VOCAB.num_streams):  # a codebook stream chooses inside its own slice
        start, end = VOCAB.stream_range(n)
        assert ((chosen[n] >= start) & (chosen[n] < end)).all()
