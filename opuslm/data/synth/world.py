"""Statements about the wider world: the words of general knowledge, without its facts.

The everyday grammar (`sentences.py`) has a few hundred words, so a model trained on it has never
heard "egypt", "continent" or "thermometer", and cannot hear a factual question about them: asked
aloud "what is the capital of egypt", the SmolLM2 recipe heard "... of france" (docs/results.md,
"Spoken QA"). Real read speech at scale holds these words; this module stands in for it.

Each statement names one topic of the world (a country, a city, a language, an animal, a planet, a
month, a famous work ...) in a frame that says nothing about it: "emma told us about egypt last week",
"my uncle is learning portuguese this year", "emma wrote the word opposite on the board". So a
model hears the words of the factual questions (`opuslm/eval/data/facts.tsv`) and never their facts:
one topic per statement, so no capital is named beside its country, and no statement is a question
(`tests/test_world_sentences.py` checks both against every fact). The lists are general knowledge
written for this project, wider than the questions' own topics.
"""

from __future__ import annotations

import random

from opuslm.data.synth.sentences import SLOTS, Sentence, fill


def _phrases(block: str) -> tuple[str, ...]:
    """One phrase a line, several on a line separated by commas."""
    return tuple(dict.fromkeys(p.strip() for line in block.strip().splitlines() for p in line.split(",") if p.strip()))


COUNTRIES = _phrases("""
france, germany, italy, spain, japan, england, russia, china, egypt, greece, portugal, ireland, austria
norway, sweden, denmark, finland, poland, hungary, the czech republic, the netherlands, belgium, canada
australia, india, thailand, south korea, argentina, peru, kenya, turkey, iran, mexico, cuba, scotland
switzerland, chile, colombia, vietnam, indonesia, the philippines, ukraine, romania, wales, new zealand
nigeria, saudi arabia, iraq, brazil, the united states, morocco, iceland, ghana, pakistan, malaysia
singapore, jamaica, south africa, ethiopia, israel, croatia, bulgaria, nepal, bolivia, tanzania
""")
CITIES = _phrases("""
paris, berlin, rome, madrid, tokyo, london, moscow, beijing, cairo, athens, lisbon, dublin, vienna, oslo
stockholm, copenhagen, helsinki, warsaw, budapest, prague, amsterdam, brussels, ottawa, canberra, delhi
bangkok, seoul, lima, nairobi, ankara, havana, edinburgh, bern, santiago, hanoi, jakarta, manila, kyiv
cardiff, wellington, washington, toronto, sydney, mumbai, rio de janeiro, chicago, new york, los angeles
istanbul, barcelona, milan, venice, osaka, shanghai, melbourne, vancouver, boston, munich, naples
""")
LANGUAGES = _phrases("""
french, german, spanish, italian, japanese, portuguese, russian, chinese, greek, dutch, english, arabic
hindi, polish, swedish, korean, turkish, welsh
""")
PLACES_OF_THE_WORLD = _phrases("""
africa, europe, asia, north america, south america, antarctica, the pacific ocean, the atlantic ocean
the indian ocean, the sahara desert, the nile, the amazon, mount everest, the alps, the eiffel tower
the colosseum, the pyramids, the great wall, the north pole, the equator, the big apple
""")
WILD_ANIMALS = _phrases("""
lions, giraffes, elephants, whales, zebras, kangaroos, bees, snails, octopuses, beavers, spiders, insects
wolves, camels, dolphins, sharks, crocodiles, parrots, hens, puppies, owls, frogs, cows, sheep, gorillas
""")
THE_BODY = _phrases("""
the heart, the lungs, the brain, the skin, the skeleton, bones, teeth, the tongue, the nose, the ears
the eyes, blood, fingers, muscles
""")
SCIENCE = _phrases("""
the sun, the moon, mars, jupiter, venus, mercury, saturn, the solar system, the planets, the stars
gravity, oxygen, carbon dioxide, gold, diamonds, thermometers, the weather, magnets, electricity
chemical symbols, the boiling point of water, volcanoes, rainbows, plants and flowers
""")
TIME = _phrases("""
january, february, march, april, may, june, july, august, september, october, november, december
the four seasons, spring, summer, autumn, winter, a century, a decade, seconds and minutes, leap years
""")
THINGS = _phrases("""
triangles, squares, hexagons, circles, violins, pianos, football teams, chess, the olympic games
""")
WORKS_AND_PEOPLE = _phrases("""
romeo and juliet, the mona lisa, the theory of relativity, penicillin, the theory of evolution
the moonlight sonata, the first president, the first moon landing, shakespeare, leonardo da vinci
albert einstein, george washington, alexander fleming, charles darwin, neil armstrong, beethoven
marie curie, isaac newton, mozart, picasso
""")
# Words, not topics: "emma wrote the word opposite on the board". Everyday words of general
# knowledge that the grammar lacks, written to cover the factual questions' vocabulary (never a phrase).
WORDS = _phrases("""
hot, cold, big, small, up, down, day, night, fast, slow, happy, sad, old, young, open, closed, light
dark, left, right, wet, dry, full, empty, opposite, capital, country, continent, language, ocean
river, mountain, desert, planet, organ, colour, season, month, largest, longest, highest, closest
coldest, hardest, breathe, think, smell, taste, hear, chew, spoken, known, gives, makes, builds, lays
carries, pulls, orbits, measure, collect, discovered, composed, developed, painted, king, jungle, neck
trunk, shell, stripes, pouch, wool, sea, air, gas, star, satellite, symbol, substance, force, speed
team, players, strings, sides, triangle, square, hexagon, insect, baby, person, people, body, hand
world, natural, ripe, tall, long, most, between, around, outside, towards, ground, trees, leaves
""")
TOPICS = (COUNTRIES + CITIES + LANGUAGES + PLACES_OF_THE_WORLD + WILD_ANIMALS + THE_BODY + SCIENCE + THINGS
          + WORKS_AND_PEOPLE)

# Template -> where its one world slot draws from. Each frame states nothing about its topic; months and
# seasons go only where no time of day or year is said ("autumn ... last summer" would order them).
TEMPLATES = (
    ("{subject} told us about {topic} {past_time}", TOPICS),
    ("we talked about {topic} at the {place} {past_time}", TOPICS),
    ("{subject} is reading a book about {topic}", TOPICS + TIME),
    ("{subject} watched a film about {topic} {past_time}", TOPICS),
    ("the teacher asked a question about {topic}", TOPICS + TIME),
    ("{subject} wants to learn more about {topic}", TOPICS + TIME),
    ("{subject} flew to {topic} {past_time}", COUNTRIES + CITIES),
    ("{subject} has a friend who lives in {topic}", COUNTRIES + CITIES),
    ("{subject} is learning {topic} this year", LANGUAGES),
    ("{subject} can speak a little {topic}", LANGUAGES),
    ("{name} wrote the word {topic} on the board", WORDS),
)


def world_sentence(rng: random.Random) -> Sentence:
    template, topics = rng.choice(TEMPLATES)
    head, tail = template.split("{topic}")
    text = " ".join(part for part in (fill(head, rng), rng.choice(topics), fill(tail, rng)) if part)
    return Sentence(text, is_question=False)


def world_vocabulary() -> set[str]:
    """Every word a world statement can hold."""
    frames = {w for template, _ in TEMPLATES for w in template.split() if not w.startswith("{")}
    return frames | {w for _, topics in TEMPLATES for phrase in topics for w in phrase.split()}
