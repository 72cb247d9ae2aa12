"""Confidence intervals for metrics compared across runs, from the per-utterance rows of `hyps.jsonl`.

A metric that `opuslm eval` writes a row per utterance for is a ratio of sums over utterances:

    asr_wer_dev, asr_wer_test, tts_wer   word errors / reference words (the corpus WER)
    <task>_accuracy, sttc_accuracy       correct / scored (the classification tasks, both prompts)
    spoken_facts_accuracy                correct / asked

For several runs of one configuration (seeds) on the same utterances, the estimate is the mean over
runs of each run's ratio, and its interval a percentile bootstrap that resamples both the runs (when
there are several) and the utterances: the spread of seeds and of the test set in one interval. A
paired difference between two configurations resamples the same utterances for both sides, so a small
effect on the same test set is not drowned by how hard the utterances are.

    >>> runs = [{"a": (1, 4), "b": (0, 4)}, {"a": (2, 4), "b": (0, 4)}]   # two seeds, two utterances
    >>> interval(runs).mean                                                # (1/8 + 2/8) / 2
    0.1875
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opuslm.eval import metrics

LEVEL = 0.95
RESAMPLES = 2000

Terms = dict[str, tuple[float, float]]  # utterance id -> (numerator, denominator)


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float | None  # None: no interval (one run of a metric without per-utterance rows)
    high: float | None

    def excludes(self, value: float) -> bool:
        return self.low is not None and not self.low <= value <= self.high

    def cell(self, digits: int = 3) -> str:
        if self.low is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


FACT_METRICS = {"spoken_qa": "spoken_facts_accuracy", "text_qa": "facts_accuracy"}  # the factual questions' rows


def utterance_terms(rows: list[dict]) -> dict[str, Terms]:
    """Per metric (named as in results.json), each utterance's numerator and denominator."""
    out: dict[str, Terms] = {}
    for row in rows:
        task = row["task"]
        if task in ("asr", "tts"):
            name = f"asr_wer_{row['split']}" if task == "asr" else "tts_wer"
            errors, words = metrics.word_errors(row["reference"], row["hypothesis"])
            out.setdefault(name, {})[row["id"]] = (float(errors), float(words))
        elif task in FACT_METRICS:
            out.setdefault(FACT_METRICS[task], {})[row["id"]] = (float(row["score"]), 1.0)
        elif task not in ("srwt",) and isinstance(row.get("score"), (int, float)):
            out.setdefault(f"{task}_accuracy", {})[row["id"]] = (float(row["score"]), 1.0)
    return out


def _arrays(runs: list[Terms], ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    numerators = np.array([[run[i][0] for i in ids] for run in runs], dtype=np.float64)
    denominators = np.array([[run[i][1] for i in ids] for run in runs], dtype=np.float64)
    return numerators, denominators


def _common_ids(*groups: list[Terms]) -> list[str]:
    ids = set.intersection(*(set(run) for group in groups for run in group))
    if not ids:
        raise ValueError("the runs share no utterance")
    return sorted(ids)


def _resampled(numerators, denominators, weights, rng) -> np.ndarray:
    """Each resample's mean over resampled runs of the ratio of weighted sums: `[resamples]`."""
    per_run = (weights @ numerators.T) / np.maximum(weights @ denominators.T, 1e-12)  # [resamples, runs]
    runs = numerators.shape[0]
    if runs == 1:
        return per_run[:, 0]
    chosen = rng.integers(runs, size=(len(weights), runs))
    return np.take_along_axis(per_run, chosen, axis=1).mean(1)


def _weights(count: int, rng, resamples: int) -> np.ndarray:
    """Bootstrap weights over `count` utterances: how often each is drawn, `[resamples, count]`."""
    return rng.multinomial(count, np.full(count, 1.0 / count), size=resamples).astype(np.float64)


def _bounds(values: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def interval(runs: list[Terms], resamples: int = RESAMPLES, seed: int = 0) -> Estimate:
    """The mean over `runs` of their ratio, with a bootstrap interval over runs and utterances."""
    ids = _common_ids(runs)
    numerators, denominators = _arrays(runs, ids)
    mean = float(np.mean(numerators.sum(1) / np.maximum(denominators.sum(1), 1e-12)))
    rng = np.random.default_rng(seed)
    return Estimate(mean, *_bounds(_resampled(numerators, denominators, _weights(len(ids), rng, resamples), rng)))


def paired_difference(baseline: list[Terms], other: list[Terms], resamples: int = RESAMPLES, seed: int = 0) -> Estimate:
    """`other` minus `baseline` on the utterances they share, each resample drawing the same utterances
    for both sides (and each side's runs on its own)."""
    ids = _common_ids(baseline, other)
    a, b = _arrays(baseline, ids), _arrays(other, ids)
    mean_a = np.mean(a[0].sum(1) / np.maximum(a[1].sum(1), 1e-12))
    mean_b = np.mean(b[0].sum(1) / np.maximum(b[1].sum(1), 1e-12))
    rng = np.random.default_rng(seed)
    weights = _weights(len(ids), rng, resamples)
    values = _resampled(*b, weights, rng) - _resampled(*a, weights, rng)
    return Estimate(float(mean_b - mean_a), *_bounds(values))


def over_runs(values: list[float], resamples: int = RESAMPLES, seed: int = 0) -> Estimate:
    """A metric with one number per run (perplexity, a validation loss): the mean, and with several runs
    a bootstrap over them."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return Estimate(mean, None, None)
    rng = np.random.default_rng(seed)
    draws = np.asarray(values)[rng.integers(len(values), size=(resamples, len(values)))].mean(1)
    return Estimate(mean, *_bounds(draws))
