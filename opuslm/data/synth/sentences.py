"""Everyday English sentences and spoken questions with exact answers.

Sentences come from templates of ordinary English whose slots take words that go together (a food
is eaten, a vehicle taken, an animal sleeps under the tree): a listener, human or Whisper, can follow
them, which random-word sentences ("did the heart mend my dangerous beach") defeat even for clear
voices (Whisper tiny.en WER 0.37 on those in en-us). Dev and test sentences are new combinations of
the same words.

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


def _food(rng: random.Random) -> str:
    """A food as an object: 'an apple', 'two eggs', 'the cake', 'some bread'."""
    if rng.random() < 0.4:
        return rng.choice(("some", "the")) + " " + rng.choice(lx.MASS_FOODS)
    food = rng.choice(lx.COUNT_FOODS)
    how = rng.random()
    if how < 0.4:
        return lx.article(food) + " " + food
    if how < 0.7:
        return f"{lx.number_words(rng.randint(2, 12))} {lx.plural(food)}"
    return "the " + food


def _subject(rng: random.Random) -> str:
    return rng.choice(lx.NAMES) if rng.random() < 0.5 else rng.choice(lx.PEOPLE)


def _thing(rng: random.Random) -> str:
    """An object with an optional colour or size: 'the red umbrella', 'my old camera'."""
    words = [rng.choice(("the", "my", "his", "her", "our"))]
    if rng.random() < 0.6:
        words.append(rng.choice(lx.COLORS if rng.random() < 0.5 else lx.SIZES))
    return " ".join(words + [rng.choice(lx.OBJECTS)])


# Slot name -> how to fill it. Each template below is ordinary English with these slots.
SLOTS = {
    "subject": _subject,
    "name": lambda rng: rng.choice(lx.NAMES),
    "person": lambda rng: rng.choice(lx.PEOPLE),
    "food": _food,
    "foods": lambda rng: lx.plural(rng.choice(lx.COUNT_FOODS)),
    "mass_food": lambda rng: rng.choice(lx.MASS_FOODS),
    "drink": lambda rng: rng.choice(lx.DRINKS),
    "food_verb": lambda rng: lx.past(rng.choice(lx.FOOD_VERBS)),
    "object_verb": lambda rng: lx.past(rng.choice(lx.OBJECT_VERBS)),
    "people_verb": lambda rng: lx.past(rng.choice(lx.PEOPLE_VERBS)),
    "animal_verb": lambda rng: lx.past(rng.choice(lx.ANIMAL_VERBS)),
    "thing": _thing,
    "object": lambda rng: rng.choice(lx.OBJECTS),
    "color": lambda rng: rng.choice(lx.COLORS),
    "size": lambda rng: rng.choice(lx.SIZES),
    "toy": lambda rng: rng.choice(lx.TOYS),
    "animal": lambda rng: rng.choice(lx.ANIMALS),
    "animals": lambda rng: lx.plural(rng.choice(lx.ANIMALS)),
    "doing": lambda rng: rng.choice(lx.ANIMAL_DOING),
    "place": lambda rng: rng.choice(lx.PLACES),
    "location": lambda rng: rng.choice(lx.LOCATIONS),
    "animal_place": lambda rng: rng.choice(lx.ANIMAL_PLACES),
    "vehicle": lambda rng: rng.choice(lx.VEHICLES),
    "weather": lambda rng: rng.choice(lx.WEATHER),
    "day": lambda rng: rng.choice(lx.DAYS),
    "days": lambda rng: lx.plural(rng.choice(lx.DAYS)),
    "part_of_day": lambda rng: rng.choice(lx.PARTS_OF_DAY),
    "past_time": lambda rng: rng.choice(lx.PAST_TIMES),
    "future_time": lambda rng: rng.choice(lx.FUTURE_TIMES),
    "activity": lambda rng: rng.choice(lx.ACTIVITIES),
    "number": lambda rng: lx.number_words(rng.randint(2, 20)),
}

STATEMENTS = (
    "{subject} {food_verb} {food} {past_time}",
    "{subject} went to the {place} {past_time}",
    "the {animal} is {doing} {location}",
    "{subject} {object_verb} {thing} {past_time}",
    "there are {number} {animals} {animal_place}",
    "we will take the {vehicle} to the {place} {future_time}",
    "it was very {weather} at the {place} {past_time}",
    "please put {thing} {location}",
    "{name} and {name} played with a {color} {toy}",
    "{subject} drinks a cup of {drink} every {part_of_day}",
    "{subject} likes to {activity} on {days}",
    "{subject} {people_verb} {person} {past_time}",
    "the {size} {animal} {animal_verb} {location}",
    "{subject} is reading a book about {animals}",
    "the {color} {vehicle} stopped near the {place}",
)
QUESTIONS = (
    "where did you put {thing}",
    "can you bring me the {color} {object}",
    "did {subject} see the {animal} {past_time}",
    "what time does the {vehicle} leave for the {place}",
    "is the {place} open on {day} {part_of_day}",
    "how many {foods} did {name} buy",
    "do you want some {mass_food} or a cup of {drink}",
    "why is the {animal} {doing} {location}",
)


def fill(template: str, rng: random.Random) -> str:
    """Each `{slot}` of `template` drawn independently, left to right."""
    return " ".join(SLOTS[word[1:-1]](rng) if word.startswith("{") else word for word in template.split())


def random_sentence(rng: random.Random, question_share: float = 0.25) -> Sentence:
    if rng.random() < question_share:
        return Sentence(fill(rng.choice(QUESTIONS), rng), is_question=True)
    return Sentence(fill(rng.choice(STATEMENTS), rng), is_question=False)


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
    def words(phrases) -> set[str]:
        return {word for phrase in phrases for word in phrase.split()}

    nouns = lx.COUNT_FOODS + lx.ANIMALS + lx.DAYS
    verbs = lx.FOOD_VERBS + lx.OBJECT_VERBS + lx.PEOPLE_VERBS + lx.ANIMAL_VERBS
    out = words(lx.NAMES + lx.PEOPLE + lx.COUNT_FOODS + lx.MASS_FOODS + lx.DRINKS + lx.ANIMALS + lx.PLACES
                + lx.OBJECTS + lx.TOYS + lx.COLORS + lx.SIZES + lx.VEHICLES + lx.WEATHER + lx.DAYS
                + lx.PARTS_OF_DAY + lx.PAST_TIMES + lx.FUTURE_TIMES + lx.LOCATIONS + lx.ANIMAL_PLACES
                + lx.ANIMAL_DOING + lx.ACTIVITIES + STATEMENTS + QUESTIONS)
    out = {w for w in out if not w.startswith("{")}
    out |= {lx.plural(n) for n in nouns} | {lx.past(v) for v in verbs} | {"a", "an", "some", "the", "my", "his", "her", "our"}
    out |= set(lx.UNITS) | set(lx.TENS) | {"hundred"}
    for phrasings, answer in FACTS:
        out |= words((*phrasings, answer))
    out |= set("what is plus minus times".split())
    return out
