"""Text ability kept through speech training: perplexity on held-out text, and multiple-choice accuracy
by log-likelihood of each option after the question (the method lm-eval uses for MMLU).

Two sets of each: the corpus's own (its test transcripts; its facts and small sums in words), which a
model trained from scratch on the corpus can be judged on, and general English that no corpus here
was written from (`data/english_heldout.txt`, 194 everyday sentences; `data/facts.tsv`, 207 short
factual questions, plus sums in digits), which shows what a pretrained LLM knew and keeps.

Both run on a plain HF causal LM or on the multi-stream model's text range (text-LM frames, stream 0),
so the LLM before speech training and the model after every stage are measured the same way.
"""

from __future__ import annotations

import functools
import math
import random
import re
from pathlib import Path

import torch

from opuslm.data.synth.lexicon import number_words
from opuslm.data.synth.sentences import FACTS


def multiple_choice_set(seed: int = 0, count: int = 80) -> list[tuple[str, list[str], int]]:
    """(question, four options, index of the right one): the corpus's facts and small sums."""
    rng = random.Random(seed)
    answers = sorted({answer for _, answer in FACTS})
    items = []
    for phrasings, answer in FACTS:
        for question in phrasings:
            wrong = rng.sample([a for a in answers if a != answer], 3)
            items.append((question, wrong, answer))
    while len(items) < count:
        a, b = rng.randrange(1, 10), rng.randrange(1, 10)
        answer = number_words(a + b)
        wrong = rng.sample([number_words(n) for n in range(2, 19) if n != a + b], 3)
        items.append((f"what is {number_words(a)} plus {number_words(b)}", wrong, answer))
    out = []
    for question, wrong, answer in items[:count]:
        options = wrong + [answer]
        rng.shuffle(options)
        out.append((question, options, options.index(answer)))
    return out


DATA = Path(__file__).parent / "data"


def english_sentences() -> list[str]:
    """Held-out everyday English, written for this project: perplexity of general text."""
    return [line.strip() for line in (DATA / "english_heldout.txt").read_text().splitlines() if line.strip()]


QUESTION_PROMPT = "Question: {}\nAnswer:"  # how a text LLM is asked the factual questions (lm-eval's form)


@functools.cache
def _facts() -> tuple[tuple[str, str, str], ...]:
    """`data/facts.tsv`'s rows: category, question, answer (read once: eval asks for a category per question)."""
    return tuple(tuple(line.split("\t")) for line in (DATA / "facts.tsv").read_text().splitlines()
                 if line.strip() and not line.startswith("#"))


@functools.cache
def _categories() -> dict[str, str]:
    return {question: category for category, question, _ in _facts()}


def fact_category(question: str) -> str:
    """What a factual question asks about: its facts.tsv category, or 'sums (plus)' and the like."""
    arithmetic = re.fullmatch(r"What is \d+ (plus|minus|times) \d+\?", question)
    if arithmetic:
        return f"sums ({arithmetic[1]})"
    return _categories()[question]


def factual_questions(seed: int = 0, sums: int = 100) -> list[tuple[str, list[str], int]]:
    """(question, four options, index of the right one): `data/facts.tsv`, each fact's wrong options drawn
    from its category's other answers, then `sums` small sums, differences and products in digits."""
    rng = random.Random(seed)
    facts = _facts()
    by_category: dict[str, set[str]] = {}
    for category, _, answer in facts:
        by_category.setdefault(category, set()).add(answer)
    items = [(question, rng.sample(sorted(by_category[category] - {answer}), 3), answer)
             for category, question, answer in facts]
    operations = (("plus", lambda a, b: a + b), ("minus", lambda a, b: a - b), ("times", lambda a, b: a * b))
    for _ in range(sums):
        name, operation = rng.choice(operations)
        a, b = rng.randrange(2, 13), rng.randrange(2, 13)
        a, b = (a, b) if name != "minus" or a >= b else (b, a)
        answer = operation(a, b)
        near = [n for n in range(answer - 4, answer + 5) if n != answer and n >= 0]
        items.append((f"What is {a} {name} {b}?", [str(n) for n in rng.sample(near, 3)], str(answer)))
    out = []
    for question, wrong, answer in items:
        options = wrong + [answer]
        rng.shuffle(options)
        out.append((question, options, options.index(answer)))
    return out


class TextScorer:
    """Log-probabilities of text under a plain HF LLM (`hf`) or an OpusLM's text range (`opuslm`).

    Sequences are scored in right-padded batches of similar lengths (`batch_tokens` ids a batch at most):
    a causal model's logits at a position do not see the pad after it, so each sequence's scores are its
    own (`tests/test_text_scorer.py` checks them against one sequence at a time)."""

    def __init__(self, model, tokenizer, batch_tokens: int = 2048):
        self.model, self.tokenizer, self.batch_tokens = model, tokenizer, batch_tokens
        self.multistream = hasattr(model, "vocab")

    @torch.no_grad()
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.multistream:
            return self.model.text_logits(x)
        return self.model(x).logits[..., : len(self.tokenizer)]

    def token_logprobs(self, sequences: list[list[int]]) -> list[torch.Tensor]:
        """Per sequence, log p(ids[t] | ids[:t]) for t >= 1 (text-tokenizer ids)."""
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        scored: list[torch.Tensor | None] = [None] * len(sequences)
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and (end + 1 - start) * len(sequences[order[end]]) <= self.batch_tokens:
                end += 1
            batch = [sequences[i] for i in order[start:end]]
            x = torch.zeros((len(batch), len(batch[-1])), dtype=torch.long)  # id 0 pads: never read
            for row, ids in enumerate(batch):
                x[row, : len(ids)] = torch.tensor(ids)
            logits = self._logits(x)[:, :-1].float()
            logprobs = logits.gather(-1, x[:, 1:, None])[..., 0] - logits.logsumexp(-1)
            for row, i in enumerate(order[start:end]):
                scored[i] = logprobs[row, : len(sequences[i]) - 1]
            start = end
        return scored

    def _ids(self, text: str) -> list[int]:
        ids = list(self.tokenizer(text)["input_ids"])
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        if self.tokenizer.bos_token_id is not None and (not ids or ids[0] != self.tokenizer.bos_token_id):
            ids = [self.tokenizer.bos_token_id] + ids  # condition the first word on something
        return ids

    def perplexity(self, texts: list[str]) -> float:
        scored = self.token_logprobs([self._ids(text) for text in texts])
        total, count = -sum(float(logprobs.sum()) for logprobs in scored), sum(len(logprobs) for logprobs in scored)
        return math.exp(total / max(count, 1))

    def multiple_choice(self, items) -> tuple[float, list[dict]]:
        """Accuracy, and per item the option scores (sum of option-token log-probs)."""
        prefixes, sequences = [], []
        for question, options, _ in items:
            prefix = self._ids(question)[:-1] if self.tokenizer.eos_token_id is not None else self._ids(question)
            prefixes.append(len(prefix))
            sequences += [prefix + list(self.tokenizer(" " + option, add_special_tokens=False)["input_ids"])
                          for option in options]
        scored = iter(self.token_logprobs(sequences))
        correct, rows = 0, []
        for (question, options, answer), prefix in zip(items, prefixes):
            scores = [float(next(scored)[prefix - 1:].sum()) for _ in options]
            chosen = max(range(len(options)), key=scores.__getitem__)
            correct += chosen == answer
            rows.append({"question": question, "options": options, "answer": answer, "chosen": chosen,
                         "scores": scores})
        return correct / max(len(items), 1), rows
