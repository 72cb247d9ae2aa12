"""Offline tokenization: shards, O(1) access, crash-resume, rejects, tokenizer identity."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from opuslm.data.manifest import read_manifest, write_manifest
from opuslm.errors import OpusLMError
from opuslm.tokenize import pipeline, shards
from opuslm.tokenize.pipeline import TokenizerPaths, align_to_frames, tokenize_corpus
from opuslm.tokenize.shards import TokenShards


@pytest.fixture()
def corpus_with_broken_audio(small_corpus, tmp_path):
    """The small corpus's first 23 utterances plus a NaN file and a missing file."""
    utts = read_manifest(small_corpus)[:23]
    for u in utts:
        u.audio = str(u.audio_path(small_corpus))
    nan = np.full(8000, np.nan, np.float32)
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    broken = [
        type(utts[0])(**{**utts[0].__dict__, "id": "nan-audio", "audio": str(tmp_path / "nan.wav")}),
        type(utts[0])(**{**utts[0].__dict__, "id": "gone", "audio": str(tmp_path / "gone.wav")}),
    ]
    write_manifest(tmp_path / "manifest.jsonl", utts[:10] + broken + utts[10:])
    return tmp_path / "manifest.jsonl"


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "tokens.json"}


def test_shards_hold_exactly_what_the_tokenizers_give(corpus_with_broken_audio, tiny_tokenizers, tmp_path):
    summary = tokenize_corpus(corpus_with_broken_audio, tmp_path / "tok", tiny_tokenizers, shard_size=4, progress=False)
    assert summary == {"seen": 25, "accepted": 23, "rejected": 2, "frames": summary["frames"]}
    reasons = {json.loads(l)["id"]: json.loads(l)["reason"] for l in (tmp_path / "tok/rejects.jsonl").read_text().splitlines()}
    assert "NaN" in reasons["nan-audio"] and "not found" in reasons["gone"]
    data = TokenShards(tmp_path / "tok", expect=tiny_tokenizers.identity())
    assert len(data) == 23
    direct = pipeline.SpeechTokenizers(tiny_tokenizers)
    manifest = [u for u in read_manifest(corpus_with_broken_audio) if u.id not in reasons]
    for i in (0, 7, 22, -1):
        u = manifest[i]
        [expected], _ = direct.tokenize([u], corpus_with_broken_audio.parent, batch_size=1)
        got = data[i]
        assert got.meta["id"] == u.id and got.meta["labels"] == u.labels and got.meta["words"] == u.words
        assert np.array_equal(got.text_ids, expected.text_ids)
        assert np.array_equal(got.semantic, expected.semantic)
        assert np.array_equal(got.codes, expected.codes)
        assert got.codes.shape == (4, len(got.semantic))
    assert summary["frames"] == sum(len(data[i].semantic) for i in range(len(data)))
    with pytest.raises(IndexError):
        data[23]


