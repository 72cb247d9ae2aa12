"""Do semantic ids carry words across speakers? The word nearest-neighbour probe, no training needed.

Each spoken word (from the manifest's word timestamps) becomes the run-length-collapsed ids of its
frames. Every occurrence of a frequent word in the query split (test: speakers never heard in train)
is matched to its nearest occurrence in the train split by edit distance over those ids (rapidfuzz's
Levenshtein, the library jiwer uses); the probe's score is how often the nearest one is the same word.
A cheap yardstick for choosing features, layer and K before training a model on them.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Occurrence:
    word: str
    speaker: str
    ids: tuple[int, ...]  # the word's frames' ids, consecutive repeats collapsed


def occurrences(utterances, ids: list[np.ndarray], frame_rate: float) -> list[Occurrence]:
    """Each timed word of each utterance with the ids of the frames its span covers."""
    out = []
    for utterance, sequence in zip(utterances, ids):
        for word, start, end in utterance.words or []:
            first = int(np.floor(start * frame_rate))
            last = max(int(np.ceil(end * frame_rate)), first + 1)
            span = sequence[first:last]
            if len(span):
                collapsed = [int(span[0])] + [int(b) for a, b in zip(span[:-1], span[1:]) if a != b]
                out.append(Occurrence(word, utterance.speaker, tuple(collapsed)))
    return out


def word_probe(reference: list[Occurrence], query: list[Occurrence], words: int = 60, per_word: int = 20,
               seed: int = 0) -> dict:
    """Nearest-neighbour word accuracy of `query` occurrences of the `words` most frequent words of
    `reference` (up to `per_word` reference occurrences each, drawn with `seed`); ties go to the
    earliest reference occurrence. Occurrences by a query speaker are never references."""
    from rapidfuzz.distance import Levenshtein

    counts = Counter(o.word for o in reference)
    frequent = {w for w, _ in counts.most_common(words)}
    by_word = defaultdict(list)
    for o in reference:
        if o.word in frequent:
            by_word[o.word].append(o)
    rng = random.Random(seed)
    pool = [o for w in sorted(by_word) for o in rng.sample(by_word[w], min(per_word, len(by_word[w])))]
    asked = [o for o in query if o.word in frequent]
    correct = 0
    for o in asked:
        candidates = [r for r in pool if r.speaker != o.speaker]
        distances = [Levenshtein.distance(o.ids, r.ids) for r in candidates]
        correct += candidates[int(np.argmin(distances))].word == o.word
    return {"accuracy": correct / len(asked) if asked else None, "queries": len(asked), "words": len(frequent),
            "references": len(pool), "chance": 1 / max(len(frequent), 1)}
