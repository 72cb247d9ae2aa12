"""English words by part of speech for the sentence generator, with inflection rules.

Hand-curated because the espeak-ng-data in the wheel ships only compiled dictionaries, and grammatical
templates need parts of speech. Irregular forms are listed; regular ones follow the rules below.
"""

from __future__ import annotations


def _words(block: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(block.split()))  # unique, in order


NOUNS = _words("""
ability account actor address adult advice afternoon airport album animal answer apartment apple
area arm army artist attention aunt author baby back bag bakery ball balloon banana band bank
basket bath battery beach bean bear bed bedroom bee beer bell belt bench bicycle bird birthday
blanket boat body bone book boot border bottle bottom bowl box boy brain branch bread breakfast
brick bridge brother brush bucket budget building bus business butter button cabin cable cake
camera camp candle candy cap captain car card carpet carrot castle cat ceiling chain chair chance
chapter cheese chef chicken child chimney chocolate church circle city class classroom clock cloud
club coach coat coffee coin college color computer concert cook cookie corner cottage couch
country cousin cow crowd cup cupboard curtain customer dancer daughter day deer desert desk dinner
doctor dog doll door dragon drawer dream dress driver drum duck eagle ear earth egg elephant
engine engineer evening eye face factory family farm farmer father feather fence field finger fire
fish flag floor flower fly folder forest fork fountain fox friend frog fruit game garage garden
gate gift giraffe girl glass glove goat gold grandmother grape grass guitar hair hall hammer hand
harbor hat head heart helmet hill holiday home honey horse hospital hotel hour house island jacket
jar journey judge juice kettle key king kitchen kite knee knife ladder lake lamp lawyer leaf lemon
lesson letter library lion lunch machine magazine map market meadow meal meeting message metal
minute mirror monkey month moon morning mother mountain mouse mouth movie museum neighbor nest
newspaper night noise nose notebook nurse ocean office onion orange owl package page painter
palace pan paper parent park party path pencil penguin pepper piano picture pie pig pillow pilot
pizza plane planet plant plate player pocket poem police pond potato present prince princess
problem pumpkin puppy puzzle queen question rabbit radio rain report restaurant ribbon rice ring
river road robot rock roof room rope rose sailor salad sand sandwich school scientist season seat
secret shadow sheep shelf ship shirt shoe shop shoulder singer sister skirt sky snake snow soap
sock sofa soldier son song soup spoon spring square stage star station stone store storm story
stove street student sugar suitcase summer sun supper table tail teacher team telephone tent
theater thread ticket tiger toast toe tomato tongue tooth towel tower town toy tractor train tree
truck trumpet tunnel turtle umbrella uncle valley van vase village violin visitor voice wagon
wall wallet watch water wave weekend whale wheel window winter wizard wolf woman worker world
writer yard year zebra
acorn anchor angle ankle ant apron arrow attic axe badge bagel barn barrel bat beard beetle berry
blossom blouse bolt bonnet bracelet brook broom buffalo bulb bundle bunny butterfly cactus calendar
camel canal canoe canvas cape carpenter cart cave cellar cherry chess chin clay cliff closet clown
cobweb collar comb compass cone crab cradle crayon cricket crown cushion daisy diamond dolphin
donkey dove dust envelope fairy feast ferry fiddle flute fog fountain frame fridge gardener ghost
glacier globe goose gravel guard gull hamster handle harp hawk hedge hen hero hive hook horn hut
iceberg ink jelly jewel kangaroo kitten koala lantern lawn lettuce lighthouse lizard lobster
locket magnet mailbox maple marble mask meadow melon mitten moose moth muffin mug nail napkin
necklace needle nut oak oar otter oven paddle pail palm panda parrot peach peanut pear pearl
pebble pepper pigeon pine pirate plum pony porch puddle quilt raft rainbow raven saddle salmon
sardine scarf scissors seal shell shovel skunk sled sleeve slipper snail sparrow spider sponge
squirrel stamp statue stick stool straw strawberry swan sweater swing teapot thumb tiger toad
tulip twig unicorn vest violet walrus wand whistle wig willow windmill worm yacht yogurt
""")

# Singular -> plural where the rules below do not apply.
IRREGULAR_PLURALS = {
    "child": "children", "woman": "women", "man": "men", "mouse": "mice", "tooth": "teeth",
    "foot": "feet", "goose": "geese", "sheep": "sheep", "deer": "deer", "fish": "fish",
    "moose": "moose", "buffalo": "buffaloes", "potato": "potatoes", "tomato": "tomatoes",
    "hero": "heroes", "leaf": "leaves", "knife": "knives", "wolf": "wolves", "shelf": "shelves",
    "scarf": "scarves", "calf": "calves", "life": "lives", "wife": "wives", "half": "halves",
    "scissors": "scissors", "salmon": "salmon", "sardine": "sardines",
}

