"""Beam search for text targets: width 1 is greedy exactly, batched equals single, a bigram model whose
greedy path is a trap is searched past it, and every returned hypothesis is the best of those an
exhaustive search over a tiny model would score."""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from opuslm.errors import OpusLMError
from opuslm.infer.beam import beam_search
from opuslm.infer.decode import Prompt, generate
from opuslm.infer.sampling import Sampling
from test_decode import VOCAB, random_prompts, tiny_model

EOS = VOCAB.special("<eos>")


def text_prompts(seed: int, count: int) -> list[Prompt]:
    return [Prompt(p.frames, "text", p.stop_id, p.max_frames) for p in random_prompts(seed, count)]


@pytest.mark.parametrize("delays", [None, [0, 1, 1, 1], [1, 1, 2, 2]])
def test_width_one_is_greedy_decoding_exactly(delays):
    model = tiny_model(delays)
    prompts = text_prompts(2, 6)
    for greedy, searched in zip(generate(model, prompts, Sampling()), beam_search(model, prompts, 1)):
        assert np.array_equal(greedy.frames, searched.frames) and greedy.stopped == searched.stopped


def test_a_batch_is_searched_as_each_prompt_alone():
    model = tiny_model()
    prompts = text_prompts(3, 5)
    for prompt, batched in zip(prompts, beam_search(model, prompts, 3)):
        single = beam_search(model, [prompt], 3)[0]
        assert np.array_equal(batched.frames, single.frames) and batched.stopped == single.stopped


class _NoCache:
    def batch_repeat_interleave(self, repeats):
        pass

    def reorder_cache(self, order):
        pass


class BigramModel(torch.nn.Module):
    """Stream 0's next id depends only on the last one: `table[last] -> {next: probability}` (the rest
    of the text range shares what is left)."""

    def __init__(self, table: dict[int, dict[int, float]]):
        super().__init__()
        self.vocab, self.delays, self.table = VOCAB, [0, 1, 2, 3], table
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, frames, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False):
        return SimpleNamespace(last_hidden_state=frames[:, 0, :, None].float(), past_key_values=_NoCache())

    def stream_logits(self, hidden, stream):
        assert stream == 0
        rows = []
        for last in hidden[..., 0].long().flatten().tolist():
            chances = self.table.get(last, {})
            rest = (1.0 - sum(chances.values())) / (VOCAB.text_size - len(chances))
            probs = torch.full((VOCAB.size,), rest)
            for token, p in chances.items():
                probs[token] = p
            rows.append(probs.log())
        return torch.stack(rows).view(*hidden.shape[:-1], VOCAB.size)

    def codebook_logits(self, hidden):  # what greedy `generate` also asks for; a text target forces pad there
        return torch.zeros(*hidden.shape[:-1], VOCAB.num_codebooks, VOCAB.codebook_size)


def test_beam_search_finds_the_likelier_transcript_greedy_misses():
    start, a, b = (VOCAB.text_offset + i for i in (5, 6, 7))
    # after the prompt: a 0.5, b 0.4; after a: 30 ids at 0.03 (and the stop at 0.01); after b: the stop at 0.95
    table = {start: {a: 0.5, b: 0.4}, a: {**{VOCAB.text_offset + 20 + i: 0.03 for i in range(30)}, EOS: 0.01},
             b: {EOS: 0.95}}
    model = BigramModel(table)
    frames = np.zeros((VOCAB.num_streams, 2), np.int64)
    frames[0] = [VOCAB.special("<sos>"), start]
    prompt = Prompt(frames, "text", EOS, 6)
    greedy = generate(model, [prompt], Sampling())[0]
    searched = beam_search(model, [prompt], 3)[0]
    assert greedy.frames[0, 0] == a  # greedy takes the likelier first id and a poor sequence after it
    assert searched.stopped and searched.frames[0].tolist() == [b]


def test_the_result_is_the_best_finished_hypothesis_by_length_normalised_score():
    """Exhaustive over a three-id text range: every sequence of up to 3 ids then the stop, scored as
    the search scores (log-probabilities summed over their number); width 9 keeps every branch."""
    table = {}
    rng = np.random.default_rng(5)
    ids = [VOCAB.text_offset + i for i in (1, 2, 3)]
    for last in [VOCAB.text_offset] + ids:
        p = rng.dirichlet(np.ones(4)) * 0.99  # 1% left for the rest of the text range
        table[last] = {**dict(zip(ids, p[:3].tolist())), EOS: float(p[3])}
    model = BigramModel(table)
    frames = np.zeros((VOCAB.num_streams, 1), np.int64)
    frames[0] = [VOCAB.text_offset]
    prompt = Prompt(frames, "text", EOS, 3)

    def logprob(last, nxt):
        return float(model.stream_logits(torch.tensor([[float(last)]]), 0).log_softmax(-1)[0, nxt])

    scored = []  # (score, ids, stopped): up to 2 ids then the stop, or 3 ids and max_frames' forced end
    for n in range(0, 4):
        for path in itertools.product(ids, repeat=n):
            chain = [VOCAB.text_offset, *path] + ([EOS] if n < 3 else [])
            scored.append((sum(logprob(x, y) for x, y in zip(chain, chain[1:])) / (len(chain) - 1), list(path), n < 3))
    _, best, stopped = max(scored)
    searched = beam_search(model, [prompt], 9)[0]
    assert searched.frames[0].tolist() == best and searched.stopped == stopped
    with pytest.raises(OpusLMError, match="audio targets are sampled"):
        beam_search(model, [Prompt(frames, "audio", EOS, 3)], 2)
    with pytest.raises(OpusLMError, match="at least 1"):
        beam_search(model, [prompt], 0)
