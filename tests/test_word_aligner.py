"""The word aligner: its Viterbi path against every path, its frame labels, and a fit on clips whose
words are tones (each token its own pitch) that must place held-out words on their own frames."""

import itertools

import numpy as np
import pytest
from transformers import AutoTokenizer

from opuslm.errors import OpusLMError
from opuslm.infer.word_aligner import (SILENCE, WordAligner, boundary_error_ms, fit_word_aligner, forced_alignment,
                                       frame_labels, word_token_ids)
from opuslm.tokenize.features import LogMelFeatures
from opuslm.tokenize.text import train_text_tokenizer

WORDS = ["red", "green", "blue", "yellow", "black", "white"]


def _all_paths(scores, words):
    """Naive: every way to give each token a run of >= 1 frames, in order, with silences (possibly empty)
    before, between and after the words; the best total score and its word spans."""
    frames, tokens = scores.shape[0], [t for w in words for t in w]
    best = (-np.inf, None)
    # a run length per token and a (possibly 0) silence before each word and after the last
    for runs in itertools.product(range(1, frames + 1), repeat=len(tokens)):
        for gaps in itertools.product(range(frames + 1), repeat=len(words) + 1):
            if sum(runs) + sum(gaps) != frames:
                continue
            t, total, spans, k = 0, 0.0, [], 0
            for w, word in enumerate(words):
                total += scores[t:t + gaps[w], SILENCE].sum()
                t += gaps[w]
                start = t
                for label in word:
                    total += scores[t:t + runs[k], label].sum()
                    t += runs[k]
                    k += 1
                spans.append((start, t))
            total += scores[t:, SILENCE].sum()
            if total > best[0]:
                best = (total, spans)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_forced_alignment_is_the_best_of_all_paths(seed):
    rng = np.random.default_rng(seed)
    frames = int(rng.integers(4, 8))
    words = [[1], [2, 3]] if seed % 2 else [[2], [1]]
    scores = np.log(rng.dirichlet(np.ones(4), size=frames))
    _, spans = _all_paths(scores, words)
    got = forced_alignment(scores, words)
    assert got == spans
    assert got[0][0] >= 0 and got[-1][1] <= frames and all(a[1] <= b[0] for a, b in zip(got, got[1:]))


def test_forced_alignment_follows_certain_posteriors_and_refuses_too_few_frames():
    # frames: sil sil 1 1 sil 2 3 3 sil
    truth = [0, 0, 1, 1, 0, 2, 3, 3, 0]
    scores = np.full((len(truth), 4), np.log(0.01))
    scores[np.arange(len(truth)), truth] = np.log(0.97)
    assert forced_alignment(scores, [[1], [2, 3]]) == [(2, 4), (5, 8)]
    assert forced_alignment(scores, []) == []
    with pytest.raises(OpusLMError, match="3 tokens cannot hold a frame each in 2 frames"):
        forced_alignment(scores[:2], [[1], [2, 3]])


def test_frame_labels_share_a_word_among_its_tokens():
    # 0.04 s frames; word 1 at [0.08, 0.20) -> frames 2-4, word 2 (two tokens) at [0.24, 0.40) -> frames 6-9
    labels = frame_labels([(0.08, 0.20), (0.24, 0.40)], [[7], [8, 9]], 12, 0.04)
    assert labels.tolist() == [-1, -1, 7, 7, 7, -1, 8, 8, 9, 9, -1, -1]
    # a word shorter than a frame keeps one; a time past the clip is clipped
    assert frame_labels([(0.10, 0.11), (0.28, 9.0)], [[5], [6]], 10, 0.04).tolist() == \
        [-1, -1, 5, -1, -1, -1, -1, 6, 6, 6]


@pytest.fixture(scope="module")
def tone_tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tone_tokenizer")
    train_text_tokenizer([" ".join(WORDS)] * 50, folder, 300)
    return AutoTokenizer.from_pretrained(str(folder))


def _tone_clips(tokenizer, count, seed):
    """Clips of 2-4 words at 16 kHz; each token a tone of its own pitch for whole 40 ms frames, silences of
    0-3 frames between words: the reference times fall on frame boundaries."""
    rng = np.random.default_rng(seed)
    frame = 640
    clips = []
    for _ in range(count):
        words = list(rng.choice(WORDS, size=int(rng.integers(2, 5)), replace=False))
        pieces, times, t = [np.zeros(frame * int(rng.integers(0, 3)), np.float32)], [], 0
        t = len(pieces[0])
        for ids in word_token_ids(tokenizer, words):
            start = t
            for token in ids:
                frames = int(rng.integers(2, 5))
                n = np.arange(frames * frame)
                pieces.append((0.3 * np.sin(2 * np.pi * (200 + 37 * (token % 60)) * n / 16000)).astype(np.float32))
                t += frames * frame
            times.append((start / 16000, t / 16000))
            gap = np.zeros(frame * int(rng.integers(0, 4)), np.float32)
            pieces.append(gap)
            t += len(gap)
        clips.append((np.concatenate(pieces), 16000, [[w, s, e] for w, (s, e) in zip(words, times)]))
    return clips