ADJECTIVES = _words("""
able active afraid angry ancient anxious awake bad bare basic beautiful big bitter black blue
bold bored brave bright brilliant broad broken brown busy calm careful careless cheap cheerful
clean clear clever close cold comfortable common cool correct crazy creamy crisp cruel curious
curly cute damp dangerous dark dear deep delicate different difficult dirty dry dull dusty eager
early easy elegant empty enormous exact excellent expensive fair famous fancy fast fat few fierce
fine firm flat fluffy foolish fresh friendly frozen full funny gentle giant glad golden good
graceful grand gray great green grumpy handsome happy hard harsh healthy heavy helpful high hollow
honest hot huge humble hungry icy important innocent jolly kind large late lazy light little
lively lonely long loose loud lovely low loyal lucky mad magic merry mighty mild modern narrow
nasty neat nervous new nice noisy odd old orange pale patient peaceful perfect pink plain pleasant
polite poor popular precious pretty proud purple quick quiet rapid rare raw ready real red rich
ripe rough round royal rude rusty sad safe salty scary sharp shiny short shy silent silly silver
simple slim slow small smart smooth soft solid sour special spicy splendid steady steep sticky
stiff strange strict strong sturdy sudden sunny super sweet swift tall tame tender terrible thick
thin thirsty tidy tiny tired tough tricky ugly unusual useful vast warm weak wealthy wet white
whole wide wild windy wise wooden young yellow
""")

# Transitive verbs: base form, and the past form where it is irregular.
IRREGULAR_PAST = {
    "bring": "brought", "build": "built", "buy": "bought", "catch": "caught", "choose": "chose",
    "draw": "drew", "drive": "drove", "eat": "ate", "feed": "fed", "find": "found", "forget": "forgot",
    "hide": "hid", "hold": "held", "keep": "kept", "know": "knew", "leave": "left", "lend": "lent",
    "lose": "lost", "make": "made", "meet": "met", "pay": "paid", "read": "read", "ride": "rode",
    "see": "saw", "sell": "sold", "send": "sent", "shake": "shook", "sing": "sang", "steal": "stole",
    "take": "took", "teach": "taught", "tear": "tore", "throw": "threw", "wear": "wore",
    "win": "won", "write": "wrote", "break": "broke", "freeze": "froze", "give": "gave",
    "grow": "grew", "hang": "hung", "hear": "heard", "light": "lit", "shoot": "shot",
    "sweep": "swept", "swing": "swung", "understand": "understood", "wind": "wound", "dig": "dug",
    "bend": "bent", "spin": "spun", "sting": "stung", "cut": "cut", "hit": "hit", "put": "put",
    "shut": "shut", "set": "set", "spread": "spread", "split": "split", "bite": "bit",
}

VERBS = _words("""
accept admire answer arrange attack bake balance borrow brush burn bury call carry change chase
check clean climb close collect color comfort cook copy count cover crack crush decorate deliver
describe design destroy discover drop dry dust enjoy enter examine explain explore fetch fill fix
fold follow frighten greet guard guide help hug hunt imagine inspect invite join kick kiss knock
lift like load lock love mark measure mend miss move name notice open order pack paint park pass
pick plant play polish pour prepare press protect pull push reach remember repair rescue return
roll rub save scare search serve share shout sign smell sort splash squeeze start stop study
touch tow trace train trap trust turn visit wake walk want warn wash watch water weigh welcome
wipe wrap
""") + tuple(IRREGULAR_PAST)

ADVERBS = _words("""
again almost already always angrily badly boldly bravely briefly brightly calmly carefully
cheerfully clearly closely correctly daily eagerly easily finally firmly fondly gently gladly
gracefully happily hardly honestly hungrily kindly lazily lightly loudly loosely neatly nervously
often patiently politely proudly quickly quietly rarely roughly rudely sadly safely seldom
sharply silently slowly softly soon sometimes suddenly swiftly tenderly tightly today tomorrow
together usually warmly weekly wildly wisely yesterday
""")

NAMES = _words("""
adam alice amelia anna arthur ben bella carl charlie chloe clara daniel david diana edward ella
emily emma ethan felix fiona frank george grace hannah harry helen henry isaac ivy jack jacob
james jane jason julia kate laura leo lily lucas lucy mark martin mary max mia michael nina noah
oliver olivia oscar paul peter rachel robert rose ruby ryan sam sarah simon sophie thomas tom
victor william zoe
""")

PLACES = _words("""
paris london berlin madrid rome tokyo cairo sydney boston chicago denver dallas seattle toronto
dublin vienna prague oslo lisbon athens moscow delhi lima quito texas ohio florida canada mexico
brazil spain france italy egypt china india japan kenya peru norway sweden ireland scotland
""")

PREPOSITIONS = _words("above behind below beside inside near under over across along around")

TIMES = _words("monday tuesday wednesday thursday friday saturday sunday")
TIME_PHRASES = (
    "last night", "this morning", "every day", "last week", "next year", "at noon", "in the evening",
    "after lunch", "before dinner", "on the weekend", "in the spring", "during the winter",
)

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
