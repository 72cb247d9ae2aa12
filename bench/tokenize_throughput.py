"""Tokenization throughput of the embedded tokenizers, and the small codec's reconstruction figures.

Prints audio seconds tokenized per CPU second (process time, all threads) for the semantic tokenizers
(log-mel and the embedded Whisper tiny.en), the codec (single vs batched encode, measured side by side),
decoding, and the whole `tokenize` pipeline with either semantic tokenizer, at torch's thread count and
on one thread (as each `tokenize --workers N` process runs); then mel distance and SI-SNR of a codec
trained here for --codec-steps (or the one given).

    python bench/tokenize_throughput.py [--hours 0.05] [--codec-steps 300] [--codec DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def cpu_rate(fn, audio_seconds: float) -> float:
    start = time.process_time()
    fn()
    return audio_seconds / max(time.process_time() - start, 1e-9)


def on_one_thread(fn):
    """`fn` with torch (and the OpenMP pool CTranslate2 shares) on one thread, as each `tokenize
    --workers N` process runs: idle OpenMP threads spin, which counts as CPU time."""
    def run():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            fn()
        finally:
            torch.set_num_threads(threads)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=0.05, help="synthetic corpus to measure on")
    parser.add_argument("--codec-steps", type=int, default=300, help="training steps for the measured codec")
    parser.add_argument("--codec", type=Path, help="an already trained small-codec folder to measure instead")
    args = parser.parse_args()

    from opuslm.data.manifest import read_manifest
    from opuslm.data.synth.corpus import SynthConfig, synthesize_corpus
    from opuslm.tokenize.acoustic import SmallCodecTokenizer
    from opuslm.tokenize.codec_training import reconstruction_metrics, train_small_codec
    from opuslm.tokenize.features import LogMelFeatures, WhisperFeatures
    from opuslm.tokenize.pipeline import TokenizerPaths, tokenize_corpus
    from opuslm.tokenize.semantic import train_semantic_tokenizer
    from opuslm.tokenize.text import train_text_tokenizer

    work = Path(tempfile.mkdtemp(prefix="opuslm-bench-"))
    synthesize_corpus(work / "corpus", SynthConfig(hours=args.hours), workers=1, progress=False)
    utts = read_manifest(work / "corpus")
    wavs = [sf.read(u.audio_path(work / "corpus"), dtype="float32")[0] for u in utts if u.split == "train"]
    dev = [sf.read(u.audio_path(work / "corpus"), dtype="float32")[0] for u in utts if u.split == "dev"]
    seconds = sum(len(w) for w in wavs) / 16000
    print(f"corpus: {len(wavs)} train utterances, {seconds:.0f} s; torch threads {torch.get_num_threads()}")

    train_text_tokenizer([u.text for u in utts], work / "text", 512)
    semantic = train_semantic_tokenizer(((w, 16000) for w in wavs), LogMelFeatures(), k=256)
    semantic.save(work / "semantic")
    whisper = train_semantic_tokenizer(((w, 16000) for w in wavs), WhisperFeatures(), k=256)
    whisper.save(work / "whisper")
    whisper_int8 = train_semantic_tokenizer(((w, 16000) for w in wavs), WhisperFeatures(compute_type="int8"), k=256)
    codec_dir = args.codec or train_small_codec(wavs, work / "codec", steps=args.codec_steps, progress=False)
    codec = SmallCodecTokenizer(codec_dir)

    by_length = sorted(wavs, key=len)
    rows = [
        ("semantic encode (log-mel + k-means)", cpu_rate(lambda: [semantic.encode(w, 16000) for w in wavs], seconds)),
        ("semantic encode (Whisper tiny.en + k-means)", cpu_rate(lambda: [whisper.encode(w, 16000) for w in wavs], seconds)),
        ("semantic encode (the same, int8 weights)", cpu_rate(lambda: [whisper_int8.encode(w, 16000) for w in wavs], seconds)),
        ("codec encode, one at a time", cpu_rate(lambda: [codec.encode(w, 16000) for w in wavs], seconds)),
        ("codec encode, batches of 8 by length", cpu_rate(  # as `tokenize` batches
            lambda: [codec.encode_batch(by_length[i:i + 8], 16000) for i in range(0, len(wavs), 8)], seconds)),
    ]
    codes = [codec.encode(w, 16000) for w in wavs[:20]]
    rows.append(("codec decode", cpu_rate(lambda: [codec.decode(c) for c in codes], sum(len(w) for w in wavs[:20]) / 16000)))
    paths = TokenizerPaths(work / "text", work / "semantic", Path(codec_dir))
    all_seconds = sum(u.duration for u in utts)
    rows.append(("whole `tokenize` pipeline, 1 process, log-mel", cpu_rate(
        lambda: tokenize_corpus(work / "corpus", work / "tokens", paths, shard_size=64, workers=1, progress=False),
        all_seconds)))
    with_whisper = TokenizerPaths(work / "text", work / "whisper", Path(codec_dir))
    rows.append(("whole `tokenize` pipeline, 1 process, Whisper", cpu_rate(
        lambda: tokenize_corpus(work / "corpus", work / "tokens-whisper", with_whisper, shard_size=64, workers=1,
                                progress=False), all_seconds)))
    rows.append(("the same on 1 thread (a --workers process)", cpu_rate(on_one_thread(
        lambda: tokenize_corpus(work / "corpus", work / "tokens-whisper-1", with_whisper, shard_size=64, workers=1,
                                progress=False)), all_seconds)))
    rows.append(("Whisper semantic encode on 1 thread", cpu_rate(
        on_one_thread(lambda: [whisper.encode(w, 16000) for w in wavs]), seconds)))
    rows.append(("codec encode, one at a time, on 1 thread", cpu_rate(
        on_one_thread(lambda: [codec.encode(w, 16000) for w in wavs]), seconds)))
    print(f"{'what':44s} audio s / CPU s")
    for name, rate in rows:
        print(f"{name:44s} {rate:10.1f}")
    print(f"batched / single codec encode ratio: {rows[4][1] / rows[3][1]:.2f}")
    metrics = reconstruction_metrics(codec, dev, 16000)
    print(f"codec {codec.num_codebooks} x {codec.codebook_size} at {codec.frame_rate:g} Hz "
          f"({codec.num_codebooks * np.log2(codec.codebook_size) * codec.frame_rate / 1000:.1f} kbit/s): "
          f"dev mel distance {metrics['mel_distance']}, SI-SNR {metrics['si_snr_db']} dB over {metrics['utterances']} utterances")


if __name__ == "__main__":
    main()
