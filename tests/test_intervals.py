"""Confidence intervals of the ablation table: exact means, degenerate cases, coverage, pairing."""

import doctest

import numpy as np
import pytest

from opuslm.eval import intervals
from opuslm.eval.intervals import interval, over_runs, paired_difference, utterance_terms


def test_docstring_example():
    assert doctest.testmod(intervals).failed == 0


def _runs(errors: np.ndarray, words: np.ndarray) -> list[dict]:
    return [{f"u{i}": (float(e), float(w)) for i, (e, w) in enumerate(zip(run, words))} for run in errors]


def test_the_mean_is_each_runs_corpus_ratio_averaged_and_identical_runs_are_inside_their_interval():
    rng = np.random.default_rng(1)
    words = rng.integers(3, 12, size=40)
    errors = rng.binomial(words, 0.3)
    one = _runs(errors[None], words)
    estimate = interval(one * 3)  # three identical seeds
    assert estimate.mean == pytest.approx(errors.sum() / words.sum())
    assert estimate.low < estimate.mean < estimate.high
    same = paired_difference(one * 2, one * 2)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    flat = interval(_runs(np.full((1, 40), 2), np.full(40, 4)))  # every utterance 0.5: nothing to resample
    assert (flat.mean, flat.low, flat.high) == (0.5, 0.5, 0.5)
    assert over_runs([0.2]).low is None and over_runs([0.2, 0.2, 0.2]).cell() == "0.200 [0.200, 0.200]"


def test_the_interval_covers_the_true_rate_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(200):
        words = np.full(60, 8)
        errors = rng.binomial(words, 0.25)[None]
        estimate = interval(_runs(errors, words), resamples=400, seed=trial)
        covered += estimate.low <= 0.25 <= estimate.high
    assert 0.88 <= covered / 200 <= 0.99


def test_a_paired_difference_sees_a_small_effect_that_separate_intervals_do_not():
    rng = np.random.default_rng(3)
    words = rng.integers(4, 10, size=80)
    hardness = rng.uniform(0, 0.8, size=80)  # utterances differ far more than the two systems do
    baseline = rng.binomial(words, hardness)
    better = np.maximum(baseline - (rng.uniform(size=80) < 0.3), 0)  # one error fewer on 30% of them
    a, b = _runs(baseline[None], words), _runs(better[None], words)
    separate_a, separate_b = interval(a), interval(b)
    assert separate_b.high > separate_a.low  # the separate intervals overlap
    difference = paired_difference(a, b)
    assert difference.mean == pytest.approx((better.sum() - baseline.sum()) / words.sum())
    assert difference.excludes(0.0) and difference.high < 0


def test_hyps_rows_become_the_terms_eval_scores_with():
    rows = [{"id": "a", "task": "asr", "split": "test", "reference": "the red cat", "hypothesis": "the red", "score": 1 / 3},
            {"id": "a", "task": "asr", "split": "dev", "reference": "cat", "hypothesis": "cat", "score": 0.0},
            {"id": "a", "task": "sgc", "split": "test", "reference": "x<male>", "hypothesis": "x<male>", "score": 1.0},
            {"id": "f", "task": "spoken_qa", "split": "test", "reference": "4", "hypothesis": "5", "score": 0.0},
            {"id": "f", "task": "text_qa", "split": "test", "reference": "4", "hypothesis": "4", "score": 1.0},
            {"id": "a", "task": "srwt", "split": "test", "reference": "", "hypothesis": "", "score": 0.5}]
    assert utterance_terms(rows) == {"asr_wer_test": {"a": (1.0, 3.0)}, "asr_wer_dev": {"a": (0.0, 1.0)},
                                     "sgc_accuracy": {"a": (1.0, 1.0)}, "spoken_facts_accuracy": {"f": (0.0, 1.0)},
                                     "facts_accuracy": {"f": (1.0, 1.0)}}