def test_a_fitted_aligner_places_held_out_words_on_their_frames_and_reloads_the_same(tone_tokenizer, tmp_path):
    features = LogMelFeatures()
    aligner = fit_word_aligner(_tone_clips(tone_tokenizer, 60, 0), _tone_clips(tone_tokenizer, 10, 1), features,
                               tone_tokenizer, steps=300, batch_size=16, progress=False)
    held_out = _tone_clips(tone_tokenizer, 20, 2)
    shifts = []
    for wav, rate, words in held_out:
        placed = aligner.align(wav, rate, [w for w, _, _ in words])
        shifts += [abs(got - ref) for (_, *times), span in zip(words, placed) for got, ref in zip(span, times)]
    assert max(shifts) <= 0.04 + 1e-9  # never more than a frame off
    assert np.mean(np.array(shifts) < 1e-9) >= 0.8  # and most boundaries on their own frame
    assert boundary_error_ms(aligner, held_out) == pytest.approx(1000 * np.mean(shifts))
    reloaded = WordAligner.load(aligner.save(tmp_path / "aligner"))
    assert reloaded.info == aligner.info and reloaded.token_classes == aligner.token_classes
    for wav, rate, words in held_out:
        assert reloaded.align(wav, rate, [w for w, _, _ in words]) == aligner.align(wav, rate, [w for w, _, _ in words])


def test_a_transcript_longer_than_its_frames_falls_back_to_a_state_per_word_then_to_even_shares(tone_tokenizer):
    aligner = fit_word_aligner(_tone_clips(tone_tokenizer, 8, 0), [], LogMelFeatures(), tone_tokenizer, steps=2,
                               progress=False)
    wav = np.zeros(640 * 2, np.float32)  # 2 frames
    assert len(word_token_ids(tone_tokenizer, ["zebra", "red"])[0]) >= 2  # unseen: spelt in pieces, scored as speech
    assert aligner.align(wav, 16000, ["zebra", "red"]) == [(0.0, 0.04), (0.04, 0.08)]  # a state per word
    spread = aligner.align(wav, 16000, ["zebra", "red", "blue"])  # more words than frames: shared evenly
    assert np.allclose(spread, [(0.0, 0.08 / 3), (0.08 / 3, 0.16 / 3), (0.16 / 3, 0.08)])


def test_loading_a_folder_that_is_not_an_aligner_names_the_command(tmp_path):
    with pytest.raises(OpusLMError, match="train-aligner"):
        WordAligner.load(tmp_path)


def test_timestamps_aligned_and_an_aligner_come_together():
    from opuslm.infer.sampling import Sampling

    assert Sampling(timestamps="aligned", aligner="some/aligner").aligner == "some/aligner"
    for options in ({"timestamps": "aligned"}, {"aligner": "some/aligner"}):
        with pytest.raises(OpusLMError, match="--timestamps aligned .* --aligner DIR"):
            Sampling(**options)


def test_the_train_aligner_command_reports_what_its_aligner_does_on_dev_clips(small_corpus, tiny_tokenizers, tmp_path,
                                                                            capsys):
    from opuslm.cli.main import main
    from opuslm.infer.word_aligner import timed_clips

    out = tmp_path / "aligner"
    assert main(["tokenizers", "train-aligner", "--manifest", str(small_corpus), "--text-tokenizer",
                 str(tiny_tokenizers.text), "--out", str(out), "--clips", "20", "--dev-clips", "5", "--steps", "20"]) == 0
    aligner = WordAligner.load(out)
    dev = timed_clips(small_corpus, "dev", 5)
    assert aligner.info["dev_aas_ms"] == pytest.approx(boundary_error_ms(aligner, dev))
    assert f"dev words placed {aligner.info['dev_aas_ms']:.0f} ms" in capsys.readouterr().out
    assert aligner.info["train_clips"] == 20 and aligner.features.config()["kind"] == "whisper"


def test_the_train_aligner_command_refuses_a_corpus_without_word_times(tiny_tokenizers, tmp_path, capsys):
    from opuslm.cli.main import main

    (tmp_path / "manifest.jsonl").write_text('{"id": "a", "audio": "a.wav", "split": "train", "text": "hi", '
                                             '"duration": 1.0, "sample_rate": 16000, "speaker": "s"}\n')
    assert main(["tokenizers", "train-aligner", "--manifest", str(tmp_path), "--text-tokenizer",
                 str(tiny_tokenizers.text), "--out", str(tmp_path / "out")]) != 0
    assert "has no train utterances with word times" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