def test_a_crashed_run_resumes_to_the_same_shards(corpus_with_broken_audio, tiny_tokenizers, tmp_path, monkeypatch):
    tokenize_corpus(corpus_with_broken_audio, tmp_path / "clean", tiny_tokenizers, shard_size=4, progress=False)
    real_replace, calls = shards.os.replace, []

    def crash_on_third_rename(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # dies after writing shard 3's files, before its rename
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    monkeypatch.setattr(shards.os, "replace", crash_on_third_rename)
    with pytest.raises(KeyboardInterrupt):
        tokenize_corpus(corpus_with_broken_audio, tmp_path / "crashed", tiny_tokenizers, shard_size=4, progress=False)
    monkeypatch.setattr(shards.os, "replace", real_replace)
    assert len(shards.completed_shards(tmp_path / "crashed")) == 2  # the half-written one does not count
    with pytest.raises(OpusLMError, match="2 of 7 shards"):
        TokenShards(tmp_path / "crashed")
    tokenize_corpus(corpus_with_broken_audio, tmp_path / "crashed", tiny_tokenizers, shard_size=4, progress=False)
    for leftover in (tmp_path / "crashed").glob(".shard-*"):
        shutil.rmtree(leftover)  # the dead run's temporary folder; it never reads as a shard
    assert _tree(tmp_path / "crashed") == _tree(tmp_path / "clean")


def test_a_batch_whose_every_utterance_is_rejected_is_listed_not_a_crash(corpus_with_broken_audio, tiny_tokenizers,
                                                                        tmp_path):
    """The NaN file and the missing one, alone in a batch of 2; and the corpus around them in batches of 2."""
    broken = [u for u in read_manifest(corpus_with_broken_audio) if u.id in ("nan-audio", "gone")]
    items, rejects = pipeline.SpeechTokenizers(tiny_tokenizers).tokenize(broken, corpus_with_broken_audio.parent, 2)
    assert items == [] and [r["id"] for r in rejects] == ["nan-audio", "gone"]
    summary = tokenize_corpus(corpus_with_broken_audio, tmp_path / "tok", tiny_tokenizers, shard_size=8, batch_size=2,
                              progress=False)
    assert summary == {"seen": 25, "accepted": 23, "rejected": 2, "frames": summary["frames"]}
    assert pipeline.SpeechTokenizers(tiny_tokenizers).acoustic.encode_batch([], 16000) == []


def test_batches_of_similar_durations_keep_the_manifest_order_and_the_single_codes(corpus_with_broken_audio,
                                                                                  tiny_tokenizers):
    utterances = [u for u in read_manifest(corpus_with_broken_audio) if u.id not in ("nan-audio", "gone")][:9]
    assert sorted(utterances, key=lambda u: u.duration) != utterances  # the batches are not in manifest order
    direct = pipeline.SpeechTokenizers(tiny_tokenizers)
    batched, _ = direct.tokenize(utterances, corpus_with_broken_audio.parent, batch_size=4)
    assert [item.meta["id"] for item in batched] == [u.id for u in utterances]
    for u, item in zip(utterances, batched):
        [single], _ = direct.tokenize([u], corpus_with_broken_audio.parent, batch_size=1)
        assert np.array_equal(item.codes, single.codes) and np.array_equal(item.semantic, single.semantic)


def test_utterances_over_the_maximum_duration_are_rejected_and_listed(corpus_with_broken_audio, tiny_tokenizers,
                                                                       tmp_path):
    durations = [sf.info(u.audio).duration for u in read_manifest(corpus_with_broken_audio) if u.id not in ("nan-audio", "gone")]
    limit = round(sorted(durations)[len(durations) // 2], 2)
    summary = tokenize_corpus(corpus_with_broken_audio, tmp_path / "tok", tiny_tokenizers, shard_size=8,
                              max_seconds=limit, progress=False)
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "tok" / "rejects.jsonl").read_text().splitlines()]
    too_long = [r for r in reasons if f"longer than the maximum of {limit:g} s" in r]
    assert len(too_long) == sum(d > limit for d in durations) > 0
    assert summary["seen"] == 25 and summary["rejected"] == 2 + len(too_long)
    with pytest.raises(OpusLMError, match="another manifest, shard size or maximum duration"):
        tokenize_corpus(corpus_with_broken_audio, tmp_path / "tok", tiny_tokenizers, shard_size=8, progress=False)


def test_parallel_workers_give_the_same_shards(corpus_with_broken_audio, tiny_tokenizers, tmp_path):
    tokenize_corpus(corpus_with_broken_audio, tmp_path / "one", tiny_tokenizers, shard_size=8, workers=1, progress=False)
    tokenize_corpus(corpus_with_broken_audio, tmp_path / "two", tiny_tokenizers, shard_size=8, workers=2, progress=False)
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")


def test_pool_workers_end_with_a_killed_parent(small_corpus, tiny_tokenizers, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    command = [sys.executable, "-m", "opuslm", "tokenize", "--manifest", str(small_corpus), "--out", str(tmp_path / "tok"),
               "--text", str(tiny_tokenizers.text), "--semantic", str(tiny_tokenizers.semantic),
               "--codec", str(tiny_tokenizers.acoustic), "--shard-size", "16", "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "tok").glob("shard-*")):  # workers are at work
        time.sleep(0.05)
    workers = psutil.Process(process.pid).children(recursive=True)
    assert len(workers) >= 2 and process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    _, alive = psutil.wait_procs(workers, timeout=1)  # not after finishing the shard at hand
    assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]  # ended, not yet reaped


def test_other_tokenizers_are_refused_naming_both_hashes(corpus_with_broken_audio, tiny_tokenizers, tmp_path):
    tokenize_corpus(corpus_with_broken_audio, tmp_path / "tok", tiny_tokenizers, shard_size=8, progress=False)
    other_semantic = tmp_path / "semantic2"
    shutil.copytree(tiny_tokenizers.semantic, other_semantic)
    centroids = np.load(other_semantic / "centroids.npy")
    np.save(other_semantic / "centroids.npy", centroids[::-1].copy())
    other = TokenizerPaths(tiny_tokenizers.text, other_semantic, tiny_tokenizers.acoustic)
    stored, given = tiny_tokenizers.identity()["semantic"], other.identity()["semantic"]
    with pytest.raises(OpusLMError, match=f"semantic tokenizer \\(hash {stored}\\).*\\(hash {given}\\)"):
        TokenShards(tmp_path / "tok", expect=other.identity())
    with pytest.raises(OpusLMError, match="another semantic tokenizer"):
        tokenize_corpus(corpus_with_broken_audio, tmp_path / "tok", other, shard_size=8, progress=False)


def test_align_to_frames_picks_the_nearest_centre():
    ids = np.arange(100)
    assert align_to_frames(ids, 50, 12.5, 5).tolist() == [2, 6, 10, 14, 18]
    assert align_to_frames(ids[:4], 25, 25, 6).tolist() == [0, 1, 2, 3, 3, 3]  # a short tail repeats the last id
    assert align_to_frames(ids, 12.5, 50, 6).tolist() == [0, 0, 0, 0, 1, 1]
