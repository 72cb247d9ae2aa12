"""English words by meaning for the sentence generator, with inflection rules.

Hand-curated because the espeak-ng-data in the wheel ships only compiled dictionaries, and sentences a
listener can follow need words that go together: foods are eaten, vehicles are taken, animals sleep.
The words are common ones (a few hundred in all), so each is heard many times in a few hours of audio.
Irregular forms are listed; regular ones follow the rules below.
"""

from __future__ import annotations


def _words(block: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(block.split()))  # unique, in order


# Singular -> plural where the rules below do not apply.
IRREGULAR_PLURALS = {
    "child": "children", "mouse": "mice", "sheep": "sheep", "deer": "deer", "fish": "fish",
    "potato": "potatoes", "tomato": "tomatoes", "knife": "knives", "leaf": "leaves", "shelf": "shelves",
}
IRREGULAR_PAST = {
    "bring": "brought", "buy": "bought", "break": "broke", "catch": "caught", "eat": "ate", "find": "found", "forget": "forgot",
    "give": "gave", "go": "went", "hide": "hid", "lose": "lost", "make": "made", "meet": "met", "ride": "rode",
    "run": "ran", "see": "saw", "sell": "sold", "sit": "sat", "sleep": "slept", "take": "took", "read": "read",
    "drink": "drank", "draw": "drew", "swim": "swam", "sing": "sang", "wear": "wore", "write": "wrote",
}

NAMES = _words("""
adam alice anna ben carl charlie chloe daniel david emily emma ethan frank george grace hannah harry
helen henry jack james jane julia kate laura leo lily lucy mark mary max mia michael nina noah oliver
olivia oscar paul peter rachel robert rose ruby sam sarah simon sophie thomas tom victor zoe
""")
# People as a subject or object: "my sister called the doctor".
PEOPLE = ("my mother", "my father", "my sister", "my brother", "my friend", "my uncle", "my aunt",
          "my grandmother", "my grandfather", "the teacher", "the doctor", "the farmer", "the driver",
          "the nurse", "the baker", "our neighbor", "the little boy", "the little girl", "the old man",
          "the young woman")
COUNT_FOODS = _words("apple banana orange egg sandwich cookie cake pizza tomato potato carrot lemon onion pear peach muffin pie")
MASS_FOODS = _words("bread cheese rice soup salad chicken fish pasta butter honey chocolate milk")
DRINKS = _words("tea coffee milk juice water lemonade")
ANIMALS = _words("""
dog cat horse cow bird rabbit mouse duck sheep goat pig fox bear lion tiger elephant monkey frog owl
penguin giraffe deer turtle squirrel
""")
PLACES = _words("""
park school library market beach station hospital museum office bank zoo airport hotel restaurant
garden farm lake river forest store bakery theater church playground village city
""")
OBJECTS = _words("""
book bag key phone lamp chair cup box hat coat umbrella ball pen pencil clock picture bottle blanket
pillow letter map ticket camera radio guitar kite jacket watch wallet plate bowl basket candle mirror
towel bucket spoon
""")
TOYS = _words("ball kite balloon doll puzzle train drum")
COLORS = _words("red blue green yellow white black brown pink purple gray")
SIZES = _words("big small old new little heavy soft warm clean dirty")
VEHICLES = _words("car bus train bike boat plane truck taxi")
WEATHER = _words("sunny cold warm rainy windy cloudy hot snowy")
DAYS = _words("monday tuesday wednesday thursday friday saturday sunday")
PARTS_OF_DAY = _words("morning afternoon evening night")
PAST_TIMES = ("yesterday", "last night", "this morning", "last week", "after lunch", "before dinner",
              "at noon", "on monday", "on friday", "on sunday", "in the evening", "last summer")
FUTURE_TIMES = ("tomorrow", "next week", "this evening", "on saturday", "on tuesday", "after school",
                "in the morning", "next summer")
LOCATIONS = ("in the garden", "under the table", "near the river", "on the roof", "behind the house",
             "in the kitchen", "next to the door", "by the window", "on the bed", "in the box",
             "under the tree", "on the grass")
ANIMAL_PLACES = ("on the farm", "at the zoo", "in the field", "near the lake", "in the park", "in the forest")
# Verbs by what they take.
FOOD_VERBS = _words("eat buy cook make want order share bring find")
OBJECT_VERBS = _words("find lose buy drop break clean paint sell fix wash carry open forget")
PEOPLE_VERBS = _words("call visit help meet see thank")
ANIMAL_VERBS = _words("sleep run jump sit hide play wait")
ANIMAL_DOING = ("sleeping", "running", "eating", "playing", "hiding", "swimming", "sitting", "jumping", "waiting")
ACTIVITIES = ("swim", "read", "cook", "dance", "sing", "run", "paint", "walk", "draw", "ride a bike",
              "play the piano", "play football", "go shopping", "watch movies", "bake bread")

UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0 <= n < 1_000_000 spelled out in American English without hyphens ('twenty one')."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number out of range: {n}")
    if n < 20:
        return UNITS[n]
    if n < 100:
        return TENS[n // 10 - 2] + ("" if n % 10 == 0 else " " + UNITS[n % 10])
    if n < 1000:
        rest = n % 100
        return UNITS[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def plural(noun: str) -> str:
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def third_person(verb: str) -> str:
    if verb.endswith(("s", "x", "z", "ch", "sh", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


_DOUBLE_FINAL = {"drop", "stop", "plan", "trap", "hug", "rub", "ship", "shop", "knit", "chat"}


def past(verb: str) -> str:
    if verb in IRREGULAR_PAST:
        return IRREGULAR_PAST[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ied"
    if verb in _DOUBLE_FINAL:
        return verb + verb[-1] + "ed"
    return verb + "ed"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
