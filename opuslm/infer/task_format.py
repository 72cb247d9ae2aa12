"""The guard: decoding that stays within a task's text format (`opuslm.tasks.TARGETS`).

A briefly trained model sometimes leaves its task's format: a transcript that ends in a tag the task never
asks for (`put the key by the window<male>`), a label whose opening bracket it skipped (`the gray
wallet>`), a second answer. Read afterwards (`opuslm.infer.outputs.read_output`), such an output is
malformed. With the guard, decoding chooses each next id only among those that keep the output a prefix
of the format, and may stop only where the format is complete, so the model's own ranking picks the best
well-formed output instead of being cut short after a bad one. Each format is a sequence of parts:

    target              parts                            e.g.
    transcript          words                            `what is nine plus eight`
    answer              words                            `paris`
    labels              tag x n                          `<female><adult>`
    transcript+labels   words, tag x n                   `what is nine plus eight<happy>`
    transcript+answer   words, <answer>, words           `what is the capital of france<answer>paris`

`words` is any text without `<` or `>` holding at least one non-blank character; a `tag` is one of the
labels the task was taught (any text without brackets or blanks when they are not known), right after
what comes before it. Timestamps have their own constraint (`opuslm.infer.timed_words`, SRWT after ASR). Like it, a
`TaskFormat` reads text, not ids, so any tokenization of the format is allowed:

    format = TaskFormat.for_target("transcript+labels", strings, label_count=1, labels={"male", "female"})
    format.allowed([])  # -> (ids that write words, False)
"""

from __future__ import annotations

from dataclasses import dataclass

from opuslm.errors import OpusLMError
from opuslm.infer.timed_words import CharacterConstraint, TokenStrings
from opuslm.templates import ANSWER_MARKER

WORDS = "words"
BRACKETS = frozenset("<>")
ANSWER_TAG = frozenset({ANSWER_MARKER[1:-1]})
PARTS = {  # target -> its parts, given the tags allowed in a label and how many labels it writes
    "transcript": lambda tags, count: [WORDS],
    "answer": lambda tags, count: [WORDS],
    "labels": lambda tags, count: [tags] * count,
    "transcript+labels": lambda tags, count: [WORDS] + [tags] * count,
    "transcript+answer": lambda tags, count: [WORDS, ANSWER_TAG, WORDS],
}
FORMATTED_TARGETS = tuple(PARTS)


@dataclass(frozen=True)
class _Place:
    """Where a prefix stands: the part being written, and what of it: a tag's `<` and letters so far; for
    words, WORDS once a non-blank character is written (all that decides what may follow), else ""."""

    part: int
    written: str = ""


class TaskFormat(CharacterConstraint):
    """One target's format: `parts`, each WORDS or the set of tags allowed there (None: any tag)."""

    name = "task format"

    def __init__(self, parts: list[str | frozenset[str] | None], strings: TokenStrings):
        if not parts:
            raise OpusLMError("a task format needs at least one part")
        super().__init__(strings, _Place(0))
        self.parts = list(parts)
        self._allowed: dict[_Place, tuple[list[int], bool]] = {}

    @classmethod
    def for_target(cls, target: str, strings: TokenStrings, label_count: int = 0,
                   labels: set[str] | None = None) -> TaskFormat:
        """The format `target` writes (`label_count` tags from `labels`, None for any)."""
        if target not in PARTS:
            raise OpusLMError(f"the guard's formats are {', '.join(FORMATTED_TARGETS)}; got {target!r}")
        return cls(PARTS[target](None if labels is None else frozenset(labels), label_count), strings)

    # ---- the format, a character at a time ----
    def _tag_fits(self, part: int, name: str, whole: bool) -> bool:
        tags = self.parts[part]
        if tags is None:  # any tag: a name without blanks
            return not any(c.isspace() for c in name) and (bool(name) or not whole)
        return any(tag == name if whole else tag.startswith(name) for tag in tags)

    def _step(self, place: _Place, character: str) -> _Place | None:
        part, written = place.part, place.written
        if part == len(self.parts):
            return None  # complete: nothing more may be written
        if self.parts[part] == WORDS:
            if character not in BRACKETS:
                return place if written or character.isspace() else _Place(part, WORDS)
            opens_tag = character == "<" and written and part + 1 < len(self.parts)
            return _Place(part + 1, "<") if opens_tag else None
        if not written:  # a tag's `<` right after the tag before it, as the templates write them
            return _Place(part, "<") if character == "<" else None
        name = written[1:]
        if character == ">":
            return _Place(part + 1) if self._tag_fits(part, name, whole=True) else None
        if character in BRACKETS or not self._tag_fits(part, name + character, whole=False):
            return None
        return _Place(part, written + character)

    def _may_stop(self, place: _Place) -> bool:
        return place.part == len(self.parts) or (place.part == len(self.parts) - 1 and
                                                 self.parts[-1] == WORDS and bool(place.written))

    # ---- what decoding asks ----
    def allowed(self, written: list[int]) -> tuple[list[int], bool]:
        """(the text-token ids that may follow `written`, whether the output may end after it)."""
        place = self._reached(written)
        if place not in self._allowed:
            ids = [i for i, text in enumerate(self.strings.strings) if text and self._write(place, text) is not None]
            may_stop = self._may_stop(place)
            if not ids and not may_stop:
                raise self._dead_end(written)
            self._allowed[place] = (ids, may_stop)
        return self._allowed[place]
