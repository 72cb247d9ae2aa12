"""SRWT after ASR: the timed-words constraint allows exactly the continuations that keep the output
well formed (against a naive enumeration of every valid output), decoding obeys it, and SpeechLM times
the words its own ASR wrote."""

import itertools
import random

import numpy as np
import pytest
import torch

from opuslm.infer.beam import beam_search
from opuslm.infer.decode import Prompt, generate
from opuslm.infer.outputs import read_output
from opuslm.infer.sampling import Sampling
from opuslm.infer.timed_words import TimedWords, TokenStrings, _viable
from opuslm.errors import OpusLMError
from test_decode import VOCAB, tiny_model


def seconds(centiseconds: int) -> str:
    return f"{centiseconds / 100:.2f}"  # as `templates.word_timestamps` writes a time


@pytest.mark.parametrize("floor, ceiling", [(0, 37), (95, 1234), (1000, 1000), (0, 0)])
def test_a_number_is_viable_exactly_when_some_time_in_range_begins_with_it(floor, ceiling):
    prefixes = {seconds(c)[:k] for c in range(floor, ceiling + 1) for k in range(len(seconds(c)) + 1)}
    alphabet = "0123456789."
    texts = {seconds(c)[:k] for c in range(0, 2000, 7) for k in range(6)}
    texts |= {"".join(p) for n in range(3) for p in itertools.product(alphabet, repeat=n)}
    texts |= {"00", "01.2", "1..", ".5", "1.234", "12345", "0.0.", "9.9"}
    for text in texts:
        assert _viable(text, floor, ceiling) == (text in prefixes), text


class ListTokenizer:
    """A tokenizer whose ids write fixed strings, some several characters long (as BPE merges make)."""

    PIECES = ["<eos>", *"<>.0123456789abc", "bc", "><", ">b", "c<", "0.", "1>", "x", " a", "<0", ".0"]
    all_special_ids = [0]

    def __len__(self):
        return len(self.PIECES)

    def decode(self, ids, clean_up_tokenization_spaces=False):
        return "".join(self.PIECES[i] for i in ids)


def all_outputs(words: list[str], ceiling: int) -> set[str]:
    """Every well-formed output, by brute force: ordered times on the centisecond grid within the clip."""
    outputs = set()

    def extend(text: str, index: int, last: int):
        if index == len(words):
            outputs.add(text)
            return
        for start in range(last, ceiling + 1):
            for end in range(start, ceiling + 1):
                extend(f"{text}<{seconds(start)}>{words[index]}<{seconds(end)}>", index + 1, end)

    extend("", 0, 0)
    return outputs


@pytest.mark.parametrize("words, clip", [(["a", "bc"], 0.03), (["cab"], 0.12), (["b", "a", "c"], 0.02)])
def test_the_constraint_allows_exactly_the_tokens_that_keep_an_output_well_formed(words, clip):
    strings = TokenStrings(ListTokenizer())
    valid = all_outputs(words, int(clip * 100))
    prefixes = {text[:k] for text in valid for k in range(len(text) + 1)}
    rng = random.Random(len(words))
    for _ in range(25):  # random walks through the format
        constraint, written, text = TimedWords(words, strings, clip), [], ""
        while True:
            allowed, may_stop = constraint.allowed(written)
            expected = [i for i in range(1, len(strings.strings)) if text + strings.strings[i] in prefixes]
            assert allowed == expected and may_stop == (text in valid), text
            if may_stop:
                break
            written.append(rng.choice(allowed))
            text += strings.strings[written[-1]]
        assert text in valid
        read = read_output("timestamps", text, clip_seconds=clip)
        assert not read.problems and [w for w, _, _ in read.timestamps] == words


def test_the_constraint_refuses_words_it_cannot_write_and_output_that_left_the_format():
    strings = TokenStrings(ListTokenizer())
    for words in ([], ["a b"], ["<a>"], [""]):
        with pytest.raises(OpusLMError, match="timed words need"):
            TimedWords(words, strings, 1.0)
    with pytest.raises(OpusLMError, match="leaves the format"):
        TimedWords(["a"], strings, 1.0).allowed([ListTokenizer.PIECES.index("x")])


def constrained_prompts(char_tokenizer, count: int):
    strings = TokenStrings(char_tokenizer)
    rng = np.random.default_rng(4)
    prompts, clips = [], []
    for i in range(count):
        frames = np.zeros((VOCAB.num_streams, int(rng.integers(2, 9))), np.int64)
        frames[0] = rng.integers(VOCAB.text_offset, VOCAB.size, frames.shape[1])
        words, clip = [["henry", "reads"], ["a"], ["sheep", "do", "go"]][i % 3], [0.8, 0.05, 2.5][i % 3]
        prompts.append(Prompt(frames, "text", VOCAB.special("<eos>"), 200, constraint=TimedWords(words, strings, clip)))
        clips.append((words, clip))
    return prompts, clips


def test_decoding_writes_the_given_words_with_ordered_times_and_chooses_the_models_best(char_tokenizer):
    assert len(char_tokenizer) <= VOCAB.text_size
    model = tiny_model()
    prompts, clips = constrained_prompts(char_tokenizer, 4)
    greedy = generate(model, prompts, Sampling())
    beamed = beam_search(model, prompts, 3)
    for result, beam_result, (words, clip), prompt in zip(greedy, beamed, clips, prompts):
        assert result.stopped and beam_result.stopped
        for found in (result, beam_result):
            text = char_tokenizer.decode(VOCAB.to_text(found.frames[0]).tolist())
            read = read_output("timestamps", text, clip_seconds=clip)
            assert not read.problems and [w for w, _, _ in read.timestamps] == words
            assert all(end <= clip for _, _, end in read.timestamps)
        # greedy: every id is the model's best among those the constraint allowed (a naive re-run)
        frames = prompt.frames
        for t in range(result.frames.shape[1]):
            with torch.no_grad():
                hidden = model.hidden_states(torch.as_tensor(_delayed(frames, model.delays))[None])[:, -1]
                logits = model.stream_logits(hidden, 0)[0]
            written = VOCAB.to_text(result.frames[0, :t]).tolist()
            allowed, _ = prompt.constraint.allowed(written)
            best = max(allowed, key=lambda i: float(logits[VOCAB.text([i])[0]]))
            assert result.frames[0, t] == VOCAB.text([best])[0]
            frames = np.concatenate([frames, result.frames[:, t:t + 1]], 1)


def _delayed(frames: np.ndarray, delays) -> np.ndarray:
    """The delayed columns that are fully known for undelayed `frames` (what `_prefill` runs)."""
    from opuslm.interleave import delay
    from opuslm.vocab import PAD_ID

    known = frames.shape[1] + delays[0]
    return delay(torch.as_tensor(frames), delays, PAD_ID)[:, :known].numpy()
