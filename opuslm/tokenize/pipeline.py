"""`opuslm tokenize`: a manifest becomes token shards, in parallel, resumably.

Utterances are cut into shards of `shard_size` in manifest order; shard k always holds the same
utterances, so a re-run skips finished shards and a killed run resumes to the same result. Audio that
cannot be read goes to the shard's rejects with its reason; the summary adds them up.

Frame alignment: every configuration has one frame rate, the acoustic tokenizer's. When the semantic
features run at another rate (an SSL model at 50 Hz beside a 12.5 Hz codec, say), each acoustic frame
takes the semantic id whose frame centre is nearest in time; equal rates that differ by a frame at
the end (convolutional SSL front ends drop a partial frame) are padded with the last id.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from opuslm.audio import AudioError
from opuslm.data.manifest import Utterance, read_manifest
from opuslm.data.rules import content_problem, declared_problem, duration_problem
from opuslm.errors import OpusLMError
from opuslm.json_files import write_json
from opuslm.tokenize.identity import TOKENIZER_NAMES, folder_hash, tokenizer_hash
from opuslm.tokenize.shards import TokenizedUtterance, check_identity, completed_shards, write_shard
from opuslm.tokenize.text import text_ids

# Longer utterances are rejected: encoder memory grows with the clip (a 10-minute file took 4 GB), and
# a training row holds about 40 s (1,024 frames at 25 Hz).
MAX_SECONDS = 60.0


def align_to_frames(ids: np.ndarray, from_rate: float, to_rate: float, frames: int) -> np.ndarray:
    """Resample an id sequence (or any array along its first axis) at `from_rate` onto `frames`
    frames at `to_rate`.

    Target frame t takes the source frame that contains its centre, (t + 1/2) / to_rate seconds.
    The rate ratio is taken as an exact fraction, because with common rates (50 -> 25 Hz) every
    centre falls exactly on a source boundary, where floating point would pick either side; exact
    ties go to the later frame.
    """
    if len(ids) == 0:
        raise AudioError("the semantic tokenizer produced no frames (audio shorter than one frame)")
    ratio = Fraction(from_rate).limit_denominator(10_000) / Fraction(to_rate).limit_denominator(10_000)
    source = (2 * np.arange(frames, dtype=np.int64) + 1) * ratio.numerator // (2 * ratio.denominator)
    return ids[np.clip(source, 0, len(ids) - 1)]


@dataclass(frozen=True)
class TokenizerPaths:
    text: Path
    semantic: Path
    acoustic: Path

    def identity(self) -> dict[str, str]:
        return {name: tokenizer_hash(name, getattr(self, name)) for name in TOKENIZER_NAMES}


class SpeechTokenizers:
    """The three tokenizers, loaded once per process; `heard_features`: also give each frame the semantic
    tokenizer's features (`SemanticTokenizer.encode_with_features`), float16."""

    def __init__(self, paths: TokenizerPaths, heard_features: bool = False):
        from opuslm.tokenize.acoustic import load_acoustic_tokenizer
        from opuslm.tokenize.semantic import SemanticTokenizer
        from opuslm.tokenize.text import load_text_tokenizer

        self.text = load_text_tokenizer(paths.text)
        self.semantic = SemanticTokenizer.load(paths.semantic)
        self.acoustic = load_acoustic_tokenizer(paths.acoustic)
        self.heard_features = heard_features

    def encode_audio(self, wavs: list[np.ndarray]) -> list[tuple | AudioError]:
        """Waveforms at the codec's rate -> (semantic ids `[T]`, codes `[Q, T]`, heard features `[T, dim]`
        float16 or None) on the codec's frames, or the AudioError saying why one cannot be tokenized."""
        out = []
        for wav, codes in zip(wavs, self.acoustic.encode_batch(wavs, self.acoustic.sample_rate)):
            try:
                ids, features = self.semantic.encode_with_features(wav, self.acoustic.sample_rate)
                frames = (self.semantic.frame_rate, self.acoustic.frame_rate, codes.shape[1])
                semantic = align_to_frames(ids, *frames)
                heard = align_to_frames(features, *frames).astype(np.float16) if self.heard_features else None
            except AudioError as error:
                out.append(error)
                continue
            out.append((semantic, codes, heard))
        return out

    def tokenize(self, utterances: list[Utterance], manifest_dir: Path, batch_size: int,
                 max_seconds: float = MAX_SECONDS, problems: list[str | None] | None = None):
        """(items, rejects) in manifest order. Batches hold utterances of similar duration (the codec pads
        each batch to its longest clip), and the codes do not depend on what was batched together.
        `problems`: per utterance, a reason found in the manifest alone (`manifest_problems`) or None; the
        audio's own are checked here (`opuslm.data.rules`)."""
        outcome: dict[int, TokenizedUtterance | dict] = {}
        by_duration = sorted(range(len(utterances)), key=lambda i: utterances[i].duration)
        for start in range(0, len(by_duration), batch_size):
            batch, wavs = [], []
            for i in by_duration[start: start + batch_size]:
                u = utterances[i]
                try:
                    if problems is not None and problems[i]:
                        raise AudioError(problems[i])
                    wav, _ = u.load_audio(manifest_dir, target_rate=self.acoustic.sample_rate)
                    seconds = len(wav) / self.acoustic.sample_rate
                    problem = declared_problem(u.duration, seconds) or duration_problem(seconds, u.text)
                    if problem:
                        raise AudioError(problem)
                except AudioError as error:
                    outcome[i] = {"id": u.id, "reason": str(error)}
                    continue
                if seconds > max_seconds:  # the encoders' memory grows with the clip; training rows are shorter
                    outcome[i] = {"id": u.id, "reason": f"{seconds:.1f} s is longer than the maximum of {max_seconds:g} s; "
                                                        "cut it into segments or raise --max-seconds"}
                    continue
                batch.append(i)
                wavs.append(wav)
            for i, encoded in zip(batch, self.encode_audio(wavs)):
                u = utterances[i]
                if isinstance(encoded, AudioError):
                    outcome[i] = {"id": u.id, "reason": str(encoded)}
                    continue
                meta = {"id": u.id, "text": u.text, "speaker": u.speaker, "split": u.split, "duration": u.duration,
                        "labels": u.labels, "words": u.words, "events": u.events, "answer": u.answer}
                semantic, codes, features = encoded
                outcome[i] = TokenizedUtterance(text_ids(self.text, u.text), semantic, codes, meta, features)
        in_order = [outcome[i] for i in range(len(utterances))]
        return ([o for o in in_order if isinstance(o, TokenizedUtterance)],
                [o for o in in_order if not isinstance(o, TokenizedUtterance)])


