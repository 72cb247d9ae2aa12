"""Scoring, by the conventions the field reports (see REFERENCE.md, section 4).

- WER: jiwer over Whisper's English normaliser (whisper-normalizer, pinned), corpus-level (errors of
  all utterances over their reference words) and as seed-tts-eval's mean of per-utterance WERs. A
  `<tag>` in a hypothesis is a separator: the normaliser alone deletes it and glues the words on its
  two sides into one, which hid stray tags (`sheep<0.44>does` is scored as "sheep does").
- Classification: the FIRST `<tag>` of the hypothesis against the reference's, case-insensitive
  (OSUM's scoring); a hypothesis without a tag is wrong.
- SRWT: WER of the words, and AAS, the mean absolute shift in ms of the start and end times of the
  words that the alignment pairs up as equal.
- STTC: exact match of the normalised answer after the `<answer>` marker.
"""

from __future__ import annotations

import re
from functools import lru_cache

import jiwer
import numpy as np

TAG = re.compile(r"<([^<>]+)>")
TIMED_WORD = re.compile(r"<(\d+(?:\.\d+)?)>([^<>]+?)<(\d+(?:\.\d+)?)>")


@lru_cache(maxsize=1)
def _normaliser():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalise(text: str) -> str:
    from opuslm.infer.outputs import emitted_words

    return " ".join(_normaliser()(emitted_words(text)).split())


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words) after normalisation."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:
        return len(hyp.split()), 0
    out = jiwer.process_words(ref, hyp if hyp else "")
    return out.substitutions + out.deletions + out.insertions, len(ref.split())


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """All errors over all reference words (the ASR convention)."""
    errors = words = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        e, n = word_errors(ref, hyp)
        errors, words = errors + e, words + n
    return errors / max(words, 1)


def mean_utterance_wer(references: list[str], hypotheses: list[str]) -> float:
    """The mean of per-utterance WERs (seed-tts-eval's TTS convention)."""
    rates = [e / max(n, 1) for e, n in (word_errors(r, h) for r, h in zip(references, hypotheses, strict=True))]
    return sum(rates) / max(len(rates), 1)


def first_tag(text: str) -> str | None:
    match = TAG.search(text)
    return match.group(1).strip().lower() if match else None


def timed_words(text: str) -> list[tuple[str, float, float]]:
    """`<0.00>hello<0.34><0.34>there<0.71>` -> [("hello", 0.0, 0.34), ("there", 0.34, 0.71)]."""
    return [(word.strip(), float(start), float(end)) for start, word, end in TIMED_WORD.findall(text)]


def boundary_shifts(reference: str, hypothesis: str) -> list[float]:
    """Absolute start and end shifts (seconds) of the hypothesis words aligned equal to reference words.

    The timed segments are the units of the alignment (an edit-distance alignment over them, by
    rapidfuzz, whose Levenshtein jiwer uses), compared case-insensitively: a hypothesis segment
    holding several words (`<0.1>two words<0.5>`) is one unit, which no single reference word equals,
    so it is counted as an error in WER terms and gives no shift."""
    from rapidfuzz.distance import Levenshtein

    ref, hyp = timed_words(reference), timed_words(hypothesis)
    if not ref or not hyp:
        return []
    shifts = []
    for block in Levenshtein.opcodes([w.lower() for w, _, _ in ref], [w.lower() for w, _, _ in hyp]):
        if block.tag == "equal":
            for (_, rs, re_), (_, hs, he) in zip(ref[block.src_start:block.src_end], hyp[block.dest_start:block.dest_end]):
                shifts += [abs(hs - rs), abs(he - re_)]
    return shifts


def answer_of(text: str, marker: str = "<answer>") -> str:
    return normalise(text.split(marker, 1)[1]) if marker in text else ""


def confusion(references: list[str], predictions: list[str | None]) -> tuple[list[str], list[list[int]]]:
    """Labels (reference labels, then other predictions, then "(none)") and counts[ref][pred]."""
    labels = sorted(set(references))
    labels += sorted({p for p in predictions if p is not None and p not in labels})
    if any(p is None for p in predictions):
        labels.append("(none)")
    index = {label: i for i, label in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for ref, pred in zip(references, predictions, strict=True):
        counts[index[ref]][index[pred if pred is not None else "(none)"]] += 1
    return labels, counts


RUNAWAY_RATIO = 2.0  # generated speech twice its reference's length did not end where it should
SILENT_SECONDS, SILENT_RMS = 0.25, 1e-3


def length_outcomes(generated_seconds: list[float], reference_seconds: list[float], generated_rms: list[float]) -> dict:
    """Generated audio against its reference: the mean length ratio, and the shares that ran away (at
    least RUNAWAY_RATIO times the reference) or are silent (shorter than SILENT_SECONDS or RMS under
    SILENT_RMS)."""
    if not generated_seconds:
        return {"tts_length_ratio": None, "tts_runaway_share": None, "tts_silent_share": None}
    ratios = [g / max(r, 1e-9) for g, r in zip(generated_seconds, reference_seconds)]
    silent = [g < SILENT_SECONDS or rms < SILENT_RMS for g, rms in zip(generated_seconds, generated_rms)]
    runaway = [ratio >= RUNAWAY_RATIO and not quiet for ratio, quiet in zip(ratios, silent)]
    return {"tts_length_ratio": float(np.mean(ratios)), "tts_runaway_share": float(np.mean(runaway)),
            "tts_silent_share": float(np.mean(silent))}
