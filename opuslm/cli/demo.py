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


STEPS = (("synthesise the eSpeak corpus", _synthesise_corpus),)


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
    demo.set_defaults(func=_run)


def _run(args) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    for number, (title, step) in enumerate(STEPS, 1):
        print(f"[{number}/{len(STEPS)}] {title}", flush=True)
        print(f"    {step(args)}", flush=True)
    print(f"demo finished; everything is in {args.out}")
