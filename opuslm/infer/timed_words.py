"""SRWT after ASR: decoding that writes given words and lets the model choose only their times.

Free SRWT writes each word and its two timestamps together (`<0.01>zoe<0.20><0.20>wanted<0.54>`), so its
words are spelled in a form no other task trains (no leading spaces, between tags) and its times may go
backwards or pass the clip. After ASR, the same model first transcribes the clip (its best-trained task),
then writes the SRWT format with those words forced and every timestamp chosen by the model among the
values that keep the output well formed:

    <start>word<end> per word, each time `\\d+\\.\\d\\d` seconds (the targets' form, `templates.word_timestamps`),
    start >= the previous word's end, end >= start, end <= the clip's length

A `TimedWords` constraint answers, for what has been written so far (text-token ids), which ids may come
next and whether the output may stop. It reads text, not ids, so any tokenization of the format is
allowed: the model's own choice among them is the one decoding takes. It is tokenizer-agnostic but for
one assumption, which holds for the demo's BPE and byte-level BPEs whose pre-tokenizer splits digits from
punctuation (GPT-2, SmolLM2, Qwen2.5): no token joins a word's letters or a bracket to a digit.

    strings = TokenStrings(text_tokenizer)
    constraint = TimedWords(["zoe", "wanted"], strings, clip_seconds=1.7)
    constraint.allowed([])  # -> (ids that write "<" or start with it and stay valid, False)
"""

from __future__ import annotations

from dataclasses import dataclass

from opuslm.errors import OpusLMError

DIGITS = "0123456789"
TIME_CHARACTERS = frozenset("<>." + DIGITS)
DECIMALS = 2  # as `templates.word_timestamps` writes them


class TokenStrings:
    """The text each id of a text tokenizer writes (special tokens write none), the ids that write a
    given text, and the ids that write only time characters (`<`, `>`, `.`, digits)."""

    def __init__(self, tokenizer):
        special = set(tokenizer.all_special_ids)
        self.strings = ["" if i in special else tokenizer.decode([i], clean_up_tokenization_spaces=False)
                        for i in range(len(tokenizer))]
        self.ids_of: dict[str, list[int]] = {}
        for i, text in enumerate(self.strings):
            if text:
                self.ids_of.setdefault(text, []).append(i)
        self.time_ids = [i for i, text in enumerate(self.strings) if text and set(text) <= TIME_CHARACTERS]


class CharacterConstraint:
    """What a format constraint shares: it reads an output a character at a time (`_step(place,
    character)`: the place after it, or None where the output leaves the format) and remembers the place
    each written prefix of ids reaches. `name` begins its errors."""

    name = "format"

    def __init__(self, strings: TokenStrings, start):
        self.strings = strings
        self._places: dict[tuple[int, ...], object] = {(): start}

    def _step(self, place, character: str):
        raise NotImplementedError

    def _write(self, place, text: str):
        for character in text:
            if place is None:
                return None
            place = self._step(place, character)
        return place

    def _place(self, written: tuple[int, ...]):
        if written not in self._places:
            self._places[written] = self._write(self._place(written[:-1]), self.strings.strings[written[-1]])
        return self._places[written]

    def _reached(self, written: list[int]):
        """The place `written` reaches; refused where it already left the format."""
        place = self._place(tuple(written))
        if place is None:
            raise OpusLMError(f"{self.name}: the output so far leaves the format: {self._text(written)!r}")
        return place

    def _dead_end(self, written: list[int]) -> OpusLMError:
        return OpusLMError(f"{self.name}: the text tokenizer has no token that continues the format after "
                           f"{self._text(written)!r}")

    def _text(self, written: list[int]) -> str:
        return "".join(self.strings.strings[i] for i in written)


@dataclass(frozen=True)
class _Place:
    """Where a prefix of the output stands: the word being timed, which part of `<start>word<end>` is
    being written, what of that part is written (a number's characters or the word's letters), and the
    time in centiseconds the number being written may not go below."""

    word: int
    part: str  # "open-start", "start", "word", "open-end", "end" or "done"
    written: str = ""
    floor: int = 0