_WORKER: dict = {}


def _die_with(parent: int) -> None:
    """End this pool worker when `parent` dies: a SIGKILLed parent cannot stop its pool, and orphaned
    workers went on writing shards for seconds."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the request above
        os._exit(1)


def _init_worker(paths: TokenizerPaths, threads: int | None, parent: int | None = None,
                 heard_features: bool = False) -> None:
    """Load the tokenizers into this process; worker processes (`parent` set) use one thread each."""
    import torch
    from threadpoolctl import threadpool_limits

    if parent is not None:
        _die_with(parent)
    if threads:
        torch.set_num_threads(threads)
        # numpy's BLAS too (the mel-pitch codec's codeword search): two workers of two BLAS threads each
        # encoded at 37 audio s per CPU s against 116 on one thread
        threadpool_limits(threads)
    _WORKER["tokenizers"] = SpeechTokenizers(paths, heard_features)


def manifest_problems(utterances: list[Utterance]) -> list[str | None]:
    """Per utterance, why the manifest alone rules it out (a repeated id, nothing to learn), or None."""
    seen, problems = set(), []
    for u in utterances:
        problems.append(f"duplicate id: an earlier utterance of the manifest is {u.id!r}" if u.id in seen
                        else content_problem(u.text, u.labels))
        seen.add(u.id)
    return problems


def _run_shard(job) -> tuple[int, int, int]:
    index, utterances, problems, manifest_dir, out, batch_size, max_seconds = job
    tokenizers = _WORKER["tokenizers"]
    items, rejects = tokenizers.tokenize(utterances, manifest_dir, batch_size, max_seconds, problems)
    write_shard(out, index, items, rejects, tokenizers.acoustic.num_codebooks)
    return index, len(items), len(rejects)


def tokenize_corpus(manifest: str | Path, out: str | Path, paths: TokenizerPaths, shard_size: int = 256,
                    workers: int = 1, batch_size: int = 8, progress: bool = True, max_seconds: float = MAX_SECONDS,
                    heard_features: bool = False) -> dict:
    """Tokenize every utterance of `manifest` into shards under `out`; returns the summary. Utterances
    longer than `max_seconds` are rejected (a 10-minute file took 4 GB). `heard_features`: store each
    frame's semantic features beside its ids, for a model's continuous input path (float16; the demo's
    Whisper tiny.en features take 768 bytes a frame, about 140 MB for 2 hours)."""
    from opuslm.progress import progress_bar

    manifest = Path(manifest)
    manifest_file = manifest / "manifest.jsonl" if manifest.is_dir() else manifest
    utterances = read_manifest(manifest_file)
    if not utterances:
        raise OpusLMError(f"{manifest_file} has no utterances")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    identity = paths.identity()
    _init_worker(paths, threads=None, heard_features=heard_features)
    acoustic, semantic, text = (_WORKER["tokenizers"].acoustic, _WORKER["tokenizers"].semantic, _WORKER["tokenizers"].text)
    info = {
        "manifest": str(manifest_file.resolve()),
        "manifest_hash": folder_hash(manifest_file),
        "num_utterances": len(utterances),
        "shard_size": shard_size,
        "max_seconds": max_seconds,
        "num_shards": -(-len(utterances) // shard_size),
        "frame_rate": acoustic.frame_rate,
        "tokenizers": {
            "text": {"path": str(Path(paths.text).resolve()), "hash": identity["text"], "vocab_size": len(text)},
            "semantic": {"path": str(Path(paths.semantic).resolve()), "hash": identity["semantic"], "vocab_size": semantic.vocab_size},
            "acoustic": {"path": str(Path(paths.acoustic).resolve()), "hash": identity["acoustic"], **acoustic.describe()},
        },
    }
    if heard_features:  # what the features are follows from the semantic tokenizer's hash
        info["heard_features"] = {"dim": semantic.feature_dim, "dtype": "float16",
                                  "from": "the semantic tokenizer's features, normalised as its k-means reads them"}
    info_path = out / "tokens.json"
    if info_path.is_file():
        stored = json.loads(info_path.read_text())
        check_identity(stored["tokenizers"], identity, str(out))
        if (stored["manifest_hash"], stored["shard_size"], stored.get("max_seconds", max_seconds)) != (
                info["manifest_hash"], shard_size, max_seconds):
            raise OpusLMError(f"{out} holds shards of another manifest, shard size or maximum duration; use a new --out")
        if ("heard_features" in stored) != heard_features:
            have, want = ("without", "with") if heard_features else ("with", "without")
            raise OpusLMError(f"{out} holds shards {have} heard features; this run tokenizes {want} them: use a new --out")
    else:
        write_json(info_path, info, indent=2)

    for stale in out.glob(".shard-*.tmp-*"):  # a killed run's half-written shard; this run writes it again
        shutil.rmtree(stale)
    done = completed_shards(out)
    problems = manifest_problems(utterances)
    jobs = [(k, utterances[k * shard_size:(k + 1) * shard_size], problems[k * shard_size:(k + 1) * shard_size],
             manifest_file.parent, out, batch_size, max_seconds) for k in range(info["num_shards"]) if k not in done]
    bar = progress_bar(total=len(utterances), initial=len(utterances) - sum(len(j[1]) for j in jobs),
               desc="tokenizing", unit="utt", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(workers, _init_worker,
                                                       (paths, 1, os.getpid(), heard_features)) as pool:
            for _, accepted, rejected in pool.imap_unordered(_run_shard, jobs):
                bar.update(accepted + rejected)
    else:
        for job in jobs:
            _, accepted, rejected = _run_shard(job)
            bar.update(accepted + rejected)
    bar.close()
    return summarize(out)


def summarize(out: Path) -> dict:
    """Counts over all shards; writes rejects.jsonl and summary.json beside them."""
    accepted = rejected = frames = 0
    rejects = []
    for path in completed_shards(out).values():
        index = np.load(path / "index.npy")
        accepted += len(index)
        frames += int(index[:, 3].sum()) if len(index) else 0
        rejects += (path / "rejects.jsonl").read_text().splitlines()
    rejected = len(rejects)
    (out / "rejects.jsonl").write_text("".join(line + "\n" for line in rejects))
    summary = {"seen": accepted + rejected, "accepted": accepted, "rejected": rejected, "frames": frames}
    write_json(out / "summary.json", summary, indent=2)
    return summary
