"""`opuslm data synth|synth-text|import|recipe|text`."""

from __future__ import annotations

import os
from pathlib import Path

from opuslm.cli import help_formatter
from opuslm.data.manifest import SPLITS


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="build or import a speech corpus manifest",
                                 description="Build the embedded synthetic corpus or import a real one.")
    commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    synth = commands.add_parser(
        "synth", help="synthesise the embedded multi-speaker corpus with eSpeak NG",
        description="Synthesise a multi-speaker English corpus with eSpeak NG, with speaker, gender, age, "
        "emotion, style, vocal-event, word-timestamp and spoken-question labels. The labels are synthesis "
        "parameters (proxies), see data_recipes/espeak/README.md. Same seed -> byte-identical output.",
        formatter_class=help_formatter,
    )
    synth.add_argument("--out", type=Path, required=True, help="output folder (audio/, manifest.jsonl, corpus.json)")
    synth.add_argument("--hours", type=float, default=0.5, help="total audio; 90%% train, 5%% dev, 5%% test")
    synth.add_argument("--seed", type=int, default=0, help="random seed; fixes every byte of the output")
    synth.add_argument("--world-share", type=float, default=0.0,
                       help="share of statements (not questions) that name a topic of the wider world (countries, languages, planets ...: "
                       "the words of the factual questions, never their facts)")
    synth.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="synthesis processes")
    synth.add_argument("--force", action="store_true", help="replace a different corpus already in --out")
    synth.set_defaults(func=_synth)

    synth_text = commands.add_parser(
        "synth-text", help="a text-only corpus from the embedded corpus's grammar (for its text LLM)",
        description="Write train.txt and dev.txt: sentences from the grammar of `data synth`, and spoken "
        "questions followed by their answers. Lines whose transcript hashes to the speech corpus's test split "
        "are left out. A text_lm source whose dataset is this folder reads <split>.txt.",
        formatter_class=help_formatter,
    )
    synth_text.add_argument("--out", type=Path, required=True, help="output folder (train.txt, dev.txt, text.json)")
    synth_text.add_argument("--lines", type=int, default=100000, help="lines drawn before the test lines are left out")
    synth_text.add_argument("--seed", type=int, default=0, help="random seed")
    synth_text.set_defaults(func=_synth_text)

    replay = commands.add_parser(
        "replay-text", help="text the LLM writes itself, replayed while it learns speech (keeps its text ability)",
        description="Sample lines from a local HF LLM (its BOS, temperature 1, transformers' generate) into "
        "train.txt and dev.txt. A text_lm source over them pulls continued pretraining back towards the LLM "
        "it started from: the loss on its own samples is the KL divergence from it, plus a constant. Run it "
        "before any speech training, on the LLM the schedule starts from.",
        formatter_class=help_formatter,
    )
    replay.add_argument("llm", type=Path, help="the HF LLM folder (e.g. from `opuslm assets import smollm2-135m`)")
    replay.add_argument("--out", type=Path, required=True, help="output folder (train.txt, dev.txt, replay.json)")
    replay.add_argument("--lines", type=int, default=1000, help="samples to draw (every 20th goes to dev.txt)")
    replay.add_argument("--max-new-tokens", type=int, default=96, help="the longest sample, in the LLM's tokens")
    replay.add_argument("--batch-size", type=int, default=32, help="samples drawn at once")
    replay.add_argument("--seed", type=int, default=0, help="random seed")
    replay.set_defaults(func=_replay_text)

    imp = commands.add_parser(
        "import", help="turn a real corpus into a manifest",
        description="Turn a Kaldi data folder (labels from any utt2<key> file, e.g. utt2gender or a key of your "
        "own), a local Hugging Face dataset folder (labels from --label-column) or OSUM raw JSON Lines into "
        "the project's manifest. Every audio file is read and checked; unusable entries go to rejects.jsonl "
        "with their reason.",
        formatter_class=help_formatter,
    )
    imp.add_argument("format", choices=("kaldi", "hf", "osum"), help="layout of SOURCE")
    imp.add_argument("source", type=Path, help="Kaldi folder, HF dataset folder, or OSUM .jsonl file")
    imp.add_argument("--out", type=Path, required=True, help="output folder for manifest.jsonl and rejects.jsonl")
    imp.add_argument("--split", choices=SPLITS, default="train", help="split recorded for every utterance")
    imp.add_argument("--pattern", help="hf: glob of parquet files under SOURCE (e.g. 'data/test.clean-*.parquet')")
    imp.add_argument("--text-column", help="hf: transcript column (default: text, sentence, transcription, ...)")
    imp.add_argument("--speaker-column", help="hf: speaker column (default: speaker_id, speaker, client_id)")
    imp.add_argument("--id-column", help="hf: utterance id column (default: id, key, utt_id, file)")
    imp.add_argument("--label-column", action="append", default=[], help="hf: column copied into labels (repeatable)")
    imp.set_defaults(func=_import)

    recipe = commands.add_parser(
        "recipe", help="import a public corpus from its published layout, with OSUM labels",
        description="Import a local copy of a public corpus in its published layout: librispeech (ASR/TTS, gender), "
        "meld (SER), vocalsound and esc50 (VED), common-voice (ASR, SGC, SAP), aishell1 (Chinese ASR, gender). Class "
        "mappings are in data_recipes/README.md. Nothing is downloaded.",
        formatter_class=help_formatter)
    recipe.add_argument("corpus", choices=("librispeech", "meld", "vocalsound", "esc50", "common-voice", "aishell1"),
                        help="which corpus ROOT holds, in its published layout")
    recipe.add_argument("root", type=Path, help="the corpus's folder (LibriSpeech/, MELD.Raw/, cv-corpus-*/en/, ...)")
    recipe.add_argument("--split", choices=SPLITS, required=True, help="which split to import (and record)")
    recipe.add_argument("--out", type=Path, required=True, help="output folder for manifest.jsonl and rejects.jsonl")
    recipe.add_argument("--subset", help="librispeech: the subset folder (train-clean-100, test-clean, ...)")
    recipe.add_argument("--audio-dir", type=Path, help="meld: folder of diaD_uttU.wav extracted from MELD's videos")
    recipe.set_defaults(func=_recipe)

    text = commands.add_parser(
        "text", help="a text-only corpus (plain text or parquet) -> one document per line",
        description="Turn a text corpus into the one-document-per-line file a text_lm source reads.",
        formatter_class=help_formatter)
    text.add_argument("source", type=Path, help="a .txt file, or a folder of parquet files")
    text.add_argument("--out", type=Path, required=True, help="output .txt file")
    text.add_argument("--column", default="text", help="parquet: the text column")
    text.set_defaults(func=_text)