def _number_ranges(text: str) -> list[tuple[int, int]]:
    """The centiseconds that numbers beginning with `text` can be, as `%.2f` writes them (integer parts of
    at most 4 digits): one range [low, high] per integer-part length, so that "1" (1.00-1.99) and "1x"
    (10.00-19.99) stay apart; none when no such number begins so."""
    whole, dot, decimals = text.partition(".")
    if not text:
        return [(0, 10 ** 6 - 1)]
    if not whole.isdigit() or (len(whole) > 1 and whole[0] == "0") or len(whole) > 4:
        return []
    if dot:
        if len(decimals) > DECIMALS or (decimals and not decimals.isdigit()):
            return []
        base = int(whole) * 100
        return [(base + int(decimals.ljust(DECIMALS, "0")), base + int(decimals.ljust(DECIMALS, "9")))]
    extras = range(1) if whole == "0" else range(4 - len(whole) + 1)
    return [(int(whole) * 10 ** extra * 100, (int(whole) + 1) * 10 ** extra * 100 - 1) for extra in extras]


def _viable(text: str, floor: int, ceiling: int) -> bool:
    """Some number beginning with `text` lies in [floor, ceiling]."""
    return any(low <= ceiling and high >= floor for low, high in _number_ranges(text))


def _value(text: str) -> int | None:
    """The centiseconds a whole number writes, or None while it is not whole."""
    _, dot, decimals = text.partition(".")
    ranges = _number_ranges(text)
    return ranges[0][0] if dot and len(decimals) == DECIMALS and ranges else None


class TimedWords(CharacterConstraint):
    """The SRWT format over fixed `words`, with times within [0, `clip_seconds`]."""

    name = "timed words"

    def __init__(self, words: list[str], strings: TokenStrings, clip_seconds: float):
        if not words or any(not word or set(word) & {"<", ">"} or len(word.split()) != 1 for word in words):
            raise OpusLMError(f"timed words need non-empty words without brackets or spaces, got {words!r}")
        super().__init__(strings, _Place(0, "open-start"))
        self.words = list(words)
        self.ceiling = int(clip_seconds * 100)

    @property
    def most_characters(self) -> int:
        """The longest output the format allows (a bound on its tokens: each writes at least one character)."""
        time = len(f"<{self.ceiling / 100:.2f}>")
        return sum(len(word) + 2 * time for word in self.words)

    # ---- the format, a character at a time ----
    def _step(self, place: _Place, character: str) -> _Place | None:
        word, part, written, floor = place.word, place.part, place.written, place.floor
        if part in ("open-start", "open-end"):
            return _Place(word, "start" if part == "open-start" else "end", "", floor) if character == "<" else None
        if part in ("start", "end"):
            if character == ">":
                value = _value(written)
                if value is None or not floor <= value <= self.ceiling:
                    return None
                if part == "start":
                    return _Place(word, "word", "", value)
                return _Place(word + 1, "done" if word + 1 == len(self.words) else "open-start", "", value)
            longer = written + character
            return _Place(word, part, longer, floor) if _viable(longer, floor, self.ceiling) else None
        if part == "word":
            target = self.words[word]
            if character != target[len(written)]:
                return None
            done = len(written) + 1 == len(target)
            return _Place(word, "open-end" if done else "word", "" if done else written + character, floor)
        return None  # done: nothing more may be written

    def _ahead(self, place: _Place) -> str:
        """The characters that must come next, up to the next number's digits."""
        word = self.words[place.word] if place.word < len(self.words) else ""
        if place.part in ("open-start", "open-end"):
            return "<"
        if place.part == "word":
            return word[len(place.written):] + "<"
        if place.part in ("start", "end") and _value(place.written) is not None:
            if place.part == "start":
                return ">" + word + "<"
            return ">" + ("<" if place.word + 1 < len(self.words) else "")
        return ""

    # ---- what decoding asks ----
    def allowed(self, written: list[int]) -> tuple[list[int], bool]:
        """(the text-token ids that may follow `written`, whether the output may end after it)."""
        place = self._reached(written)
        if place.part == "done":
            return [], True
        ahead = self._ahead(place)
        candidates = set(self.strings.time_ids)
        for end in range(1, len(ahead) + 1):
            candidates.update(self.strings.ids_of.get(ahead[:end], ()))
        allowed = sorted(i for i in candidates if self._write(place, self.strings.strings[i]) is not None)
        if not allowed:
            raise self._dead_end(written)
        return allowed, False
