"""`opuslm demo`: the main job on the embedded default, as a sequence of resumable steps.

Each step writes its output under --out and is skipped when that output is already complete, so a
re-run resumes. Later stages of the pipeline add their steps to STEPS.
"""

from __future__ import annotations

import os
from pathlib import Path


def _synthesise_corpus(args) -> str:
    from opuslm.data.synth.corpus import SynthConfig, synthesize_corpus

    corpus = args.out / "corpus"
    summary = synthesize_corpus(corpus, SynthConfig(hours=args.hours, seed=args.seed), workers=args.workers)
    total = sum(c["utterances"] for c in summary["counts"].values())
    return f"{total} utterances, {sum(c['seconds'] for c in summary['counts'].values()) / 60:.1f} min -> {corpus}"


def _done(folder: Path, marker: str) -> bool:
    return (folder / marker).is_file()


def _train_tokenizers(args) -> str:
    """Text BPE, log-mel k-means and the small codec; each skipped when its folder is complete."""
    from opuslm.data.manifest import read_manifest
    from opuslm.tokenize.acoustic import SmallCodecTokenizer
    from opuslm.tokenize.codec_training import train_and_measure
    from opuslm.tokenize.features import LogMelFeatures
    from opuslm.tokenize.semantic import train_semantic_tokenizer
    from opuslm.tokenize.text import corpus_texts, train_text_tokenizer

    corpus, root = args.out / "corpus", args.out / "tokenizers"
    utts = read_manifest(corpus)
    if not _done(root / "text", "tokenizer.json"):
        train_text_tokenizer(corpus_texts(utts), root / "text", 1024)
    if not (_done(root / "semantic", "semantic.json") and _done(root / "codec", "codec.json")):
        train = [u.load_audio(corpus)[0] for u in utts if u.split == "train"]
    if not _done(root / "semantic", "semantic.json"):
        train_semantic_tokenizer(((w, 16000) for w in train), LogMelFeatures(), k=256, seed=args.seed).save(root / "semantic")
    if not _done(root / "codec", "codec.json"):
        dev = [u.load_audio(corpus)[0] for u in utts if u.split == "dev"][:50]
        train_and_measure(train, dev, root / "codec.tmp", steps=args.codec_steps, seed=args.seed)
        (root / "codec.tmp").rename(root / "codec")
    metrics = SmallCodecTokenizer(root / "codec").metrics
    return f"text BPE 1024, semantic K=256, codec dev mel distance {metrics['mel_distance']} -> {root}"


def _tokenize(args) -> str:
    from opuslm.tokenize.pipeline import TokenizerPaths, tokenize_corpus

    root = args.out / "tokenizers"
    summary = tokenize_corpus(args.out / "corpus", args.out / "tokens",
                              TokenizerPaths(root / "text", root / "semantic", root / "codec"), workers=args.workers)
    return f"seen {summary['seen']} = accepted {summary['accepted']} + rejected {summary['rejected']} -> {args.out / 'tokens'}"


def _joint_vocab(args) -> str:
    from opuslm.vocab import JointVocab

    vocab = JointVocab.from_tokens(args.out / "tokens")
    path = vocab.save(args.out / "vocab.json")
    return f"{vocab.size} ids ({vocab.summary()}), hash {vocab.hash} -> {path}; see `opuslm vocab show --vocab {path}`"


STEPS = (
    ("synthesise the eSpeak corpus", _synthesise_corpus),
    ("train the text, semantic and acoustic tokenizers", _train_tokenizers),
    ("tokenize the corpus into shards", _tokenize),
    ("lay out the joint vocabulary", _joint_vocab),
)


def register(subparsers) -> None:
    demo = subparsers.add_parser(
        "demo", help="run the whole pipeline on the embedded default (CPU, minutes)",
        description="Run the main job on the embedded default: synthesise the corpus and run every pipeline "
        "step after it. Re-running resumes: finished steps are skipped.",
    )
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="where every step writes (default: demo_out)")
    demo.add_argument("--hours", type=float, default=0.5, help="size of the synthetic corpus (default: 0.5)")
    demo.add_argument("--seed", type=int, default=0, help="seed for every step (default: 0)")
    demo.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="parallel processes")
    demo.add_argument("--codec-steps", type=int, default=1500, help="training steps of the small codec (default: 1500)")
    demo.set_defaults(func=_run)


def _run(args) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    for number, (title, step) in enumerate(STEPS, 1):
        print(f"[{number}/{len(STEPS)}] {title}", flush=True)
        print(f"    {step(args)}", flush=True)
    print(f"demo finished; everything is in {args.out}")