def _synth(args) -> None:
    from opuslm.data.synth.corpus import SynthConfig, synthesize_corpus

    summary = synthesize_corpus(args.out, SynthConfig(hours=args.hours, seed=args.seed, world_share=args.world_share),
                                workers=args.workers, force=args.force)
    counts = ", ".join(f"{split} {c['utterances']} utt / {c['seconds'] / 60:.1f} min" for split, c in summary["counts"].items())
    print(f"corpus in {args.out}: {counts}; rejected {summary['rejected']}")
    print(f"manifest: {args.out / 'manifest.jsonl'}")


def _synth_text(args) -> None:
    from opuslm.data.synth.text import describe, synthesize_text

    print(f"text corpus in {args.out}: {describe(synthesize_text(args.out, args.lines, args.seed))}")


def _replay_text(args) -> None:
    from opuslm.data.synth.replay import describe, replay_text

    summary = replay_text(args.llm, args.out, args.lines, args.seed, args.max_new_tokens, args.batch_size)
    print(f"replay text in {args.out}: {describe(summary)}")


def _recipe(args) -> None:
    from opuslm.data import importers, recipes
    from opuslm.errors import OpusLMError

    if args.corpus == "librispeech":
        if not args.subset:
            raise OpusLMError("librispeech needs --subset (e.g. test-clean)")
        candidates = recipes.librispeech(args.root, args.subset)
    elif args.corpus == "meld":
        if not args.audio_dir:
            raise OpusLMError("meld needs --audio-dir: the folder of diaD_uttU.wav extracted from its videos")
        candidates = recipes.meld(args.root, args.split, args.audio_dir)
    else:
        candidates = recipes.RECIPES[args.corpus](args.root, args.split)
    summary = importers.import_corpus(candidates, args.out, args.split)
    print(summary.line())
    print(f"manifest: {args.out / 'manifest.jsonl'}; rejects: {args.out / 'rejects.jsonl'}")


def _text(args) -> None:
    from opuslm.data.recipes import text_corpus

    written, skipped = text_corpus(args.source, args.out, args.column)
    print(f"{written} documents -> {args.out} (skipped {skipped} empty)")


def _import(args) -> None:
    from opuslm.data import importers

    if args.format == "kaldi":
        candidates = importers.kaldi_candidates(args.source)
    elif args.format == "hf":
        candidates = importers.hf_candidates(args.source, args.out / "audio", args.pattern, args.text_column,
                                             args.speaker_column, args.id_column, tuple(args.label_column))
    else:
        candidates = importers.osum_candidates(args.source)
    summary = importers.import_corpus(candidates, args.out, args.split)
    print(summary.line())
    print(f"manifest: {args.out / 'manifest.jsonl'}; rejects: {args.out / 'rejects.jsonl'}")
