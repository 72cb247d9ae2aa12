"""The rules an utterance must meet to be trained on or listened to, in one place: `opuslm data import`
applies them to what it reads, `opuslm tokenize` to any manifest (imported, synthesised or written by
hand), and `opuslm generate` to the clips it is given.

    transcript or labels   an utterance with neither has nothing to learn from
    MIN_SECONDS            shorter audio holds no word; a model given it invents one
    MIN_SECONDS_PER_WORD   a transcript of n words needs n x this much audio (10 words a second is
                           faster than anyone speaks: a shorter clip is cut or belongs to another text)
    DURATION_TOLERANCE     a manifest's declared duration may differ from the audio's by this much
                           (import rounds to 0.1 ms; more is a segment past the file's end, or a
                           manifest that names the wrong file)
    unique ids             a second utterance with an id already seen is rejected, not merged
"""

from __future__ import annotations

MIN_SECONDS = 0.2
MIN_SECONDS_PER_WORD = 0.1
DURATION_TOLERANCE = 0.01


def content_problem(text: str, labels: dict) -> str | None:
    """Why an utterance of this transcript and labels cannot be learned from, or None."""
    if not (text or "").strip() and not labels:
        return "empty transcript and no labels: nothing to learn from it"
    return None


def duration_problem(seconds: float, text: str = "") -> str | None:
    """Why `seconds` of audio are too short for itself or for its transcript `text`, or None."""
    if seconds < MIN_SECONDS:
        return f"{seconds:.3f} s of audio is shorter than the minimum of {MIN_SECONDS:g} s"
    words = len((text or "").split())
    if seconds < words * MIN_SECONDS_PER_WORD:
        return (f"{seconds:.3f} s of audio is too short for its {words}-word transcript (at least "
                f"{MIN_SECONDS_PER_WORD:g} s a word: {words * MIN_SECONDS_PER_WORD:.2f} s)")
    return None


def declared_problem(declared: float, measured: float) -> str | None:
    """Why a manifest's declared duration does not describe the audio it names, or None."""
    if abs(declared - measured) > DURATION_TOLERANCE:
        return (f"the manifest declares {declared:.3f} s but the audio holds {measured:.3f} s; fix the manifest's "
                "duration (or its offset, for a segment) or re-import the corpus")
    return None
