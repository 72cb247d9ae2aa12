"""The guard: the task-format constraint allows exactly the continuations that keep an output a prefix of
its format (against a regular expression's own partial matching). SpeechLM's guarded decoding is tested
in test_generate_cli.py, beside its tiny model."""

import random

import pytest
import regex

from opuslm.errors import OpusLMError
from opuslm.infer.task_format import TaskFormat
from opuslm.infer.timed_words import TokenStrings

WORDS = r"[^<>]*[^<>\s][^<>]*"


class PieceTokenizer:
    """Ids that write fixed strings, some joining words, blanks and brackets (as BPE merges make)."""

    PIECES = ["<eos>", "<", ">", " ", *"abeflmnrsw", "ma", "le", "fe", "male", "e>", "><", "a<", " <", "<f",
              "answer", "<answer>", ">a", "\n"]
    all_special_ids = [0]

    def __len__(self):
        return len(self.PIECES)

    def decode(self, ids, clean_up_tokenization_spaces=False):
        return "".join(self.PIECES[i] for i in ids)


def pattern(target: str, count: int, labels: set[str] | None) -> str:
    """The format as a regular expression: the naive statement of what `TaskFormat` decides piece by piece."""
    tag = r"<(?:" + ("|".join(map(regex.escape, sorted(labels))) if labels else r"[^<>\s]+") + ")>"
    return {"transcript": WORDS, "answer": WORDS, "labels": tag * count, "transcript+labels": WORDS + tag * count,
            "transcript+answer": WORDS + "<answer>" + WORDS}[target]


@pytest.mark.parametrize("target, count, labels", [
    ("transcript", 0, None), ("answer", 0, None), ("labels", 1, {"male", "female"}), ("labels", 2, None),
    ("transcript+labels", 1, {"male", "female", "a"}), ("transcript+labels", 2, {"male", "a"}),
    ("labels", 1, {"fe male", "a b"}),  # a taught label may hold a blank
    ("transcript+answer", 0, None)])
def test_the_format_allows_exactly_the_pieces_that_keep_a_prefix_of_it(target, count, labels):
    strings = TokenStrings(PieceTokenizer())
    expression = regex.compile(pattern(target, count, labels))
    rng = random.Random(count)
    stops = 0
    for _ in range(40):  # random walks through the format
        format_, written, text = TaskFormat.for_target(target, strings, count, labels), [], ""
        for _ in range(12):
            allowed, may_stop = format_.allowed(written)
            expected = [i for i in range(1, len(strings.strings))
                        if expression.fullmatch(text + strings.strings[i], partial=True)]
            assert allowed == expected, text
            assert may_stop == bool(expression.fullmatch(text)), text
            if may_stop and rng.random() < 0.3 or not allowed:
                stops += may_stop
                break
            written.append(rng.choice(allowed))
            text += strings.strings[written[-1]]
    assert stops > 0  # the walks reached complete outputs, not only prefixes


def test_the_format_refuses_an_output_that_already_left_it_and_unknown_targets():
    strings = TokenStrings(PieceTokenizer())
    format_ = TaskFormat.for_target("transcript+labels", strings, 1, {"male"})
    with pytest.raises(OpusLMError, match="leaves the format: 'a>'"):
        format_.allowed([PieceTokenizer.PIECES.index("a"), PieceTokenizer.PIECES.index(">")])
    with pytest.raises(OpusLMError, match="timestamps"):
        TaskFormat.for_target("timestamps", strings)
