"""The world statements (opuslm/data/synth/world.py): the factual questions' words, never their facts."""

import random
import re

import pytest

from opuslm.data.synth import sentences, speakers, world
from opuslm.data.synth.corpus import SynthConfig, _describe, plan_utterance
from opuslm.errors import OpusLMError
from opuslm.eval.text import DATA


def _facts() -> list[tuple[str, str]]:
    """(question, answer), lowercase words only: facts.tsv's and the grammar's own FACTS."""
    rows = [line.split("\t") for line in (DATA / "facts.tsv").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    pairs = [(question, answer) for _, question, answer in rows]
    pairs += [(phrasing, answer) for phrasings, answer in sentences.FACTS for phrasing in phrasings]
    return [(" ".join(re.findall(r"[a-z]+", q.lower())), " ".join(re.findall(r"[a-z]+", a.lower()))) for q, a in pairs]


def _holds(text: str, phrase: str) -> bool:
    return f" {phrase} " in f" {text} "


@pytest.fixture(scope="module")
def statements() -> list[str]:
    rng = random.Random(0)
    return [world.world_sentence(rng).text for _ in range(20000)]


def test_world_statements_are_plain_lowercase_statements_of_known_words(statements):
    rng = random.Random(1)
    assert not any(world.world_sentence(rng).is_question for _ in range(100))
    words = sentences.vocabulary() | world.world_vocabulary()
    for text in statements:
        assert text == text.lower() and "  " not in text and "{" not in text, text
        assert set(text.split()) <= words, text
    every = set(world.TOPICS + world.TIME + world.WORDS)
    assert {topic for topic in every if any(_holds(text, topic) for text in statements)} == every  # all are drawn


def test_every_template_has_one_world_slot_and_grammar_slots_only():
    for template, topics in world.TEMPLATES:
        slots = [w[1:-1] for w in template.split() if w.startswith("{")]
        assert slots.count("topic") == 1 and set(slots) - {"topic"} <= set(sentences.SLOTS), template
        assert topics


def test_no_statement_holds_a_factual_questions_wording_or_its_fact(statements):
    facts = _facts()
    topics = world.TOPICS + world.TIME + world.WORDS
    questioned = 0
    for question, answer in facts:
        subjects = [t for t in topics if _holds(question, t) and t not in answer.split()]
        questioned += bool(subjects)
        for text in statements:
            assert question not in text
            if _holds(text, answer):  # then no subject of its question beside it (the answer's own topic aside)
                rest = f" {text} "
                for topic in topics:
                    if _holds(topic, answer):
                        rest = rest.replace(f" {topic} ", " | ")
                assert not any(_holds(rest, s) for s in subjects), (question, text)
    assert questioned > 0.8 * len(facts)  # the statements name most questions' subjects


def test_the_world_share_is_drawn_only_when_asked_and_recorded_only_then():
    roster = speakers.roster(0)
    world_words = world.world_vocabulary() - sentences.vocabulary()

    def share(config: SynthConfig) -> float:
        plans = [plan_utterance(config, roster, "train", i) for i in range(600)]
        return sum(bool(set(p.sentence.text.split()) & world_words) for p in plans) / len(plans)

    assert share(SynthConfig()) == 0
    assert 0.3 * 0.85 - 0.06 < share(SynthConfig(world_share=0.3)) < 0.3 * 0.85 + 0.06  # after the questions' 0.15
    assert "world_share" not in _describe(SynthConfig())  # corpora written before world statements stay valid
    assert _describe(SynthConfig(world_share=0.3))["world_share"] == 0.3
    with pytest.raises(OpusLMError, match="world_share"):
        SynthConfig(world_share=1.5)


def test_the_default_corpus_plans_what_it_planned_before_world_statements():
    """The first 300 plans of each split at seed 0, as 3ace432's parent planned them: a share of 0 draws nothing.
    A deliberate change to the default corpus updates this digest (and says so in docs/changelog.md)."""
    import hashlib

    roster = speakers.roster(0)
    plans = [repr(plan_utterance(SynthConfig(), roster, split, i)) for split in ("train", "dev", "test") for i in range(300)]
    assert hashlib.sha256("\n".join(plans).encode()).hexdigest() == \
        "fbe98756a8d3b058d0ac305c7afa43834226e1e036a05cc17eeb4145b8ec653b"
