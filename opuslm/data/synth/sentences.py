"""Random grammatical English sentences and spoken questions with exact answers.

Transcripts are lowercase words separated by single spaces, without punctuation (the normalised form
LibriSpeech uses); numbers are spelled out. Every function takes a `random.Random`, so a seed fixes
the output.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from opuslm.data.synth import lexicon as lx


@dataclass(frozen=True)
class Sentence:
    text: str  # the transcript
    is_question: bool
    answer: str | None = None  # for spoken questions with an exact answer (STTC)

    @property
    def spoken_text(self) -> str:
        """What eSpeak reads: the final mark gives questions their intonation."""
        return self.text + ("?" if self.is_question else ".")


def _noun_phrase(rng: random.Random, plural: bool = False) -> str:
    noun = rng.choice(lx.NOUNS)
    if plural:
        noun = lx.plural(noun)
    if rng.random() < 0.5:
        noun = rng.choice(lx.ADJECTIVES) + " " + noun
    if plural:
        return rng.choice(("the", "some", "my", "our", "these", "those")) + " " + noun
    determiner = rng.choice(("the", "a", "my", "your", "this", "that"))
    if determiner == "a":
        determiner = lx.article(noun)
    return determiner + " " + noun


def _subject(rng: random.Random) -> str:
    return rng.choice(lx.NAMES) if rng.random() < 0.4 else _noun_phrase(rng)


def _count(rng: random.Random) -> str:
    n = rng.choice((rng.randint(2, 20), rng.randint(21, 99), rng.randint(100, 999), rng.randint(1000, 99999)))
    return lx.number_words(n)


def _statement_past(rng):
    return f"{_subject(rng)} {lx.past(rng.choice(lx.VERBS))} {_noun_phrase(rng)} {rng.choice(lx.TIME_PHRASES)}"


def _statement_present(rng):
    return f"{_subject(rng)} {lx.third_person(rng.choice(lx.VERBS))} {_noun_phrase(rng, plural=True)} every {rng.choice(lx.TIMES)}"


def _statement_future(rng):
    return f"{rng.choice(lx.NAMES)} will {rng.choice(lx.VERBS)} {_noun_phrase(rng)} {rng.choice(lx.ADVERBS)}"


def _statement_place(rng):
    return (f"we {lx.past(rng.choice(lx.VERBS))} {_noun_phrase(rng, plural=True)} "
            f"{rng.choice(lx.PREPOSITIONS)} {_noun_phrase(rng)} in {rng.choice(lx.PLACES)}")


def _statement_number(rng):
    noun = rng.choice(lx.NOUNS)
    return f"there are {_count(rng)} {rng.choice(lx.ADJECTIVES)} {lx.plural(noun)} {rng.choice(lx.PREPOSITIONS)} {_noun_phrase(rng)}"


def _statement_pair(rng):
    a, b = rng.sample(lx.NAMES, 2)
    return f"{a} and {b} {lx.past(rng.choice(lx.VERBS))} {_count(rng)} {lx.plural(rng.choice(lx.NOUNS))}"


def _statement_adjective(rng):
    return f"{_noun_phrase(rng)} was {rng.choice(('very', 'quite', 'rather', 'too'))} {rng.choice(lx.ADJECTIVES)}"


def _question_did(rng):
    return f"did {_subject(rng)} {rng.choice(lx.VERBS)} {_noun_phrase(rng)}"


def _question_where(rng):
    return f"where did {rng.choice(lx.NAMES)} {rng.choice(lx.VERBS)} {_noun_phrase(rng, plural=True)}"


def _question_why(rng):
    return f"why is {_noun_phrase(rng)} so {rng.choice(lx.ADJECTIVES)}"


def _question_how_many(rng):
    return f"how many {lx.plural(rng.choice(lx.NOUNS))} did you {rng.choice(lx.VERBS)} {rng.choice(lx.TIME_PHRASES)}"


STATEMENTS = (_statement_past, _statement_present, _statement_future, _statement_place,
              _statement_number, _statement_pair, _statement_adjective)
QUESTIONS = (_question_did, _question_where, _question_why, _question_how_many)


def random_sentence(rng: random.Random, question_share: float = 0.25) -> Sentence:
    if rng.random() < question_share:
        return Sentence(rng.choice(QUESTIONS)(rng), is_question=True)
    return Sentence(rng.choice(STATEMENTS)(rng), is_question=False)


# Facts with one exact answer, each with several phrasings so a phrasing can be held out.
FACTS = (
    (("what color is the sky", "tell me the color of the sky"), "blue"),
    (("what color is grass", "tell me the color of grass"), "green"),
    (("what color is snow", "tell me the color of snow"), "white"),
    (("how many days are in a week", "how many days does a week have"), "seven"),
    (("how many months are in a year", "how many months does a year have"), "twelve"),
    (("how many legs does a spider have", "tell me how many legs a spider has"), "eight"),
    (("how many legs does a dog have", "tell me how many legs a dog has"), "four"),
    (("how many wheels does a bicycle have", "tell me how many wheels a bicycle has"), "two"),
    (("what is the capital of france", "which city is the capital of france"), "paris"),
    (("what is the capital of italy", "which city is the capital of italy"), "rome"),
    (("what is the capital of japan", "which city is the capital of japan"), "tokyo"),
    (("what is the capital of spain", "which city is the capital of spain"), "madrid"),
    (("what is the capital of egypt", "which city is the capital of egypt"), "cairo"),
    (("what animal says moo", "which animal says moo"), "cow"),
    (("what animal barks", "which animal barks"), "dog"),
    (("what do bees make", "what do bees produce"), "honey"),
    (("what season comes after winter", "which season follows winter"), "spring"),
    (("what season comes after summer", "which season follows summer"), "autumn"),
    (("what day comes after monday", "which day follows monday"), "tuesday"),
    (("what day comes after friday", "which day follows friday"), "saturday"),
    (("what is frozen water called", "what do we call frozen water"), "ice"),
    (("what planet do we live on", "which planet is our home"), "earth"),
    (("how many hours are in a day", "how many hours does a day have"), "twenty four"),
    (("how many minutes are in an hour", "how many minutes does an hour have"), "sixty"),
)


def _arithmetic(rng: random.Random) -> tuple[str, str]:
    op = rng.choice(("plus", "minus", "times"))
    if op == "times":
        a, b = rng.randint(0, 10), rng.randint(0, 10)
        return f"what is {lx.number_words(a)} times {lx.number_words(b)}", lx.number_words(a * b)
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    if op == "minus":
        a, b = max(a, b), min(a, b)
        return f"what is {lx.number_words(a)} minus {lx.number_words(b)}", lx.number_words(a - b)
    return f"what is {lx.number_words(a)} plus {lx.number_words(b)}", lx.number_words(a + b)


def random_question_with_answer(rng: random.Random) -> Sentence:
    if rng.random() < 0.5:
        question, answer = _arithmetic(rng)
    else:
        phrasings, answer = rng.choice(FACTS)
        question = rng.choice(phrasings)
    return Sentence(question, is_question=True, answer=answer)


def vocabulary() -> set[str]:
    """Every word the generators can emit."""
    words = set(lx.NOUNS) | {lx.plural(n) for n in lx.NOUNS} | set(lx.ADJECTIVES) | set(lx.VERBS)
    words |= {lx.past(v) for v in lx.VERBS} | {lx.third_person(v) for v in lx.VERBS}
    words |= set(lx.ADVERBS) | set(lx.NAMES) | set(lx.PLACES) | set(lx.PREPOSITIONS) | set(lx.TIMES)
    words |= set(lx.UNITS) | set(lx.TENS) | {"hundred", "thousand"}
    for phrase in lx.TIME_PHRASES:
        words |= set(phrase.split())
    for phrasings, answer in FACTS:
        for text in (*phrasings, answer):
            words |= set(text.split())
    words |= set("the a an some my our your these those this that we and will was very quite rather "
                 "too did where why is so how many you there are every in what times plus minus".split())
    return words
